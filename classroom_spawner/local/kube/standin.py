"""The stand-in as one object: API server, store, kubelet, provisioner and
controllers in one event loop.

::

    async with KubeStandin(state_dir, faults=Faults(provision_delay=2)) as k8s:
        print(k8s.url, k8s.kubeconfig_path)
        ...
        print(k8s.stats())

Everything runs in the loop that entered the context. A real JupyterHub
process (or any other client that must outlive one test's event loop) needs
the stand-in in its own thread or process: see :mod:`.runners`.
"""

import asyncio
import logging
import os
import secrets

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from . import procutil
from .config import KubeletConfig
from .containers import STANDIN_ENV
from .controllers import Controllers
from .events import EventRecorder
from .faults import FaultInjector, Faults
from .kubeconfig import write_kubeconfig
from .kubelet import Kubelet
from .provisioner import Provisioner
from .registry import Registry
from .resources import RESOURCES
from .server import make_app
from .store import Store
from .validation import Validator

log = logging.getLogger(__name__)


class KubeStandin:
    """A Kubernetes API server and a one-node process kubelet.

    - ``state_dir``: volumes (``volumes/``), pod scratch dirs and logs
      (``pods/``), and the default kubeconfig.
    - ``port``: 0 picks a free port. ``host``: where to listen.
    - ``faults``: a :class:`~.faults.Faults`; ``kubelet``: a
      :class:`~.config.KubeletConfig`.
    - ``token``: the bearer token clients must send; ``"auto"`` makes one up,
      None turns authentication off.
    - ``kubeconfig_path``: where to write the kubeconfig (default
      ``<state_dir>/kubeconfig``); ``namespace``: its default namespace.
    - ``history_size``: changes kept for watch resumption.
    - ``field_validation``: default for requests without ``fieldValidation``.
    - ``min_request_timeout``: watches without ``timeoutSeconds`` last between
      this and twice this many seconds (kube-apiserver: 1800).
    - ``bookmark_interval``: seconds of quiet before a BOOKMARK is sent to
      watches that allow bookmarks.
    """

    def __init__(
        self,
        state_dir,
        port=0,
        host="127.0.0.1",
        faults=None,
        kubelet=None,
        token="auto",
        kubeconfig_path=None,
        namespace="default",
        history_size=20000,
        field_validation="Strict",
        min_request_timeout=1800.0,
        bookmark_interval=5.0,
    ):
        self.state_dir = os.path.abspath(state_dir)
        self.host = host
        self.port = port
        self.token = secrets.token_hex(16) if token == "auto" else token
        self.kubeconfig_path = kubeconfig_path or os.path.join(
            self.state_dir, "kubeconfig"
        )
        self.namespace = namespace
        self.min_request_timeout = min_request_timeout
        self.bookmark_interval = bookmark_interval
        self.id = secrets.token_hex(6)
        self.config = kubelet or KubeletConfig()
        self.faults = FaultInjector(faults or Faults())
        self.validator = Validator(field_validation=field_validation)
        self.store = Store(history_size=history_size)
        self.registry = Registry(self.store, self.validator)
        self.recorder = EventRecorder(self.registry, self.config.node_name)
        self.kubelet = Kubelet(
            self.registry,
            self.recorder,
            self.faults,
            self.config,
            self.state_dir,
            self.id,
        )
        self.provisioner = Provisioner(
            self.registry,
            self.recorder,
            self.faults,
            os.path.join(self.state_dir, "volumes"),
            self.config.provision_retry_base,
            self.config.provision_retry_max,
        )
        self.controllers = Controllers(self.registry, self.config.event_ttl)
        self.open_watches = set()
        self.request_count = 0
        self._server = None
        self._outage_task = None
        self._refusing = False
        self.started = False

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def process_marker(self):
        """``KEY=value`` carried by every process the stand-in started."""
        return f"{STANDIN_ENV}={self.id}"

    async def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        sockets = bind_sockets(self.port, address=self.host)
        self.port = sockets[0].getsockname()[1]
        self._server = HTTPServer(make_app(self))
        self._server.add_sockets(sockets)
        self.controllers.start()
        self.provisioner.start()
        self.kubelet.start()
        write_kubeconfig(self.kubeconfig_path, self.url, self.token, self.namespace)
        self._outage_task = asyncio.ensure_future(self._watch_outages())
        self.started = True
        log.info(
            "Kubernetes stand-in listening on %s (state in %s)",
            self.url,
            self.state_dir,
        )
        return self

    async def stop(self):
        if not self.started:
            return
        self.started = False
        if self._outage_task:
            self._outage_task.cancel()
            await asyncio.gather(self._outage_task, return_exceptions=True)
        await self.kubelet.stop()
        await self.provisioner.stop()
        await self.controllers.stop()
        self._cut_watches()
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None
        log.info("Kubernetes stand-in on %s stopped", self.url)

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def _cut_watches(self):
        for handler in list(self.open_watches):
            handler.cut()
        for watcher in self.store.watchers:
            watcher.close()

    async def _watch_outages(self):
        down = False
        while True:
            now_down = self.faults.in_outage()
            if now_down and not down:
                log.warning(
                    "injected API outage begins (%s)", self.faults.faults.outage_mode
                )
                self._cut_watches()
                if self.faults.faults.outage_mode == "refuse":
                    self._refusing = True
                    self._server.stop()
                    await self._server.close_all_connections()
            elif down and not now_down:
                log.warning("injected API outage ends")
                if self._refusing:
                    self._refusing = False
                    self._server.add_sockets(bind_sockets(self.port, address=self.host))
            down = now_down
            await asyncio.sleep(0.05)

    def stats(self):
        """Counts for leak checks and debugging."""

        def count_dir(path):
            try:
                return len(os.listdir(path))
            except OSError:
                return 0

        stats = {
            "standin_id": self.id,
            "url": self.url,
            "resourceVersion": self.store.resource_version,
            "objects": {plural: self.store.count(r) for plural, r in RESOURCES.items()},
            "watches": len(self.store.watchers),
            "watch_streams": len(self.open_watches),
            "volume_dirs": count_dir(os.path.join(self.state_dir, "volumes")),
            "pod_dirs": count_dir(os.path.join(self.state_dir, "pods")),
            "provisions_queued": self.provisioner.queued,
            "provisions_in_flight": self.provisioner.in_flight,
            "requests": self.request_count,
            "open_fds": procutil.open_fds(),
            "marked_processes": len(procutil.processes_with_env(self.process_marker)),
            "in_outage": self.faults.in_outage(),
        }
        stats.update(self.kubelet.stats())
        try:
            stats["asyncio_tasks"] = len(asyncio.all_tasks())
        except RuntimeError:
            pass
        return stats
