"""The NRPS client against the local LTI platform (real HTTP, no hub)."""

from __future__ import annotations

import logging

import pytest

from classroom_spawner.authz.lti_claims import (
    DEFAULT_ROLE_MAP,
    lti_role,
    parse_role_map,
)
from classroom_spawner.local.lti import LTIPlatform, new_key
from classroom_spawner.roster import ClassroomRoster, Role
from classroom_spawner.roster.nrps import (
    LMSRosters,
    NRPSError,
    TokenEndpoint,
    fetch_members,
    next_link,
    read_state,
)

TABLE = parse_role_map(DEFAULT_ROLE_MAP)


@pytest.fixture
def tool_key():
    return new_key()


@pytest.fixture
async def lms(tool_key):
    async with LTIPlatform(
        tool_url="http://127.0.0.1:9/", tool_public_key=tool_key.public_key()
    ) as lms:
        lms.add_course("c1", "Data Science")
        for name in ("alice", "bob", "carol", "dave", "erin"):
            lms.add_member("c1", name, ["Learner"])
        lms.add_member("c1", "grace", ["Instructor"])
        yield lms


def endpoint(lms, key, **kwargs):
    return TokenEndpoint(
        url=f"{lms.url}/token",
        client_id=lms.client_id,
        private_key=key,
        kid="k1",
        **kwargs,
    )


def rosters(lms, key, tmp_path, published):
    return LMSRosters(
        endpoint(lms, key),
        username=lambda m: m.get("user_id"),
        role=lambda roles: lti_role(roles, TABLE)[0],
        publish=published.append,
        log=logging.getLogger("test"),
        state_file=str(tmp_path / "lms.json"),
        interval=0,
        min_interval=0,
    )


def test_next_link():
    assert (
        next_link('<https://lms/x?p=2>; rel="next", <https://lms/x?p=9>; rel="last"')
        == "https://lms/x?p=2"
    )
    assert next_link('<https://lms/x?p=9>; rel="last"') is None
    assert next_link(None) is None


async def test_members_are_fetched_page_by_page(lms, tool_key):
    from tornado.httpclient import AsyncHTTPClient

    http = AsyncHTTPClient()
    token = await endpoint(lms, tool_key).token(http)
    members = await fetch_members(http, f"{lms.url}/nrps/c1", token)
    assert [m["user_id"] for m in members] == [
        "alice",
        "bob",
        "carol",
        "dave",
        "erin",
        "grace",
    ]
    assert lms.nrps_requests == 3  # page_size 2
    assert lms.token_requests == ["ok"]


async def test_a_key_the_platform_does_not_know_gets_no_token(lms):
    from tornado.httpclient import AsyncHTTPClient

    with pytest.raises(NRPSError, match="refused the tool's key: HTTP 401"):
        await endpoint(lms, new_key()).token(AsyncHTTPClient())
    assert lms.token_requests == ["invalid_client"]


async def test_roster_from_the_lms_reaches_classroom_roster(
    lms, tool_key, tmp_path, write_file
):
    course_file = write_file(
        "courses.yaml",
        "courses:\n  - id: ds101\n    lms_contexts: [c1]\n    students: [zoe]\n",
    )
    roster = ClassroomRoster(course_files=[course_file])
    roster.load()
    source = LMSRosters(
        endpoint(lms, tool_key),
        username=lambda m: m.get("user_id"),
        role=lambda roles: lti_role(roles, TABLE)[0],
        publish=lambda lists: roster.set_extra_members("lms", lists),
        log=logging.getLogger("test"),
        interval=0,
        min_interval=0,
    )
    await source.launched("ds101", f"{lms.url}/nrps/c1")
    current = await roster.current()
    assert current.memberships("alice") == {"ds101": Role.STUDENT}
    assert current.memberships("grace") == {"ds101": Role.INSTRUCTOR}
    assert current.memberships("zoe") == {
        "ds101": Role.STUDENT
    }  # the file's member stays
    lms.remove_member("c1", "alice")
    assert await source.sync("ds101")
    assert (await roster.current()).memberships("alice") == {}
    # another ClassroomRoster of the same files (a spawner's) sees the same
    assert (await ClassroomRoster(course_files=[course_file]).current()).memberships(
        "grace"
    )
    ClassroomRoster._shared.clear()


@pytest.mark.parametrize(
    "failure, says", [("nrps_not_json", "is not JSON"), ("nrps_down", "HTTP 503")]
)
async def test_a_failing_lms_keeps_the_last_good_list(
    lms, tool_key, tmp_path, caplog, failure, says
):
    published = []
    source = rosters(lms, tool_key, tmp_path, published)
    await source.launched("ds101", f"{lms.url}/nrps/c1")
    assert len(published[-1]["ds101"]) == 6
    lms.tamper.add(failure)
    lms.remove_member("c1", "alice")
    with caplog.at_level(logging.ERROR):
        assert not await source.sync("ds101")
    assert "alice" in source.courses["ds101"].members
    assert len(published) == 1  # nothing new published
    assert (
        "LMS roster of ds101 not updated, the last good one (6 people) stays in force"
        in caplog.text
    )
    assert says in caplog.text
    saved = read_state(str(tmp_path / "lms.json"))
    assert says in saved["ds101"].error and "alice" in saved["ds101"].members


async def test_saved_lists_are_read_back(lms, tool_key, tmp_path):
    published = []
    first = rosters(lms, tool_key, tmp_path, published)
    await first.launched("ds101", f"{lms.url}/nrps/c1")
    again = []
    second = rosters(lms, tool_key, tmp_path, again)
    await second.load_state()
    assert again == [published[-1]]
    assert second.synced_at("ds101") == first.synced_at("ds101")


async def test_inactive_and_unmapped_members_are_left_out(lms, tool_key, tmp_path):
    lms.add_member("c1", "otto", ["Mentor"])
    published = []
    source = rosters(lms, tool_key, tmp_path, published)
    await source.launched("ds101", f"{lms.url}/nrps/c1")
    assert "otto" not in published[-1]["ds101"]
    assert source.courses["ds101"].skipped == 1


def test_check_shows_the_lms_rosters(write_file, tmp_path, capsys):
    import calendar

    from classroom_spawner.cli import main
    from classroom_spawner.local.lti import private_pem
    from classroom_spawner.roster.nrps import CourseList, write_state

    course_file = write_file(
        "courses.yaml",
        "courses:\n  - id: ds101\n    lms_contexts: [c1]\n  - id: phys210\n    lms_contexts: [c2, c3]\n  - id: art\n",
    )
    key_file = write_file("tool-key.pem", private_pem(new_key()))
    config = write_file(
        "jupyterhub_config.py",
        f"""
c.JupyterHub.authenticator_class = "classroom-lti13"
c.ClassroomRoster.course_files = [{course_file!r}]
c.ClassroomLTI13Authenticator.issuer = "https://lms.example.edu"
c.ClassroomLTI13Authenticator.client_id = ["tool"]
c.ClassroomLTI13Authenticator.deployment_ids = ["d1"]
c.ClassroomLTI13Authenticator.nrps_token_url = "https://lms.example.edu/token"
c.ClassroomLTI13Authenticator.tool_private_key_file = {key_file!r}
c.ClassroomLTI13Authenticator.enable_auth_state = True
""",
    )
    synced = calendar.timegm((2026, 3, 2, 9, 30, 0))
    write_state(
        str(tmp_path / "classroom-lms-rosters.json"),
        {
            "ds101": CourseList(
                url="https://lms.example.edu/nrps/c1",
                members={"alice": Role.STUDENT, "grace": Role.INSTRUCTOR},
                synced_at=synced,
                error="membership list https://lms.example.edu/nrps/c1 (page 1) is not JSON",
            )
        },
    )
    assert main(["check", "-f", config]) in (0, 3)
    out = capsys.readouterr().out
    assert (
        "LMS ds101 <- c1: 2 people from the LMS, fetched 2026-03-02 09:30 UTC;"
        " the last fetch failed: membership list https://lms.example.edu/nrps/c1 (page 1) is not JSON"
    ) in out
    assert (
        "LMS phys210 <- c2, c3: no list from the LMS yet (fetched at the first launch)"
        in out
    )
    assert "LMS art" not in out


async def test_saved_lists_are_in_force_from_the_first_roster_check(
    write_file, tmp_path, monkeypatch
):
    """Without manage_roles (no load_managed_roles at start-up), the saved lists and
    the schedule start at the first login or refresh."""
    from traitlets.config import Config

    from classroom_spawner.local.lti import private_pem
    from classroom_spawner.lti import ClassroomLTI13Authenticator
    from classroom_spawner.roster.nrps import CourseList, write_state

    monkeypatch.chdir(tmp_path)
    course_file = write_file(
        "courses.yaml", "courses:\n  - id: ds101\n    lms_contexts: [c1]\n"
    )
    write_state(
        str(tmp_path / "classroom-lms-rosters.json"),
        {
            "ds101": CourseList(
                url="https://lms.example.edu/nrps/c1",
                members={"alice": Role.STUDENT},
                synced_at=1.0,
            )
        },
    )
    c = Config()
    c.ClassroomRoster.course_files = [course_file]
    c.ClassroomLTI13Authenticator.client_id = ["tool"]
    c.ClassroomLTI13Authenticator.deployment_ids = ["d1"]
    c.ClassroomLTI13Authenticator.nrps_token_url = "https://lms.example.edu/token"
    c.ClassroomLTI13Authenticator.tool_private_key_file = write_file(
        "key.pem", private_pem(new_key())
    )
    c.ClassroomLTI13Authenticator.enable_auth_state = True
    c.ClassroomLTI13Authenticator.nrps_sync_interval = 3600
    auth = ClassroomLTI13Authenticator(config=c)
    try:
        _, courses, claimed, _ = await auth._memberships("alice", {})
        assert courses == {"ds101": Role.STUDENT} and claimed == {}
        assert auth.lms_rosters._task is not None  # the schedule runs
    finally:
        auth.lms_rosters.stop()
        ClassroomRoster._shared.clear()


async def test_a_next_page_on_another_host_is_not_followed(lms, tool_key):
    """The access token goes with every page request: a Link to another host is refused."""
    from tornado.httpclient import AsyncHTTPClient

    http = AsyncHTTPClient()
    token = await endpoint(lms, tool_key).token(http)
    lms.tamper.add("nrps_next_elsewhere")
    with pytest.raises(
        NRPSError,
        match=r"the next page is on another host \(http://lms.attacker.example\)",
    ):
        await fetch_members(http, f"{lms.url}/nrps/c1", token)
    assert lms.nrps_requests == 1


@pytest.mark.parametrize(
    "change, says",
    [
        ("emails hidden", "none of its 6 active members has a usable username"),
        ("everyone gone", "it lists no one, the last good one had 6 people"),
    ],
)
async def test_a_list_that_would_lock_the_course_out_keeps_the_last_good_one(
    lms, tool_key, tmp_path, caplog, change, says
):
    by_email = []
    source = LMSRosters(
        endpoint(lms, tool_key),
        username=lambda m: m.get("email"),
        role=lambda roles: lti_role(roles, TABLE)[0],
        publish=by_email.append,
        log=logging.getLogger("test"),
        interval=0,
        min_interval=0,
    )
    await source.launched("ds101", f"{lms.url}/nrps/c1")
    assert len(by_email[-1]["ds101"]) == 6
    for member in lms.contexts["c1"].members.values():
        if change == "emails hidden":
            member.email = ""
    if change == "everyone gone":
        lms.contexts["c1"].members.clear()
    with caplog.at_level(logging.ERROR):
        assert not await source.sync("ds101")
    assert says in caplog.text
    assert len(source.courses["ds101"].members) == 6 and len(by_email) == 1
