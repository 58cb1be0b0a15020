"""A dynamic volume provisioner whose volumes are local directories.

A new PVC (with a storage class; every PVC without one gets ``standard``) is
queued; at most ``provision_max_in_flight`` provisions run at once, each taking
``provision_delay`` seconds, in FIFO order. On success the claim's directory
``<state>/volumes/pvc-<uid>`` is created and the claim becomes Bound
(``spec.volumeName``, ``status.capacity``); on an (injected) failure a
``ProvisioningFailed`` event is recorded and the claim is retried with
back-off. A claim with ``storageClassName: ""`` only binds statically, so it
stays Pending, as in Kubernetes without pre-made volumes.

The volume's reclaim policy is Delete: the directory is removed when the
claim object is finally gone (after the ``pvc-protection`` finalizer let go,
see :mod:`.controllers`), never before.

On a real API server (a :class:`~.remote.RemoteRegistry`) it is an external
provisioner of the ``standard`` StorageClass: with the same queue and delays,
it creates a PersistentVolume (``hostPath`` the directory, ``claimRef`` the
claim) and the real PV controller binds the claim to it; the PV controller
itself records ``ExternalProvisioning`` and ``FailedBinding``.
"""

import asyncio
import collections
import logging
import os
import shutil

from .events import NORMAL, WARNING
from .resources import RESOURCES
from .store import ADDED, DELETED

log = logging.getLogger(__name__)

PVCS = RESOURCES["persistentvolumeclaims"]
PROVISIONER = "standin.local/hostpath"
STORAGE_CLASS = "standard"


class Provisioner:
    def __init__(
        self, registry, recorder, faults, volumes_dir, retry_base=1.0, retry_max=30.0
    ):
        self.registry = registry
        self.recorder = recorder
        self.faults = faults
        self.volumes_dir = volumes_dir
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._queue = collections.deque()
        self._queued = set()
        self._attempts = collections.Counter()
        self._in_flight = set()
        self._provisioned = set()
        self._wake = asyncio.Event()
        self._tasks = set()
        self._dispatcher = None

    def start(self):
        os.makedirs(self.volumes_dir, exist_ok=True)
        self.registry.store.add_listener(self._on_change)
        self._dispatcher = asyncio.ensure_future(self._dispatch())

    async def stop(self):
        self.registry.store.remove_listener(self._on_change)
        for task in [self._dispatcher, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *[t for t in [self._dispatcher, *self._tasks] if t], return_exceptions=True
        )

    @property
    def remote(self):
        """On a real API server (:mod:`.remote`): PVs are made, its binder binds."""
        return getattr(self.registry, "remote", False)

    def _on_change(self, resource, type_, obj, prev):
        if resource.plural != "persistentvolumeclaims":
            return
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"], meta["uid"])
        if self.remote and type_ != DELETED:
            # the real PV controller reports claims without a class (FailedBinding) and
            # waits for the provisioner named by the claim's StorageClass
            spec = obj.get("spec") or {}
            if (
                spec.get("storageClassName") == STORAGE_CLASS
                and not spec.get("volumeName")
                and not meta.get("deletionTimestamp")
                and key not in self._provisioned
            ):
                self._enqueue(key)
            return
        if type_ == ADDED:
            spec = obj.get("spec") or {}
            if spec.get("volumeName") or spec.get("storageClassName") == "":
                if spec.get("storageClassName") == "":
                    asyncio.get_running_loop().call_soon(self._static_only, key)
                return
            self._enqueue(key)
        elif type_ == DELETED:
            volume = (obj.get("spec") or {}).get("volumeName")
            self._attempts.pop(key, None)
            self._provisioned.discard(key)
            self.recorder.forget(meta["uid"])
            if volume:
                path = os.path.join(self.volumes_dir, volume)
                task = asyncio.ensure_future(self._remove_dir(path, volume))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _static_only(self, key):
        pvc = self.registry.store.peek(PVCS, key[0], key[1])
        if pvc is not None:
            self.recorder.record(
                pvc,
                NORMAL,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
                "persistentvolume-controller",
            )

    def _enqueue(self, key):
        if key in self._queued or key in self._in_flight:
            return
        self._queue.append(key)
        self._queued.add(key)
        self._wake.set()

    @property
    def queued(self):
        return len(self._queue)

    @property
    def in_flight(self):
        return len(self._in_flight)

    async def _dispatch(self):
        while True:
            await self._wake.wait()
            self._wake.clear()
            limit = self.faults.faults.provision_max_in_flight
            while self._queue and (not limit or len(self._in_flight) < limit):
                key = self._queue.popleft()
                self._queued.discard(key)
                self._in_flight.add(key)
                task = asyncio.ensure_future(self._provision(key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _current(self, key):
        pvc = self.registry.store.peek(PVCS, key[0], key[1])
        if pvc is None or pvc["metadata"]["uid"] != key[2]:
            return None
        return pvc

    async def _provision(self, key):
        retry = False
        try:
            pvc = self._current(key)
            if pvc is None or pvc["metadata"].get("deletionTimestamp"):
                return
            if not self._attempts[key] and not self.remote:
                self.recorder.record(
                    pvc,
                    NORMAL,
                    "ExternalProvisioning",
                    f"Waiting for a volume to be created either by the external provisioner"
                    f" '{PROVISIONER}' or manually by the system administrator. If volume"
                    " creation is delayed, please verify that the provisioner is running and"
                    " correctly registered.",
                    "persistentvolume-controller",
                )
            self._attempts[key] += 1
            self.recorder.record(
                pvc,
                NORMAL,
                "Provisioning",
                f'External provisioner is provisioning volume for claim "{key[0]}/{key[1]}"',
                f"{PROVISIONER}_standin-node",
            )
            delay = self.faults.faults.provision_delay
            if delay:
                await asyncio.sleep(delay)
            pvc = self._current(key)
            if pvc is None or pvc["metadata"].get("deletionTimestamp"):
                return
            storage_class = (pvc.get("spec") or {}).get("storageClassName", "standard")
            if self.faults.provision_fails():
                self.recorder.record(
                    pvc,
                    WARNING,
                    "ProvisioningFailed",
                    f'failed to provision volume with StorageClass "{storage_class}":'
                    " injected provisioner failure",
                    f"{PROVISIONER}_standin-node",
                )
                retry = True
                return
            volume = f"pvc-{key[2]}"
            os.makedirs(os.path.join(self.volumes_dir, volume), exist_ok=True)
            if self.remote:
                await self.registry.create_volume(
                    pvc, volume, os.path.join(self.volumes_dir, volume), PROVISIONER
                )
                self._provisioned.add(key)
                self._attempts.pop(key, None)
                self.recorder.record(
                    pvc,
                    NORMAL,
                    "ProvisioningSucceeded",
                    f"Successfully provisioned volume {volume}",
                    f"{PROVISIONER}_standin-node",
                )
                return

            def bind(obj):
                spec = obj.setdefault("spec", {})
                spec["volumeName"] = volume
                ann = obj["metadata"].setdefault("annotations", {})
                ann["pv.kubernetes.io/bind-completed"] = "yes"
                ann["pv.kubernetes.io/bound-by-controller"] = "yes"
                ann["volume.beta.kubernetes.io/storage-provisioner"] = PROVISIONER
                ann["volume.kubernetes.io/storage-provisioner"] = PROVISIONER
                requests = (spec.get("resources") or {}).get("requests") or {}
                obj["status"] = {
                    "phase": "Bound",
                    "accessModes": list(spec.get("accessModes") or []),
                    "capacity": {"storage": requests.get("storage", "0")},
                }

            bound = self.registry.mutate(PVCS, key[0], key[1], bind)
            if bound is None:
                shutil.rmtree(
                    os.path.join(self.volumes_dir, volume), ignore_errors=True
                )
                return
            self._attempts.pop(key, None)
            self.recorder.record(
                bound,
                NORMAL,
                "ProvisioningSucceeded",
                f"Successfully provisioned volume {volume}",
                f"{PROVISIONER}_standin-node",
            )
        finally:
            self._in_flight.discard(key)
            self._wake.set()
            if retry:
                attempts = self._attempts[key]
                backoff = min(self.retry_base * 2 ** (attempts - 1), self.retry_max)
                task = asyncio.ensure_future(self._retry_later(key, backoff))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _retry_later(self, key, delay):
        await asyncio.sleep(delay)
        if self._current(key) is not None:
            self._enqueue(key)

    async def _remove_dir(self, path, volume=None):
        if self.remote and volume:
            # reclaim policy Delete: the provisioner deletes the released PV
            await self.registry.delete_volume(volume)
        await asyncio.get_running_loop().run_in_executor(
            None, shutil.rmtree, path, True
        )
        log.debug("removed volume directory %s", path)
