"""Launch into a hub from the local LTI platform without a browser.

One ``requests.Session`` goes where a browser would::

    GET  {lms}/launch?context&user        -> 302 to {hub}/hub/lti13/oauth_login?iss&login_hint...
    GET  {hub}/hub/lti13/oauth_login      -> state and nonce cookies, 302 to {lms}/auth?...
    GET  {lms}/auth?...                   -> a form that posts id_token and state
    POST {hub}/hub/lti13/oauth_callback   -> login cookie, 302 to the next URL
                                             (or a refusal page)

Blocking (``requests``): call it from a thread when the platform runs on the
caller's event loop (``await asyncio.to_thread(launch, ...)``).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser

import requests

REDIRECT_CODES = {301, 302, 303, 307, 308}


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.action = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")


@dataclass
class LaunchResult:
    status: int
    url: str  # where the last response came from
    location: str = ""  # the hub's redirect after the callback, if any
    text: str = ""
    session: requests.Session = field(default=None, repr=False)
    hub_url: str = ""
    _page_viewed: bool = field(default=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status in REDIRECT_CODES and bool(self.location)

    @property
    def message(self) -> str:
        """The error page's text, roughly (for assertions on refusals)."""
        return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", self.text))).strip()

    def xsrf_token(self) -> str | None:
        """The hub's ``_xsrf`` cookie that API requests send (the most specific path
        that ``/hub/api/`` is under; the hub may set others, e.g. for its login pages).
        """
        best = None
        for cookie in self.session.cookies:
            path = cookie.path or "/"
            if cookie.name == "_xsrf" and "/hub/api/".startswith(
                path.rstrip("/") + "/"
            ):
                if best is None or len(path) > len(best.path or "/"):
                    best = cookie
        return best.value if best else None

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """``{hub}/hub/api/{path}`` with this login's cookies (and the xsrf token)."""
        if method.upper() not in ("GET", "HEAD") and not self._page_viewed:
            # the hub sets an _xsrf cookie for the logged-in session on page views
            # (JupyterHub 5.1 refuses the one from before the login)
            self.session.get(self.hub_url.rstrip("/") + "/hub/home", timeout=30)
            self._page_viewed = True
        headers = dict(kwargs.pop("headers", None) or {})
        token = self.xsrf_token()
        if token:
            headers.setdefault("X-XSRFToken", token)
        return self.session.request(
            method,
            self.hub_url.rstrip("/") + "/hub/api/" + path.lstrip("/"),
            headers=headers,
            timeout=30,
            **kwargs,
        )

    def describe(self) -> str:
        return f"HTTP {self.status} at {self.url} -> {self.location!r}: {self.message[:400]}"


def launch(
    launch_url: str,
    hub_url: str,
    *,
    timeout: float = 30,
    session: requests.Session | None = None,
) -> LaunchResult:
    """Follow a launch link to the hub's answer to the callback."""
    s = session or requests.Session()
    url = launch_url
    for _ in range(10):
        r = s.get(url, allow_redirects=False, timeout=timeout)
        if r.status_code in REDIRECT_CODES:
            url = urllib.parse.urljoin(url, r.headers["Location"])
            continue
        break
    else:
        raise RuntimeError(f"too many redirects, last {url}")
    if r.status_code != 200 or "<form" not in r.text:
        return LaunchResult(r.status_code, url, text=r.text, session=s, hub_url=hub_url)
    parser = _FormParser()
    parser.feed(r.text)
    action = urllib.parse.urljoin(url, parser.action or "")
    r = s.post(action, data=parser.fields, allow_redirects=False, timeout=timeout)
    return LaunchResult(
        r.status_code,
        action,
        location=(
            r.headers.get("Location", "") if r.status_code in REDIRECT_CODES else ""
        ),
        text=r.text,
        session=s,
        hub_url=hub_url,
    )
