"""Roster sources: plain CSV, Canvas gradebook exports, and the YAML course file's own lists."""

import textwrap

import pytest

from classroom_spawner.roster import Role
from classroom_spawner.roster.loader import load_roster

CANVAS_HEADER = "Student,ID,SIS User ID,SIS Login ID,Section,Lab 1 (10231),Current Score,Final Score\n"
CANVAS_POINTS = "    Points Possible,,,,,10.00,(read only),(read only)\n"


def course_file(write_file, rosters_yaml="", extra=""):
    return write_file(
        "courses.yaml",
        "courses:\n  - id: ds101\n    title: Data Science 101\n"
        + textwrap.indent(textwrap.dedent(extra), "    ")
        + (
            "    rosters:\n" + textwrap.indent(textwrap.dedent(rosters_yaml), "      ")
            if rosters_yaml
            else ""
        ),
    )


# -- plain CSV ---------------------------------------------------------------


def test_plain_csv_with_roles(write_file):
    csv_path = write_file(
        "roster.csv",
        "username,role\nAlice@Uni.edu ,student\nbob,TA\ncarol,Instructor\ndave,teaching assistant\n",
    )
    roster = load_roster([course_file(write_file, "- file: roster.csv\n")]).roster
    assert dict(roster.memberships("alice@uni.edu")) == {"ds101": Role.STUDENT}
    assert roster.memberships("bob")["ds101"] is Role.TA
    assert roster.memberships("carol")["ds101"] is Role.INSTRUCTOR
    assert roster.memberships("dave")["ds101"] is Role.TA
    assert csv_path in roster.sources


def test_plain_csv_without_role_column_uses_the_entrys_role(write_file):
    write_file("staff.csv", "email\nta1@uni.edu\nTA2@uni.edu\n")
    write_file("students.csv", "email\ns1@uni.edu\n")
    roster = load_roster(
        [
            course_file(
                write_file,
                """\
                - file: staff.csv
                  login_column: email
                  role: ta
                - file: students.csv
                  login_column: Email
                """,
            )
        ]
    ).roster
    assert roster.memberships("ta2@uni.edu")["ds101"] is Role.TA
    assert roster.memberships("s1@uni.edu")["ds101"] is Role.STUDENT


def test_headerless_csv(write_file):
    write_file("r.csv", "alice,student\n\n# a comment\nbob,instructor\n")
    roster = load_roster(
        [course_file(write_file, "- file: r.csv\n  header: false\n")]
    ).roster
    assert roster.memberships("bob")["ds101"] is Role.INSTRUCTOR
    assert roster.people == 2


def test_unknown_role_names_file_and_line(write_file, roster_problems):
    path = write_file("r.csv", "username,role\nalice,student\nbob,professorx\n")
    problems = roster_problems([course_file(write_file, "- file: r.csv\n")])
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:3: unknown role 'professorx'")


def test_missing_login_names_file_and_line(write_file, roster_problems):
    path = write_file("r.csv", "username,role\nalice,student\n ,ta\n")
    problems = roster_problems([course_file(write_file, "- file: r.csv\n")])
    assert problems == [f"{path}:3: missing login in column 'username'"]


def test_every_bad_row_is_reported_not_just_the_first(write_file, roster_problems):
    path = write_file(
        "r.csv", "username,role\n,student\nbob,wizard\ncarol,ta\nd/e,student\n"
    )
    problems = roster_problems([course_file(write_file, "- file: r.csv\n")])
    assert [p.split(": ")[0] for p in problems] == [
        f"{path}:2",
        f"{path}:3",
        f"{path}:5",
    ]


def test_line_numbers_count_multiline_quoted_fields(write_file, roster_problems):
    path = write_file(
        "r.csv", 'username,role,note\nalice,student,"two\nlines"\nbob,nope,x\n'
    )
    problems = roster_problems([course_file(write_file, "- file: r.csv\n")])
    assert problems[0].startswith(f"{path}:4: unknown role")


def test_missing_column_lists_the_columns_there_are(write_file, roster_problems):
    path = write_file("r.csv", "Email,Role\nalice@uni.edu,student\n")
    problems = roster_problems([course_file(write_file, "- file: r.csv\n")])
    assert problems[0].startswith(f"{path}:1: no login column 'username' in the header")
    assert "'Email', 'Role'" in problems[0]
    assert "set 'login_column'" in problems[0]


def test_not_utf8_names_the_line(write_file, roster_problems):
    path = write_file("r.csv", b"username,role\nalice,student\nb\xe9b,student\n")
    problems = roster_problems([course_file(write_file, "- file: r.csv\n")])
    assert problems[0].startswith(f"{path}:3: not valid UTF-8")


def test_utf8_bom_from_spreadsheets_is_fine(write_file):
    write_file("r.csv", "\ufeffusername,role\nalice,student\n".encode())
    roster = load_roster([course_file(write_file, "- file: r.csv\n")]).roster
    assert roster.is_enrolled("alice")


def test_missing_roster_file_names_the_course_file_entry(write_file, roster_problems):
    cf = course_file(write_file, "- file: nowhere.csv\n")
    problems = roster_problems([cf])
    assert "nowhere.csv: cannot read roster file (named in" in problems[0]
    assert f"{cf}:5)" in problems[0]


# -- username mapping ----------------------------------------------------------


@pytest.mark.parametrize(
    "options, login, expected",
    [
        ("strip_domain: uni.edu", "Alice@UNI.edu", "alice"),
        ("strip_domain: uni.edu", "bob@other.org", "bob@other.org"),
        ("strip_domain: true", "carol@anywhere.org", "carol"),
        ("add_domain: uni.edu", "dave", "dave@uni.edu"),
        ("add_domain: uni.edu", "erin@uni.edu", "erin@uni.edu"),
        ("", "  Frank.Smith  ", "frank.smith"),
    ],
)
def test_login_to_username_mapping(write_file, options, login, expected):
    write_file("r.csv", f"username,role\n{login},student\n")
    entry = "- file: r.csv\n" + (f"  {options}\n" if options else "")
    roster = load_roster([course_file(write_file, entry)]).roster
    assert list(roster.members("ds101")) == [expected]


# -- Canvas gradebook export ---------------------------------------------------


def canvas_export(*rows):
    return CANVAS_HEADER + CANVAS_POINTS + "".join(r + "\n" for r in rows)


def test_canvas_export_skips_points_possible_and_test_student(write_file):
    write_file(
        "canvas.csv",
        canvas_export(
            '"Lovelace, Ada",40211,U1001,Ada@Uni.edu,Lecture 001,9.00,90.00,90.00',
            '"Curie, Marie",40213,U1003,marie@uni.edu,Lecture 002,,70.00,35.00',
            '"Student, Test",40299,,5f1c2a9e8d7b,Lecture 001,,,',
        ),
    )
    roster = load_roster(
        [course_file(write_file, "- file: canvas.csv\n  format: canvas\n")]
    ).roster
    assert roster.members("ds101") == {
        "ada@uni.edu": Role.STUDENT,
        "marie@uni.edu": Role.STUDENT,
    }


def test_canvas_export_login_column_is_configurable(write_file):
    write_file(
        "canvas.csv",
        canvas_export('"Lovelace, Ada",40211,U1001,ada@uni.edu,L1,9,90,90'),
    )
    for column, expected in [("ID", "40211"), ("SIS User ID", "u1001")]:
        cf = course_file(
            write_file,
            f"- file: canvas.csv\n  format: canvas\n  login_column: {column}\n",
        )
        assert list(load_roster([cf]).roster.members("ds101")) == [expected]


def test_canvas_row_without_login_is_skipped_with_a_warning_naming_the_student(
    write_file,
):
    """People without an SIS login are common in Canvas exports: the rest of the
    export is read, and the row is a warning naming file:line and who (cut)."""
    long_name = "Hopper, Grace " + "B" * 500
    path = write_file(
        "canvas.csv",
        canvas_export(
            '"Lovelace, Ada",40211,U1001,ada@uni.edu,L1,9,90,90',
            '"Hopper, Grace",40212,U1002,,L1,9,90,90',
            f'"{long_name}",40213,U1003,  ,L1,9,90,90',
            '"Curie, Marie",40214,U1004,marie@uni.edu,L1,9,90,90',
        ),
    )
    result = load_roster(
        [course_file(write_file, "- file: canvas.csv\n  format: canvas\n")]
    )
    assert sorted(result.roster.members("ds101")) == ["ada@uni.edu", "marie@uni.edu"]
    first, second = (str(w) for w in result.warnings)
    assert first == (
        f"{path}:4: skipped 'Hopper, Grace': no login in column 'SIS Login ID'"
        " (they cannot log in until the export has one)"
    )
    assert second.startswith(f"{path}:5: skipped 'Hopper, Grace BBB")
    assert "B" * 100 not in second and "(cut, 514 characters)" in second


def test_plain_csv_row_without_login_is_still_an_error(write_file, roster_problems):
    # a plain list is written by the course's staff: a row without a login is a mistake
    path = write_file("r.csv", "username,role\n,ta\n")
    problems = roster_problems([course_file(write_file, "- file: r.csv\n")])
    assert problems == [f"{path}:2: missing login in column 'username'"]


def test_canvas_section_filter(write_file):
    write_file(
        "canvas.csv",
        canvas_export(
            '"A, A",1,,a@uni.edu,Lab A,,,',
            '"B, B",2,,b@uni.edu,Lab B,,,',
            '"C, C",3,,c@uni.edu,Lab B and Lab A,,,',
        ),
    )
    cf = course_file(
        write_file, "- file: canvas.csv\n  format: canvas\n  sections: [Lab A]\n"
    )
    assert sorted(load_roster([cf]).roster.members("ds101")) == [
        "a@uni.edu",
        "c@uni.edu",
    ]


def test_canvas_sections_whose_names_have_and_or_a_comma(write_file):
    write_file(
        "canvas.csv",
        canvas_export(
            '"A, A",1,,a@uni.edu,"Smith, J.",,,',
            '"B, B",2,,b@uni.edu,Lab A and B,,,',
            '"C, C",3,,c@uni.edu,"Lecture 1, Smith, J. and Lab C",,,',
            '"D, D",4,,d@uni.edu,Smith,,,',
            '"E, E",5,,e@uni.edu,Lab A,,,',
        ),
    )
    cf = course_file(
        write_file,
        '- file: canvas.csv\n  format: canvas\n  sections: ["Smith, J.", Lab A and B]\n',
    )
    assert sorted(load_roster([cf]).roster.members("ds101")) == [
        "a@uni.edu",
        "b@uni.edu",
        "c@uni.edu",
    ]


def test_a_section_filter_that_matches_no_one_is_a_warning_at_its_line(write_file):
    csv = write_file(
        "canvas.csv",
        canvas_export(
            '"A, A",1,,a@uni.edu,Lab A,,,',
            '"B, B",2,,b@uni.edu,Lab B and Lab A,,,',
            '"C, C",3,,c@uni.edu,Lab B,,,',
        ),
    )
    cf = course_file(
        write_file,
        "- file: canvas.csv\n  format: canvas\n  sections:\n    - Lab A\n    - Lab  Z\n",
    )
    result = load_roster([cf])
    assert sorted(result.roster.members("ds101")) == ["a@uni.edu", "b@uni.edu"]
    (warning,) = (str(w) for w in result.warnings)
    # line 9 of the course file: "    - Lab  Z", the second entry under "sections:"
    assert warning == (
        f"{cf}:9: section 'Lab  Z' matches no student in {csv}"
        " (its Section cells: 'Lab A', 'Lab B and Lab A', 'Lab B')"
    )


def test_a_section_filter_that_matches_nothing_at_all_lists_what_the_export_has(
    write_file,
):
    sections = [f"Section {i:02}" for i in range(12)]
    write_file(
        "canvas.csv",
        canvas_export(
            *(
                f'"S, {i}",{i},,s{i}@uni.edu,{name},,,'
                for i, name in enumerate(sections)
            )
        ),
    )
    cf = course_file(
        write_file, "- file: canvas.csv\n  format: canvas\n  sections: [Lecture 1]\n"
    )
    result = load_roster([cf])
    assert result.roster.members("ds101") == {}
    (warning,) = (str(w) for w in result.warnings)
    assert warning.startswith(f"{cf}:7: section 'Lecture 1' matches no student in ")
    assert warning.endswith("'Section 06', 'Section 07' and 4 more)")


def test_a_section_filter_on_an_export_with_no_students(write_file):
    write_file("canvas.csv", canvas_export())
    cf = course_file(
        write_file, "- file: canvas.csv\n  format: canvas\n  sections: [Lab A]\n"
    )
    (warning,) = (str(w) for w in load_roster([cf]).warnings)
    assert warning.startswith(
        f"{cf}:7: section 'Lab A' matches no student"
    ) and warning.endswith("(it lists no students)")


def test_no_warnings_when_every_section_matches(write_file):
    write_file("canvas.csv", canvas_export('"A, A",1,,a@uni.edu,Lab A,,,'))
    cf = course_file(
        write_file, "- file: canvas.csv\n  format: canvas\n  sections: [lab a]\n"
    )
    assert load_roster([cf]).warnings == ()


def test_canvas_export_with_staff_role_entry(write_file):
    # some sites export TAs from a separate Canvas course section
    write_file("canvas.csv", canvas_export('"T, A",1,,ta@uni.edu,TA section,,,'))
    cf = course_file(write_file, "- file: canvas.csv\n  format: canvas\n  role: ta\n")
    assert load_roster([cf]).roster.memberships("ta@uni.edu")["ds101"] is Role.TA


# -- merging -------------------------------------------------------------------


def test_people_in_several_courses_with_different_roles(write_file):
    cf = write_file(
        "courses.yaml",
        textwrap.dedent("""\
        courses:
          - id: ds101
            students: [alice, Bob]
          - id: ds201
            tas: [alice]
            instructors: [carol]
        """),
    )
    roster = load_roster([cf]).roster
    assert dict(roster.memberships("alice")) == {
        "ds101": Role.STUDENT,
        "ds201": Role.TA,
    }
    assert dict(roster.memberships("BOB ")) == {"ds101": Role.STUDENT}
    assert roster.memberships("nobody") == {}


def test_listed_twice_the_higher_role_wins(write_file):
    write_file("canvas.csv", canvas_export('"T, A",1,,ta@uni.edu,L1,,,'))
    cf = course_file(
        write_file,
        "- file: canvas.csv\n  format: canvas\n",
        extra="tas: [TA@uni.edu]\n",
    )
    assert load_roster([cf]).roster.memberships("ta@uni.edu")["ds101"] is Role.TA


@pytest.mark.parametrize("header", [True, False])
def test_an_empty_csv_is_an_error_not_an_empty_class(
    write_file, header, roster_problems
):
    # a file caught half-written must not drop every student
    path = write_file("r.csv", "")
    extra = "" if header else "  header: false\n"
    problems = roster_problems([course_file(write_file, "- file: r.csv\n" + extra)])
    assert problems == [
        f"{path}:1: empty file; a roster with nobody in it still needs its header line"
    ]


def test_a_csv_with_only_its_header_is_an_empty_class(write_file):
    write_file("r.csv", "username,role\n")
    roster = load_roster([course_file(write_file, "- file: r.csv\n")]).roster
    assert roster.people == 0 and roster.course("ds101") is not None


def test_comment_lines_before_the_header_are_skipped(write_file):
    write_file("r.csv", "# exported 2026-09-01\n\nusername,role\nalice,ta\n")
    roster = load_roster([course_file(write_file, "- file: r.csv\n")]).roster
    assert roster.memberships("alice")["ds101"] is Role.TA


def test_a_missing_canvas_column_does_not_suggest_a_setting_that_does_not_exist(
    write_file, roster_problems
):
    path = write_file("g.csv", "Name,ID,SIS Login ID\n" + CANVAS_POINTS + "Ada,1,ada\n")
    problems = roster_problems(
        [course_file(write_file, "- file: g.csv\n  format: canvas\n")]
    )
    assert problems and all(p.startswith(f"{path}:1: no ") for p in problems)
    assert "name_column" not in " ".join(problems)
    assert "is this the right file?" in problems[0]
