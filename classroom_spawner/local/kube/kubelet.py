"""The process kubelet (and, since there is one node, the scheduler).

It listens to the store like a kubelet watching its pods: every new pod gets a
:class:`~.podworker.PodWorker`; a pod marked for deletion is stopped with its
grace period (SIGTERM, then SIGKILL), then removed from the API; a pod deleted
outright (``gracePeriodSeconds=0``) has its processes killed at once. Changes
to PVCs, Secrets and ConfigMaps wake the workers that wait for them.
"""

import asyncio
import json
import logging
import os

from . import mountns
from .images import ImageStore
from .network import IPPool
from .podworker import PodWorker
from .store import ADDED, DELETED, MODIFIED

log = logging.getLogger(__name__)

_WAKE_ON = ("persistentvolumeclaims", "secrets", "configmaps")


class Kubelet:
    def __init__(self, registry, recorder, faults, config, state_dir, standin_id):
        self.registry = registry
        self.recorder = recorder
        self.faults = faults
        self.config = config
        self.state_dir = state_dir
        self.volumes_dir = os.path.join(state_dir, "volumes")
        self.standin_id = standin_id
        self.images = ImageStore(faults, config.present_images)
        self.ip_pool = IPPool(config.pod_cidr)
        self.workers = {}
        self._stopping = False
        self._mount_probe = None
        self.mount_support_result = None

    def start(self):
        os.makedirs(os.path.join(self.state_dir, "pods"), exist_ok=True)
        self.registry.store.add_listener(self._on_change)

    def _on_change(self, resource, type_, obj, prev):
        if resource.plural == "pods":
            self._on_pod(type_, obj)
        elif resource.plural in _WAKE_ON:
            for worker in list(self.workers.values()):
                if worker.namespace == obj["metadata"].get("namespace"):
                    worker.kick()

    def _on_pod(self, type_, pod):
        meta = pod["metadata"]
        uid = meta.get("uid")
        worker = self.workers.get(uid)
        if type_ == ADDED and worker is None and not self._stopping:
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            # start on the next loop iteration: never write from inside a store listener
            asyncio.get_running_loop().call_soon(worker.start)
            return
        if worker is None:
            return
        if type_ == DELETED:
            worker.request_stop(0, force=True)
        elif type_ == MODIFIED:
            worker.pod = pod
            if meta.get("deletionTimestamp"):
                worker.request_stop(meta.get("deletionGracePeriodSeconds") or 0)
            worker.kick()

    def allow_root_config_dir(self):
        """A Jupyter config dir that sets ``ServerApp.allow_root`` (see podworker)."""
        path = os.path.join(self.state_dir, "jupyter-allow-root")
        conf = os.path.join(path, "jupyter_server_config.json")
        if not os.path.exists(conf):
            os.makedirs(path, exist_ok=True)
            with open(conf, "w") as f:
                json.dump({"ServerApp": {"allow_root": True}}, f)
        return path

    async def mount_support(self):
        """``(ok, why)``: can containers get read-only and nested bind mounts here
        (:mod:`.mountns`)? Probed once; ``enforce_read_only=False`` says no."""
        if not self.config.enforce_read_only:
            return False, "turned off in the kubelet's config (enforce_read_only=False)"
        if self._mount_probe is None:
            self._mount_probe = asyncio.ensure_future(
                mountns.probe(os.path.join(self.state_dir, "mount-probe"))
            )
        result = await asyncio.shield(self._mount_probe)
        if self.mount_support_result is None:
            self.mount_support_result = result
            if not result[0]:
                log.warning("readOnly volume mounts are not enforced: %s", result[1])
        return result

    def _worker_done(self, worker):
        self.workers.pop(worker.uid, None)

    async def stop(self):
        """Kill every pod's processes (used at shutdown; pods stay in the store)."""
        self._stopping = True
        workers = list(self.workers.values())
        for w in workers:
            w.force_deleted = True
            w.request_stop(0, force=True)
            w.start()
        tasks = [w.task for w in workers if w.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.registry.store.remove_listener(self._on_change)

    def _read_only_state(self):
        if not self.config.enforce_read_only:
            return "off"
        if self.mount_support_result is None:
            return "not probed yet"
        ok, why = self.mount_support_result
        return "enforced" if ok else f"not enforced: {why}"

    def stats(self):
        processes = light = 0
        for w in self.workers.values():
            for c in w.init_containers + w.main_containers:
                if c.process is not None and c.process.running:
                    if c.process.pid is None:
                        light += 1
                    else:
                        processes += 1
        return {
            "pod_workers": len(self.workers),
            "processes": processes,
            "light_servers": light,
            "pod_ips_in_use": self.ip_pool.in_use,
            "read_only_mounts": self._read_only_state(),
            "images_present": sorted(self.images.present),
        }
