"""Read a ``jupyterhub_config.py`` the way JupyterHub itself reads it.

JupyterHub loads its config file with traitlets' Python config loader: the file
is executed with ``c`` and ``get_config`` in scope, and ``__file__`` set to its
path. The CLI does the same, so ``classroom-spawner check`` sees exactly the
configuration the hub would.
"""

from __future__ import annotations

import os

from traitlets.config import Config
from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader


class ConfigFileError(Exception):
    """The config file is missing or raised an error while being executed."""


def load_hub_config(path: str) -> Config:
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigFileError(
            f"{path}: no such config file (use -f to name your jupyterhub_config.py)"
        )
    loader = PyFileConfigLoader(os.path.basename(path), path=os.path.dirname(path))
    try:
        return loader.load_config()
    except ConfigFileNotFound as e:
        raise ConfigFileError(f"{path}: {e}") from e
    except Exception as e:
        raise ConfigFileError(
            f"{path}: error while executing the config file: {e!r}"
        ) from e
