"""The pure policy behind ClassroomOAuthenticator: group names, roles, claims, auth_state.

No hub and no provider: these are functions of memberships and configuration.
"""

import json

import pytest

from classroom_spawner.authz import rbac
from classroom_spawner.authz.claims import (
    claimed_memberships,
    compile_claim_pattern,
    merge_memberships,
    parse_claim_map,
    provider_group_names,
)
from classroom_spawner.authz.groups import GroupNaming
from classroom_spawner.authz.state import (
    AUTH_STATE_KEY,
    build_payload,
    claimed_courses,
    stored_courses,
)
from classroom_spawner.roster import Role

S, TA, I = Role.STUDENT, Role.TA, Role.INSTRUCTOR


def test_group_names():
    naming = GroupNaming()
    memberships = {"ds101": S, "phys210": TA, "cs50": I}
    assert naming.groups_for(memberships) == {
        "ds101",
        "phys210-tas",
        "cs50-instructors",
    }
    nb = GroupNaming(nbgrader=True)
    assert nb.groups_for(memberships) == {
        "ds101",
        "nbgrader-ds101",
        "phys210-tas",
        "formgrade-phys210",
        "cs50-instructors",
        "formgrade-cs50",
    }
    assert naming.all_groups(["ds101"]) == {"ds101", "ds101-tas", "ds101-instructors"}


def test_group_name_collisions():
    assert GroupNaming().collisions(["ds101", "phys210"]) == []
    assert GroupNaming(nbgrader=True).collisions(["ds101", "phys210"]) == []
    assert GroupNaming().collisions(["ds101", "ds101-tas"]) == [
        "group 'ds101-tas' would hold both the staff of ds101 and the students of ds101-tas"
    ]
    # one staff group per course is fine: instructors and TAs are both staff
    assert GroupNaming(staff_template="{course}-staff").collisions(["ds101"]) == []
    assert GroupNaming(staff_template="staff").collisions(["ds101", "cs50"]) != []


def test_role_names():
    assert rbac.role_name("ds101", TA) == "ds101-ta"
    assert rbac.role_name("2025-fall.ds101", I) == "course-2025-fall.ds101-instructor"
    assert rbac.role_name("ds101", TA, "teach-{role}-{course}") == "teach-ta-ds101"
    with pytest.raises(ValueError, match="not a valid JupyterHub role name"):
        rbac.role_name("ds101", TA, "{course}/{role}")


def test_staff_role_scopes_are_over_the_students_group_only():
    naming = GroupNaming(student_template="students-{course}")
    scopes = rbac.parse_staff_scopes({})
    (role,) = rbac.staff_roles(
        {"ds101": TA, "cs50": S}, naming=naming, staff_scopes=scopes
    )
    assert role["name"] == "ds101-ta"
    assert role["scopes"] == sorted(
        s.format(group="students-ds101") for s in rbac.DEFAULT_STAFF_SCOPES
    )
    # every default scope exists in this JupyterHub, and none edits groups
    assert not rbac.risky_scopes(scopes)
    assert {s.split("!")[0] for s in rbac.DEFAULT_STAFF_SCOPES} <= rbac.known_scopes()


def test_risky_scopes_are_reported():
    scopes = rbac.parse_staff_scopes(
        {"instructor": ["groups!group={group}", "admin-ui"]}
    )
    assert rbac.risky_scopes(scopes) == ["groups!group={group}"]


def test_default_roles_follow_the_hub():
    assert rbac.default_role("user")["scopes"] == ["self"]
    assert rbac.default_role("user", extra_user_scopes=["access:services"])[
        "scopes"
    ] == ["self", "access:services"]
    override = [{"name": "user", "scopes": ["self", "read:hub"], "users": ["x"]}]
    assert rbac.default_role("user", override, ["access:services"])["scopes"] == [
        "self",
        "read:hub",
    ]
    admin = rbac.default_role("admin")
    assert "admin:users" in admin["scopes"] and "users" not in admin


def test_claim_map_parsing():
    parsed = parse_claim_map(
        {
            "g1": "DS101",
            "g2": {"course": "phys210", "role": "Teaching Assistant"},
            "g3": ["ds101", {"course": "cs50", "role": "teacher"}],
        }
    )
    assert parsed == {
        "g1": (("ds101", S),),
        "g2": (("phys210", TA),),
        "g3": (("ds101", S), ("cs50", I)),
    }
    for bad in (
        {"g": 5},
        {"g": {"role": "ta"}},
        {"g": {"course": "x", "level": 1}},
        {"g": []},
        {"g": " "},
    ):
        with pytest.raises(ValueError, match="course_claim_groups"):
            parse_claim_map(bad)


def test_claimed_memberships():
    claim_map = parse_claim_map(
        {"all-ds": "ds101", "ds-tutors": {"course": "ds101", "role": "ta"}, "x": "gone"}
    )
    pattern = compile_claim_pattern(r"course:(?P<course>[^:]+)(:(?P<role>.+))?")
    claimed, notes = claimed_memberships(
        [
            "all-ds",
            "ds-tutors",
            "x",
            "course:CS50:instructor",
            "course:nope",
            "unrelated",
        ],
        claim_map,
        pattern,
        {"ds101", "cs50"},
    )
    assert claimed == {"ds101": TA, "cs50": I}
    assert len(notes) == 2 and all("not on the roster" in n for n in notes)


def test_provider_group_shapes():
    assert provider_group_names(["a", "b", None, 3]) == ["a", "b", "3"]
    assert provider_group_names("a") == ["a"]
    assert (
        provider_group_names(None)
        == provider_group_names({"a": 1})
        == provider_group_names(7)
        == []
    )


def test_merge_keeps_the_highest_role():
    assert merge_memberships({"a": S, "b": I}, {"a": TA, "b": S, "c": S}) == {
        "a": TA,
        "b": I,
        "c": S,
    }


def test_auth_state_payload_round_trip():
    payload = build_payload({"ds101": S, "phys210": TA}, {"phys210": TA})
    auth_state = json.loads(json.dumps({AUTH_STATE_KEY: payload, "access_token": "t"}))
    assert stored_courses(auth_state) == {"ds101": S, "phys210": TA}
    assert claimed_courses(auth_state) == {"phys210": TA}


@pytest.mark.parametrize(
    "auth_state",
    [
        None,
        {},
        {AUTH_STATE_KEY: None},
        {AUTH_STATE_KEY: {"claimed": ["ds101"]}},
        "junk",
    ],
)
def test_auth_state_readers_never_raise(auth_state):
    assert claimed_courses(auth_state) == {}
    assert stored_courses(auth_state) == {}


def test_auth_state_reader_skips_unknown_roles():
    state = {AUTH_STATE_KEY: {"claimed": {"ds101": "dean", "cs50": "ta"}}}
    assert claimed_courses(state) == {"cs50": TA}
