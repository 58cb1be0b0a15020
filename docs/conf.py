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
    "sphinx.ext.napoleon",
    "sphinx_copybutton",
]
root_doc = "index"
source_suffix = [".md", ".rst"]
default_role = "literal"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3


def _skip_inherited_traits(app, what, name, obj, skip, options):
    """The reference lists what classroom-spawner adds; KubeSpawner's and
    OAuthenticator's own options are documented by those projects."""
    defined_in = getattr(getattr(obj, "this_class", None), "__module__", "")
    if defined_in and not defined_in.startswith("classroom_spawner"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_inherited_traits)


html_theme = "sphinx_book_theme"
html_title = "classroom-spawner"
