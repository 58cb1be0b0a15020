# Sphinx configuration for classroom-spawner's documentation.
#
# ref: https://www.sphinx-doc.org/en/master/usage/configuration.html
#
import classroom_spawner

project = "classroom-spawner"
copyright = "classroom-spawner contributors"
version = release = classroom_spawner.__version__

extensions = [
    "autodoc_traits",
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx_copybutton",
]
root_doc = "index"
source_suffix = [".md", ".rst"]
default_role = "literal"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

intersphinx_mapping = {
    "jupyterhub": ("https://jupyterhub.readthedocs.io/en/stable/", None),
    "kubespawner": ("https://jupyterhub-kubespawner.readthedocs.io/en/stable/", None),
    "oauthenticator": ("https://oauthenticator.readthedocs.io/en/stable/", None),
}
intersphinx_disabled_reftypes = ["*"]

html_theme = "sphinx_book_theme"
html_title = "classroom-spawner"
