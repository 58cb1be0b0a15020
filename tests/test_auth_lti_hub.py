"""ClassroomLTI13Authenticator in a real JupyterHub, launched from the local LTI 1.3 platform.

The platform (classroom_spawner.local.lti) runs on this module's event loop;
JupyterHub runs as its own process behind configurable-http-proxy. Launches go
through the real flow (third-party initiated login, the OIDC form post, state
and nonce cookies) without a browser. The tests share the hub and the platform
and run in order; a test that changes the platform's courses puts them back.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import textwrap
import time
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.lti import LTIPlatform, new_key, private_pem
from classroom_spawner.local.lti.browserless import launch

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

CONTACT = "classroom-help@uni.example.edu"

COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    lms_contexts: [canvas-ds101]
    lessons:
      - url: https://git.example.edu/ds101/week1.git
        target: week1
  - id: phys210
    title: Computational Physics
    lms_contexts: [moodle-phys210]
    students: [carol]
"""


@pytest.fixture(scope="module")
def course_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("roster") / "courses.yaml"
    path.write_text(COURSES)
    return str(path)


@pytest.fixture(scope="module")
def tool_key(tmp_path_factory):
    key = new_key()
    path = tmp_path_factory.mktemp("tool") / "tool-key.pem"
    path.write_text(private_pem(key))
    return key, str(path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub_and_lms(course_file, tool_key):
    key, key_file = tool_key
    hub = HubProcess(
        log_level="DEBUG", env={"JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)}
    )
    async with LTIPlatform(
        tool_url=hub.hub_url, tool_public_key=key.public_key()
    ) as lms:
        lms.add_course("canvas-ds101", "Data Science 101")
        lms.add_member("canvas-ds101", "alice", ["Learner"])
        lms.add_member("canvas-ds101", "bob", ["Learner"])
        lms.add_member("canvas-ds101", "grace", ["Instructor"])
        # what LMSs send for a TA: the principal role and the sub-role
        lms.add_member(
            "canvas-ds101",
            "alan",
            ["Instructor", "membership/Instructor#TeachingAssistant"],
        )
        lms.add_member("canvas-ds101", "mallory", ["Learner"])
        lms.add_member("canvas-ds101", "otto", ["Mentor"])
        lms.add_link(
            "canvas-ds101", "week1-intro", lesson="week1", notebook="intro.ipynb"
        )
        lms.add_link(
            "canvas-ds101", "escape", lesson="week1", notebook="../../etc/passwd"
        )
        lms.add_course("moodle-phys210", "Computational Physics")
        lms.add_member("moodle-phys210", "carol", ["Learner"])
        lms.add_member("moodle-phys210", "grace", ["Learner"])
        lms.add_course("canvas-art300", "Art History 300")
        lms.add_member("canvas-art300", "eve", ["Learner"])
        config = lms.authenticator_config()
        hub.config = textwrap.dedent(f"""
            import json
            c.JupyterHub.authenticator_class = "classroom-lti13"
            c.JupyterHub.spawner_class = "simple"
            c.JupyterHub.redirect_to_server = False
            c.ClassroomRoster.course_files = [{course_file!r}]
            c.ClassroomRoster.check_interval = 0
            c.ClassroomLTI13Authenticator.update(json.loads({json.dumps(json.dumps(config))}))
            c.ClassroomLTI13Authenticator.username_key = "sub"
            c.ClassroomLTI13Authenticator.tool_private_key_file = {key_file!r}
            c.ClassroomLTI13Authenticator.nrps_sync_interval = 1
            c.ClassroomLTI13Authenticator.enable_auth_state = True
            c.ClassroomLTI13Authenticator.manage_groups = True
            c.ClassroomLTI13Authenticator.manage_roles = True
            c.ClassroomLTI13Authenticator.roster_contact = {CONTACT!r}
            c.ClassroomLTI13Authenticator.auth_refresh_age = 1
            """)
        async with hub:
            yield hub, lms
        print(hub.read_log()[-8000:])


@pytest.fixture
def hub(hub_and_lms):
    return hub_and_lms[0]


@pytest.fixture
def lms(hub_and_lms):
    lms = hub_and_lms[1]
    yield lms
    lms.tamper.clear()


async def do_launch(hub, lms, context, user, link=""):
    return await asyncio.to_thread(
        launch, lms.launch_url(context, user, link), hub.hub_url
    )


async def user_model(hub, name):
    r = await hub.api("GET", f"users/{name}", raise_error=False)
    return r.json() if r.code == 200 else None


def lms_rosters(hub):
    path = os.path.join(hub.workdir, "classroom-lms-rosters.json")
    try:
        with open(path) as f:
            return json.load(f)["courses"]
    except FileNotFoundError:
        return {}


async def wait_for_lms_roster(hub, course, check, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = lms_rosters(hub).get(course)
        if entry and check(entry):
            return entry
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"the LMS roster of {course} never got there: {lms_rosters(hub).get(course)}"
    )


async def test_student_launch_logs_in_to_the_course(hub, lms):
    result = await do_launch(hub, lms, "canvas-ds101", "alice")
    assert result.ok, result.describe()
    me = result.api("GET", "user").json()
    assert me["name"] == "alice"
    assert me["groups"] == ["ds101"]
    assert me["roles"] == ["user"]
    model = await user_model(hub, "alice")
    assert model["auth_state"]["classroom"] == {
        "courses": {"ds101": "student"},
        "claimed": {"ds101": "student"},
    }


async def test_launch_fetched_the_course_roster_from_the_lms(hub, lms):
    entry = await wait_for_lms_roster(hub, "ds101", lambda e: e["synced_at"])
    # every member of the LMS course, paged two at a time; the mentor has no role we map
    assert entry["members"] == {
        "alan": "ta",
        "alice": "student",
        "bob": "student",
        "grace": "instructor",
        "mallory": "student",
    }
    assert entry["skipped"] == 1
    assert "ok" in lms.token_requests  # the tool's signed JWT was accepted
    assert "LMS roster of ds101: 5 people (1 left out)" in hub.read_log()


async def test_instructor_gets_the_instructor_role_over_that_course_only(hub, lms):
    result = await do_launch(hub, lms, "canvas-ds101", "grace")
    assert result.ok, result.describe()
    me = result.api("GET", "user").json()
    assert me["groups"] == ["ds101-instructors"]
    assert sorted(me["roles"]) == ["ds101-instructor", "user"]
    token = result.api("POST", "users/grace/tokens", json={"note": "teaching"}).json()[
        "token"
    ]
    scopes = set((await hub.api("GET", "user", token=token)).json()["scopes"])
    assert "access:servers!group=ds101" in scopes
    assert not [s for s in scopes if "phys210" in s]


async def test_ta_subrole_makes_a_ta(hub, lms):
    result = await do_launch(hub, lms, "canvas-ds101", "alan")
    assert result.ok, result.describe()
    me = result.api("GET", "user").json()
    assert me["groups"] == ["ds101-tas"]
    assert sorted(me["roles"]) == ["ds101-ta", "user"]


async def test_launch_from_an_unknown_course_is_refused(hub, lms):
    result = await do_launch(hub, lms, "canvas-art300", "eve")
    assert result.status == 403, result.describe()
    assert "does not serve the course you came from (Art History 300)" in result.message
    # said once, under a short heading, not as the heading too (JupyterHub 6.x)
    assert (
        result.text.count("does not serve the course you came from") == 1
    ), result.text
    assert CONTACT in result.message
    assert await user_model(hub, "eve") is None
    assert "no course lists in lms_contexts" in hub.read_log()


async def test_a_role_we_do_not_map_is_refused(hub, lms):
    result = await do_launch(hub, lms, "canvas-ds101", "otto")
    assert result.status == 403, result.describe()
    assert "Your role in this course gives no access" in result.message
    assert await user_model(hub, "otto") is None


@pytest.mark.parametrize(
    "tamper, status, says",
    [
        ("expired", 400, "Signature has expired"),
        ("nonce", 400, "nonce mismatch"),
        ("deployment", 403, "does not accept launches from that LMS deployment"),
        ("signature", 400, "Signature verification failed"),
    ],
)
async def test_bad_launches_are_refused(hub, lms, tamper, status, says):
    lms.tamper.add(tamper)
    result = await do_launch(hub, lms, "canvas-ds101", "mallory")
    assert result.status == status, result.describe()
    assert says in result.message, result.describe()
    assert await user_model(hub, "mallory") is None
    assert "someone-else" not in hub.read_log()


async def test_lesson_link_lands_on_the_notebook(hub, lms):
    result = await do_launch(hub, lms, "canvas-ds101", "bob", link="week1-intro")
    assert result.ok, result.describe()
    assert result.location == "/hub/user-redirect/lab/tree/week1/intro.ipynb"


async def test_lesson_link_with_a_path_out_of_the_lesson_is_ignored(hub, lms):
    result = await do_launch(hub, lms, "canvas-ds101", "bob", link="escape")
    assert result.ok, result.describe()
    assert "lab/tree" not in result.location
    assert (
        "lesson link ignored: the notebook has a part that is not a plain file"
        in hub.read_log()
    )


async def test_student_removed_in_the_lms_loses_access_at_the_next_refresh(hub, lms):
    bob = await do_launch(hub, lms, "canvas-ds101", "bob")
    assert bob.ok, bob.describe()
    lms.remove_member("canvas-ds101", "bob")
    try:
        await wait_for_lms_roster(hub, "ds101", lambda e: "bob" not in e["members"])
        await asyncio.sleep(1.2)  # older than auth_refresh_age
        me = bob.api("GET", "user")
        assert me.status_code == 403, me.text
        assert (await user_model(hub, "bob"))["groups"] == []
    finally:
        lms.add_member("canvas-ds101", "bob", ["Learner"])
    await wait_for_lms_roster(hub, "ds101", lambda e: "bob" in e["members"])


async def test_student_added_in_the_lms_is_on_the_roster_after_the_next_sync(hub, lms):
    lms.add_member("canvas-ds101", "dave", ["Learner"])
    try:
        # no launch and no file change: the scheduled sync finds him
        await wait_for_lms_roster(
            hub, "ds101", lambda e: e["members"].get("dave") == "student"
        )
        result = await do_launch(hub, lms, "canvas-ds101", "dave")
        assert result.ok, result.describe()
        assert result.api("GET", "user").json()["groups"] == ["ds101"]
    finally:
        lms.remove_member("canvas-ds101", "dave")


@pytest.mark.parametrize("failure", ["nrps_down", "nrps_not_json"])
async def test_lms_failing_keeps_the_last_roster(hub, lms, failure):
    alice = await do_launch(hub, lms, "canvas-ds101", "alice")
    assert alice.ok, alice.describe()
    before = await wait_for_lms_roster(
        hub, "ds101", lambda e: "alice" in e["members"] and not e["error"]
    )
    lms.tamper.add(failure)
    lms.remove_member("canvas-ds101", "alice")
    try:
        entry = await wait_for_lms_roster(hub, "ds101", lambda e: e["error"])
        assert entry["members"] == before["members"]
        if failure == "nrps_not_json":
            assert 'is not JSON: starts "<!doctype html>' in entry["error"]
        await asyncio.sleep(1.2)
        me = alice.api("GET", "user")
        assert me.status_code == 200, me.text
        assert me.json()["groups"] == ["ds101"]
        assert "LMS roster of ds101 not updated, the last good one (" in hub.read_log()
    finally:
        lms.tamper.discard(failure)
        lms.add_member("canvas-ds101", "alice", ["Learner"])
    await wait_for_lms_roster(hub, "ds101", lambda e: not e["error"])


async def test_state_cookies_come_back_on_a_cross_site_post_over_https(hub, lms):
    # behind an https ingress: the LMS's form post is cross-site, so the state and
    # nonce cookies must be SameSite=None (and Secure)
    query = {
        "iss": lms.issuer,
        "login_hint": "alice",
        "target_link_uri": hub.hub_url,
        "client_id": lms.client_id,
        "lti_deployment_id": lms.deployment_id,
    }
    r = await hub.fetch(
        "hub/lti13/oauth_login?" + urlencode(query),
        headers={"X-Forwarded-Proto": "https"},
    )
    assert r.code == 302
    cookies = [
        c
        for c in r.headers.get_list("Set-Cookie")
        if c.startswith("lti13authenticator-")
    ]
    assert len(cookies) == 2, cookies
    for cookie in cookies:
        assert (
            "SameSite=None" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        ), cookie
    plain = await hub.fetch("hub/lti13/oauth_login?" + urlencode(query))
    for cookie in plain.headers.get_list("Set-Cookie"):
        assert "SameSite=None" not in cookie, cookie


async def test_tool_jwks_is_served(hub, lms):
    r = await hub.fetch("hub/lti13/jwks")
    keys = r.json()["keys"]
    assert [k["kid"] for k in keys] == ["classroom-tool-1"]
    assert "d" not in keys[0]  # the public half only


async def test_tool_configuration_names_the_public_key_url(hub, lms):
    config = (await hub.fetch("hub/lti13/config")).json()
    assert config["public_jwk_url"] == hub.hub_url + "hub/lti13/jwks"
    assert config["oidc_initiation_url"] == hub.hub_url + "hub/lti13/oauth_login"
    assert (
        "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
        in config["scopes"]
    )


async def test_the_hub_log_is_clean(hub):
    log = hub.read_log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
