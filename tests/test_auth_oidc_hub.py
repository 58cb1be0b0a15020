"""ClassroomOAuthenticator in a real JupyterHub, against a real OpenID Connect provider.

Node's ``oidc-provider`` (classroom_spawner.local.oidc) is the identity
provider; JupyterHub runs as its own process behind configurable-http-proxy
(classroom_spawner.local.hub); people log in through the real
authorization-code flow (PKCE, login form, callback) without a browser. The
hub and the provider are shared by the tests of this module, which run in
order; the roster-changing test puts the roster back when it is done.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sqlite3
import textwrap

import pytest
import pytest_asyncio
import requests

from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.oidc import OIDCProvider
from classroom_spawner.local.oidc.browserless import login

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

CONTACT = "classroom-help@uni.example.edu"

COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    instructors: [grace]
    tas: [alan]
    students: [alice, Bob]
  - id: phys210
    title: Computational Physics
    students: [alice, carol]
"""

ACCOUNTS = [
    # username at the provider, claims
    ("alice", {}),
    ("bob", {"preferred_username": "BOB"}),  # the provider says "BOB", the roster "Bob"
    ("carol", {}),
    ("grace", {}),
    ("alan", {}),
    (
        "dave",
        {"groups": ["uni-phys210", "library"]},
    ),  # on no roster; the provider knows
    ("mallory", {}),  # on no roster, nothing else
]


def password(name):
    return f"{name}-pw"


@pytest.fixture(scope="module")
def course_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("roster") / "courses.yaml"
    path.write_text(COURSES)
    return str(path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def idp():
    accounts = [
        {
            "username": name,
            "password": password(name),
            "claims": {"groups": [], **claims},
        }
        for name, claims in ACCOUNTS
    ]
    async with OIDCProvider(accounts=accounts) as provider:
        yield provider


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(idp, course_file):
    hub = HubProcess(
        log_level="INFO", env={"JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)}
    )
    oauth = idp.oauthenticator_config(hub_url=hub.hub_url)
    hub.config = textwrap.dedent(f"""
        import json
        c.JupyterHub.authenticator_class = "classroom"
        c.JupyterHub.spawner_class = "simple"
        c.JupyterHub.redirect_to_server = False
        c.ClassroomRoster.course_files = [{course_file!r}]
        c.ClassroomRoster.check_interval = 0
        c.ClassroomOAuthenticator.update(json.loads({json.dumps(json.dumps(oauth))}))
        c.ClassroomOAuthenticator.enable_auth_state = True
        c.ClassroomOAuthenticator.manage_groups = True
        c.ClassroomOAuthenticator.manage_roles = True
        c.ClassroomOAuthenticator.course_claim_groups = {{"uni-phys210": "phys210"}}
        c.ClassroomOAuthenticator.roster_contact = {CONTACT!r}
        # refresh auth on any request older than a second (the default is 5 minutes)
        c.ClassroomOAuthenticator.auth_refresh_age = 1
        """)
    async with hub:
        yield hub
    # the hub's log is useful when something above failed
    print(hub.read_log()[-6000:])


async def log_in(hub, name):
    result = await asyncio.to_thread(
        login, hub.hub_url, name, password(name), next_url="/hub/home"
    )
    return result


async def user_model(hub, name):
    r = await hub.api("GET", f"users/{name}", raise_error=False)
    return r.json() if r.code == 200 else None


def token_api(hub, token, path, method="GET", **kwargs):
    return requests.request(
        method,
        hub.api_url + "/" + path,
        headers={"Authorization": f"token {token}"},
        timeout=30,
        **kwargs,
    )


async def test_hub_starts_without_allow_config_warning(hub):
    log = hub.read_log()
    assert "No allow config found" not in log
    assert "ClassroomOAuthenticator: <Roster 2 courses, 5 people>" in log


async def test_rostered_student_logs_in_and_gets_course_groups(hub):
    result = await log_in(hub, "alice")
    assert result.ok, result.describe()
    me = result.api("GET", "user").json()
    assert me["name"] == "alice"
    assert sorted(me["groups"]) == ["ds101", "phys210"]
    assert me["roles"] == ["user"]
    # what the spawner reads, stored (encrypted) in auth_state
    model = await user_model(hub, "alice")
    assert model["auth_state"]["classroom"] == {
        "courses": {"ds101": "student", "phys210": "student"},
        "claimed": {},
    }
    groups = (await hub.api("GET", "groups/ds101")).json()
    assert groups["users"] == ["alice"]


async def test_provider_username_case_does_not_matter(hub):
    result = await log_in(hub, "bob")
    assert result.ok, result.describe()
    assert result.api("GET", "user").json()["name"] == "bob"
    assert (await user_model(hub, "bob"))["groups"] == ["ds101"]


async def test_unrostered_account_gets_the_403_page(hub):
    result = await log_in(hub, "mallory")
    assert result.status == 403, result.describe()
    # the message once, under a short heading (JupyterHub 6.x makes an HTTPError's
    # message the heading unless it has a reason; 5.x always says "Forbidden")
    assert result.text.count("not on the roster of any course") == 1, result.text
    (heading,) = re.findall(r"<h1>(.*?)</h1>", result.text, re.S)
    assert " ".join(heading.split()) in (
        "403 : Not on a course roster",
        "403 : Forbidden",
    )
    assert CONTACT in result.text
    assert await user_model(hub, "mallory") is None
    assert "mallory is not on any course roster" in hub.read_log()


async def test_provider_group_claim_enrols(hub):
    result = await log_in(hub, "dave")
    assert result.ok, result.describe()
    model = await user_model(hub, "dave")
    assert model["groups"] == ["phys210"]  # "library" is no course and not kept
    assert model["auth_state"]["classroom"]["claimed"] == {"phys210": "student"}


async def test_course_roles_exist_from_the_start(hub):
    # JupyterHub has no REST API for roles: read its database
    db = sqlite3.connect(os.path.join(hub.workdir, "jupyterhub.sqlite"))
    try:
        rows = db.execute("SELECT name, scopes, managed_by_auth FROM roles").fetchall()
    finally:
        db.close()
    roles = {name: (json.loads(scopes), managed) for name, scopes, managed in rows}
    # phys210 has no staff: its roles exist anyway (load_managed_roles)
    for name in ("ds101-instructor", "ds101-ta", "phys210-instructor", "phys210-ta"):
        assert roles[name][1], f"{name} is not managed by the authenticator"
    assert "access:servers!group=ds101" in roles["ds101-ta"][0]
    assert not any(s.startswith("groups") for s in roles["ds101-instructor"][0])


async def test_instructor_lists_only_their_course_users(hub):
    for name in ("alice", "bob", "carol", "alan"):
        assert (await log_in(hub, name)).ok
    grace = await log_in(hub, "grace")
    assert grace.ok, grace.describe()
    me = grace.api("GET", "user").json()
    assert me["groups"] == ["ds101-instructors"]
    assert sorted(me["roles"]) == ["ds101-instructor", "user"]

    # the admin page opens for her (it shows what her scopes allow), not for students
    assert grace.get("hub/admin").status_code == 200
    student = await log_in(hub, "alice")
    assert student.get("hub/admin").status_code == 403

    # her own token, made with her own login
    r = grace.api(
        "POST", "users/grace/tokens", json={"note": "teaching", "expires_in": 3600}
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]

    scopes = token_api(hub, token, "user").json()["scopes"]
    assert {
        "list:users!group=ds101",
        "access:servers!group=ds101",
        "servers!group=ds101",
    } <= set(scopes)
    assert not [
        s
        for s in scopes
        if "phys210" in s or s.split("!")[0] in ("groups", "admin:users")
    ]

    users = token_api(hub, token, "users")
    assert users.status_code == 200, users.text
    names = {u["name"] for u in users.json()}
    assert {"alice", "bob"} <= names
    assert not names & {"carol", "alan", "dave"}, names  # other course, staff
    assert names <= {"alice", "bob", "grace"}
    assert sorted(token_api(hub, token, "users/alice").json()["groups"]) == [
        "ds101",
        "phys210",
    ]
    assert token_api(hub, token, "users/carol").status_code in (
        403,
        404,
    )  # 6.x: 404, 5.x: 403
    assert token_api(hub, token, "users/alan").status_code in (
        403,
        404,
    )  # 6.x: 404, 5.x: 403
    # she cannot put herself (or anyone) into a group
    add = token_api(
        hub, token, "groups/phys210/users", method="POST", json={"users": ["grace"]}
    )
    assert add.status_code in (403, 404), add.text


async def test_ta_cannot_reach_the_instructor(hub):
    alan = await log_in(hub, "alan")
    token = alan.api("POST", "users/alan/tokens", json={"note": "tutoring"}).json()[
        "token"
    ]
    names = {u["name"] for u in token_api(hub, token, "users").json()}
    assert {"alice", "bob"} <= names and "grace" not in names
    assert token_api(hub, token, "users/grace").status_code in (
        403,
        404,
    )  # 6.x: 404, 5.x: 403


async def test_roster_changes_reach_the_hub_at_refresh(
    hub, idp, course_file, rewrite_file
):
    alice = await log_in(hub, "alice")
    bob = await log_in(hub, "bob")
    alan = await log_in(hub, "alan")
    alan_token = alan.api(
        "POST", "users/alan/tokens", json={"note": "tutoring"}
    ).json()["token"]
    assert bob.ok and alice.ok and alan.ok
    try:
        # new term: alice left phys210, bob and the TA left everything
        rewrite_file(
            course_file,
            COURSES.replace("students: [alice, Bob]", "students: [alice]")
            .replace("students: [alice, carol]", "students: [carol]")
            .replace("    tas: [alan]\n", ""),
        )
        # a refresh before spawning refuses bob; his server is not started
        spawn = bob.api("POST", "users/bob/server")
        assert spawn.status_code == 403, spawn.text + hub.read_log()[-5000:]
        assert (await user_model(hub, "bob"))["servers"] == {}
        # and he cannot log in again
        again = await log_in(hub, "bob")
        assert again.status == 403, again.describe()
        # the hub keeps the user (and whatever volume a real spawner gave him),
        # but he is in no course group any more
        model = await user_model(hub, "bob")
        assert model is not None and model["groups"] == []

        # once her auth is older than auth_refresh_age, alice's next request
        # refreshes it: she stays, without the dropped course
        await asyncio.sleep(1.5)
        me = alice.api("GET", "user")
        assert me.status_code == 200, me.text
        assert me.json()["groups"] == ["ds101"]

        # the TA's API token does not keep the powers of the role he lost:
        # the first request after auth_refresh_age refreshes (and refuses) him
        await asyncio.sleep(1.5)
        token_api(hub, alan_token, "users")
        after = token_api(hub, alan_token, "users")
        assert after.status_code == 403, after.text  # no list:users on anyone any more
        assert token_api(hub, alan_token, "users/alice").status_code in (
            403,
            404,
        )  # 6.x: 404, 5.x: 403
        model = await user_model(hub, "alan")
        assert model["roles"] == ["user"] and model["groups"] == []
    finally:
        rewrite_file(course_file, COURSES)


async def test_the_hub_log_is_clean(hub):
    """Everything above (refused logins and refreshes included) left no traceback."""
    log = hub.read_log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert "will have no scopes" not in log
