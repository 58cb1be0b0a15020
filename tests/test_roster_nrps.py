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
