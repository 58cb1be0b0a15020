"""A real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-scheduler and kube-controller-manager as child processes.

::

    async with ControlPlane(state_dir) as cp:
        cp.url, cp.token, cp.kubeconfig_path, cp.ca_path

The binaries come from :mod:`.binaries` (built once into a cache). Clients
authenticate with a static bearer token of a ``system:masters`` user (written
into the kubeconfig together with the apiserver's self-signed CA). The
scheduler and the controller manager use the same kubeconfig. ``stop()`` ends
them in reverse order with SIGTERM (SIGKILL after a timeout); each child also
gets SIGKILL from the kernel if this process dies first, so none is left.
"""

import asyncio
import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import time

import aiohttp

from . import binaries
from .kubeconfig import write_kubeconfig

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.96.0.0/16"
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the launcher's thread dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ControlPlaneError(RuntimeError):
    pass


class ControlPlane:
    """etcd + kube-apiserver + kube-scheduler + kube-controller-manager.

    - ``state_dir``: etcd data, certificates, token file, kubeconfig and the
      components' logs go to ``<state_dir>/control-plane/``.
    - ``bin_dir``: the binaries (default: :func:`.binaries.bin_dir`).
    - ``token``: the admin bearer token (default: a random one).
    - ``kubeconfig_path``/``namespace``: the kubeconfig written for clients.
    - ``controllers``: kube-controller-manager's ``--controllers``.
    - ``extra_args``: ``{"kube-apiserver": [...], ...}`` appended to the flags.
    """

    def __init__(
        self,
        state_dir,
        bin_dir=None,
        token=None,
        kubeconfig_path=None,
        namespace="default",
        host="127.0.0.1",
        controllers="*",
        extra_args=None,
    ):
        self.state_dir = os.path.abspath(state_dir)
        self.dir = os.path.join(self.state_dir, "control-plane")
        self.bin_dir = str(bin_dir or binaries.bin_dir())
        self.token = token or secrets.token_hex(16)
        self.kubeconfig_path = kubeconfig_path or os.path.join(
            self.state_dir, "kubeconfig"
        )
        self.namespace = namespace
        self.host = host
        self.controllers = controllers
        self.extra_args = extra_args or {}
        self.port = None
        self.procs = {}  # name -> asyncio subprocess, in start order
        self.version = None

    @property
    def url(self):
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self):
        return os.path.join(self.dir, "certs", "apiserver.crt")

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.ca_path)

    # ---- start ----

    async def start(self, timeout=120):
        missing = binaries.missing(self.bin_dir)
        if missing:
            raise ControlPlaneError(
                f"{', '.join(missing)} not found in {self.bin_dir}:"
                " run `make k8s-binaries` first"
            )
        os.makedirs(os.path.join(self.dir, "certs"), exist_ok=True)
        try:
            await self._start(timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self, timeout):
        deadline = time.monotonic() + timeout
        await self._service_account_key()
        tokens = os.path.join(self.dir, "tokens.csv")
        with open(tokens, "w") as f:
            f.write(f"{self.token},admin,admin,system:masters\n")
        os.chmod(tokens, 0o600)

        client_port, peer_port = free_port(self.host), free_port(self.host)
        etcd_url = f"http://{self.host}:{client_port}"
        peer_url = f"http://{self.host}:{peer_port}"
        await self._spawn(
            "etcd",
            "--name=default",
            f"--data-dir={os.path.join(self.dir, 'etcd')}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        )
        await self._wait_http(
            "etcd", f"{etcd_url}/health", deadline, ok=lambda body: b'"true"' in body
        )

        self.port = free_port(self.host)
        certs = os.path.join(self.dir, "certs")
        await self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--bind-address={self.host}",
            f"--advertise-address={self.host}",
            f"--secure-port={self.port}",
            f"--cert-dir={certs}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={os.path.join(self.dir, 'sa.pub')}",
            f"--service-account-signing-key-file={os.path.join(self.dir, 'sa.key')}",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        )
        await self._wait_https("kube-apiserver", "/readyz", deadline)
        write_kubeconfig(
            self.kubeconfig_path,
            self.url,
            self.token,
            self.namespace,
            certificate_authority=self.ca_path,
        )
        self.version = await self.get_json("/version")

        await self._spawn(
            "kube-scheduler",
            f"--kubeconfig={self.kubeconfig_path}",
            "--leader-elect=false",
            "--secure-port=0",
        )
        await self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig_path}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--controllers={self.controllers}",
            f"--service-account-private-key-file={os.path.join(self.dir, 'sa.key')}",
            f"--root-ca-file={self.ca_path}",
            "--use-service-account-credentials=false",
        )
        # the `default` ServiceAccount is what pods need first (its admission plugin)
        while True:
            status, _ = await self.request(
                "GET", "/api/v1/namespaces/default/serviceaccounts/default"
            )
            if status == 200:
                break
            self._check_alive()
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    "the controller manager made no default ServiceAccount;"
                    f" see {self.log_path('kube-controller-manager')}"
                )
            await asyncio.sleep(0.2)
        log.info(
            "Kubernetes %s control plane on %s (state in %s)",
            self.version.get("gitVersion"),
            self.url,
            self.dir,
        )

    async def _service_account_key(self):
        key = os.path.join(self.dir, "sa.key")
        if os.path.exists(key):
            return
        for args in (
            ["genrsa", "-out", key, "2048"],
            ["rsa", "-in", key, "-pubout", "-out", os.path.join(self.dir, "sa.pub")],
        ):
            proc = await asyncio.create_subprocess_exec(
                "openssl",
                *args,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
            if proc.returncode:
                raise ControlPlaneError(
                    f"openssl {args[0]} failed: {err.decode(errors='replace')}"
                )

    def log_path(self, name):
        return os.path.join(self.dir, f"{name}.log")

    async def _spawn(self, name, *args):
        args = list(args) + list(self.extra_args.get(name, ()))
        logf = open(self.log_path(name), "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                os.path.join(self.bin_dir, name),
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                preexec_fn=_die_with_parent,
                # a terminal's Ctrl-C reaches only the launcher, which stops them in order
                start_new_session=True,
            )
        finally:
            logf.close()
        self.procs[name] = proc
        log.debug("started %s (pid %s)", name, proc.pid)
        return proc

    def _check_alive(self):
        for name, proc in self.procs.items():
            if proc.returncode is not None:
                raise ControlPlaneError(
                    f"{name} exited with {proc.returncode}; see {self.log_path(name)}"
                )

    async def _wait_http(self, name, url, deadline, ok):
        async with aiohttp.ClientSession() as session:
            while True:
                self._check_alive()
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200 and ok(await resp.read()):
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"{name} not ready; see {self.log_path(name)}"
                    )
                await asyncio.sleep(0.1)

    async def _wait_https(self, name, path, deadline):
        while True:
            self._check_alive()
            if os.path.exists(self.ca_path):
                try:
                    status, _ = await self.request("GET", path)
                    if status == 200:
                        return
                except (aiohttp.ClientError, ssl.SSLError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{name} not ready; see {self.log_path(name)}")
            await asyncio.sleep(0.2)

    # ---- small client for the launcher's own needs ----

    async def request(self, method, path, body=None):
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.token}"}
        ) as session:
            async with session.request(
                method,
                self.url + path,
                json=body,
                ssl=self.ssl_context(),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                return resp.status, await resp.read()

    async def get_json(self, path):
        status, body = await self.request("GET", path)
        if status != 200:
            raise ControlPlaneError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    # ---- stop ----

    async def stop(self, timeout=20):
        """SIGTERM each component, newest first; SIGKILL what outlives ``timeout``."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.returncode is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    await asyncio.wait_for(proc.wait(), timeout)
                except asyncio.TimeoutError:
                    log.warning("%s did not stop on SIGTERM, killing it", name)
                    proc.kill()
                    await proc.wait()
        self.procs.clear()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()


async def _version_check(state_dir):
    async with ControlPlane(state_dir) as cp:
        v = cp.version
        print(
            f"kube-apiserver /version: gitVersion {v.get('gitVersion')}"
            f" ({v.get('goVersion')}, {v.get('platform')}) from {cp.bin_dir}",
            flush=True,
        )


def main(argv=None):
    """``python -m classroom_spawner.local.kube.cluster``: start the control plane
    once, print the apiserver's ``/version``, stop it (a smoke test)."""
    import argparse
    import sys
    import tempfile

    p = argparse.ArgumentParser(prog="python -m classroom_spawner.local.kube.cluster")
    p.add_argument("--state-dir", help="default: a temporary directory")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.state_dir:
            asyncio.run(_version_check(args.state_dir))
        else:
            with tempfile.TemporaryDirectory(prefix="k8s-version-") as tmp:
                asyncio.run(_version_check(tmp))
    except ControlPlaneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
