"""The LTI launch claims in our terms: course, role, lesson (no hub, no I/O)."""

from __future__ import annotations

import pytest

from classroom_spawner.authz.lti_claims import (
    CONTEXT_CLAIM,
    CUSTOM_CLAIM,
    DEFAULT_ROLE_MAP,
    TARGET_LINK_CLAIM,
    context_index,
    launch_context,
    lesson_link,
    lti_role,
    parse_role_map,
)
from classroom_spawner.roster import Course, LessonRepo, Role

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
TABLE = parse_role_map(DEFAULT_ROLE_MAP)


def role(*roles):
    return lti_role(list(roles), TABLE)[0]


@pytest.mark.parametrize(
    "roles, expected",
    [
        ([LIS + "membership#Learner"], Role.STUDENT),
        (["Learner"], Role.STUDENT),  # the short form LTI 1.3 allows
        ([LIS + "membership/Learner#NonCreditLearner"], Role.STUDENT),  # a sub-role
        ([LIS + "membership#Instructor"], Role.INSTRUCTOR),
        ([LIS + "membership#Administrator"], Role.INSTRUCTOR),
        ([LIS + "membership#ContentDeveloper"], Role.TA),
        ([LIS + "membership/Instructor#TeachingAssistant"], Role.TA),
        # a TA sub-role caps the Instructor principal role sent along with it
        (
            [
                LIS + "membership#Instructor",
                LIS + "membership/Instructor#TeachingAssistant",
            ],
            Role.TA,
        ),
        (
            [LIS + "membership#Instructor", LIS + "membership/Instructor#Grader"],
            Role.TA,
        ),
        # the highest course role wins
        ([LIS + "membership#Learner", LIS + "membership#Instructor"], Role.INSTRUCTOR),
        # institution roles count only without a course role
        ([LIS + "institution/person#Faculty"], Role.INSTRUCTOR),
        ([LIS + "institution/person#Student"], Role.STUDENT),
        (
            [LIS + "institution/person#Faculty", LIS + "membership#Learner"],
            Role.STUDENT,
        ),
        # no access
        ([LIS + "membership#Mentor"], None),
        ([LIS + "system/person#Administrator"], None),
        ([], None),
    ],
)
def test_role_table(roles, expected):
    assert role(*roles) == expected


def test_no_roles_claim():
    assert lti_role(None, TABLE) == (None, ["the launch has no roles claim"])
    assert lti_role({"not": "a list"}, TABLE)[0] is None


def test_role_map_override_and_errors():
    table = {
        **TABLE,
        **parse_role_map(
            {"membership#Mentor": "ta", LIS + "membership#ContentDeveloper": None}
        ),
    }
    assert lti_role([LIS + "membership#Mentor"], table)[0] == Role.TA
    assert lti_role([LIS + "membership#ContentDeveloper"], table)[0] is None
    with pytest.raises(
        ValueError, match=r"lti_role_map\['membership#Mentor'\]: unknown role 'boss'"
    ):
        parse_role_map({"membership#Mentor": "boss"})


def test_context_index_and_ambiguous_contexts():
    courses = {
        "ds101": Course("ds101", "DS", lms_contexts=("c1", "c2"), origin="a.yaml:2"),
        "phys210": Course(
            "phys210", "Phys", lms_contexts=("c3", "c2"), origin="a.yaml:9"
        ),
    }
    index = context_index(courses)
    assert index.courses == {"c1": "ds101", "c3": "phys210"}
    assert index.ambiguous == {"c2": ("ds101 (a.yaml:2)", "phys210 (a.yaml:9)")}


def test_launch_context():
    assert launch_context({CONTEXT_CLAIM: {"id": "c1", "title": "Data Science"}}) == (
        "c1",
        "Data Science",
    )
    assert launch_context({CONTEXT_CLAIM: {"id": "c1", "label": "DS101"}}) == (
        "c1",
        "DS101",
    )
    assert launch_context({}) == (None, "")
    assert launch_context({CONTEXT_CLAIM: {"id": 5}}) == (None, "")


COURSE = Course(
    "ds101",
    "DS",
    lessons=(LessonRepo(url="https://git.example.edu/w1.git", target="week1"),),
)


@pytest.mark.parametrize(
    "claims, path",
    [
        (
            {CUSTOM_CLAIM: {"lesson": "week1", "notebook": "intro.ipynb"}},
            "week1/intro.ipynb",
        ),
        (
            {CUSTOM_CLAIM: {"lesson": "week1", "notebook": "part 2/ex-1.ipynb"}},
            "week1/part 2/ex-1.ipynb",
        ),
        (
            {
                TARGET_LINK_CLAIM: "https://hub.example.edu/?lesson=week1&notebook=a.ipynb"
            },
            "week1/a.ipynb",
        ),
    ],
)
def test_lesson_link(claims, path):
    link, why_not = lesson_link(claims, COURSE)
    assert why_not is None
    assert link.path == path


@pytest.mark.parametrize(
    "lesson, notebook, says",
    [
        ("week1", "../../etc/passwd", "not a plain file or folder name"),
        ("week1", "/etc/passwd", "must be a relative path"),
        ("week1", "a\\b.ipynb", "must be a relative path"),
        ("week1", "a//b.ipynb", "not a plain file or folder name"),
        ("week1", ".hidden/x.ipynb", "not a plain file or folder name"),
        ("week1", "", "the notebook is empty"),
        ("..", "x.ipynb", "not a plain file or folder name"),
        ("week2", "x.ipynb", "course 'ds101' has no lesson 'week2'"),
        ("week1", "x\n.ipynb", "not a plain file or folder name"),
    ],
)
def test_lesson_link_refusals(lesson, notebook, says):
    link, why_not = lesson_link(
        {CUSTOM_CLAIM: {"lesson": lesson, "notebook": notebook}}, COURSE
    )
    assert link is None
    assert says in why_not


def test_no_lesson_named():
    assert lesson_link({CUSTOM_CLAIM: {"other": "x"}}, COURSE) == (None, None)
    assert lesson_link({TARGET_LINK_CLAIM: "https://hub.example.edu/"}, COURSE) == (
        None,
        None,
    )


def test_course_file_lms_contexts(write_file, roster_problems):
    from classroom_spawner.roster.loader import load_roster

    good = write_file(
        "good.yaml", "courses:\n  - id: ds101\n    lms_contexts: [canvas-1, '0101']\n"
    )
    assert load_roster([good]).roster.courses["ds101"].lms_contexts == (
        "canvas-1",
        "0101",
    )
    twice = write_file(
        "twice.yaml",
        "courses:\n  - id: ds101\n    lms_contexts:\n      - c1\n      - c1\n",
    )
    assert roster_problems([twice]) == [
        f"{twice}:5: LMS context id 'c1' is listed twice"
    ]
    scalar = write_file(
        "scalar.yaml", "courses:\n  - id: ds101\n    lms_contexts: c1\n"
    )
    assert roster_problems([scalar]) == [f"{scalar}:3: 'lms_contexts' must be a list"]


def test_two_courses_may_not_share_an_lms_context(write_file, roster_problems):
    path = write_file(
        "shared.yaml",
        "courses:\n  - id: ds101\n    lms_contexts: [c1, c2]\n  - id: ds102\n    lms_contexts: [c3, c2]\n",
    )
    assert roster_problems([path]) == [
        f"{path}:4: LMS context 'c2' of course 'ds102' is listed by course 'ds101' too (at {path}:2):"
        " a launch must name one course"
    ]
