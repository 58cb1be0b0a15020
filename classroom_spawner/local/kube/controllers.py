"""Small control loops a real cluster runs in kube-controller-manager:

- **pvc-protection**: a PVC marked for deletion keeps its
  ``kubernetes.io/pvc-protection`` finalizer (so the object, and with it the
  directory, stays) while any pod that is not Succeeded/Failed uses it;
- **garbage collector**: objects whose ``ownerReferences`` all point to
  deleted objects are deleted (KubeSpawner gives its Secret and Service an
  owner reference to the pod);
- **namespace**: a deleted namespace is Terminating until everything in it
  is gone, then it is removed;
- **event TTL**: events older than ``event_ttl`` seconds are deleted.
"""

import asyncio
import logging

from .defaults import PVC_PROTECTION
from .resources import RESOURCES
from .store import DELETED
from .timeutil import now, parse

log = logging.getLogger(__name__)

PODS = RESOURCES["pods"]
PVCS = RESOURCES["persistentvolumeclaims"]
NAMESPACES = RESOURCES["namespaces"]
EVENTS = RESOURCES["events"]
_OWNED_KINDS = ("pods", "services", "secrets", "configmaps", "persistentvolumeclaims")


def pod_claims(pod):
    return {
        (v.get("persistentVolumeClaim") or {}).get("claimName")
        for v in (pod.get("spec") or {}).get("volumes") or []
        if v.get("persistentVolumeClaim")
    }


class Controllers:
    def __init__(self, registry, event_ttl=3600.0):
        self.registry = registry
        self.store = registry.store
        self.event_ttl = event_ttl
        self._tasks = set()
        self._namespaces = {}
        self._loop = None

    def start(self):
        self._loop = asyncio.get_running_loop()
        self.store.add_listener(self._on_change)
        self._spawn(self._event_gc())

    async def stop(self):
        self.store.remove_listener(self._on_change)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_change(self, resource, type_, obj, prev):
        meta = obj["metadata"]
        ns = meta.get("namespace")
        if resource.plural == "persistentvolumeclaims" and meta.get(
            "deletionTimestamp"
        ):
            self._loop.call_soon(self._check_pvc, ns, meta["name"])
        if resource.plural == "pods":
            finished = (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if type_ == DELETED or finished:
                for claim in pod_claims(obj):
                    self._loop.call_soon(self._check_pvc, ns, claim)
        if type_ == DELETED and resource.plural in _OWNED_KINDS + ("pods",):
            self._loop.call_soon(self._collect_dependents, ns, meta.get("uid"))
        if resource.plural == "namespaces" and meta.get("deletionTimestamp"):
            name = meta["name"]
            if name not in self._namespaces and type_ != DELETED:
                self._namespaces[name] = self._spawn(self._finalize_namespace(name))

    # pvc-protection
    def _check_pvc(self, namespace, name):
        pvc = self.store.peek(PVCS, namespace, name)
        if pvc is None or not pvc["metadata"].get("deletionTimestamp"):
            return
        if PVC_PROTECTION not in (pvc["metadata"].get("finalizers") or []):
            return
        for pod in self.store.objects(PODS, namespace):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if name in pod_claims(pod):
                return

        def release(obj):
            obj["metadata"]["finalizers"] = [
                f
                for f in obj["metadata"].get("finalizers") or []
                if f != PVC_PROTECTION
            ]

        self.registry.mutate(PVCS, namespace, name, release)

    # garbage collector
    def _collect_dependents(self, namespace, uid):
        if not uid:
            return
        for plural in _OWNED_KINDS:
            resource = RESOURCES[plural]
            for obj in self.store.objects(resource, namespace):
                owners = obj["metadata"].get("ownerReferences") or []
                if not any(o.get("uid") == uid for o in owners):
                    continue
                if any(
                    self._owner_alive(namespace, o)
                    for o in owners
                    if o.get("uid") != uid
                ):
                    continue
                try:
                    self.registry.delete(resource, namespace, obj["metadata"]["name"])
                except Exception:
                    log.debug(
                        "garbage collection of %s/%s failed",
                        plural,
                        obj["metadata"]["name"],
                    )

    def _owner_alive(self, namespace, ref):
        resource = next(
            (r for r in RESOURCES.values() if r.kind == ref.get("kind")), None
        )
        if resource is None:
            return True
        obj = self.store.peek(
            resource, namespace if resource.namespaced else None, ref.get("name")
        )
        return obj is not None and obj["metadata"].get("uid") == ref.get("uid")

    # namespace
    async def _finalize_namespace(self, name):
        try:
            while True:
                remaining = 0
                for resource in RESOURCES.values():
                    if not resource.namespaced:
                        continue
                    for obj in self.store.objects(resource, name):
                        remaining += 1
                        if not obj["metadata"].get("deletionTimestamp"):
                            try:
                                self.registry.delete(
                                    resource, name, obj["metadata"]["name"]
                                )
                            except Exception:
                                log.debug(
                                    "namespace %s: could not delete %s",
                                    name,
                                    obj["metadata"]["name"],
                                )
                if not remaining:
                    break
                await asyncio.sleep(0.2)

            def release(ns):
                ns.setdefault("spec", {})["finalizers"] = []

            self.registry.mutate(NAMESPACES, None, name, release)
        finally:
            self._namespaces.pop(name, None)

    # event TTL
    async def _event_gc(self):
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.event_ttl / 4)))
            cutoff = now().timestamp() - self.event_ttl
            for ev in list(self.store.objects(EVENTS)):
                stamp = parse(ev.get("lastTimestamp") or ev.get("eventTime") or "")
                if stamp is not None and stamp.timestamp() < cutoff:
                    meta = ev["metadata"]
                    try:
                        self.registry.delete(EVENTS, meta["namespace"], meta["name"])
                    except Exception:
                        pass
