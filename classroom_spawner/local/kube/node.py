"""The process kubelet's Node on a real API server: registration, Lease, status.

Like a kubelet, it creates its Node (capacity, addresses, node info, Ready),
renews ``kube-node-lease/<node>`` every ``lease_interval`` seconds (the node
lifecycle controller marks a node whose Lease goes stale NotReady, then evicts
its pods) and rewrites the node status every ``status_interval`` seconds.
"""

import asyncio
import logging
import platform

from .remote import ApiError
from .timeutil import rfc3339, rfc3339_micro

log = logging.getLogger(__name__)


class NodeAgent:
    def __init__(
        self,
        client,
        name,
        kubelet_version,
        capacity=None,
        lease_interval=10.0,
        status_interval=60.0,
    ):
        self.client = client
        self.name = name
        self.kubelet_version = kubelet_version
        self.capacity = capacity or {
            "cpu": "256",
            "memory": "1Ti",
            "pods": "1000",
            "ephemeral-storage": "1Ti",
        }
        self.lease_interval = lease_interval
        self.status_interval = status_interval
        self.task = None
        self.renewals = 0

    def _status(self):
        now = rfc3339()
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
            ("Ready", "True", "KubeletReady"),
        ]
        machine = platform.machine()
        return {
            "capacity": dict(self.capacity),
            "allocatable": dict(self.capacity),
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": "process kubelet of classroom-spawner",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
                for t, s, r in conditions
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "classroom-spawner process kubelet",
                "containerRuntimeVersion": "process://local",
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    machine, machine
                ),
            },
        }

    async def register(self):
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": self._status()["nodeInfo"]["architecture"],
                },
            },
            "spec": {},
        }
        try:
            await self.client.request("POST", "/api/v1/nodes", node)
        except ApiError as e:
            if e.status != 409:
                raise
        await self._write_status()
        await self._renew()
        self.task = asyncio.ensure_future(self._run())

    async def wait_schedulable(self, timeout=60):
        """Wait until the node lifecycle controller has lifted the ``not-ready``
        taint that a new Node gets (TaintNodesByCondition) before it is Ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            node = await self.client.request("GET", f"/api/v1/nodes/{self.name}")
            taints = [
                t["key"]
                for t in (node.get("spec") or {}).get("taints") or []
                if t.get("effect") in ("NoSchedule", "NoExecute")
            ]
            if not taints:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"node {self.name} still has taints {taints}")
            await asyncio.sleep(0.2)

    async def _write_status(self):
        await self.client.request(
            "PATCH",
            f"/api/v1/nodes/{self.name}/status",
            {"status": self._status()},
            content_type="application/merge-patch+json",
        )

    async def _renew(self):
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": 40,
            "renewTime": rfc3339_micro(),
        }
        try:
            await self.client.request(
                "PATCH",
                path,
                {"spec": spec},
                content_type="application/merge-patch+json",
            )
        except ApiError as e:
            if e.status != 404:
                raise
            await self.client.request(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                    "spec": spec,
                },
            )
        self.renewals += 1

    async def _run(self):
        loop = asyncio.get_running_loop()
        last_status = loop.time()
        while True:
            await asyncio.sleep(self.lease_interval)
            try:
                await self._renew()
                if loop.time() - last_status >= self.status_interval:
                    await self._write_status()
                    last_status = loop.time()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("node %s heartbeat failed: %s", self.name, e)

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
