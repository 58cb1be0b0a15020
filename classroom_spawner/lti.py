"""ClassroomLTI13Authenticator: log in from the course page of an LMS (LTI 1.3).

jupyterhub-ltiauthenticator's ``LTI13Authenticator`` does the launch (third
party initiated login, the OIDC implicit flow, state and nonce); on top of it:

- the launch's context claim picks the course (the course file's
  ``lms_contexts:``), its roles claim the role (:mod:`.authz.lti_claims`), and
  :class:`~classroom_spawner.authz.RosterAuthenticatorMixin` turns that into
  groups and scoped staff roles as for every other login;
- a launch from a course the hub does not serve, from an unknown deployment,
  or with no role we map is refused with a page that says so;
- the platform's signing keys are fetched without blocking the hub
  (:class:`JWKSCache`), and the tool's own public key is served at
  ``/hub/lti13/jwks`` for the LMS's client-credentials check;
- with the NRPS claim and :attr:`~ClassroomLTI13Authenticator.nrps_token_url`,
  the course's membership list is read from the LMS
  (:mod:`.roster.nrps`) and used as a roster source next to the files;
- a launch naming a lesson notebook lands in JupyterLab with it open.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlparse

import jwt
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from ltiauthenticator.lti13.auth import LTI13Authenticator
from ltiauthenticator.lti13.error import (
    InvalidAudienceError,
    LoginError,
    ValidationError,
)
from ltiauthenticator.lti13.handlers import (
    LTI13CallbackHandler,
    LTI13ConfigHandler,
    LTI13LoginInitHandler,
)
from ltiauthenticator.lti13.validator import LTI13LaunchValidator
from ltiauthenticator.utils import convert_request_to_dict
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Dict, Float, List, Set, Unicode, default, validate

from .authz import RosterAuthenticatorMixin
from .authz.claims import merge_memberships
from .authz.errors import CANNOT_LOG_IN, NOT_ON_A_ROSTER, titled_error
from .authz.lti_claims import (
    DEFAULT_ROLE_MAP,
    DEPLOYMENT_CLAIM,
    NRPS_CLAIM,
    ROLES_CLAIM,
    context_index,
    launch_context,
    lesson_link,
    loggable_roles,
    lti_role,
    parse_role_map,
)
from .roster import Role, Roster, parse_role
from .roster.nrps import NRPS_SCOPE, LMSRosters, TokenEndpoint

__all__ = ["ClassroomLTI13Authenticator", "LAUNCHES_KEY"]

#: auth_state key of the courses a person launched into: ``{course: {"role", "at"}}``
LAUNCHES_KEY = "lti_launches"


class JWKSCache:
    """The platform's public keys, fetched with tornado's async client and cached.

    An unknown ``kid`` (the platform rotated its key) fetches the set again, at
    most once per ``min_refetch`` seconds.
    """

    def __init__(
        self, url: str, ttl: float = 300, min_refetch: float = 10, timeout: float = 10
    ):
        self.url = url
        self.ttl = ttl
        self.min_refetch = min_refetch
        self.timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched = -1e9
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None):
        age = time.monotonic() - self._fetched
        if kid in self._keys and age < self.ttl:
            return self._keys[kid]
        async with self._lock:
            age = time.monotonic() - self._fetched
            if age >= self.min_refetch or (kid not in self._keys and age >= self.ttl):
                await self._fetch()
        if kid not in self._keys:
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise ValidationError(
                f"the platform's key set has no key {str(kid)[:40]!r}"
            )
        return self._keys[kid]

    async def _fetch(self) -> None:
        try:
            response = await AsyncHTTPClient().fetch(
                self.url, request_timeout=self.timeout
            )
            keys = jwt.PyJWKSet.from_json(response.body.decode("utf8", "replace"))
        except (HTTPClientError, OSError, asyncio.TimeoutError) as e:
            raise ValidationError(
                f"cannot fetch the platform's keys from {self.url}: {e}"
            ) from None
        except jwt.PyJWTError as e:
            raise ValidationError(
                f"the platform's key set at {self.url} is not usable: {e}"
            ) from None
        self._keys = {k.key_id: k.key for k in keys.keys}
        self._fetched = time.monotonic()


class ClassroomLTI13CallbackHandler(LTI13CallbackHandler):
    """The launch callback: the id_token checked without blocking, our refusal pages,
    and the lesson link as the next URL."""

    _classroom_next: str | None = None

    async def post(self):
        try:
            id_token = await self._verified_launch()
        except InvalidAudienceError as e:
            self.log.warning("LTI launch refused: %s", str(e)[:300])
            raise titled_error(
                401, f"The launch was not meant for this hub: {e}", CANNOT_LOG_IN
            )
        except ValidationError as e:
            self.log.warning("LTI launch refused: %s", str(e)[:300])
            raise titled_error(
                400,
                f"The launch from your course page could not be verified: {e}",
                CANNOT_LOG_IN,
            )
        try:
            user = await self.login_user(id_token)
        except LoginError as e:
            raise titled_error(400, str(e), CANNOT_LOG_IN)
        if user is None:
            raise titled_error(
                403, self.authenticator.custom_403_message, NOT_ON_A_ROSTER
            )
        await self.redirect_to_next_url(user)

    async def _verified_launch(self) -> dict:
        authenticator = self.authenticator
        validator = LTI13LaunchValidator(parent=self.app)
        args = convert_request_to_dict(self.request.arguments)
        validator.validate_auth_response(args)
        self.check_state()
        encoded = args["id_token"]
        try:
            header = jwt.get_unverified_header(encoded)
        except jwt.PyJWTError as e:
            raise ValidationError(f"the id_token is not a JWT: {e}") from None
        key = await authenticator.platform_keys.key(header.get("kid"))
        try:
            id_token = jwt.decode(
                encoded,
                key,
                algorithms=authenticator.jwks_algorithms,
                audience=list(authenticator.client_id),
                issuer=authenticator.issuer,
                leeway=validator.time_leeway,
            )
        except jwt.InvalidAudienceError as e:
            raise InvalidAudienceError(str(e)) from None
        except jwt.PyJWTError as e:
            raise ValidationError(f"id_token rejected: {e}") from None
        validator.validate_id_token(id_token)
        validator.validate_azp_claim(id_token, authenticator.client_id)
        self.check_nonce(id_token)
        return id_token

    def get_next_url(self, user=None):
        if self._classroom_next:
            return self._classroom_next
        return super().get_next_url(user)


class ClassroomLTI13LoginInitHandler(LTI13LoginInitHandler):
    """The login initiation, with state and nonce cookies that come back on the
    LMS's cross-site form post: ``SameSite=None; Secure`` over https (browsers
    send a default, ``Lax``, cookie on a cross-site POST never, so every launch
    from an LMS on another site would fail its state check)."""

    def _set_oauth_cookie(self, key: str, value):
        overrides = {}
        if self.authenticator.get_uri_scheme(self.request) == "https":
            overrides = {"samesite": "None", "secure": True}
        # ten minutes are plenty for the round trip through the LMS
        self._set_cookie(
            key, value, expires_days=1 / 144, httponly=True, encrypted=True, **overrides
        )


class ClassroomLTI13ConfigHandler(LTI13ConfigHandler):
    """ltiauthenticator's tool configuration JSON (Canvas's "Enter URL" / "Paste
    JSON"), with the tool's public key URL when the hub has a tool key."""

    def write(self, chunk):
        if isinstance(chunk, str) and self.authenticator.tool_public_jwk() is not None:
            config = json.loads(chunk)
            protocol = self.authenticator.get_uri_scheme(self.request)
            config["public_jwk_url"] = (
                f"{protocol}://{self.request.host}"
                + url_path_join(self.hub.base_url, "lti13/jwks")
            )
            config["scopes"] = sorted(set(config.get("scopes") or ()) | {NRPS_SCOPE})
            chunk = json.dumps(config)
        return super().write(chunk)


class ToolJWKSHandler(BaseHandler):
    """The tool's public key, for the LMS to check the tool's client assertions."""

    def get(self):
        jwk = self.authenticator.tool_public_jwk()
        if jwk is None:
            raise web.HTTPError(
                404, "This hub has no tool key configured (tool_private_key_file)"
            )
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"keys": [jwk]}))


class ClassroomLTI13Authenticator(RosterAuthenticatorMixin, LTI13Authenticator):
    """LTI 1.3 launches from an LMS course page, admitting the course's people.

    Configure the platform as for ``LTI13Authenticator`` (``issuer``,
    ``client_id``, ``authorize_url``, ``jwks_endpoint``), the course mapping in
    the course file (``lms_contexts:``), and for rosters from the LMS
    :attr:`nrps_token_url` and :attr:`tool_private_key_file`.
    """

    login_handler = ClassroomLTI13LoginInitHandler
    config_handler = ClassroomLTI13ConfigHandler
    callback_handler = ClassroomLTI13CallbackHandler

    # the mixin's OAuthenticator-only names: an LMS has no groups claim
    admin_groups = Set()
    allowed_groups = Set()
    auth_state_groups_key = ""
    user_auth_state_key = LAUNCHES_KEY

    custom_403_message = Unicode(
        config=True,
        help="""
        The page shown to someone the hub refuses after a launch. By default it
        says they are on no roster of a course this hub serves, and whom to
        contact (:attr:`roster_contact`).
        """,
    )

    @property
    def username_claim(self):
        return self.username_key

    deployment_ids = List(
        Unicode(),
        config=True,
        help="""
        The LTI deployment ids this hub accepts launches from (the platform
        shows them when the tool is deployed, e.g. Canvas's "Deployment ID").
        A launch from any other deployment is refused. Empty accepts every
        deployment of the registered client id; set it in production.
        """,
    )

    lti_role_map = Dict(
        config=True,
        help="""
        LIS role URI -> ``student``, ``ta``, ``instructor`` or ``None`` (no
        access), merged over the default table (see the LTI documentation).
        Keys are full URIs or relative to ``http://purl.imsglobal.org/vocab/lis/v2/``.

        Example (mentors may look at their mentees' work)::

            c.ClassroomLTI13Authenticator.lti_role_map = {"membership#Mentor": "ta"}
        """,
    )

    @validate("lti_role_map")
    def _validate_lti_role_map(self, proposal):
        parse_role_map(proposal.value)
        return proposal.value

    trust_launch_roles = Bool(
        True,
        config=True,
        help="""
        Whether a launch's course and role count on their own, as the LMS's
        signed word, until a membership list fetched from the LMS after the
        launch says otherwise.

        False: only the rosters (course files and the LMS's membership lists)
        admit people; the launch picks the course and the lesson, and waits
        (at most :attr:`nrps_launch_timeout`) for the course's list.
        """,
    )

    nrps_token_url = Unicode(
        "",
        config=True,
        help="""
        The platform's OAuth2 token endpoint for LTI Advantage services
        (Canvas: ``https://<canvas>/login/oauth2/token``; Moodle:
        ``https://<moodle>/mod/lti/token.php``). With it and
        :attr:`tool_private_key_file`, every course launched from with the
        Names and Role Provisioning claim gets its roster from the LMS.
        """,
    )

    nrps_token_audience = Unicode(
        "",
        config=True,
        help="""
        The ``aud`` of the tool's signed client assertion, if the platform
        wants another than the token endpoint's URL (Canvas in some hosted
        set-ups wants ``https://canvas.instructure.com/login/oauth2/token``).
        """,
    )

    tool_private_key_file = Unicode(
        "",
        config=True,
        help="""
        PEM file with the tool's RSA private key, which signs the client
        assertions for the LMS's token endpoint. Its public half is served at
        ``/hub/lti13/jwks`` (give that URL to the LMS as the tool's public JWK
        URL). Make one with ``openssl genpkey -algorithm RSA -pkeyopt
        rsa_keygen_bits:2048 -out tool-key.pem``.
        """,
    )

    tool_key_id = Unicode(
        "classroom-tool-1",
        config=True,
        help="The ``kid`` of the tool's key (change it when you replace the key).",
    )

    nrps_sync_interval = Float(
        600,
        config=True,
        help="""
        Seconds between fetches of every known course's membership list from
        the LMS (0: only at launches). A failed fetch keeps the last good list.
        """,
    )

    nrps_launch_timeout = Float(
        10,
        config=True,
        help="""
        At most this many seconds a launch waits for its course's membership
        list (fetched at launches at most every 10 s per course). The fetch
        goes on in the background if it takes longer.
        """,
    )

    lms_roster_file = Unicode(
        "classroom-lms-rosters.json",
        config=True,
        help="""
        JSON file (relative to the hub's working directory) where the
        membership lists from the LMS are kept, so that a restarted hub has
        the last good ones; ``classroom-spawner check`` shows them (reading the
        file relative to the config file's folder). Empty: keep
        them in memory only.
        """,
    )

    @default("custom_403_message")
    def _custom_403_message_default(self):
        return (
            "Sorry, you are not on the roster of this course on this hub. If you think"
            f" you should be, contact {self.roster_contact} and tell them which course"
            " page you came from."
        )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._role_table = {
            **parse_role_map(DEFAULT_ROLE_MAP),
            **parse_role_map(self.lti_role_map),
        }
        self.platform_keys = JWKSCache(self.jwks_endpoint)
        self._tool_key = None
        self.lms_rosters: LMSRosters | None = None
        self._lms_started: asyncio.Future | None = None
        if self.tool_private_key_file:
            from cryptography.hazmat.primitives.serialization import (
                load_pem_private_key,
            )

            with open(self.tool_private_key_file, "rb") as f:
                self._tool_key = load_pem_private_key(f.read(), password=None)
        if self.nrps_token_url:
            if self._tool_key is None:
                raise ValueError(
                    f"{type(self).__name__}.nrps_token_url needs tool_private_key_file"
                    " (the key that signs the tool's requests to the LMS)"
                )
            self.lms_rosters = LMSRosters(
                TokenEndpoint(
                    url=self.nrps_token_url,
                    client_id=sorted(self.client_id)[0] if self.client_id else "",
                    private_key=self._tool_key,
                    kid=self.tool_key_id,
                    audience=self.nrps_token_audience,
                ),
                username=self._member_username,
                role=lambda roles: lti_role(roles, self._role_table)[0],
                publish=lambda lists: self.roster.set_extra_members("lms", lists),
                log=self.log,
                state_file=(
                    os.path.abspath(self.lms_roster_file)
                    if self.lms_roster_file
                    else ""
                ),
                interval=self.nrps_sync_interval,
            )
        if not self.deployment_ids:
            self.log.warning(
                "%s.deployment_ids is empty: launches from every deployment of client id %s are accepted",
                type(self).__name__,
                sorted(self.client_id),
            )

    # -- the hub's life ------------------------------------------------------

    def get_handlers(self, app):
        return list(super().get_handlers(app)) + [(r"/lti13/jwks", ToolJWKSHandler)]

    async def _start_lms_rosters(self) -> None:
        """Read the saved lists from the LMS and start the schedule, once: at hub
        start (with ``manage_roles``), else at the first login or refresh."""
        if self.lms_rosters is None or self._lms_started is not None:
            return
        self._lms_started = asyncio.ensure_future(self.lms_rosters.load_state())
        await self._lms_started
        self.lms_rosters.start()

    async def load_managed_roles(self):
        # JupyterHub calls it at start-up, on the running event loop
        await self._start_lms_rosters()
        return await super().load_managed_roles()

    def tool_public_jwk(self) -> dict | None:
        if self._tool_key is None:
            return None
        jwk = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(self._tool_key.public_key())
        )
        jwk.update({"kid": self.tool_key_id, "alg": "RS256", "use": "sig"})
        return jwk

    # -- launches ------------------------------------------------------------

    @property
    def _uses_claims(self) -> bool:
        # a launch's course and role are the provider's claims here
        return True

    async def get_provider_groups(self, auth_state):
        return set()

    def _member_username(self, member: Mapping[str, Any]) -> str | None:
        """A username for a member of an NRPS list, by :attr:`username_key`."""
        key = self.username_key or "sub"
        value = member.get("user_id") if key == "sub" else member.get(key)
        if not isinstance(value, str) or not value.strip():
            return None
        return self.normalize_username(value)

    def _refuse(self, status: int, message: str, log_message: str, *args) -> None:
        self.log.warning("LTI launch refused: " + log_message, *args)
        raise titled_error(status, message, CANNOT_LOG_IN)

    async def authenticate(self, handler, data=None):
        id_token = data or {}
        deployment = id_token.get(DEPLOYMENT_CLAIM)
        if self.deployment_ids and deployment not in self.deployment_ids:
            self._refuse(
                403,
                "This hub does not accept launches from that LMS deployment. Please contact"
                f" {self.roster_contact}.",
                "deployment id %r is not in deployment_ids",
                str(deployment)[:80],
            )
        model = await super().authenticate(handler, data)
        username = model["name"] = self.normalize_username(str(model["name"]))
        roster = await self.roster.current()
        context_id, title = launch_context(id_token)
        # (two courses never list the same context: reading the course files refuses it)
        course_id = (
            context_index(roster.courses).courses.get(context_id)
            if context_id
            else None
        )
        if course_id is None:
            self._refuse(
                403,
                f"This hub does not serve the course you came from{f' ({title})' if title else ''}."
                f" If it should, ask {self.roster_contact} to add it.",
                "%s came from LMS context %r (%r), which no course lists in lms_contexts",
                username,
                (context_id or "")[:80],
                title[:80],
            )
        role, notes = lti_role(id_token.get(ROLES_CLAIM), self._role_table)
        for note in notes:
            self.log.debug("%s: %s", username, note)
        if role is None:
            self._refuse(
                403,
                f"Your role in this course gives no access to this hub. Please contact {self.roster_contact}.",
                "%s has no role we map in %s (roles %s)",
                username,
                course_id,
                loggable_roles(id_token.get(ROLES_CLAIM)),
            )
        auth_state = model["auth_state"] = dict(model.get("auth_state") or {})
        await self._sync_at_launch(course_id, id_token)
        launches = await self._previous_launches(handler, username)
        # stamped after the sync at launch: the launch counts at this login, and
        # after it, until a list fetched later from the LMS says otherwise
        launches[course_id] = {"role": role.value, "at": time.time()}
        auth_state[LAUNCHES_KEY] = launches
        link, why_not = lesson_link(id_token, roster.course(course_id))
        if why_not:
            self.log.warning("%s: lesson link ignored: %s", username, why_not)
        elif link is not None and handler is not None:
            handler._classroom_next = url_path_join(
                self.parent.base_url if self.parent is not None else "/",
                "hub/user-redirect/lab/tree",
                quote(link.path),
            )
        self.log.info("LTI launch: %s into %s as %s", username, course_id, role)
        return await self._apply_roster(model)

    async def _previous_launches(self, handler, username: str) -> dict:
        """The launches stored at the person's earlier logins (other courses stay)."""
        if handler is None or not self.enable_auth_state:
            return {}
        user = handler.find_user(username)
        if user is None:
            return {}
        state = await user.get_auth_state()
        previous = (state or {}).get(LAUNCHES_KEY)
        return dict(previous) if isinstance(previous, Mapping) else {}

    async def _sync_at_launch(
        self, course_id: str, id_token: Mapping[str, Any]
    ) -> None:
        service = id_token.get(NRPS_CLAIM)
        if self.lms_rosters is None or not isinstance(service, Mapping):
            return
        url = service.get("context_memberships_url")
        if not isinstance(url, str) or urlparse(url).scheme not in ("https", "http"):
            self.log.warning(
                "Launch into %s: unusable NRPS membership URL %r",
                course_id,
                str(url)[:120],
            )
            return
        sync = asyncio.ensure_future(self.lms_rosters.launched(course_id, url))
        try:
            await asyncio.wait_for(asyncio.shield(sync), self.nrps_launch_timeout)
        except asyncio.TimeoutError:
            self.log.warning(
                "LMS roster of %s: still fetching after %ss; the launch goes on",
                course_id,
                self.nrps_launch_timeout,
            )

    def _launch_memberships(self, auth_state, roster: Roster) -> dict[str, Role]:
        """The launches that still count: newer than the course's last list from the LMS."""
        if not self.trust_launch_roles or not isinstance(auth_state, Mapping):
            return {}
        launches = auth_state.get(LAUNCHES_KEY)
        if not isinstance(launches, Mapping):
            return {}
        claimed: dict[str, Role] = {}
        for course_id, entry in launches.items():
            if course_id not in roster.courses or not isinstance(entry, Mapping):
                continue
            try:
                role = parse_role(entry.get("role"))
                at = float(entry.get("at"))
            except (TypeError, ValueError):
                continue
            synced = self.lms_rosters.synced_at(course_id) if self.lms_rosters else None
            if synced is not None and synced > at:
                continue  # the LMS's list is newer: it decides
            claimed[course_id] = role
        return claimed

    async def _memberships(self, username, auth_state):
        await self._start_lms_rosters()
        if self._lms_started is not None and not self._lms_started.done():
            await asyncio.shield(self._lms_started)
        roster = await self.roster.current()
        rostered = roster.memberships(username)
        claimed = self._launch_memberships(auth_state, roster)
        return roster, merge_memberships(rostered, claimed), claimed, set()


def lms_roster_report(config, roster: Roster, config_dir: str) -> list[str]:
    """What ``classroom-spawner check`` prints about the LMS: each course's
    context ids and the membership list saved in :attr:`~ClassroomLTI13Authenticator.lms_roster_file`
    (relative to ``config_dir``, the hub's folder, when relative)."""
    from .roster.nrps import read_state

    section = config.get("ClassroomLTI13Authenticator", {})
    path = section.get(
        "lms_roster_file", ClassroomLTI13Authenticator.lms_roster_file.default_value
    )
    lines = []
    saved = {}
    if path:
        path = os.path.join(config_dir, path)
        try:
            saved = read_state(path)
        except (OSError, ValueError) as e:
            lines.append(f"LMS rosters: cannot read {path}: {e}")
    for course in roster.courses.values():
        if not course.lms_contexts:
            continue
        entry = saved.get(course.id)
        if entry is None or entry.synced_at is None:
            state = "no list from the LMS yet (fetched at the first launch)"
        else:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(entry.synced_at))
            state = f"{len(entry.members)} people from the LMS, fetched {when}"
        if entry is not None and entry.error:
            state += f"; the last fetch failed: {entry.error}"
        lines.append(f"LMS {course.id} <- {', '.join(course.lms_contexts)}: {state}")
    return lines
