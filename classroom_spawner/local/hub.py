"""Run a real JupyterHub process (with configurable-http-proxy) for tests,
the demo and the benchmarks.

::

    async with HubProcess(config=my_config_text, env={"KUBECONFIG": path}) as hub:
        await hub.create_user("alice")
        await hub.start_server("alice")
        r = await hub.fetch("/user/alice/api/status", token=await hub.user_token("alice"))
        await hub.stop_server("alice")

The launcher writes ``jupyterhub_config.py`` into a working directory: free
ports for the proxy's public and API sides and the Hub, the proxy command
(``$CLASSROOM_CHP`` or ``node_modules/.bin/configurable-http-proxy`` found
upwards from this file or the current directory), the sqlite database and
cookie secret in the working directory, and a service with an admin-scoped
API token (``hub.admin_token``). The caller's ``config`` text is appended, so
it can override any of that. ``jupyterhub`` is started from the bin directory
of the running Python (the venv), with ``env`` added to this process's
environment. The Hub is up when ``/hub/api`` answers through the proxy.

On stop the Hub gets SIGTERM (it stops its servers and the proxy itself);
whatever is left after ``stop_timeout`` -- the Hub's process group and the
proxy from its pid file -- is killed.
"""

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger(__name__)

CHP_ENV = "CLASSROOM_CHP"

#: Config text for a hub that lets anyone in with any password (DummyAuthenticator).
DUMMY_AUTH_CONFIG = """
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
"""

ADMIN_SCOPES = [
    "admin:users",
    "admin:servers",
    "admin:groups",
    "tokens",
    "access:servers",
    "access:services",
    "proxy",
    "read:hub",
    "read:roles",
    "read:metrics",
    "shutdown",
    "list:users",
    "list:groups",
    "list:services",
]


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_chp():
    """Path of configurable-http-proxy: ``$CLASSROOM_CHP`` or node_modules/.bin."""
    env = os.environ.get(CHP_ENV)
    if env:
        return env
    starts = [os.path.dirname(os.path.abspath(__file__)), os.getcwd()]
    for start in starts:
        d = start
        while True:
            candidate = os.path.join(
                d, "node_modules", ".bin", "configurable-http-proxy"
            )
            if os.path.exists(candidate):
                return candidate
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    raise FileNotFoundError(
        "configurable-http-proxy not found: run `npm install` in the repository root"
        f" or set ${CHP_ENV}"
    )


def bin_dir():
    return os.path.dirname(os.path.abspath(sys.executable))


def event_stream_reader(on_event):
    """A ``streaming_callback`` that hands each JSON ``data:`` event of a
    server-sent event stream (JupyterHub's progress) to ``on_event``.

    Events may arrive split over chunks; a ``data:`` line that is not JSON is skipped.
    """
    buf = bytearray()

    def on_chunk(chunk: bytes):
        buf.extend(chunk)
        while b"\n\n" in buf:
            raw, _, rest = bytes(buf).partition(b"\n\n")
            buf[:] = rest
            for line in raw.decode("utf8", "replace").splitlines():
                if line.startswith("data:"):
                    try:
                        event = json.loads(line[5:].strip())
                    except ValueError:
                        continue
                    on_event(event)

    return on_chunk


class Response:
    """What :meth:`HubProcess.api` and :meth:`HubProcess.fetch` return."""

    def __init__(self, code, headers, body, url):
        self.code = code
        self.status = code
        self.headers = headers
        self.body = body
        self.url = url

    @property
    def text(self):
        return self.body.decode("utf8", "replace")

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return f"<Response {self.code} {self.url}>"


class HubError(Exception):
    pass


class HubProcess:
    """A JupyterHub process with configurable-http-proxy, as an async context manager.

    - ``config``: text appended to the generated ``jupyterhub_config.py``.
    - ``workdir``: where config, database, cookie secret and log go (default:
      a new temporary directory, removed on stop unless ``keep_workdir``).
    - ``env``: added to the environment of the Hub (e.g. ``KUBECONFIG``).
    - ``ip``: where the proxy and the Hub listen (default 127.0.0.1).
    - ``start_timeout`` / ``stop_timeout``: seconds.
    """

    def __init__(
        self,
        config="",
        workdir=None,
        env=None,
        ip="127.0.0.1",
        port=None,
        hub_port=None,
        proxy_api_port=None,
        log_level="DEBUG",
        chp=None,
        jupyterhub=None,
        admin_token=None,
        start_timeout=60,
        stop_timeout=60,
        keep_workdir=False,
    ):
        self.config = config
        self._own_workdir = workdir is None
        self.workdir = os.path.abspath(
            workdir or tempfile.mkdtemp(prefix="classroom-hub-")
        )
        self.env = dict(env or {})
        self.ip = ip
        self.port = port or free_port(ip)
        self.hub_port = hub_port or free_port(ip)
        self.proxy_api_port = proxy_api_port or free_port(ip)
        self.log_level = log_level
        self.chp = chp or find_chp()
        self.jupyterhub = jupyterhub or os.path.join(bin_dir(), "jupyterhub")
        self.admin_token = admin_token or secrets.token_hex(32)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.keep_workdir = keep_workdir
        self.config_path = os.path.join(self.workdir, "jupyterhub_config.py")
        self.log_path = os.path.join(self.workdir, "jupyterhub.log")
        self.proxy_pid_file = os.path.join(self.workdir, "jupyterhub-proxy.pid")
        self.proc = None
        self._client = None

    # ---- URLs ----

    @property
    def hub_url(self):
        """The public URL (the proxy), ending in ``/``."""
        return f"http://{self.ip}:{self.port}/"

    @property
    def api_url(self):
        return self.hub_url + "hub/api"

    # ---- config ----

    def base_config(self):
        return textwrap.dedent(f"""
            # written by classroom_spawner.local.hub
            c = get_config()  # noqa
            c.JupyterHub.ip = {self.ip!r}
            c.JupyterHub.port = {self.port}
            c.JupyterHub.hub_ip = {self.ip!r}
            c.JupyterHub.hub_port = {self.hub_port}
            c.JupyterHub.hub_connect_ip = {self.ip!r}
            c.ConfigurableHTTPProxy.api_url = "http://{self.ip}:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.command = [{self.chp!r}]
            c.ConfigurableHTTPProxy.pid_file = {self.proxy_pid_file!r}
            c.JupyterHub.db_url = "sqlite:///" + {os.path.join(self.workdir, 'jupyterhub.sqlite')!r}
            c.JupyterHub.cookie_secret_file = {os.path.join(self.workdir, 'jupyterhub_cookie_secret')!r}
            c.JupyterHub.log_level = {self.log_level!r}
            c.JupyterHub.services = [
                {{"name": "launcher-admin", "api_token": {self.admin_token!r}}},
            ]
            c.JupyterHub.load_roles = [
                {{
                    "name": "launcher-admin",
                    "scopes": {ADMIN_SCOPES!r},
                    "services": ["launcher-admin"],
                }},
            ]
            """)

    def write_config(self):
        os.makedirs(self.workdir, exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write(self.base_config())
            f.write("\n# ---- caller's config ----\n")
            f.write(textwrap.dedent(self.config))
            f.write("\n")
        return self.config_path

    # ---- lifecycle ----

    async def start(self):
        self.write_config()
        env = dict(os.environ)
        env.update(self.env)
        env["PATH"] = bin_dir() + os.pathsep + env.get("PATH", "")
        # the Hub must not inherit a proxy token from our environment
        env.pop("CONFIGPROXY_AUTH_TOKEN", None)
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.jupyterhub, "-f", self.config_path],
                cwd=self.workdir,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            logf.close()
        log.info("started jupyterhub (pid %s), log in %s", self.proc.pid, self.log_path)
        try:
            await self._wait_up()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _wait_up(self):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HubError(
                    f"jupyterhub exited with {self.proc.returncode} during startup:\n"
                    + self.read_log()[-4000:]
                )
            try:
                r = await self.api("GET", "/", raise_error=False, request_timeout=5)
                if r.code == 200:
                    return
            except (ConnectionError, OSError, HTTPClientError):
                pass
            await asyncio.sleep(0.2)
        raise HubError(
            f"jupyterhub did not answer on {self.api_url} in {self.start_timeout}s:\n"
            + self.read_log()[-4000:]
        )

    async def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if self.proc.poll() is None:
                log.error(
                    "jupyterhub did not stop in %ss, killing it", self.stop_timeout
                )
            self._kill_group(self.proc.pid)
            self.proc.wait()
        self._kill_proxy()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _kill_group(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_proxy(self):
        try:
            with open(self.proxy_pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            return
        if b"configurable-http-proxy" in cmdline:
            log.warning("killing leftover configurable-http-proxy (pid %s)", pid)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def read_log(self):
        try:
            with open(self.log_path, encoding="utf8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- HTTP ----

    @property
    def client(self):
        if self._client is None:
            self._client = AsyncHTTPClient(force_instance=True)
        return self._client

    async def fetch(
        self,
        path,
        method="GET",
        token=None,
        json_body=None,
        body=None,
        headers=None,
        raise_error=False,
        follow_redirects=False,
        request_timeout=30,
        **kwargs,
    ):
        """A request to ``path`` (relative to the public URL) or a full URL."""
        url = path if "://" in path else self.hub_url + path.lstrip("/")
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {token}"
        if json_body is not None:
            body = json.dumps(json_body)
            headers.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = ""
        req = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body,
            follow_redirects=follow_redirects,
            request_timeout=request_timeout,
            allow_nonstandard_methods=True,
            **kwargs,
        )
        resp = await self.client.fetch(req, raise_error=False)
        if resp.code == 599 and resp.error is not None:
            raise (
                resp.error
                if isinstance(resp.error, OSError)
                else ConnectionError(str(resp.error))
            )
        result = Response(resp.code, resp.headers, resp.body or b"", url)
        if raise_error and resp.code >= 400:
            raise HubError(f"{method} {url} -> {resp.code}: {result.text[:2000]}")
        return result

    async def api(
        self, method, path, json=None, token=None, raise_error=True, **kwargs
    ):
        """A request to the Hub's REST API (``path`` relative to ``/hub/api``).

        Uses the admin token unless ``token`` is given.
        """
        return await self.fetch(
            self.api_url + "/" + path.lstrip("/") if path != "/" else self.api_url,
            method=method,
            token=token or self.admin_token,
            json_body=json,
            raise_error=raise_error,
            **kwargs,
        )

    # ---- conveniences ----

    async def create_user(self, name, admin=False):
        r = await self.api(
            "POST", f"users/{quote(name)}", json={"admin": admin}, raise_error=False
        )
        if r.code not in (201, 409):
            raise HubError(f"could not create user {name}: {r.code} {r.text}")
        return (await self.api("GET", f"users/{quote(name)}")).json()

    async def user_token(self, name, note="classroom-spawner tests", **token_model):
        """A new API token for user ``name`` (created with the admin token)."""
        body = {"note": note, **token_model}
        r = await self.api("POST", f"users/{quote(name)}/tokens", json=body)
        return r.json()["token"]

    def _server_path(self, name, server_name=""):
        path = f"users/{quote(name)}/server"
        if server_name:
            path = f"users/{quote(name)}/servers/{quote(server_name)}"
        return path

    async def start_server(self, name, server_name="", options=None, timeout=120):
        """Request a server and wait until the Hub reports it ready; the user model."""
        r = await self.api(
            "POST",
            self._server_path(name, server_name),
            json=options or {},
            raise_error=False,
        )
        if r.code not in (201, 202, 400) or (
            r.code == 400 and "already running" not in r.text
        ):
            raise HubError(f"could not start server for {name}: {r.code} {r.text}")
        return await self.wait_for_server(
            name, server_name, ready=True, timeout=timeout
        )

    async def stop_server(self, name, server_name="", timeout=120):
        r = await self.api(
            "DELETE", self._server_path(name, server_name), raise_error=False
        )
        if r.code not in (202, 204, 400, 404):
            raise HubError(f"could not stop server for {name}: {r.code} {r.text}")
        return await self.wait_for_server(
            name, server_name, ready=None, timeout=timeout
        )

    async def wait_for_server(self, name, server_name="", ready=True, timeout=120):
        """Wait until the server is ready (``ready=True``) or gone (``ready=None``)."""
        deadline = time.monotonic() + timeout
        while True:
            user = (await self.api("GET", f"users/{quote(name)}")).json()
            server = (user.get("servers") or {}).get(server_name)
            if ready and server and server.get("ready"):
                return user
            if ready is None and not server:
                return user
            if ready and not server and not user.get("pending"):
                raise HubError(
                    f"server {name}/{server_name} stopped while starting:\n"
                    + self.read_log()[-4000:]
                )
            if time.monotonic() > deadline:
                raise HubError(
                    f"server {name}/{server_name} not {'ready' if ready else 'stopped'} in"
                    f" {timeout}s: {server}\n" + self.read_log()[-4000:]
                )
            await asyncio.sleep(0.2)

    async def queue_admitted(self, queue="first-spawn"):
        """How many spawns a classroom spawn queue has let through so far (the count
        of its ``classroom_spawn_queue_wait_seconds`` histogram at /hub/metrics)."""
        r = await self.fetch("/hub/metrics", token=self.admin_token)
        found = re.search(
            rf'^classroom_spawn_queue_wait_seconds_count\{{queue="{re.escape(queue)}"\}} (\S+)$',
            r.text,
            re.M,
        )
        return float(found.group(1)) if found else 0.0

    async def progress(self, name, server_name="", token=None, timeout=120):
        """The progress events of a (starting) server until it is ready or failed."""
        path = f"users/{quote(name)}/server/progress"
        if server_name:
            path = f"users/{quote(name)}/servers/{quote(server_name)}/progress"
        events = []
        await self.fetch(
            self.api_url + "/" + path,
            token=token or self.admin_token,
            headers={"Accept": "text/event-stream"},
            streaming_callback=event_stream_reader(events.append),
            request_timeout=timeout,
        )
        return events
