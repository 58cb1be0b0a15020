"""classroom-spawner: a classroom platform for JupyterHub on Kubernetes.

The spawner and authenticator classes are selected by entry-point name
(``c.JupyterHub.spawner_class = "classroom"``) and are deliberately not imported
here, so that importing the roster or the CLI never pulls in KubeSpawner.
"""

from ._version import __version__, version_info

__all__ = ["__version__", "version_info"]
