"""The hub's in-memory view of the users' volumes, kept current by a watch.

"Is this a first spawn?" used to cost one ``GET`` of the user's PVC per spawn; a
lecture hall arriving at once made hundreds of them at the moment the API server
was busiest (in the 1000-student benchmark the GET timed out for 539 spawns). Like
KubeSpawner's own pod reflector, one list-and-watch of the namespace's user PVCs
(label ``component=singleuser-storage``, which KubeSpawner gives every PVC it makes)
answers it from memory instead. Shared by every spawner of the namespace in the hub.
"""

from __future__ import annotations

import asyncio

from kubespawner.reflector import NamespacedResourceReflector

#: the label KubeSpawner's ``get_pvc_manifest`` gives every user volume
VOLUME_LABELS = {"component": "singleuser-storage"}


class VolumeReflector(NamespacedResourceReflector):
    """The users' PersistentVolumeClaims of one namespace."""

    kind = "persistentvolumeclaims"
    list_method_name = "list_namespaced_persistent_volume_claim"

    def phase(self, namespace: str, name: str) -> str | None:
        """The claim's phase (``Bound``, ``Pending``...), or None if there is no such claim."""
        claim = self.resources.get(f"{namespace}/{name}")
        if claim is None:
            return None
        return (claim.get("status") or {}).get("phase") or "Pending"


# namespace -> the task that started its reflector (shared by all spawners)
_CACHES: dict[str, asyncio.Task] = {}


async def volume_cache(spawner, timeout: float) -> VolumeReflector | None:
    """The started reflector of ``spawner.namespace``'s user volumes, or None if it
    could not be started within ``timeout`` seconds (then ask the API directly; a
    later call tries again if starting failed)."""
    task = _CACHES.get(spawner.namespace)
    if task is None or (
        task.done() and (task.cancelled() or task.exception() is not None)
    ):
        task = asyncio.ensure_future(_start(spawner))
        _CACHES[spawner.namespace] = task
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout)
    except Exception as e:
        spawner.log.warning(
            "The cache of user volumes in %s is not ready (%s); asking the API",
            spawner.namespace,
            str(e) or type(e).__name__,
        )
        return None


async def _start(spawner) -> VolumeReflector:
    reflector = VolumeReflector(
        parent=spawner, namespace=spawner.namespace, labels=VOLUME_LABELS
    )
    try:
        await reflector.start()
    except BaseException:
        if (
            reflector.first_load_future.done()
            and not reflector.first_load_future.cancelled()
        ):
            reflector.first_load_future.exception()  # retrieved: the caller gets it
        raise
    return reflector
