"""Build a user's spawner without a hub or a cluster, for the CLI.

``classroom-spawner render`` must print exactly the manifests the hub would
send to Kubernetes, so it runs the spawner's own code (profile checks,
KubeSpawner's overrides, the pod and PVC builders) on a stand-in user. Nothing
here talks to a cluster.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from types import SimpleNamespace
from typing import Any

from traitlets.config import Config

from .roster import normalize_username

_DUMMY_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://kubernetes.invalid"}}]
users: [{name: offline, user: {token: offline}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
"""


def ensure_kubeconfig() -> None:
    """KubeSpawner loads a kubeconfig when a spawner is built, even to render a
    manifest. Without one (an admin's laptop), point it at a harmless dummy,
    removed again when the command ends."""
    in_cluster = os.environ.get("KUBERNETES_SERVICE_HOST")
    path = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config"))
    if in_cluster or os.path.exists(path.split(os.pathsep)[0]):
        return
    fd, dummy = tempfile.mkstemp(prefix="classroom-offline-", suffix=".kubeconfig")
    with os.fdopen(fd, "w") as f:
        f.write(_DUMMY_KUBECONFIG)
    atexit.register(_remove, dummy)
    os.environ["KUBECONFIG"] = dummy
    # kubernetes_asyncio reads $KUBECONFIG once, when it is imported (reading
    # a course file imports KubeSpawner to check overrides): tell it too
    kube_config = sys.modules.get("kubernetes_asyncio.config.kube_config")
    if kube_config is not None:
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = dummy


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def stand_in_user(username: str, *, admin: bool = False) -> SimpleNamespace:
    name = normalize_username(username)
    return SimpleNamespace(
        name=name,
        id=0,
        admin=admin,
        url=f"/user/{name}/",
        groups=[],
        spawners={},
    )


def stand_in_hub() -> SimpleNamespace:
    return SimpleNamespace(
        api_url="http://hub:8081/hub/api",
        base_url="/hub/",
        url="http://hub:8081/hub/",
        public_host="",
    )


def configured_class(config: Config, trait: str):
    """The class ``c.JupyterHub.<trait>`` names (``spawner_class`` or
    ``authenticator_class``), resolved the way JupyterHub resolves it: an entry
    point name such as ``"classroom"``, a dotted path, or the class itself.
    None if it is not set or cannot be resolved."""
    from jupyterhub.app import JupyterHub
    from traitlets import HasTraits, TraitError

    value = config.get("JupyterHub", {}).get(trait)
    if not value:
        return None
    holder = type(
        "ConfiguredClass", (HasTraits,), {trait: JupyterHub.class_traits()[trait]}
    )()
    try:
        setattr(holder, trait, value)
    except (TraitError, ImportError):
        return None
    return getattr(holder, trait)


async def build_spawner(config: Config, username: str, *, admin: bool = False):
    """The configured ClassroomSpawner (or subclass) for ``username``, as the hub
    would build it."""
    ensure_kubeconfig()
    from .spawner import ClassroomSpawner

    spawner_class = configured_class(config, "spawner_class")
    if not (
        isinstance(spawner_class, type) and issubclass(spawner_class, ClassroomSpawner)
    ):
        spawner_class = ClassroomSpawner
    return spawner_class(
        config=config, user=stand_in_user(username, admin=admin), hub=stand_in_hub()
    )


async def render_manifests(
    config: Config, username: str, *, profile: str | None = None, admin: bool = False
) -> dict[str, Any]:
    """The PVC and pod manifests ``username`` would get, as Kubernetes JSON."""
    spawner = await build_spawner(config, username, admin=admin)
    from kubernetes_asyncio.client import ApiClient

    from .jhcompat import user_error
    from .profiles import InvalidOptions, select

    options = {"profile": profile} if profile else {}
    try:
        # an explicit --profile is checked like a submitted choice: an error,
        # not the fallback a stale saved choice gets
        roster = await spawner.roster.current()
        select(
            options, await spawner.classroom_profiles(), roster.courses, submitted=True
        )
    except InvalidOptions as e:
        raise user_error(str(e)) from None
    spawner.user_options = options
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    if spawner.modify_pod_hook:
        from jupyterhub.utils import maybe_future

        pod = await maybe_future(spawner.modify_pod_hook(spawner, pod))
    async with ApiClient() as client:
        serialize = client.sanitize_for_serialization
        manifests = {"profile": spawner.user_options["profile"], "pod": serialize(pod)}
        if spawner.storage_pvc_ensure:
            manifests["pvc"] = serialize(spawner.get_pvc_manifest())
    for m in ("pvc", "pod"):
        if m in manifests:
            manifests[m].setdefault("apiVersion", "v1")
            manifests[m].setdefault(
                "kind", "PersistentVolumeClaim" if m == "pvc" else "Pod"
            )
    return manifests
