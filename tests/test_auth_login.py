"""ClassroomOAuthenticator through OAuthenticator's public entry points, against a fake provider.

In the style of OAuthenticator's own tests: an in-process OAuth2 provider
answers the authenticator's HTTP requests (token and userinfo endpoints, with
refresh tokens), a handler carries the authorization code, and every test goes
through ``get_authenticated_user`` (the whole allow pipeline) or
``refresh_user``. The fake provider below is our own, modelled on
oauthenticator's ``tests/mocks.py``; the roster is the real one, read from
files.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from io import BytesIO
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest
from tornado import web
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders
from traitlets.config import Config

from classroom_spawner.auth import (
    ClassroomGitHubOAuthenticator,
    ClassroomOAuthenticator,
)
from classroom_spawner.authz import (
    AUTH_STATE_KEY,
    DEFAULT_STAFF_SCOPES,
    claimed_courses,
)
from classroom_spawner.roster import Role, RosterError

# -- a fake OAuth2 / OpenID Connect provider ---------------------------------


class FakeProvider:
    """An OAuth2 provider that answers ``AsyncHTTPClient.fetch`` in-process.

    Endpoints (any host): ``POST <token_path>`` (authorization_code and
    refresh_token grants) and ``GET <userinfo_path>`` (Bearer token). Users are
    claim dicts; tests change them (or revoke their tokens) between a login and
    a refresh, as a real identity provider's admin would.
    """

    def __init__(
        self, token_path="/token", userinfo_path="/userinfo", extra_routes=None
    ):
        self.token_path = token_path
        self.userinfo_path = userinfo_path
        self.extra_routes = dict(extra_routes or {})
        self.claims = {}  # user key -> claims served by userinfo
        self.codes = {}  # code -> user key
        self.access_tokens = {}  # token -> user key
        self.refresh_tokens = {}
        self.down = False  # simulate an outage: every request fails to connect
        self.requests = []

    def handler_for(self, claims, key=None):
        """Register (or update) a user and return a login callback handler for them."""
        key = key or json.dumps(claims, sort_keys=True)
        self.claims[key] = claims
        code = secrets.token_urlsafe(8)
        self.codes[code] = key
        return FakeCallbackHandler(code)

    def revoke(self, key):
        for tokens in (self.access_tokens, self.refresh_tokens):
            for token, owner in list(tokens.items()):
                if owner == key:
                    del tokens[token]

    def _issue(self, key):
        access, refresh = secrets.token_hex(8), secrets.token_hex(8)
        self.access_tokens[access] = key
        self.refresh_tokens[refresh] = key
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "openid profile email",
        }

    async def fetch(self, request, raise_error=True, **kwargs):
        if not isinstance(request, HTTPRequest):
            request = HTTPRequest(request, **kwargs)
        self.requests.append(request)
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        url = urlparse(request.url)
        if url.path == self.token_path and request.method == "POST":
            code, body = self._token(parse_qs(request.body.decode()))
        elif url.path == self.userinfo_path:
            code, body = self._userinfo(request)
        elif url.path in self.extra_routes:
            code, body = self.extra_routes[url.path](self, request)
        else:
            code, body = 404, {"error": "not_found"}
        response = HTTPResponse(
            request,
            code,
            headers=HTTPHeaders({"Content-Type": "application/json"}),
            buffer=BytesIO(json.dumps(body).encode()),
        )
        if code >= 400 and raise_error:
            raise HTTPClientError(code, response=response)
        return response

    def _token(self, form):
        grant = form.get("grant_type", [""])[0]
        if grant == "authorization_code":
            if not form.get("code_verifier"):
                return 400, {
                    "error": "invalid_request",
                    "error_description": "PKCE verifier missing",
                }
            key = self.codes.pop(form.get("code", [""])[0], None)
        elif grant == "refresh_token":
            key = self.refresh_tokens.pop(form.get("refresh_token", [""])[0], None)
        else:
            return 400, {"error": "unsupported_grant_type"}
        if key is None:
            return 400, {
                "error": "invalid_grant",
                "error_description": "grant is invalid or expired",
            }
        return 200, self._issue(key)

    def _userinfo(self, request):
        auth = request.headers.get("Authorization", "")
        key = self.access_tokens.get(auth.partition(" ")[2])
        if key is None:
            return 401, {"error": "invalid_token"}
        return 200, self.claims[key]


class FakeCallbackHandler:
    """What OAuthenticator asks of the OAuth callback handler: the code and the state cookie."""

    def __init__(self, code):
        self.code = code
        state = {
            "state_id": secrets.token_hex(4),
            "code_verifier": secrets.token_urlsafe(32),
        }
        self._state = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()

    def get_argument(self, name, default=None):
        return self.code if name == "code" else default

    def get_state_cookie(self):
        return self._state


class HubUser:
    """The little of JupyterHub's User that ``refresh_user`` reads, and what the
    hub does with a login or refresh result (``auth_to_user``, simplified)."""

    def __init__(self, auth_model, enable_auth_state):
        self.name = auth_model["name"]
        self.admin = bool(auth_model.get("admin"))
        self.group_names = set(auth_model.get("groups") or ())
        self.role_names = {r["name"] for r in auth_model.get("roles") or ()}
        self.enable_auth_state = enable_auth_state
        self.auth_state = auth_model.get("auth_state") if enable_auth_state else None

    @property
    def groups(self):
        return [SimpleNamespace(name=n) for n in sorted(self.group_names)]

    @property
    def roles(self):
        return [SimpleNamespace(name=n) for n in sorted(self.role_names)]

    def sync_groups(self, names):
        self.group_names = set(names)

    def sync_roles(self, roles):
        self.role_names = {r["name"] for r in roles}

    async def get_auth_state(self):
        return (
            json.loads(json.dumps(self.auth_state))
            if self.auth_state is not None
            else None
        )

    def apply(self, model):
        if model is True or model is False:
            return
        if model.get("admin") is not None:
            self.admin = model["admin"]
        if model.get("groups") is not None:
            self.group_names = set(model["groups"])
        if model.get("roles") is not None:
            self.role_names = {r["name"] for r in model["roles"]}
        if "auth_state" in model and self.enable_auth_state:
            self.auth_state = model["auth_state"]


# -- fixtures -----------------------------------------------------------------

COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    instructors: [grace@uni.edu]
    tas: [alan@uni.edu]
    students: [alice@uni.edu, bob@uni.edu]
  - id: phys210
    title: Computational Physics
    instructors: [emmy@uni.edu]
    tas: [bob@uni.edu]
    students: [alice@uni.edu]
"""


@pytest.fixture
def course_file(write_file):
    return write_file("courses.yaml", COURSES)


@pytest.fixture
def provider():
    return FakeProvider()


@pytest.fixture
def make_auth(course_file, provider):
    """Build an authenticator the way a hub would from config, talking to the fake provider."""

    def make(class_config=None, cls=ClassroomOAuthenticator, **roster):
        c = Config()
        c.ClassroomRoster.course_files = [course_file]
        c.ClassroomRoster.check_interval = 0
        for key, value in roster.items():
            setattr(c.ClassroomRoster, key, value)
        section = getattr(c, cls.__name__)
        section.client_id = "hub"
        section.client_secret = "hub-secret"
        section.oauth_callback_url = "http://hub.example.edu/hub/oauth_callback"
        if cls is ClassroomOAuthenticator:
            section.token_url = "https://idp.example.edu/token"
            section.userdata_url = "https://idp.example.edu/userinfo"
            section.username_claim = "email"
        for key, value in (class_config or {}).items():
            setattr(section, key, value)
        return cls(config=c, http_client=provider)

    return make


async def login(auth, provider, claims, key=None):
    return await auth.get_authenticated_user(
        provider.handler_for(claims, key=key), None
    )


def role(model, name):
    return next(r for r in model["roles"] if r["name"] == name)


# -- who gets in ----------------------------------------------------------------


@pytest.mark.parametrize(
    "class_config, email, groups, expect_allowed, expect_admin",
    [
        # on a roster, in any role
        ({}, "alice@uni.edu", [], True, None),
        ({}, "alan@uni.edu", [], True, None),
        ({}, "grace@uni.edu", [], True, None),
        # not on any roster, not otherwise allowed
        ({}, "mallory@evil.example", [], False, None),
        # admins are allowed whether or not they are on a roster
        ({"admin_users": {"root@uni.edu"}}, "root@uni.edu", [], True, True),
        ({"admin_users": {"root@uni.edu"}}, "alice@uni.edu", [], True, None),
        # the other allow rules still work: the roster rule is additive
        ({"allowed_users": {"guest@uni.edu"}}, "guest@uni.edu", [], True, None),
        ({"allow_all": True}, "mallory@evil.example", [], True, None),
        (
            {"manage_groups": True, "allowed_groups": {"visitors"}},
            "guest@uni.edu",
            ["visitors"],
            True,
            None,
        ),
        (
            {"manage_groups": True, "admin_groups": {"hub-admins"}},
            "root@uni.edu",
            ["hub-admins"],
            True,
            True,
        ),
        # an admin group may also be one of ours: ds101's instructors run the hub
        (
            {"manage_groups": True, "admin_groups": {"ds101-instructors"}},
            "grace@uni.edu",
            [],
            True,
            True,
        ),
        (
            {"manage_groups": True, "admin_groups": {"ds101-instructors"}},
            "alan@uni.edu",
            [],
            True,
            False,
        ),
        # the roster rule can be switched off
        ({"allow_rostered": False}, "alice@uni.edu", [], False, None),
        (
            {"allow_rostered": False, "allowed_users": {"alice@uni.edu"}},
            "alice@uni.edu",
            [],
            True,
            None,
        ),
        # restrictive rules win over every allow rule
        ({"blocked_users": {"alice@uni.edu"}}, "alice@uni.edu", [], False, None),
        (
            {"require_rostered": True, "allowed_users": {"guest@uni.edu"}},
            "guest@uni.edu",
            [],
            False,
            None,
        ),
        (
            {"require_rostered": True, "allow_all": True},
            "mallory@evil.example",
            [],
            False,
            None,
        ),
        (
            {"require_rostered": True, "allowed_users": {"alice@uni.edu"}},
            "alice@uni.edu",
            [],
            True,
            None,
        ),
        (
            {"require_rostered": True, "admin_users": {"root@uni.edu"}},
            "root@uni.edu",
            [],
            True,
            True,
        ),
    ],
)
async def test_allowed(
    make_auth, provider, class_config, email, groups, expect_allowed, expect_admin
):
    auth = make_auth(class_config)
    model = await login(auth, provider, {"email": email, "groups": groups})
    if expect_allowed:
        assert model is not None and model["name"] == email
        assert model["admin"] == expect_admin
    else:
        assert model is None


async def test_refused_user_is_logged_with_the_reason(make_auth, provider, caplog):
    auth = make_auth()
    with caplog.at_level(logging.WARNING):
        assert await login(auth, provider, {"email": "mallory@evil.example"}) is None
    assert "mallory@evil.example is not on any course roster" in caplog.text


def test_403_message_says_whom_to_contact(make_auth):
    auth = make_auth({"roster_contact": "jupyter-help@uni.edu"})
    assert "not on the roster of any course" in auth.custom_403_message
    assert "jupyter-help@uni.edu" in auth.custom_403_message


def test_roster_rule_counts_as_allow_config(make_auth, caplog):
    auth = make_auth()
    assert auth.any_allow_config
    with caplog.at_level(logging.WARNING):
        auth.check_allow_config()
    assert "No allow config found" not in caplog.text


# -- usernames --------------------------------------------------------------------


@pytest.mark.parametrize(
    "email", ["Alice@UNI.edu", "  alice@uni.edu ", "\tALICE@uni.EDU\n"]
)
async def test_case_and_spaces_match_the_same_roster_entry(make_auth, provider, email):
    auth = make_auth({"manage_groups": True})
    model = await login(auth, provider, {"email": email})
    assert model["name"] == "alice@uni.edu"
    assert set(model["groups"]) == {"ds101", "phys210"}


@pytest.mark.parametrize(
    "claims", [{"name": "Alice"}, {"email": ""}, {"email": "   "}, {"email": None}]
)
async def test_missing_username_claim_is_a_clear_403(
    make_auth, provider, caplog, claims
):
    auth = make_auth({"roster_contact": "help@uni.edu"})
    with pytest.raises(web.HTTPError) as e, caplog.at_level(logging.ERROR):
        await login(auth, provider, claims)
    assert e.value.status_code == 403
    assert "'email'" in e.value.log_message and "help@uni.edu" in e.value.log_message
    assert "no usable 'email' claim" in caplog.text


async def test_username_claim_callable_that_fails_is_a_clear_500(
    make_auth, provider, caplog
):
    def username_from_upn(user_info):
        return user_info["upn"].split("@")[0]

    auth = make_auth({"username_claim": username_from_upn})
    with pytest.raises(web.HTTPError) as e, caplog.at_level(logging.ERROR):
        await login(auth, provider, {"email": "alice@uni.edu"})
    assert e.value.status_code == 500
    assert "username_from_upn raised" in caplog.text and "KeyError" in caplog.text


# -- groups -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email, groups",
    [
        ("alice@uni.edu", {"ds101", "phys210"}),  # student in two courses
        ("bob@uni.edu", {"ds101", "phys210-tas"}),  # student in one, TA in another
        ("grace@uni.edu", {"ds101-instructors"}),
        ("alan@uni.edu", {"ds101-tas"}),
        ("root@uni.edu", set()),  # admin on no roster
    ],
)
async def test_groups_from_the_roster(make_auth, provider, email, groups):
    auth = make_auth({"manage_groups": True, "admin_users": {"root@uni.edu"}})
    model = await login(auth, provider, {"email": email})
    assert set(model["groups"]) == groups


async def test_nbgrader_groups(make_auth, provider):
    auth = make_auth({"manage_groups": True, "nbgrader_groups": True})
    bob = await login(auth, provider, {"email": "bob@uni.edu"})
    assert set(bob["groups"]) == {
        "ds101",
        "nbgrader-ds101",
        "phys210-tas",
        "formgrade-phys210",
    }
    grace = await login(auth, provider, {"email": "grace@uni.edu"})
    assert set(grace["groups"]) == {"ds101-instructors", "formgrade-ds101"}


async def test_group_templates(make_auth, provider):
    auth = make_auth(
        {
            "manage_groups": True,
            "student_group_template": "course-{course}",
            "staff_group_template": "{course}-staff",
        }
    )
    bob = await login(auth, provider, {"email": "bob@uni.edu"})
    assert set(bob["groups"]) == {"course-ds101", "phys210-staff"}


async def test_provider_groups_are_not_hub_groups_unless_asked(make_auth, provider):
    claims = {"email": "alice@uni.edu", "groups": ["all-students", "library"]}
    auth = make_auth({"manage_groups": True})
    assert set((await login(auth, provider, claims))["groups"]) == {"ds101", "phys210"}
    keep = make_auth({"manage_groups": True, "keep_provider_groups": True})
    assert set((await login(keep, provider, claims))["groups"]) == {
        "ds101",
        "phys210",
        "all-students",
        "library",
    }


async def test_without_manage_groups_no_groups_are_returned(make_auth, provider):
    model = await login(make_auth(), provider, {"email": "alice@uni.edu"})
    assert "groups" not in model


# -- roles ----------------------------------------------------------------------------


async def test_staff_roles_are_scoped_to_their_course_students(make_auth, provider):
    auth = make_auth({"manage_groups": True, "manage_roles": True})
    grace = await login(auth, provider, {"email": "grace@uni.edu"})
    assert [r["name"] for r in grace["roles"]] == ["user", "ds101-instructor"]
    assert role(grace, "ds101-instructor")["scopes"] == sorted(
        s.format(group="ds101") for s in DEFAULT_STAFF_SCOPES
    )
    assert role(grace, "user")["scopes"] == ["self"]
    assert grace["admin"] is False

    bob = await login(auth, provider, {"email": "bob@uni.edu"})
    assert [r["name"] for r in bob["roles"]] == ["user", "phys210-ta"]
    scopes = role(bob, "phys210-ta")["scopes"]
    # only over phys210's students: never ds101, never the staff groups, never group edits
    assert all(s == "admin-ui" or s.endswith("!group=phys210") for s in scopes)
    assert not any(
        s.split("!")[0] in {"groups", "admin:groups", "admin:users"} for s in scopes
    )
    assert {
        "list:users!group=phys210",
        "access:servers!group=phys210",
        "servers!group=phys210",
    } <= set(scopes)

    alice = await login(auth, provider, {"email": "alice@uni.edu"})
    assert [r["name"] for r in alice["roles"]] == ["user"]


async def test_admins_keep_the_admin_role(make_auth, provider):
    auth = make_auth(
        {"manage_groups": True, "manage_roles": True, "admin_users": {"grace@uni.edu"}}
    )
    grace = await login(auth, provider, {"email": "grace@uni.edu"})
    assert grace["admin"] is True
    assert [r["name"] for r in grace["roles"]] == ["user", "admin", "ds101-instructor"]


async def test_staff_scopes_are_configurable_per_role(make_auth, provider):
    auth = make_auth(
        {
            "manage_groups": True,
            "manage_roles": True,
            "staff_scopes": {
                "teaching assistant": [
                    "list:users!group={group}",
                    "read:servers!group={group}",
                ]
            },
        }
    )
    alan = await login(auth, provider, {"email": "alan@uni.edu"})
    assert role(alan, "ds101-ta")["scopes"] == [
        "list:users!group=ds101",
        "read:servers!group=ds101",
    ]
    grace = await login(auth, provider, {"email": "grace@uni.edu"})
    assert "access:servers!group=ds101" in role(grace, "ds101-instructor")["scopes"]


async def test_the_user_role_follows_the_hubs_definition(make_auth, provider):
    auth = make_auth({"manage_roles": True})
    auth.config.JupyterHub.load_roles = [
        {"name": "user", "scopes": ["self", "access:services"]}
    ]
    model = await login(auth, provider, {"email": "alice@uni.edu"})
    assert role(model, "user")["scopes"] == ["self", "access:services"]


async def test_load_managed_roles_defines_every_course_role(make_auth):
    auth = make_auth({"manage_groups": True, "manage_roles": True})
    roles = await auth.load_managed_roles()
    assert sorted(r["name"] for r in roles) == [
        "ds101-instructor",
        "ds101-ta",
        "phys210-instructor",
        "phys210-ta",
    ]
    assert all("users" not in r and "groups" not in r for r in roles)
    assert auth.reset_managed_roles_on_startup
    with pytest.raises(ValueError):
        await make_auth().load_managed_roles()  # manage_roles off


# -- provider claims ----------------------------------------------------------------------

CLAIMS = {
    "course_claim_groups": {
        "uni-ds101": "ds101",
        "uni-phys-tutors": {"course": "phys210", "role": "ta"},
    },
    "enable_auth_state": True,
    "manage_groups": True,
    "manage_roles": True,
}


async def test_provider_group_claims_admit_and_enrol(make_auth, provider):
    auth = make_auth(CLAIMS)
    carol = await login(
        auth, provider, {"email": "carol@uni.edu", "groups": ["uni-ds101", "library"]}
    )
    assert carol is not None
    assert set(carol["groups"]) == {"ds101"}
    assert claimed_courses(carol["auth_state"]) == {"ds101": Role.STUDENT}
    assert carol["auth_state"][AUTH_STATE_KEY]["courses"] == {"ds101": "student"}


async def test_provider_claims_merge_with_the_roster_higher_role_wins(
    make_auth, provider
):
    auth = make_auth(CLAIMS)
    alice = await login(
        auth, provider, {"email": "alice@uni.edu", "groups": ["uni-phys-tutors"]}
    )
    assert alice["auth_state"][AUTH_STATE_KEY] == {
        "courses": {"ds101": "student", "phys210": "ta"},
        "claimed": {"phys210": "ta"},
    }
    assert set(alice["groups"]) == {"ds101", "phys210-tas"}
    assert [r["name"] for r in alice["roles"]] == ["user", "phys210-ta"]


async def test_provider_claims_by_pattern(make_auth, provider):
    auth = make_auth(
        {
            "course_claim_pattern": r"course:(?P<course>[a-z0-9._-]+)(:(?P<role>[a-z]+))?",
            "enable_auth_state": True,
            "manage_groups": True,
        }
    )
    dave = await login(
        auth,
        provider,
        {
            "email": "dave@uni.edu",
            "groups": [
                "course:phys210:instructor",
                "course:ds999",
                "course:ds101:dean",
            ],
        },
    )
    # ds999 is not on the roster, "dean" is no role: both ignored
    assert claimed_courses(dave["auth_state"]) == {"phys210": Role.INSTRUCTOR}
    assert set(dave["groups"]) == {"phys210-instructors"}
    assert (
        await login(
            auth, provider, {"email": "eve@uni.edu", "groups": ["course:ds999"]}
        )
        is None
    )


async def test_claims_from_a_custom_key(make_auth, provider):
    auth = make_auth({**CLAIMS, "course_claim_key": "oauth_user.eduPersonEntitlement"})
    carol = await login(
        auth, provider, {"email": "carol@uni.edu", "eduPersonEntitlement": "uni-ds101"}
    )
    assert claimed_courses(carol["auth_state"]) == {"ds101": Role.STUDENT}


def test_claims_naming_unknown_courses_are_a_startup_error(make_auth, caplog):
    with (
        pytest.raises(ValueError, match="'cs999', which is not on the roster"),
        caplog.at_level(logging.ERROR),
    ):
        make_auth({**CLAIMS, "course_claim_groups": {"uni-cs999": "cs999"}})
    assert "uni-cs999" in caplog.text


def test_claims_need_auth_state(make_auth):
    with pytest.raises(ValueError, match="enable_auth_state"):
        make_auth({**CLAIMS, "enable_auth_state": False})


# -- refresh ------------------------------------------------------------------------------


@pytest.mark.parametrize("enable_auth_state", [True, False])
async def test_refresh_after_removal_from_the_roster(
    make_auth, provider, course_file, enable_auth_state, rewrite_file
):
    auth = make_auth({"enable_auth_state": enable_auth_state, "manage_groups": True})
    model = await login(auth, provider, {"email": "bob@uni.edu"}, key="bob")
    user = HubUser(model, enable_auth_state)

    refreshed = await auth.refresh_user(user)
    assert refreshed is not False
    user.apply(refreshed)
    assert user.group_names == {"ds101", "phys210-tas"}

    # the registrar drops bob from ds101: he keeps access through phys210
    rewrite_file(
        course_file,
        COURSES.replace(
            "students: [alice@uni.edu, bob@uni.edu]", "students: [alice@uni.edu]"
        ),
    )
    refreshed = await auth.refresh_user(user)
    user.apply(refreshed)
    assert user.group_names == {"phys210-tas"}

    # ... and from phys210: gone at the next refresh, and no spawn without a fresh login
    rewrite_file(course_file, COURSES.replace("bob@uni.edu", "carl@uni.edu"))
    assert await auth.refresh_user(user) is False
    assert auth.refresh_pre_spawn is True
    # logging in again does not work either
    assert await login(auth, provider, {"email": "bob@uni.edu"}, key="bob") is None


async def test_a_dropped_course_loses_its_groups_and_roles_at_refresh(
    make_auth, provider, course_file, rewrite_file
):
    auth = make_auth(
        {"enable_auth_state": True, "manage_groups": True, "manage_roles": True}
    )
    model = await login(auth, provider, {"email": "bob@uni.edu"}, key="bob")
    user = HubUser(model, True)
    assert user.role_names == {"user", "phys210-ta"}
    rewrite_file(course_file, COURSES[: COURSES.index("  - id: phys210")])
    user.apply(await auth.refresh_user(user))
    assert user.group_names == {"ds101"}
    assert user.role_names == {"user"}
    assert "phys210" not in [r["name"] for r in await auth.load_managed_roles()]


async def test_refused_staff_lose_their_groups_and_roles(
    make_auth, provider, course_file, rewrite_file
):
    """A refused refresh ends the session; API tokens survive that, so the
    course groups and roles must go too."""
    auth = make_auth(
        {"enable_auth_state": True, "manage_groups": True, "manage_roles": True}
    )
    user = HubUser(
        await login(auth, provider, {"email": "alan@uni.edu"}, key="alan"), True
    )
    assert user.role_names == {"user", "ds101-ta"}
    rewrite_file(course_file, COURSES.replace("alan@uni.edu", "ada@uni.edu"))
    assert await auth.refresh_user(user) is False
    assert user.group_names == set()
    assert user.role_names == {"user"}


async def test_refresh_without_auth_state_keeps_groups_that_are_no_courses(
    make_auth, provider, course_file, rewrite_file
):
    auth = make_auth({"manage_groups": True, "admin_groups": {"hub-admins"}})
    model = await login(
        auth, provider, {"email": "grace@uni.edu", "groups": ["hub-admins"]}
    )
    user = HubUser(model, enable_auth_state=False)
    assert user.group_names == {"ds101-instructors", "hub-admins"} and user.admin
    rewrite_file(
        course_file,
        COURSES.replace(
            "instructors: [grace@uni.edu]", "tas: [grace@uni.edu]", 1
        ).replace("    tas: [alan@uni.edu]\n", "", 1),
    )
    refreshed = await auth.refresh_user(user)
    user.apply(refreshed)
    assert user.group_names == {"ds101-tas", "hub-admins"}
    assert user.admin


async def test_refresh_rechecks_provider_claims(make_auth, provider):
    auth = make_auth(CLAIMS)
    claims = {"email": "carol@uni.edu", "groups": ["uni-ds101"]}
    user = HubUser(await login(auth, provider, claims, key="carol"), True)
    assert user.group_names == {"ds101"}
    provider.claims["carol"] = {"email": "carol@uni.edu", "groups": ["uni-phys-tutors"]}
    user.apply(await auth.refresh_user(user))
    assert user.group_names == {"phys210-tas"}
    assert user.role_names == {"user", "phys210-ta"}
    assert claimed_courses(user.auth_state) == {"phys210": Role.TA}
    # the provider stops asserting any course: out at the next refresh
    provider.claims["carol"] = {"email": "carol@uni.edu", "groups": []}
    assert await auth.refresh_user(user) is False


async def test_refresh_uses_the_refresh_token_when_the_access_token_expired(
    make_auth, provider
):
    auth = make_auth({"enable_auth_state": True, "manage_groups": True})
    user = HubUser(
        await login(auth, provider, {"email": "alice@uni.edu"}, key="alice"), True
    )
    provider.access_tokens.clear()
    refreshed = await auth.refresh_user(user)
    assert refreshed["auth_state"]["access_token"] in provider.access_tokens
    assert set(refreshed["groups"]) == {"ds101", "phys210"}
    # revoked at the provider: a new login is required
    provider.revoke("alice")
    assert await auth.refresh_user(user) is False


async def test_refresh_when_the_provider_is_down_still_checks_the_roster(
    make_auth, provider, course_file, caplog, rewrite_file
):
    auth = make_auth({"enable_auth_state": True, "manage_groups": True})
    alice = HubUser(
        await login(auth, provider, {"email": "alice@uni.edu"}, key="alice"), True
    )
    bob = HubUser(
        await login(auth, provider, {"email": "bob@uni.edu"}, key="bob"), True
    )
    provider.down = True
    rewrite_file(course_file, COURSES.replace("bob@uni.edu", "carl@uni.edu"))
    with caplog.at_level(logging.WARNING):
        refreshed = await auth.refresh_user(alice)
    assert set(refreshed["groups"]) == {"ds101", "phys210"}
    assert "unreachable" in caplog.text
    assert await auth.refresh_user(bob) is False


async def test_refresh_rechecks_blocked_users(make_auth, provider):
    auth = make_auth({"enable_auth_state": True})
    user = HubUser(
        await login(auth, provider, {"email": "alice@uni.edu"}, key="alice"), True
    )
    auth.blocked_users = {"alice@uni.edu"}
    assert await auth.refresh_user(user) is False


async def test_blocked_staff_still_on_the_roster_lose_their_groups_and_roles(
    make_auth, provider
):
    """Blocked while still rostered: their API tokens survive the ended session,
    so the course groups and roles must go as for a dropped TA."""
    auth = make_auth(
        {"enable_auth_state": True, "manage_groups": True, "manage_roles": True}
    )
    user = HubUser(
        await login(auth, provider, {"email": "bob@uni.edu"}, key="bob"), True
    )
    assert user.group_names == {"ds101", "phys210-tas"}
    assert user.role_names == {"user", "phys210-ta"}
    auth.blocked_users = {"bob@uni.edu"}
    assert await auth.refresh_user(user) is False
    assert user.group_names == set()
    assert user.role_names == {"user"}


@pytest.mark.parametrize(
    "hook",
    [
        lambda auth, user, auth_state: True,
        # a model built from what was stored: it carries the courses of the last login
        lambda auth, user, auth_state: {
            "name": user.name,
            "admin": False,
            "auth_state": auth_state,
        },
    ],
    ids=["no-change", "stored-model"],
)
async def test_refresh_user_hook_answers_are_still_checked(
    make_auth, provider, course_file, rewrite_file, hook
):
    auth = make_auth(
        {"enable_auth_state": True, "manage_groups": True, "refresh_user_hook": hook}
    )
    user = HubUser(
        await login(auth, provider, {"email": "bob@uni.edu"}, key="bob"), True
    )
    refreshed = await auth.refresh_user(user)
    assert refreshed is not False
    user.apply(refreshed)
    assert user.group_names == {"ds101", "phys210-tas"}
    rewrite_file(course_file, COURSES.replace("bob@uni.edu", "carl@uni.edu"))
    assert await auth.refresh_user(user) is False
    assert user.group_names == set()


# -- start-up ------------------------------------------------------------------------------


def test_a_broken_roster_stops_the_hub_with_every_problem(
    make_auth, write_file, caplog
):
    bad = write_file("bad.yaml", "courses:\n  - id: Bad Id!\n  - title: no id\n")
    with pytest.raises(RosterError), caplog.at_level(logging.ERROR):
        make_auth(course_files=[bad])
    assert "cannot start: the course roster has problems" in caplog.text
    assert caplog.text.count("bad.yaml:") >= 2


@pytest.mark.parametrize(
    "class_config, message",
    [
        ({"student_group_template": "students"}, "must contain {course}"),
        ({"staff_group_template": "{course} {role}"}, "no spaces"),
        ({"staff_group_template": "{course}-{rank}"}, "may use {course}, {role}"),
        ({"staff_role_template": "{course}"}, "must contain {role}"),
        (
            {"staff_role_template": "{course}-{role}!"},
            "not a valid JupyterHub role name",
        ),
        (
            {"staff_scopes": {"ta": ["acess:servers!group={group}"]}},
            "not a JupyterHub scope",
        ),
        ({"staff_scopes": {"student": ["self"]}}, "only instructor and ta"),
        (
            {"course_claim_groups": {"g": {"course": "ds101", "role": "dean"}}},
            "unknown role",
        ),
        (
            {"course_claim_pattern": "course:(?P<id>.*)"},
            "named group for the course id",
        ),
    ],
)
def test_bad_config_is_a_startup_error(make_auth, class_config, message):
    with pytest.raises(Exception, match=message):
        make_auth({"enable_auth_state": True, **class_config})


def test_group_name_collisions_are_a_startup_error(make_auth, write_file):
    courses = write_file("c.yaml", "courses:\n  - id: ds101\n  - id: ds101-tas\n")
    with pytest.raises(ValueError, match="'ds101-tas' would hold both"):
        make_auth({"manage_groups": True}, course_files=[courses])


def test_two_courses_sharing_a_staff_role_name_is_a_startup_error(
    make_auth, write_file
):
    # 2025-ds101's roles get "course-" in front: the same names as course-2025-ds101's
    courses = write_file(
        "c.yaml", "courses:\n  - id: 2025-ds101\n  - id: course-2025-ds101\n"
    )
    with pytest.raises(
        ValueError, match="would share the staff role 'course-2025-ds101-"
    ):
        make_auth({"manage_groups": True, "manage_roles": True}, course_files=[courses])


async def test_course_ids_starting_with_a_digit_get_valid_role_names(
    make_auth, provider, write_file
):
    courses = write_file(
        "c.yaml", "courses:\n  - id: 2025-ds101\n    tas: [alan@uni.edu]\n"
    )
    auth = make_auth(
        {"manage_groups": True, "manage_roles": True}, course_files=[courses]
    )
    alan = await login(auth, provider, {"email": "alan@uni.edu"})
    assert [r["name"] for r in alan["roles"]] == ["user", "course-2025-ds101-ta"]
    assert (
        "access:servers!group=2025-ds101"
        in role(alan, "course-2025-ds101-ta")["scopes"]
    )


# -- GitHub -----------------------------------------------------------------------------------


def github_teams(provider, request):
    return 200, [{"slug": "ds101-tutors", "organization": {"login": "uni"}}]


@pytest.fixture
def github(write_file):
    return FakeProvider(
        token_path="/login/oauth/access_token",
        userinfo_path="/user",
        extra_routes={"/user/teams": github_teams},
    )


async def test_github_variant(make_auth, github, write_file):
    courses = write_file(
        "gh.yaml", "courses:\n  - id: ds101\n    students: [OctoCat]\n  - id: ds102\n"
    )
    auth = make_auth(
        {"manage_groups": True},
        cls=ClassroomGitHubOAuthenticator,
        course_files=[courses],
    )
    auth.http_client = github
    octo = await login(
        auth, github, {"login": "OctoCat", "email": "octo@example.org", "id": 1}
    )
    assert octo["name"] == "octocat" and octo["groups"] == ["ds101"]
    assert (
        await login(auth, github, {"login": "mallory", "email": None, "id": 2}) is None
    )


async def test_github_teams_as_course_claims(make_auth, github, write_file):
    courses = write_file("gh.yaml", "courses:\n  - id: ds101\n")
    auth = make_auth(
        {
            "manage_groups": True,
            "enable_auth_state": True,
            "populate_teams_in_auth_state": True,
            "scope": ["read:org"],
            "course_claim_groups": {
                "uni:ds101-tutors": {"course": "ds101", "role": "ta"}
            },
        },
        cls=ClassroomGitHubOAuthenticator,
        course_files=[courses],
    )
    auth.http_client = github
    octo = await login(
        auth, github, {"login": "octocat", "email": "octo@example.org", "id": 1}
    )
    assert octo["groups"] == ["ds101-tas"]


# -- the sample config ----------------------------------------------------------------------


def test_the_sample_config_builds_the_authenticator(monkeypatch):
    from pathlib import Path

    from traitlets.config import PyFileConfigLoader

    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "0" * 64)
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(root)).load_config()
    assert config.JupyterHub.authenticator_class == "classroom"
    auth = ClassroomOAuthenticator(config=config)
    assert auth.manage_groups and auth.manage_roles and auth.enable_auth_state
    assert "jupyter-support@uni.example.edu" in auth.custom_403_message
