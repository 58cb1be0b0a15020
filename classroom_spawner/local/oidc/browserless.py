"""Log into a JupyterHub through its real OAuth flow, without a browser.

The flow is the one a browser goes through, with one ``requests.Session``
keeping every cookie (the hub's ``oauthenticator-state`` cookie, which carries
the OAuth state and the PKCE code verifier; the provider's interaction and
session cookies; the hub's login cookie and ``_xsrf`` cookie)::

    GET  {hub}/hub/oauth_login            -> 302 to the provider's /auth
    GET  {idp}/auth?...                   -> 303 to /interaction/<uid>: login form
    POST {idp}/interaction/<uid>/login    -> 303 ... (auto consent) ...
                                          -> 302/303 to {hub}/hub/oauth_callback?code&state
    GET  {hub}/hub/oauth_callback         -> hub login cookie, 302 to next_url
                                             (or 403 if the authenticator refuses)

Usage::

    from classroom_spawner.local.oidc.browserless import login

    result = login("http://127.0.0.1:8000/", "alice", "pw", next_url="/hub/home")
    assert result.ok, result.describe()
    r = result.api("GET", "user")             # cookie-authenticated hub API
    result.api("POST", "users/alice/server")  # sends the _xsrf token

Works with any provider whose login page is an HTML form with a password
field; the field names of our provider are ``username`` and ``password``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import requests

__all__ = ["LoginForm", "LoginResult", "authorize", "login", "parse_login_form"]

REDIRECT_CODES = {301, 302, 303, 307, 308}


# ----------------------------------------------------------------- parsing
@dataclass
class LoginForm:
    """The first form with a password field on a page."""

    action: str  # absolute URL
    method: str
    fields: dict[str, str]  # every named input with its current value
    username_field: str | None
    password_field: str
    error: str | None = None  # text of the page's #error element, if any

    def fill(self, username: str, password: str) -> dict[str, str]:
        data = dict(self.fields)
        if self.username_field:
            data[self.username_field] = username
        data[self.password_field] = password
        return data


class _FormParser(HTMLParser):
    USERNAME_NAMES = ("username", "user", "login", "email", "j_username")
    VOID = frozenset(
        "area base br col embed hr img input link meta source track wbr".split()
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, Any]] = []
        self._form: dict[str, Any] | None = None
        self._error_depth = 0  # >0 while inside the element with id="error"
        self.error_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag not in self.VOID:
            if self._error_depth:
                self._error_depth += 1
            elif a.get("id") == "error":
                self._error_depth = 1
        if tag == "form":
            self._form = {
                "action": a.get("action", ""),
                "method": (a.get("method") or "get").lower(),
                "inputs": [],
            }
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            self._form["inputs"].append(a)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <x ... /> has no end tag: record it like a void element
        if tag in self.VOID:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        if self._error_depth and tag not in self.VOID:
            self._error_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._error_depth:
            self.error_parts.append(data)


def parse_login_form(html: str, base_url: str) -> LoginForm | None:
    """Find the login form (a form with a password input) in ``html``."""
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    error = " ".join(" ".join(parser.error_parts).split()) or None
    for form in parser.forms:
        inputs = form["inputs"]
        password = next(
            (i["name"] for i in inputs if i.get("type", "").lower() == "password"), None
        )
        if not password:
            continue
        text_inputs = [
            i for i in inputs if i.get("type", "text").lower() in ("text", "email", "")
        ]
        username = next(
            (
                i["name"]
                for i in text_inputs
                if i["name"].lower() in _FormParser.USERNAME_NAMES
            ),
            text_inputs[0]["name"] if text_inputs else None,
        )
        fields = {
            i["name"]: i.get("value", "")
            for i in inputs
            if i.get("type", "text").lower()
            not in ("submit", "button", "checkbox", "radio")
            or i.get("checked") is not None
        }
        return LoginForm(
            action=urllib.parse.urljoin(base_url, form["action"] or base_url),
            method=form["method"],
            fields=fields,
            username_field=username,
            password_field=password,
            error=error,
        )
    return None


# ------------------------------------------------------------------- flow
def _follow(
    session: requests.Session,
    response: requests.Response,
    history: list[str],
    *,
    stop_at: str | None,
    timeout: float,
    max_redirects: int = 30,
) -> tuple[requests.Response, str | None]:
    """Follow redirects by hand; stop before requesting a URL under ``stop_at``.

    Returns (last response, the URL not requested or None).
    """
    for _ in range(max_redirects):
        if (
            response.status_code not in REDIRECT_CODES
            or "Location" not in response.headers
        ):
            return response, None
        target = urllib.parse.urljoin(response.url, response.headers["Location"])
        history.append(target)
        if stop_at and target.startswith(stop_at):
            return response, target
        response = session.get(target, allow_redirects=False, timeout=timeout)
    raise RuntimeError(f"more than {max_redirects} redirects: {history}")


def _submit(
    session: requests.Session,
    response: requests.Response,
    username: str,
    password: str,
    history: list[str],
    *,
    stop_at: str | None,
    timeout: float,
) -> tuple[requests.Response, str | None, LoginForm | None]:
    """If ``response`` shows a login form, fill it in and submit it.

    Returns (final response, stopped-at URL or None, the form shown after
    submitting if the login was refused — else None).
    """
    form = parse_login_form(response.text, response.url)
    if form is None:
        return response, None, None
    data = form.fill(username, password)
    history.append(form.action)
    if form.method == "post":
        response = session.post(
            form.action, data=data, allow_redirects=False, timeout=timeout
        )
    else:
        response = session.get(
            form.action, params=data, allow_redirects=False, timeout=timeout
        )
    response, stopped = _follow(
        session, response, history, stop_at=stop_at, timeout=timeout
    )
    if stopped is None:
        again = parse_login_form(response.text, response.url)
        if again is not None:
            return response, None, again
    return response, stopped, None


@dataclass
class LoginResult:
    """Where a browserless login ended."""

    session: requests.Session
    response: requests.Response  # the last response received
    hub_url: str
    history: list[str] = field(default_factory=list)  # every URL visited
    login_error: str | None = None  # error shown by the provider's login form

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def url(self) -> str:
        return self.response.url

    @property
    def text(self) -> str:
        return self.response.text

    @property
    def on_hub(self) -> bool:
        return self.url.startswith(self.hub_url)

    @property
    def ok(self) -> bool:
        """Landed on a hub page without an error status."""
        return self.on_hub and self.status < 400 and self.login_error is None

    def describe(self) -> str:
        """Human-readable summary for assertion messages."""
        body = " ".join(self.text.split())[:600]
        return (
            f"{self.status} {self.url}\n  login_error={self.login_error!r}"
            f"\n  via: {' -> '.join(self.history)}\n  body: {body}"
        )

    def xsrf_token(self) -> str | None:
        """The hub's ``_xsrf`` cookie value (needed for non-GET API calls)."""
        host = urllib.parse.urlparse(self.hub_url).hostname
        best = None
        for cookie in self.session.cookies:
            if cookie.name == "_xsrf" and cookie.domain.lstrip(".") in (
                host,
                f"{host}.local",
            ):
                if best is None or len(cookie.path or "") > len(best.path or ""):
                    best = cookie
        return best.value if best else None

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call ``{hub}/hub/api/{path}`` with this login's cookies (+ xsrf)."""
        if method.upper() not in ("GET", "HEAD", "OPTIONS") and not self.xsrf_token():
            # the hub sets its _xsrf cookie on page views; fetch one
            self.session.get(
                self.hub_url + "hub/home", timeout=kwargs.get("timeout", 30)
            )
        headers = dict(kwargs.pop("headers", None) or {})
        token = self.xsrf_token()
        if token:
            headers.setdefault("X-XSRFToken", token)
        kwargs.setdefault("timeout", 30)
        url = self.hub_url + "hub/api/" + path.lstrip("/")
        return self.session.request(method, url, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET a hub page, e.g. ``result.get("hub/home")``."""
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.hub_url + path.lstrip("/"), **kwargs)


def login(
    hub_url: str,
    username: str,
    password: str,
    *,
    next_url: str | None = None,
    session: requests.Session | None = None,
    login_path: str = "hub/oauth_login",
    timeout: float = 30,
) -> LoginResult:
    """Log ``username`` into the hub at ``hub_url`` (its public URL, e.g.
    ``http://127.0.0.1:8000/`` including any base_url) via the OAuth flow.

    ``next_url`` (a path such as ``/hub/home``) is where the hub sends the user
    after login; without it JupyterHub picks (with ``redirect_to_server``
    that is ``/hub/spawn``, which starts a server!). If the provider already
    has a session for this ``session`` no form is shown. Never raises for
    refused logins: inspect ``result.ok``, ``result.status`` (403 for users the
    authenticator refuses), ``result.login_error`` (wrong password).
    """
    hub_url = hub_url.rstrip("/") + "/"
    session = session or requests.Session()
    history: list[str] = []
    start = hub_url + login_path.lstrip("/")
    if next_url:
        start += "?" + urllib.parse.urlencode({"next": next_url})
    history.append(start)
    response = session.get(start, allow_redirects=False, timeout=timeout)
    response, _ = _follow(session, response, history, stop_at=None, timeout=timeout)
    login_error = None
    if not response.url.startswith(hub_url):
        response, _, refused = _submit(
            session,
            response,
            username,
            password,
            history,
            stop_at=None,
            timeout=timeout,
        )
        if refused is not None:
            login_error = refused.error or "login form shown again"
    return LoginResult(
        session=session,
        response=response,
        hub_url=hub_url,
        history=history,
        login_error=login_error,
    )


@dataclass
class AuthorizeResult:
    """Outcome of :func:`authorize`."""

    redirect: str | None  # the redirect_uri URL the provider sent the user to
    params: dict[str, str]  # its query parameters (code, state, iss / error...)
    response: requests.Response  # last response (the form page if refused)
    login_error: str | None = None

    @property
    def code(self) -> str | None:
        return self.params.get("code")


def authorize(
    session: requests.Session,
    authorize_url: str,
    params: dict[str, str],
    username: str,
    password: str,
    *,
    timeout: float = 30,
) -> AuthorizeResult:
    """Act as the user at a provider's authorization endpoint.

    Sends the authorization request, fills in the login form if one is shown,
    and returns the parameters the provider sends back to ``redirect_uri``
    (which is never requested). For tests that are the OAuth client themselves.
    """
    redirect_uri = params["redirect_uri"]
    history: list[str] = []
    url = (
        authorize_url
        + ("&" if "?" in authorize_url else "?")
        + urllib.parse.urlencode(params)
    )
    history.append(url)
    response = session.get(url, allow_redirects=False, timeout=timeout)
    response, stopped = _follow(
        session, response, history, stop_at=redirect_uri, timeout=timeout
    )
    login_error = None
    if stopped is None:
        response, stopped, refused = _submit(
            session,
            response,
            username,
            password,
            history,
            stop_at=redirect_uri,
            timeout=timeout,
        )
        if refused is not None:
            login_error = refused.error or "login form shown again"
    query = (
        dict(urllib.parse.parse_qsl(urllib.parse.urlparse(stopped).query))
        if stopped
        else {}
    )
    return AuthorizeResult(
        redirect=stopped, params=query, response=response, login_error=login_error
    )
