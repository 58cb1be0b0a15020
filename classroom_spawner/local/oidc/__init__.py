"""A real, local OpenID Connect provider for the tests and the demo.

:class:`OIDCProvider` runs ``provider.mjs`` (the npm package ``oidc-provider``,
a certified OpenID Connect implementation) as a Node.js subprocess on
127.0.0.1 and talks to its admin API. It is a test/demo tool only: plain http,
clear-text passwords, fresh keys at every start, nothing persisted.

Typical use in a test::

    from classroom_spawner.local.oidc import OIDCProvider

    async with OIDCProvider(
        accounts=[{"username": "alice", "password": "pw",
                   "claims": {"email": "alice@example.org", "groups": ["intro-101"]}}],
        redirect_uris=[f"{hub_url}hub/oauth_callback"],
    ) as idp:
        c.GenericOAuthenticator.update(idp.oauthenticator_config(hub_url=hub_url))
        ...
        idp.add_account("bob", "pw", groups=["intro-101"])   # at runtime
        idp.revoke("alice")                                   # kill her tokens

The same object works synchronously (``with OIDCProvider(...) as idp:`` or
``idp.start()`` / ``idp.stop()``), which is what the demo uses.

Account format (constructor, ``add_account``, the ``--accounts`` file)::

    {"username": "alice",          # what the login form takes (case-insensitive)
     "password": "pw",
     "sub": "alice",               # optional, defaults to the username
     "claims": {"name": "Alice", "email": "alice@example.org",
                "email_verified": true, "groups": ["intro-101"]}}

``preferred_username`` defaults to the username. Claims are released by scope:
``profile`` (name, preferred_username, ..., groups), ``email`` (email,
email_verified) and ``groups`` (groups); unknown claims are released with
``profile``. Both the userinfo response and the id_token carry them.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_SCOPE",
    "DEFAULT_TITLE",
    "OIDCProvider",
    "OIDCProviderError",
    "find_node",
    "find_node_modules",
]

DEFAULT_TITLE = "Classroom demo university"
#: scopes the hub asks for by default: enough for name, email and groups
DEFAULT_SCOPE = ("openid", "profile", "email", "groups")
PROVIDER_SCRIPT = Path(__file__).with_name("provider.mjs")


class OIDCProviderError(RuntimeError):
    """The provider could not be started, or an admin request failed."""


def find_node() -> str:
    """Path of the ``node`` executable (env ``CLASSROOM_NODE`` overrides)."""
    node = os.environ.get("CLASSROOM_NODE") or shutil.which("node")
    if not node:
        raise OIDCProviderError(
            "node (Node.js >= 20.19) not found on PATH; set CLASSROOM_NODE to its path"
        )
    return node


def find_node_modules(start: str | os.PathLike | None = None) -> Path | None:
    """The ``node_modules`` directory that holds ``oidc-provider``.

    Order: env ``CLASSROOM_NODE_MODULES``; the nearest ``node_modules`` with
    ``oidc-provider`` in this package's directory or one of its parents (the
    repository checkout); the same search from the current working directory.
    Returns None if nothing is found (Node's own resolution is then used).
    """
    env = os.environ.get("CLASSROOM_NODE_MODULES")
    if env:
        return Path(env)
    starts = [Path(start)] if start else [Path(__file__).resolve().parent, Path.cwd()]
    for origin in starts:
        for directory in (origin, *origin.parents):
            candidate = directory / "node_modules"
            if (candidate / "oidc-provider" / "package.json").is_file():
                return candidate
    return None


# processes still running at interpreter exit get stopped (the demo may exit
# without calling stop(); the node side also exits when its stdin closes)
_running: weakref.WeakSet[OIDCProvider] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for provider in list(_running):
        provider.stop()


def _normalize_account(
    account: Mapping[str, Any] | None = None,
    /,
    **fields: Any,
) -> dict[str, Any]:
    """``{"username", "password", "sub"?, "claims"}``; other top-level keys
    are claims too (same rule as provider.mjs)."""
    data = dict(account or {})
    data.update(fields)
    if not data.get("username") or not isinstance(data["username"], str):
        raise ValueError(f"account needs a username: {data!r}")
    if not isinstance(data.get("password"), str):
        raise ValueError(f"account {data['username']} needs a password string")
    normalized = {
        "username": data.pop("username"),
        "password": data.pop("password"),
    }
    if data.get("sub") is not None:
        normalized["sub"] = str(data.pop("sub"))
    data.pop("sub", None)
    claims = dict(data.pop("claims", None) or {})
    normalized["claims"] = {**data, **claims}
    return normalized


class OIDCProvider:
    """A local OpenID Connect provider (Node.js ``oidc-provider``) in a subprocess.

    Parameters
    ----------
    accounts:
        initial accounts, each ``{"username", "password", "sub"?, "claims"?}``.
    client_id, client_secret:
        the client JupyterHub uses (secret generated if not given).
    redirect_uris:
        allowed redirect URIs of that client (the hub's ``.../hub/oauth_callback``).
        More can be added later with :meth:`add_redirect_uri`; the client is
        registered once it has at least one.
    clients:
        further clients (full OpenID Connect client metadata dicts).
    port, host, issuer:
        where to listen; ``port=0`` (default) picks a free port.
    title:
        the provider's name on its pages; also the hub's ``login_service``.
    hint:
        plain text shown under the login form (e.g. demo credentials).
    require_pkce:
        reject authorization requests without a PKCE S256 code challenge.
    rotate_refresh_tokens:
        issue a new refresh token on every refresh (old one becomes invalid).
    ttl:
        lifetimes in seconds, e.g. ``{"AccessToken": 5}`` to make the hub
        fall back to its refresh token quickly.
    scope_claims:
        extra ``{scope: [claim, ...]}`` mappings.
    node, node_modules:
        override :func:`find_node` / :func:`find_node_modules`.
    log_path:
        file for the provider's log (default: in a temporary directory that
        is removed by :meth:`stop`); ``echo_logs=True`` sends it to stderr.
    """

    def __init__(
        self,
        accounts: Iterable[Mapping[str, Any]] = (),
        *,
        client_id: str = "jupyterhub",
        client_secret: str | None = None,
        redirect_uris: Iterable[str] = (),
        clients: Iterable[Mapping[str, Any]] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        issuer: str | None = None,
        title: str = DEFAULT_TITLE,
        hint: str | None = None,
        admin_secret: str | None = None,
        require_pkce: bool = True,
        rotate_refresh_tokens: bool = False,
        ttl: Mapping[str, int] | None = None,
        scope_claims: Mapping[str, Iterable[str]] | None = None,
        node: str | None = None,
        node_modules: str | os.PathLike | None = None,
        startup_timeout: float = 30.0,
        log_path: str | os.PathLike | None = None,
        echo_logs: bool = False,
    ):
        self._accounts = {
            a["username"].lower(): a for a in (_normalize_account(a) for a in accounts)
        }
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self._redirect_uris = list(dict.fromkeys(redirect_uris))
        self._clients = [dict(c) for c in clients]
        self.host = host
        self.port = port
        self._issuer = issuer
        self.title = title
        self.hint = hint
        self.admin_secret = admin_secret or secrets.token_urlsafe(24)
        self.require_pkce = require_pkce
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.ttl = dict(ttl or {})
        self.scope_claims = {k: list(v) for k, v in (scope_claims or {}).items()}
        self.node = node
        self.node_modules = node_modules
        self.startup_timeout = startup_timeout
        self.echo_logs = echo_logs
        self._log_path = Path(log_path) if log_path else None

        self.discovery: dict[str, Any] = {}
        self._proc: subprocess.Popen | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._log_file = None
        self._ready = threading.Event()
        self._ready_line: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ urls
    @property
    def issuer(self) -> str:
        """Issuer URL, e.g. ``http://127.0.0.1:40123`` (known once started)."""
        if self._issuer is None:
            raise OIDCProviderError("provider not started")
        return self._issuer

    url = issuer

    def _endpoint(self, key: str) -> str:
        if key not in self.discovery:
            raise OIDCProviderError(f"provider not started (no {key} known)")
        return self.discovery[key]

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorize_url(self) -> str:
        return self._endpoint("authorization_endpoint")

    @property
    def token_url(self) -> str:
        return self._endpoint("token_endpoint")

    @property
    def userinfo_url(self) -> str:
        return self._endpoint("userinfo_endpoint")

    @property
    def jwks_url(self) -> str:
        return self._endpoint("jwks_uri")

    @property
    def end_session_url(self) -> str:
        return self._endpoint("end_session_endpoint")

    @property
    def revocation_url(self) -> str:
        return self._endpoint("revocation_endpoint")

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------- lifecycle
    def _config(self) -> dict[str, Any]:
        clients = list(self._clients)
        if self._redirect_uris:
            clients.insert(0, self._default_client())
        config: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "title": self.title,
            "admin_secret": self.admin_secret,
            "require_pkce": self.require_pkce,
            "rotate_refresh_tokens": self.rotate_refresh_tokens,
            "ttl": self.ttl,
            "scope_claims": self.scope_claims,
            "clients": clients,
            "accounts": list(self._accounts.values()),
            "exit_on_stdin_close": True,
        }
        if self._issuer:
            config["issuer"] = self._issuer
        if self.hint:
            config["hint"] = self.hint
        return config

    def _default_client(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "client_name": "JupyterHub",
            "redirect_uris": self._redirect_uris,
            "post_logout_redirect_uris": [],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
        }

    def start(self) -> OIDCProvider:
        """Start node and wait for its READY line. Returns self."""
        with self._lock:
            if self.running:
                return self
            self._start()
        return self

    def _start(self) -> None:
        node = self.node or find_node()
        node_modules = self.node_modules or find_node_modules()
        self._tmpdir = tempfile.TemporaryDirectory(prefix="classroom-oidc-")
        tmp = Path(self._tmpdir.name)
        config_path = tmp / "config.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._config(), f, indent=1)

        env = dict(os.environ)
        if node_modules:
            env["CLASSROOM_NODE_MODULES"] = str(node_modules)
        if self.echo_logs:
            stderr = None
        else:
            if self._log_path is None:
                self._log_path = tmp / "provider.log"
            self._log_file = open(self._log_path, "ab")
            stderr = self._log_file

        self._ready.clear()
        self._ready_line = None
        self._proc = subprocess.Popen(
            [node, str(PROVIDER_SCRIPT), str(config_path)],
            stdin=subprocess.PIPE,  # node exits when this pipe closes
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,  # own process group: stop() kills it whole
        )
        _running.add(self)
        threading.Thread(
            target=self._read_stdout, args=(self._proc,), daemon=True
        ).start()

        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                what = (
                    f"exited with status {self._proc.returncode}"
                    if self._proc.poll() is not None
                    else f"not ready after {self.startup_timeout} s"
                )
                tail = self.log_tail()
                self._stop()
                raise OIDCProviderError(
                    f"OIDC provider ({node} {PROVIDER_SCRIPT.name}) {what}."
                    f"\n--- provider log (tail) ---\n{tail}"
                )
        self._issuer = self._ready_line.split(None, 1)[1].strip()
        self.discovery = self._get_json(self.discovery_url)

    def _read_stdout(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line.startswith("READY ") and not self._ready.is_set():
                self._ready_line = line
                self._ready.set()
        proc.stdout.close()

    def stop(self) -> None:
        """Stop the node process (and its process group) and clean up."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(5)
            else:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmpdir is not None:
            if self._log_path and Path(self._tmpdir.name) in self._log_path.parents:
                self._log_path = None  # removed with the directory
            self._tmpdir.cleanup()
            self._tmpdir = None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the provider's log (empty with ``echo_logs``)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        text = self._log_path.read_text("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    async def __aenter__(self) -> OIDCProvider:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await asyncio.to_thread(self.stop)

    # ---------------------------------------------------------------- http
    def _get_json(self, url: str) -> Any:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        if not self.running:
            raise OIDCProviderError("provider not running")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.issuer}/admin/{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.admin_secret}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            raise OIDCProviderError(
                f"admin {method} /admin/{path} failed: {e.code} {detail}"
            ) from None

    @staticmethod
    def _quote(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    # ------------------------------------------------------------- accounts
    def add_account(
        self,
        username: str,
        password: str,
        *,
        sub: str | None = None,
        claims: Mapping[str, Any] | None = None,
        **more_claims: Any,
    ) -> dict[str, Any]:
        """Add or replace an account; takes effect immediately when running.

        ``claims`` and keyword arguments are merged, e.g.
        ``add_account("bob", "pw", groups=["intro-101"], email="bob@example.org")``.
        Replacing an account keeps its sessions and tokens: the next userinfo
        request or refresh returns the new claims.
        """
        account: dict[str, Any] = {
            "username": username,
            "password": password,
            "claims": {**(claims or {}), **more_claims},
        }
        if sub is not None:
            account["sub"] = sub
        account = _normalize_account(account)
        if self.running:
            result = self._admin("PUT", f"accounts/{self._quote(username)}", account)[
                "account"
            ]
        else:
            result = {k: v for k, v in account.items() if k != "password"}
        self._accounts[username.lower()] = account
        return result

    def update_claims(self, username: str, **claims: Any) -> dict[str, Any]:
        """Change some claims of an existing account (e.g. ``groups=[...]``)."""
        account = self._accounts.get(username.lower())
        if account is None:
            raise KeyError(username)
        merged = {**account.get("claims", {}), **claims}
        return self.add_account(
            account["username"],
            account["password"],
            sub=account.get("sub"),
            claims=merged,
        )

    def remove_account(self, username: str) -> dict[str, Any]:
        """Remove an account and revoke its sessions, grants and tokens."""
        self._accounts.pop(username.lower(), None)
        if self.running:
            return self._admin("DELETE", f"accounts/{self._quote(username)}")
        return {}

    def revoke(self, username: str) -> dict[str, int]:
        """Revoke a user's sessions, grants, codes, access and refresh tokens.

        Afterwards the hub's stored access token fails at userinfo and its
        refresh token fails at the token endpoint, and the next login asks for
        the password again. Returns ``{model: count}`` of what was removed.
        """
        return self._admin("POST", f"accounts/{self._quote(username)}/revoke")[
            "revoked"
        ]

    def list_accounts(self) -> list[dict[str, Any]]:
        """Accounts as the provider has them (without passwords)."""
        if self.running:
            return self._admin("GET", "accounts")["accounts"]
        return [
            {k: v for k, v in a.items() if k != "password"}
            for a in self._accounts.values()
        ]

    # -------------------------------------------------------------- clients
    def add_client(
        self,
        client_id: str,
        client_secret: str | None,
        redirect_uris: Iterable[str],
        **metadata: Any,
    ) -> None:
        """Add or replace a client (OpenID Connect client metadata)."""
        client = {
            "client_id": client_id,
            "redirect_uris": list(redirect_uris),
            **metadata,
        }
        if client_secret is not None:
            client["client_secret"] = client_secret
        self._clients = [c for c in self._clients if c["client_id"] != client_id]
        self._clients.append(client)
        if self.running:
            self._admin("PUT", f"clients/{self._quote(client_id)}", client)

    def add_redirect_uri(self, uri: str) -> None:
        """Allow one more redirect URI for the hub's client (registers it)."""
        if uri in self._redirect_uris:
            return
        self._redirect_uris.append(uri)
        if self.running:
            self._admin(
                "PUT", f"clients/{self._quote(self.client_id)}", self._default_client()
            )

    # ---------------------------------------------------- JupyterHub config
    def oauthenticator_config(
        self,
        callback_url: str | None = None,
        *,
        hub_url: str | None = None,
        username_claim: str = "preferred_username",
        scope: Iterable[str] = DEFAULT_SCOPE,
        register: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """Trait values for ``GenericOAuthenticator`` (or a subclass).

        Give the hub's ``callback_url`` (``http://HOST:PORT/hub/oauth_callback``)
        or its public ``hub_url`` (``http://HOST:PORT/``, callback derived).
        With ``register=True`` the callback is also added to the client's
        allowed redirect URIs. Extra keyword arguments are added as traits::

            c.GenericOAuthenticator.update(idp.oauthenticator_config(hub_url=url))
        """
        if callback_url is None:
            if hub_url is None:
                raise TypeError("give callback_url or hub_url")
            callback_url = hub_url.rstrip("/") + "/hub/oauth_callback"
        if register:
            self.add_redirect_uri(callback_url)
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "oauth_callback_url": callback_url,
            "authorize_url": self.authorize_url,
            "token_url": self.token_url,
            "userdata_url": self.userinfo_url,
            "username_claim": username_claim,
            "scope": list(scope),
            "login_service": self.title,
            **extra,
        }

    def __repr__(self) -> str:
        where = self._issuer or "not started"
        return f"<OIDCProvider {self.title!r} {where}>"
