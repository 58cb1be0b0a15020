"""A local LTI 1.3 platform (a tiny LMS) for tests and the demo.

What a real LMS (Canvas, Moodle) does for a tool, and nothing else:

- ``GET /`` -- the course pages: each course's launch links, one per member
  (a person in a browser clicks the one they want to be);
- ``GET /launch?context=..&user=..[&link=..]`` -- third-party initiated
  login: redirects to the tool's login initiation URL with ``iss``,
  ``login_hint``, ``lti_message_hint``, ``target_link_uri``, ``client_id`` and
  ``lti_deployment_id``;
- ``GET|POST /auth`` -- the OIDC authorization endpoint: checks the tool's
  client id and redirect URI, then posts a signed id_token (RS256, ``kid``)
  with the launch's claims to the tool (an auto-submitting form);
- ``GET /jwks`` -- the platform's public key;
- ``POST /token`` -- the client-credentials grant: checks the tool's signed
  JWT against the tool's public key, gives an access token;
- ``GET /nrps/<context>`` -- the course's membership list (NRPS v2), paged
  with ``Link: rel="next"``.

:attr:`LTIPlatform.tamper` makes it misbehave for the bad-input tests:
``expired`` (an id_token past its ``exp``), ``nonce`` (not the tool's nonce),
``deployment`` (an unknown deployment id), ``signature`` (the token altered
after signing), ``nrps_not_json`` (an HTML page instead of the list),
``nrps_down`` (HTTP 503 from the membership list), ``nrps_next_elsewhere`` (a
``Link: rel="next"`` to another host).

Usage::

    async with LTIPlatform(tool_url="http://127.0.0.1:8000/") as lms:
        lms.add_course("canvas-ds101", "Data Science 101")
        lms.add_member("canvas-ds101", "alice", roles=["Learner"])
        config = lms.authenticator_config()  # for c.ClassroomLTI13Authenticator
"""

from __future__ import annotations

import html
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado import httpserver, web
from tornado.netutil import bind_sockets

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"

TAMPERS = frozenset(
    {
        "expired",
        "nonce",
        "deployment",
        "signature",
        "nrps_not_json",
        "nrps_down",
        "nrps_next_elsewhere",
    }
)


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_jwk(key, kid: str) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return jwk


def role_uri(role: str) -> str:
    """``Learner`` -> the LIS membership URI; full URIs and ``institution/...`` pass."""
    if role.startswith("http"):
        return role
    if "/" in role or "#" in role:
        return LIS + role
    return f"{LIS}membership#{role}"


@dataclass
class Member:
    user_id: str
    roles: list[str]
    email: str
    name: str


@dataclass
class Context:
    id: str
    title: str
    members: dict[str, Member] = field(default_factory=dict)
    # launch links: name -> custom parameters (e.g. lesson/notebook)
    links: dict[str, dict[str, str]] = field(default_factory=dict)


class LTIPlatform:
    """The platform, served by tornado on the running event loop."""

    def __init__(
        self,
        tool_url: str = "",
        *,
        client_id: str = "classroom-hub",
        deployment_id: str = "deployment-1",
        tool_public_key=None,
        page_size: int = 2,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.tool_url = tool_url  # the hub's public URL, ending in /
        self.client_id = client_id
        self.deployment_id = deployment_id
        self.tool_public_key = tool_public_key  # checks the tool's client assertions
        self.page_size = page_size
        self.host = host
        self.port = port
        self.key = new_key()
        self.kid = "platform-" + secrets.token_hex(4)
        self.contexts: dict[str, Context] = {}
        self.tamper: set[str] = set()
        self.tokens: dict[str, float] = {}  # access token -> expiry
        self.nrps_requests = 0
        self.token_requests: list[str] = []  # "ok" or why a token was refused
        self._server = None

    # -- the courses -------------------------------------------------------

    def add_course(self, context_id: str, title: str) -> Context:
        context = self.contexts[context_id] = Context(context_id, title)
        return context

    def add_member(
        self,
        context_id: str,
        user_id: str,
        roles=("Learner",),
        email: str = "",
        name: str = "",
    ) -> None:
        self.contexts[context_id].members[user_id] = Member(
            user_id=user_id,
            roles=[role_uri(r) for r in roles],
            email=email or f"{user_id}@uni.example.edu",
            name=name or user_id.title(),
        )

    def remove_member(self, context_id: str, user_id: str) -> None:
        self.contexts[context_id].members.pop(user_id, None)

    def add_link(self, context_id: str, name: str, **custom: str) -> None:
        """A launch link on the course page, with custom parameters (``lesson``,
        ``notebook``, ...)."""
        self.contexts[context_id].links[name] = dict(custom)

    # -- URLs --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.url

    def launch_url(self, context_id: str, user_id: str, link: str = "") -> str:
        query = {"context": context_id, "user": user_id}
        if link:
            query["link"] = link
        return f"{self.url}/launch?{urlencode(query)}"

    def authenticator_config(self) -> dict[str, Any]:
        """What ``c.ClassroomLTI13Authenticator`` needs to trust this platform."""
        return {
            "issuer": self.issuer,
            "client_id": [self.client_id],
            "authorize_url": f"{self.url}/auth",
            "jwks_endpoint": f"{self.url}/jwks",
            "deployment_ids": [self.deployment_id],
            "nrps_token_url": f"{self.url}/token",
        }

    # -- lifecycle ---------------------------------------------------------

    def app(self) -> web.Application:
        return web.Application(
            [
                (r"/", CoursePageHandler, {"platform": self}),
                (r"/launch", LaunchHandler, {"platform": self}),
                (r"/auth", AuthHandler, {"platform": self}),
                (r"/jwks", JWKSHandler, {"platform": self}),
                (r"/token", TokenHandler, {"platform": self}),
                (r"/nrps/(.+)", NRPSHandler, {"platform": self}),
            ]
        )

    async def start(self) -> LTIPlatform:
        sockets = bind_sockets(self.port, self.host)
        self.port = sockets[0].getsockname()[1]
        self._server = httpserver.HTTPServer(self.app())
        self._server.add_sockets(sockets)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    async def __aenter__(self) -> LTIPlatform:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- tokens ------------------------------------------------------------

    def id_token(self, context: Context, member: Member, link: str, nonce: str) -> str:
        now = int(time.time())
        custom = dict(context.links.get(link, {}))
        target = self.tool_url
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "azp": self.client_id,
            "sub": member.user_id,
            "iat": now - (3600 if "expired" in self.tamper else 0),
            "exp": now + (-1800 if "expired" in self.tamper else 300),
            "nonce": ("not-" + nonce) if "nonce" in self.tamper else nonce,
            "email": member.email,
            "name": member.name,
            CLAIM + "message_type": "LtiResourceLinkRequest",
            CLAIM + "version": "1.3.0",
            CLAIM
            + "deployment_id": (
                "other-deployment"
                if "deployment" in self.tamper
                else self.deployment_id
            ),
            CLAIM + "target_link_uri": target,
            CLAIM
            + "resource_link": {
                "id": f"{context.id}-{link or 'course'}",
                "title": link or context.title,
            },
            CLAIM
            + "context": {
                "id": context.id,
                "label": context.id,
                "title": context.title,
            },
            CLAIM + "roles": list(member.roles),
            CLAIM + "custom": custom,
            NRPS_CLAIM: {
                "context_memberships_url": f"{self.url}/nrps/{context.id}",
                "service_versions": ["2.0"],
            },
        }
        token = jwt.encode(
            claims, self.key, algorithm="RS256", headers={"kid": self.kid}
        )
        if "signature" in self.tamper:
            head, body, signature = token.split(".")
            claims["sub"] = "someone-else"
            forged = jwt.encode(
                claims, new_key(), algorithm="RS256", headers={"kid": self.kid}
            )
            token = ".".join([head, forged.split(".")[1], signature])
        return token


class _Handler(web.RequestHandler):
    def initialize(self, platform: LTIPlatform):
        self.platform = platform

    def check_xsrf_cookie(self):
        return


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )


class CoursePageHandler(_Handler):
    def get(self):
        p = self.platform
        parts = ["<h1>Local LMS</h1>"]
        for context in p.contexts.values():
            parts.append(
                f"<section id='{html.escape(context.id)}'><h2>{html.escape(context.title)}</h2><ul>"
            )
            links = [""] + list(context.links)
            for member in context.members.values():
                for link in links:
                    label = (
                        f"Open {link} as {member.name}"
                        if link
                        else f"Open the hub as {member.name}"
                    )
                    url = p.launch_url(context.id, member.user_id, link)
                    parts.append(
                        f"<li><a class='launch' data-user='{html.escape(member.user_id)}'"
                        f" data-link='{html.escape(link)}' href='{html.escape(url)}'>{html.escape(label)}</a>"
                        f" ({html.escape(', '.join(r.rsplit('#', 1)[-1] for r in member.roles))})</li>"
                    )
            parts.append("</ul></section>")
        self.write(_page("Local LMS", "".join(parts)))


class LaunchHandler(_Handler):
    """Third-party initiated login: send the browser to the tool's login URL."""

    def get(self):
        p = self.platform
        context_id = self.get_argument("context")
        user_id = self.get_argument("user")
        if context_id not in p.contexts:
            raise web.HTTPError(404, "no such course")
        hint = json.dumps(
            {"context": context_id, "link": self.get_argument("link", "")}
        )
        query = {
            "iss": p.issuer,
            "login_hint": user_id,
            "lti_message_hint": hint,
            "target_link_uri": p.tool_url,
            "client_id": p.client_id,
            "lti_deployment_id": p.deployment_id,
        }
        self.redirect(
            urljoin(p.tool_url, "hub/lti13/oauth_login") + "?" + urlencode(query)
        )


class AuthHandler(_Handler):
    """The OIDC authorization endpoint: posts the id_token to the tool."""

    def get(self):
        p = self.platform
        args = {
            k: self.get_argument(k, "")
            for k in ("client_id", "redirect_uri", "login_hint", "nonce", "state")
        }
        args["lti_message_hint"] = self.get_argument("lti_message_hint", "")
        if (
            self.get_argument("response_type", "") != "id_token"
            or self.get_argument("scope", "") != "openid"
        ):
            raise web.HTTPError(400, "response_type must be id_token and scope openid")
        if args["client_id"] != p.client_id:
            raise web.HTTPError(400, "unknown client_id")
        if not args["redirect_uri"].startswith(
            urljoin(p.tool_url, "hub/lti13/oauth_callback")
        ):
            raise web.HTTPError(400, "redirect_uri is not the tool's registered one")
        try:
            hint = json.loads(args["lti_message_hint"])
            context = p.contexts[hint["context"]]
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(400, "bad lti_message_hint")
        member = context.members.get(args["login_hint"])
        if member is None:
            raise web.HTTPError(403, "not a member of this course")
        token = p.id_token(context, member, hint.get("link", ""), args["nonce"])
        fields = {"id_token": token, "state": args["state"]}
        inputs = "".join(
            f"<input type='hidden' name='{k}' value='{html.escape(v)}'>"
            for k, v in fields.items()
        )
        self.write(
            _page(
                "Launching",
                f"<form id='launch' method='post' action='{html.escape(args['redirect_uri'])}'>{inputs}"
                "<noscript><button type='submit'>Continue</button></noscript></form>"
                "<script>document.getElementById('launch').submit()</script>",
            )
        )

    post = get


class JWKSHandler(_Handler):
    def get(self):
        p = self.platform
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"keys": [public_jwk(p.key, p.kid)]}))


class TokenHandler(_Handler):
    """The client-credentials grant with a signed JWT (LTI Advantage)."""

    def refuse(self, why: str):
        self.platform.token_requests.append(why)
        self.set_status(400 if why != "invalid_client" else 401)
        self.write({"error": why})

    def post(self):
        p = self.platform
        if self.get_argument("grant_type", "") != "client_credentials":
            return self.refuse("unsupported_grant_type")
        if (
            self.get_argument("client_assertion_type", "")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return self.refuse("invalid_request")
        if NRPS_SCOPE not in self.get_argument("scope", "").split():
            return self.refuse("invalid_scope")
        if p.tool_public_key is None:
            return self.refuse("invalid_client")
        try:
            claims = jwt.decode(
                self.get_argument("client_assertion", ""),
                p.tool_public_key,
                algorithms=["RS256"],
                audience=f"{p.url}/token",
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError:
            return self.refuse("invalid_client")
        if claims["iss"] != p.client_id or claims["sub"] != p.client_id:
            return self.refuse("invalid_client")
        token = secrets.token_urlsafe(24)
        p.tokens[token] = time.time() + 3600
        p.token_requests.append("ok")
        self.write(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": NRPS_SCOPE,
            }
        )


class NRPSHandler(_Handler):
    def get(self, context_id):
        p = self.platform
        p.nrps_requests += 1
        auth = self.request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if p.tokens.get(token, 0) < time.time():
            raise web.HTTPError(401)
        if "nrps_down" in p.tamper:
            raise web.HTTPError(503)
        context = p.contexts.get(context_id)
        if context is None:
            raise web.HTTPError(404)
        if "nrps_not_json" in p.tamper:
            self.write(_page("Maintenance", "<h1>The LMS is down for maintenance</h1>"))
            return
        members = list(context.members.values())
        start = int(self.get_argument("offset", "0"))
        page = members[start : start + p.page_size]
        if "nrps_next_elsewhere" in p.tamper:
            self.set_header(
                "Link", '<http://lms.attacker.example/nrps?offset=2>; rel="next"'
            )
        elif start + p.page_size < len(members):
            next_url = f"{p.url}/nrps/{context_id}?offset={start + p.page_size}"
            self.set_header("Link", f'<{next_url}>; rel="next"')
        self.set_header(
            "Content-Type", "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
        )
        self.write(
            json.dumps(
                {
                    "id": f"{p.url}/nrps/{context_id}",
                    "context": {
                        "id": context.id,
                        "label": context.id,
                        "title": context.title,
                    },
                    "members": [
                        {
                            "status": "Active",
                            "user_id": m.user_id,
                            "roles": m.roles,
                            "email": m.email,
                            "name": m.name,
                        }
                        for m in page
                    ],
                }
            )
        )


__all__ = ["LTIPlatform", "TAMPERS", "new_key", "private_pem", "public_jwk", "role_uri"]
