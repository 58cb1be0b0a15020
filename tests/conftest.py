"""Shared test set-up.

KubeSpawner loads a kubeconfig whenever a spawner is constructed, and
kubernetes_asyncio reads $KUBECONFIG at import time, so a harmless one must
exist before anything imports them. Tests that talk to the Kubernetes stand-in
pass its own kubeconfig to the processes they start.
"""

import os
import tempfile

if "KUBECONFIG" not in os.environ:
    _kube_dir = tempfile.mkdtemp(prefix="classroom-test-kube-")
    _kubeconfig = os.path.join(_kube_dir, "config")
    with open(_kubeconfig, "w") as f:
        f.write(
            "apiVersion: v1\nkind: Config\n"
            "clusters: [{name: unit, cluster: {server: 'http://127.0.0.1:9'}}]\n"
            "users: [{name: unit, user: {token: unit-test}}]\n"
            "contexts: [{name: unit, context: {cluster: unit, user: unit, namespace: classroom-test}}]\n"
            "current-context: unit\n"
        )
    os.environ["KUBECONFIG"] = _kubeconfig

import pytest  # noqa: E402


@pytest.fixture
def write_file(tmp_path):
    """Write a text (or bytes) file under tmp_path and return its path as str."""

    def write(name, content):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)

    return write


@pytest.fixture
def rewrite_file():
    """Replace a file's text and move its mtime on by a second, so that even a
    coarse file-system clock shows the change (as a roster reload needs)."""

    def rewrite(path, text):
        before = os.stat(path).st_mtime_ns
        with open(path, "w") as f:
            f.write(text)
        os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))

    return rewrite


@pytest.fixture(scope="session")
def z2jh_config():
    """The hub config the Zero to JupyterHub chart gives for a dict of chart values
    (classroom_spawner.local.z2jh): ``z2jh_config(values, extra=...)`` returns the
    ``jupyterhub_config.py`` text with ``extra`` (dedented) after it, as an admin's
    ``hub.extraConfig`` comes last; pass it as ``HubProcess(config=...)`` or write it
    to a file for ``classroom-spawner -f``."""
    import textwrap

    from classroom_spawner.local.z2jh import hub_config_text

    def config(values=None, *, extra="", **options):
        return hub_config_text(values, **options) + textwrap.dedent(extra)

    return config


@pytest.fixture
def roster_problems():
    """Load course files that must fail; return the problems as 'file:line: reason' strings."""
    from classroom_spawner.roster import RosterError
    from classroom_spawner.roster.loader import load_roster

    def problems(course_files):
        with pytest.raises(RosterError) as info:
            load_roster(course_files)
        return [str(p) for p in info.value.problems]

    return problems
