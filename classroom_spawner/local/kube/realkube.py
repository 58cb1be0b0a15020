"""A real Kubernetes control plane with the process kubelet as its node.

::

    async with RealKube(state_dir, faults=Faults(provision_delay=2)) as k8s:
        k8s.url, k8s.token, k8s.kubeconfig_path, k8s.version["gitVersion"]

It is :class:`~.standin.KubeStandin`'s counterpart on the real API: the
control plane of :mod:`.cluster` (etcd, kube-apiserver, kube-scheduler,
kube-controller-manager), and on the node side the *same* kubelet,
provisioner and event recorder as the stand-in, talking to the real API
through :class:`~.remote.RemoteRegistry`, with :class:`~.node.NodeAgent`
keeping the Node and its Lease. A small HTTP server (``admin_url``) answers
``/_standin/stats`` and ``/_standin/faults`` like the stand-in's, for the
faults that live on the node side (provisioning, images, init containers,
start delays); API faults (errors, outages) need the stand-in.
"""

import asyncio
import json
import logging
import os
import secrets

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from . import procutil
from .cluster import ControlPlane
from .config import KubeletConfig
from .containers import STANDIN_ENV
from .events import EventRecorder
from .faults import FaultInjector, Faults
from .kubelet import Kubelet
from .node import NodeAgent
from .provisioner import PROVISIONER, STORAGE_CLASS, Provisioner
from .remote import ApiClient, ApiError, RemoteRegistry

log = logging.getLogger(__name__)

API_FAULTS = ("api_error_rate", "outages")


class RealKube:
    """The real control plane plus the process kubelet and provisioner as its node.

    ``faults`` and ``kubelet`` are the stand-in's :class:`~.faults.Faults` and
    :class:`~.config.KubeletConfig`; API faults are refused (ValueError).
    ``bin_dir`` is where the binaries are (see :mod:`.binaries`).
    """

    def __init__(
        self,
        state_dir,
        faults=None,
        kubelet=None,
        token="auto",
        kubeconfig_path=None,
        namespace="default",
        host="127.0.0.1",
        bin_dir=None,
    ):
        faults = faults or Faults()
        for name in API_FAULTS:
            if getattr(faults, name):
                raise ValueError(
                    f"fault {name} is injected by the stand-in's API server;"
                    " the real control plane has none"
                )
        self.state_dir = os.path.abspath(state_dir)
        self.id = secrets.token_hex(6)
        self.config = kubelet or KubeletConfig()
        self.faults = FaultInjector(faults)
        self.cp = ControlPlane(
            self.state_dir,
            bin_dir=bin_dir,
            token=None if token in ("auto", None) else token,
            kubeconfig_path=kubeconfig_path,
            namespace=namespace,
            host=host,
        )
        self.host = host
        self.client = None
        self.registry = None
        self.kubelet = None
        self.provisioner = None
        self.node = None
        self._admin = None
        self.admin_port = None
        self.started = False

    @property
    def url(self):
        return self.cp.url

    @property
    def token(self):
        return self.cp.token

    @property
    def kubeconfig_path(self):
        return self.cp.kubeconfig_path

    @property
    def version(self):
        return self.cp.version

    @property
    def admin_url(self):
        return f"http://{self.host}:{self.admin_port}"

    @property
    def process_marker(self):
        return f"{STANDIN_ENV}={self.id}"

    async def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self):
        self.started = True
        await self.cp.start()
        self.client = await ApiClient(
            self.cp.url, self.cp.token, self.cp.ca_path
        ).start()
        await self._storage_class()
        node_name = self.config.node_name
        self.node = NodeAgent(self.client, node_name, self.cp.version["gitVersion"])
        await self.node.register()
        self.registry = RemoteRegistry(self.client, node_name)
        recorder = EventRecorder(self.registry, node_name)
        self.kubelet = Kubelet(
            self.registry, recorder, self.faults, self.config, self.state_dir, self.id
        )
        self.provisioner = Provisioner(
            self.registry,
            recorder,
            self.faults,
            os.path.join(self.state_dir, "volumes"),
            self.config.provision_retry_base,
            self.config.provision_retry_max,
        )
        # listeners first, so the initial lists reach them as ADDED
        self.kubelet.start()
        self.provisioner.start()
        await self.registry.start()
        await self.node.wait_schedulable()
        sockets = bind_sockets(0, address=self.host)
        self.admin_port = sockets[0].getsockname()[1]
        self._admin = HTTPServer(
            web.Application(
                [(r"/_standin/(stats|faults)", _AdminHandler, {"k8s": self})]
            )
        )
        self._admin.add_sockets(sockets)
        log.info(
            "Kubernetes %s on %s with the process kubelet as node %s",
            self.cp.version.get("gitVersion"),
            self.url,
            node_name,
        )

    async def _storage_class(self):
        sc = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        try:
            await self.client.request(
                "POST", "/apis/storage.k8s.io/v1/storageclasses", sc
            )
        except ApiError as e:
            if e.status != 409:
                raise

    async def stop(self):
        if not self.started:
            return
        self.started = False
        if self._admin is not None:
            self._admin.stop()
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self.provisioner is not None:
            await self.provisioner.stop()
        if self.node is not None:
            await self.node.stop()
        if self.registry is not None:
            await self.registry.stop()
        if self.client is not None:
            await self.client.close()
        await self.cp.stop()
        log.info("Kubernetes control plane on %s stopped", self.url)

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    async def apiserver_requests(self):
        """Requests kube-apiserver served (``apiserver_request_total``, all clients)."""
        try:
            text = await self.client.request_text("GET", "/metrics")
        except Exception as e:
            log.warning("reading kube-apiserver's /metrics: %s", e)
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith("apiserver_request_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def stats(self):
        """Counts for leak checks; ``requests`` (kube-apiserver's count) is added
        by ``/_standin/stats``."""

        def count_dir(path):
            try:
                return len(os.listdir(path))
            except OSError:
                return 0

        stats = {
            "standin_id": self.id,
            "url": self.url,
            "backend": "real",
            "gitVersion": (self.cp.version or {}).get("gitVersion"),
            "objects": {
                plural: self.registry.store.count(i.resource)
                for plural, i in self.registry.store.informers.items()
            },
            "node_watches": self.registry.watching,
            "volume_dirs": count_dir(os.path.join(self.state_dir, "volumes")),
            "pod_dirs": count_dir(os.path.join(self.state_dir, "pods")),
            "provisions_queued": self.provisioner.queued,
            "provisions_in_flight": self.provisioner.in_flight,
            "node_requests": self.client.requests,
            "write_errors": self.registry.write_errors,
            "lease_renewals": self.node.renewals,
            "open_fds": procutil.open_fds(),
            "marked_processes": len(procutil.processes_with_env(self.process_marker)),
            "control_plane_pids": {
                name: p.pid for name, p in self.cp.procs.items() if p.returncode is None
            },
        }
        stats.update(self.kubelet.stats())
        try:
            stats["asyncio_tasks"] = len(asyncio.all_tasks())
        except RuntimeError:
            pass
        return stats


class _AdminHandler(web.RequestHandler):
    def initialize(self, k8s):
        self.k8s = k8s

    def _check(self):
        if self.request.headers.get("Authorization") != f"Bearer {self.k8s.token}":
            raise web.HTTPError(401)

    def _send(self, body):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _faults(self):
        f = self.k8s.faults
        out = f.faults.to_dict()
        out["injected"] = dict(f.injected)
        return out

    async def get(self, what):
        self._check()
        if what != "stats":
            self._send(self._faults())
            return
        stats = self.k8s.stats()
        stats["requests"] = await self.k8s.apiserver_requests()
        self._send(stats)

    def put(self, what):
        self._check()
        if what != "faults":
            raise web.HTTPError(405)
        try:
            changes = json.loads(self.request.body or b"{}")
            bad = [k for k in changes if k in API_FAULTS or k == "outage"]
            if bad:
                raise ValueError(f"API faults need the stand-in: {', '.join(bad)}")
            self.k8s.faults.update(changes)
        except (ValueError, TypeError) as e:
            self.set_status(400)
            self._send({"message": str(e)})
            return
        self._send(self._faults())
