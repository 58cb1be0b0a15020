"""Running the stand-in where other processes can reach it for a while:
in a background thread with its own event loop, or as a subprocess
(``python -m classroom_spawner.local.kube``).

A JupyterHub process started by a test talks to the stand-in over HTTP for the
whole test, independently of pytest's per-test event loops; both runners give
it that. The thread runner keeps the Python objects at hand (``.standin``,
``.call()``); the process runner is closest to a real deployment and is
inspected over HTTP (``/_standin/stats``, ``/_standin/faults``).
"""

import asyncio
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from tornado.httpclient import AsyncHTTPClient, HTTPClient, HTTPRequest

from .standin import KubeStandin

log = logging.getLogger(__name__)


class StandinThread:
    """A :class:`~.standin.KubeStandin` running in a daemon thread.

    ::

        with StandinThread(state_dir=tmp) as k8s:
            env["KUBECONFIG"] = k8s.kubeconfig_path
            stats = k8s.call(lambda s: s.stats())
    """

    def __init__(self, state_dir, **kwargs):
        self.state_dir = state_dir
        self.kwargs = kwargs
        self.standin = None
        self._loop = None
        self._thread = None
        self._ready = threading.Event()
        self._stopped = None
        self._error = None

    def start(self, timeout=30):
        self._thread = threading.Thread(
            target=self._run, name="kube-standin", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the Kubernetes stand-in did not start")
        if self._error:
            raise self._error
        return self

    def _run(self):
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self):
        self._stopped = asyncio.Event()
        try:
            self.standin = KubeStandin(self.state_dir, **self.kwargs)
            await self.standin.start()
        except Exception as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.standin.stop()

    def stop(self, timeout=60):
        if self._loop is None or self._thread is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout)
        self._thread = None

    def call(self, fn, *args, timeout=30):
        """Run ``fn(standin, *args)`` in the stand-in's loop (may return a coroutine)."""

        async def run():
            result = fn(self.standin, *args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    async def acall(self, fn, *args):
        """Like :meth:`call`, awaited from another event loop."""

        async def run():
            result = fn(self.standin, *args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(run(), self._loop)
        )

    def stats(self):
        return self.call(lambda s: s.stats())

    def set_faults(self, **changes):
        return self.call(lambda s: s.faults.update(changes))

    @property
    def url(self):
        return self.standin.url

    @property
    def token(self):
        return self.standin.token

    @property
    def kubeconfig_path(self):
        return self.standin.kubeconfig_path

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    async def __aenter__(self):
        return self.start()

    async def __aexit__(self, *exc):
        await asyncio.get_running_loop().run_in_executor(None, self.stop)


def cli_args(faults=None, kubelet=None):
    """Command-line flags for ``python -m classroom_spawner.local.kube`` from config objects."""
    config = {}
    if faults is not None:
        config["faults"] = faults.to_dict()
    if kubelet is not None:
        config["kubelet"] = dataclasses.asdict(kubelet)
        config["kubelet"]["light_commands"] = list(kubelet.light_commands)
    return config


class StandinProcess:
    """The stand-in as a subprocess; stopped with SIGTERM (which kills its pods)."""

    backend = "standin"

    def __init__(
        self,
        state_dir,
        port=0,
        faults=None,
        kubelet=None,
        kubeconfig_path=None,
        extra_args=(),
        log_path=None,
        python=None,
        env=None,
    ):
        self.state_dir = os.path.abspath(state_dir)
        self.port = port
        self.faults = faults
        self.kubelet = kubelet
        self.kubeconfig_path = kubeconfig_path or os.path.join(
            self.state_dir, "kubeconfig"
        )
        self.extra_args = list(extra_args)
        self.log_path = log_path or os.path.join(self.state_dir, "standin.log")
        self.python = python or sys.executable
        self.env = env
        self.proc = None
        self.info = None

    def start(self, timeout=60):
        os.makedirs(self.state_dir, exist_ok=True)
        ready = os.path.join(self.state_dir, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        args = [
            self.python,
            "-m",
            "classroom_spawner.local.kube",
            "--state-dir",
            self.state_dir,
            "--port",
            str(self.port),
            "--kubeconfig",
            self.kubeconfig_path,
            "--ready-file",
            ready,
        ]
        config = cli_args(self.faults, self.kubelet)
        if config:
            config_path = os.path.join(self.state_dir, "standin-config.json")
            with open(config_path, "w") as f:
                json.dump(config, f)
            args += ["--config", config_path]
        args += self.extra_args
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                args,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the stand-in exited with {self.proc.returncode}; see {self.log_path}"
                )
            if os.path.exists(ready):
                with open(ready) as f:
                    try:
                        self.info = json.load(f)
                        break
                    except ValueError:
                        pass
            time.sleep(0.05)
        else:
            self.stop()
            raise TimeoutError(f"the stand-in did not start; see {self.log_path}")
        return self

    def stop(self, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the stand-in did not stop on SIGTERM, killing it")
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self):
        return self.info["url"]

    @property
    def token(self):
        return self.info["token"]

    @property
    def pid(self):
        return self.proc.pid

    def _request(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return HTTPRequest(
            self.url + path,
            method=method,
            headers=headers,
            body=json.dumps(body) if body is not None else None,
            request_timeout=30,
        )

    def stats(self):
        client = HTTPClient()
        try:
            return json.loads(
                client.fetch(self._request("GET", "/_standin/stats")).body
            )
        finally:
            client.close()

    async def astats(self):
        resp = await AsyncHTTPClient().fetch(self._request("GET", "/_standin/stats"))
        return json.loads(resp.body)

    async def set_faults(self, **changes):
        resp = await AsyncHTTPClient().fetch(
            self._request("PUT", "/_standin/faults", changes)
        )
        return json.loads(resp.body)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    async def __aenter__(self):
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(self, *exc):
        await asyncio.get_running_loop().run_in_executor(None, self.stop)


class RealKubeProcess(StandinProcess):
    """Like :class:`StandinProcess`, on a real control plane (:mod:`.realkube`).

    ``url`` is kube-apiserver's (HTTPS, the CA in ``info["ca"]``); ``stats()``,
    ``astats()`` and ``set_faults()`` go to the node agent's ``admin_url``.
    """

    backend = "real"

    def __init__(self, state_dir, **kwargs):
        kwargs["extra_args"] = ["--backend", "real", *kwargs.get("extra_args", ())]
        super().__init__(state_dir, **kwargs)

    def start(self, timeout=180):
        return super().start(timeout)

    @property
    def version(self):
        return self.info.get("version") or {}

    def _request(self, method, path, body=None):
        return HTTPRequest(
            self.info["admin_url"] + path,
            method=method,
            headers={"Authorization": f"Bearer {self.token}"},
            body=json.dumps(body) if body is not None else None,
            request_timeout=30,
        )


def kube_backend():
    """``$CLASSROOM_KUBE``: ``standin`` (the default) or ``real``."""
    value = os.environ.get("CLASSROOM_KUBE", "standin") or "standin"
    if value not in ("standin", "real"):
        raise ValueError(f"$CLASSROOM_KUBE must be standin or real, not {value!r}")
    return value


def kube_process(state_dir, backend=None, **kwargs):
    """A :class:`StandinProcess` or a :class:`RealKubeProcess`, by ``backend``
    (default ``$CLASSROOM_KUBE``); both take the same arguments."""
    backend = backend or kube_backend()
    cls = RealKubeProcess if backend == "real" else StandinProcess
    return cls(state_dir, **kwargs)
