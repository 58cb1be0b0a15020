"""The roster model itself: roles, usernames, lookups."""

import pytest

from classroom_spawner.roster.model import (
    Course,
    Role,
    Roster,
    normalize_username,
    parse_role,
)


@pytest.mark.parametrize(
    "text, role",
    [
        ("student", Role.STUDENT),
        ("Learner", Role.STUDENT),
        ("StudentEnrollment", Role.STUDENT),
        ("TA", Role.TA),
        ("Teaching Assistant", Role.TA),
        ("teaching_assistant", Role.TA),
        ("grader", Role.TA),
        ("Instructor", Role.INSTRUCTOR),
        ("TeacherEnrollment", Role.INSTRUCTOR),
    ],
)
def test_role_spellings(text, role):
    assert parse_role(text) is role


@pytest.mark.parametrize("bad", ["wizard", "", {"role": "ta"}, ["ta"], None])
def test_anything_else_is_a_value_error(bad):
    with pytest.raises(ValueError, match="expected student, ta or instructor"):
        parse_role(bad)


def test_roles_are_ordered_by_privilege():
    assert Role.STUDENT.rank < Role.TA.rank < Role.INSTRUCTOR.rank
    assert not Role.STUDENT.is_staff and Role.TA.is_staff and Role.INSTRUCTOR.is_staff


def test_usernames_are_normalised_like_jupyterhub():
    assert normalize_username("  Alice@Uni.EDU\t") == "alice@uni.edu"


def test_lookups_and_counts():
    courses = {c: Course(id=c, title=c.upper()) for c in ("a", "b")}
    roster = Roster(
        courses,
        {"ann": {"a": Role.STUDENT, "b": Role.TA}, "bo": {"a": Role.INSTRUCTOR}},
    )
    assert dict(roster.memberships(" ANN ")) == {"a": Role.STUDENT, "b": Role.TA}
    assert roster.memberships("nobody") == {}
    assert roster.is_enrolled("Bo") and not roster.is_enrolled("nobody")
    assert roster.members("a") == {"ann": Role.STUDENT, "bo": Role.INSTRUCTOR}
    counts = roster.role_counts()
    assert counts["a"][Role.STUDENT] == 1 and counts["a"][Role.INSTRUCTOR] == 1
    assert counts["b"][Role.TA] == 1
    assert (roster.people, roster.enrolment_count) == (2, 3)
    # snapshots are read-only
    with pytest.raises(TypeError):
        roster.memberships("ann")["a"] = Role.INSTRUCTOR
