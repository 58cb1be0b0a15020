"""What ``classroom-spawner demo`` needs besides the package itself, and exactly what
to install when something is missing.

``pip install classroom-spawner`` brings the hub side only. The demo also runs
Node.js programs (the local OpenID Connect provider and configurable-http-proxy,
from npm) and real single-user servers with JupyterLab (the ``demo`` extra)::

    problems = demo_problems()
    if problems:
        print("\\n".join(problems))    # each says what is missing and the command to fix it

Test and demo tool only: nothing on the production code path imports it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

from .hub import bin_dir, find_chp
from .oidc import find_node_modules

#: The npm packages the demo runs, as the repository's package.json pins them.
NPM_PACKAGES = {"oidc-provider": "^9.13.3", "configurable-http-proxy": "^5.3.0"}

#: What the ``demo`` extra adds (Python modules the demo imports or runs).
DEMO_MODULES = {
    "jupyterlab": "jupyterlab",
    "kubernetes_validate": "kubernetes-validate",
}


def npm_install_command() -> str:
    """The one command that installs the demo's Node packages into ./node_modules."""
    return "npm install " + " ".join(
        f"'{name}@{spec}'" for name, spec in NPM_PACKAGES.items()
    )


def demo_problems() -> list[str]:
    """What is missing for the demo, one line each with the command that fixes it
    (empty when everything is there). Honours the demo's overrides
    ``CLASSROOM_NODE``, ``CLASSROOM_NODE_MODULES`` and ``CLASSROOM_CHP``."""
    problems = []
    if shutil.which("git") is None:
        problems.append(
            "the demo needs `git` on PATH: install git (e.g. apt-get install git)"
        )
    node = os.environ.get("CLASSROOM_NODE") or shutil.which("node")
    if not node:
        problems.append(
            "the demo needs Node.js (>= 20.19) on PATH, or CLASSROOM_NODE set to its path:"
            " install it from https://nodejs.org or your package manager"
        )
    npm_missing = []
    node_modules = find_node_modules()
    if (
        node_modules is None
        or not (node_modules / "oidc-provider" / "package.json").is_file()
    ):
        where = f" in {node_modules}" if node_modules is not None else ""
        npm_missing.append(
            f"oidc-provider (not found{where}; or set CLASSROOM_NODE_MODULES to a"
            " node_modules directory that has it)"
        )
    if not _chp_found():
        npm_missing.append("configurable-http-proxy (or set CLASSROOM_CHP to its path)")
    if npm_missing:
        problems.append(
            f"the demo's npm packages are missing: {'; '.join(npm_missing)}. Install them in"
            f" the directory you run the demo from: {npm_install_command()}"
        )
    missing = [
        dist
        for module, dist in DEMO_MODULES.items()
        if importlib.util.find_spec(module) is None
    ]
    if not os.path.exists(os.path.join(bin_dir(), "jupyterhub-singleuser")):
        missing.append("jupyterhub")
    if missing:
        problems.append(
            f"the demo's Python packages are missing ({', '.join(missing)}):"
            " pip install 'classroom-spawner[demo]'"
        )
    return problems


def _chp_found() -> bool:
    try:
        return os.path.exists(find_chp())  # $CLASSROOM_CHP is returned as it is
    except FileNotFoundError:
        return False
