"""The YAML course file: settings, members, and every kind of mistake named by file and line."""

import textwrap

import pytest

from classroom_spawner.roster import Role
from classroom_spawner.roster.loader import load_roster


def yaml_file(write_file, text, name="courses.yaml"):
    return write_file(name, textwrap.dedent(text))


def test_full_course_is_read(write_file):
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: DS101
            title: Data Science 101
            description: Tuesdays
            image: quay.io/jupyter/scipy-notebook:2025-06-02
            cpu_guarantee: 0.5
            cpu_limit: 2
            mem_guarantee: 512M
            mem_limit: 2G
            kubespawner_override:
              node_selector: {pool: teaching}
            instructors: [Prof@Uni.edu]
            tas: [ta@uni.edu]
            students: [s1@uni.edu, s2@uni.edu]
        """,
    )
    roster = load_roster([path]).roster
    course = roster.course("ds101")
    assert course.title == "Data Science 101"
    assert course.description == "Tuesdays"
    assert course.image == "quay.io/jupyter/scipy-notebook:2025-06-02"
    assert (course.cpu_guarantee, course.cpu_limit) == (0.5, 2.0)
    assert (course.mem_guarantee, course.mem_limit) == ("512M", "2G")
    assert dict(course.kubespawner_override) == {"node_selector": {"pool": "teaching"}}
    assert course.origin == f"{path}:2"
    assert roster.members("ds101") == {
        "prof@uni.edu": Role.INSTRUCTOR,
        "ta@uni.edu": Role.TA,
        "s1@uni.edu": Role.STUDENT,
        "s2@uni.edu": Role.STUDENT,
    }


def test_defaults_for_optional_settings(write_file):
    path = yaml_file(write_file, "courses:\n  - id: c1\n")
    course = load_roster([path]).roster.course("c1")
    assert course.title == "c1"
    assert course.image is None and course.cpu_limit is None and course.lessons == ()


def test_unknown_key_names_line_and_known_keys(write_file, roster_problems):
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: ds101
            imgae: foo
        """,
    )
    (problem,) = roster_problems([path])
    assert problem.startswith(
        f"{path}:3: unknown key 'imgae' in a course (known keys: "
    )
    assert "image" in problem


def test_duplicate_course_id_across_files_names_both(write_file, roster_problems):
    first = yaml_file(write_file, "courses:\n  - id: ds101\n", "a.yaml")
    second = yaml_file(write_file, "courses:\n  - id: other\n  - id: DS101\n", "b.yaml")
    (problem,) = roster_problems([first, second])
    assert (
        problem
        == f"{second}:3: duplicate course id 'ds101' (first defined at {first}:2)"
    )


def test_duplicate_course_id_in_one_file(write_file, roster_problems):
    path = yaml_file(write_file, "courses:\n  - id: ds101\n  - id: ds101\n")
    (problem,) = roster_problems([path])
    assert problem.startswith(f"{path}:3: duplicate course id 'ds101'")


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ("id: 'data science'", "course id 'data science' must be"),
        ("title: x", "course has no 'id'"),
        ("id: c1\n    cpu_limit: lots", "cpu_limit must be a positive number"),
        ("id: c1\n    cpu_limit: -1", "cpu_limit must be a positive number"),
        ("id: c1\n    mem_limit: 2GB", "mem_limit '2GB' is not a memory size"),
        (
            "id: c1\n    cpu_guarantee: 4\n    cpu_limit: 2",
            "cpu_guarantee 4 is above cpu_limit 2",
        ),
        (
            "id: c1\n    mem_guarantee: 4G\n    mem_limit: 512M",
            "mem_guarantee 4G is above mem_limit 512M",
        ),
        ("id: c1\n    students: alice", "'students' must be a list"),
        (
            "id: c1\n    students: [[a, b]]",
            "a member of 'students' must be a single value",
        ),
        ("id: c1\n    students: ['a b']", "login 'a b' contains whitespace"),
        (
            "id: c1\n    kubespawner_override: [1]",
            "kubespawner_override must be a mapping",
        ),
        (
            "id: c1\n    kubespawner_override: {node_selecter: {pool: gpu}}",
            "kubespawner_override: 'node_selecter' is not a KubeSpawner setting (did you mean 'node_selector'?)",
        ),
        (
            "id: c1\n    kubespawner_override:\n      node_selector: physics",
            "kubespawner_override: node_selector: expected a dict, not the str 'physics'",
        ),
        (
            "id: c1\n    kubespawner_override: {cpu_limit: lots}",
            "kubespawner_override: cpu_limit: expected a float",
        ),
        (
            "id: c1\n    rosters: [{file: r.csv, format: moodle}]",
            "unknown roster format 'moodle'",
        ),
        ("id: c1\n    rosters: [{format: csv}]", "roster entry has no 'file'"),
        ("id: c1\n    rosters: [{file: r.csv, role: boss}]", "unknown role 'boss'"),
        (
            "id: c1\n    rosters: [{file: r.csv, sections: [Lab A]}]",
            "'sections' does not apply to format csv",
        ),
        (
            "id: c1\n    rosters: [{file: r.csv, format: canvas, role_column: Role}]",
            "'role_column' does not apply to format canvas",
        ),
    ],
)
def test_bad_course_settings(write_file, snippet, expected, roster_problems):
    path = yaml_file(write_file, f"courses:\n  - {snippet}\n")
    problems = roster_problems([path])
    assert any(p.startswith(f"{path}:") and expected in p for p in problems), problems


def test_yaml_syntax_error_names_the_line(write_file, roster_problems):
    path = yaml_file(
        write_file, "courses:\n  - id: ds101\n    title: [unclosed\n  - id: x\n"
    )
    (problem,) = roster_problems([path])
    assert problem.startswith(f"{path}:4: not valid YAML")


def test_wrong_top_level(write_file, roster_problems):
    assert "no 'courses:' list" in roster_problems([yaml_file(write_file, "{}\n")])[0]
    assert "empty course file" in roster_problems([yaml_file(write_file, "")])[0]
    assert (
        "unknown key 'course'"
        in roster_problems([yaml_file(write_file, "course: []\n")])[0]
    )


def test_unreadable_course_file(tmp_path, roster_problems):
    missing = str(tmp_path / "nope.yaml")
    (problem,) = roster_problems([missing])
    assert problem.startswith(f"{missing}: cannot read course file")


def test_no_course_files_configured(roster_problems):
    (problem,) = roster_problems([])
    assert "no course file is configured" in problem


def test_roster_paths_are_relative_to_the_course_file(write_file):
    write_file("rosters/r.csv", "username\nalice\n")
    path = yaml_file(
        write_file,
        "courses:\n  - id: c1\n    rosters: [{file: rosters/r.csv}]\n",
        "etc/../courses.yaml",
    )
    assert load_roster([path]).roster.is_enrolled("alice")


# -- lesson repos --------------------------------------------------------------


def test_lessons_are_read_and_defaulted(write_file):
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: c1
            lessons:
              - https://github.com/example/intro-lessons.git
              - url: git@github.com:example/private-notes.git
                ref: v1.2
                target: notes/private
                depth: 1
        """,
    )
    lessons = load_roster([path]).roster.course("c1").lessons
    assert [(lr.url, lr.ref, lr.target, lr.depth) for lr in lessons] == [
        ("https://github.com/example/intro-lessons.git", None, "intro-lessons", None),
        ("git@github.com:example/private-notes.git", "v1.2", "notes/private", 1),
    ]


@pytest.mark.parametrize(
    "lesson",
    [
        "{url: 'http://github.com/x/y.git'}",
        "{url: 'https://github.com/x/y.git', ref: 'main; rm -rf ~'}",
        "{url: 'https://github.com/x/y.git', ref: '$(touch /tmp/pwned)'}",
        "{url: 'https://github.com/x/y.git', ref: '-b'}",
        "{url: '--upload-pack=touch /tmp/pwned'}",
        "{url: 'ext::sh -c touch% /tmp/pwned'}",
        "{url: 'https://github.com/x/y.git', target: '../../etc'}",
        "{url: 'https://github.com/x/y.git', target: '/etc'}",
        "{url: 'https://github.com/x/y.git', depth: 0}",
        "{url: 'https://user:token@github.com/x/y.git'}",
        "{ref: main}",
    ],
)
def test_bad_lessons_are_refused_with_file_and_line(
    write_file, lesson, roster_problems
):
    path = yaml_file(
        write_file, f"courses:\n  - id: c1\n    lessons:\n      - {lesson}\n"
    )
    problems = roster_problems([path])
    assert problems and all(p.startswith(f"{path}:4: ") for p in problems), problems


@pytest.mark.parametrize(
    "key, value, line",
    [
        ("ref", "'main; rm -rf ~'", 6),
        ("target", "'../../etc'", 7),
        ("depth", "0", 8),
    ],
)
def test_a_bad_lesson_key_is_reported_at_its_own_line(
    write_file, roster_problems, key, value, line
):
    good = {"ref": "main", "target": "lessons", "depth": "1"}
    good[key] = value
    path = yaml_file(
        write_file,
        "courses:\n  - id: c1\n    lessons:\n      - url: https://example.org/a.git\n"
        "        # a comment between the keys\n"
        + "".join(f"        {k}: {v}\n" for k, v in good.items()),
    )
    (problem,) = roster_problems([path])
    assert problem.startswith(f"{path}:{line}: lesson {key}"), problem


@pytest.mark.parametrize(
    "lesson, line",
    [
        ("- url: https://example.org/a.git\n        target: 'week`id`'\n", 5),
        # a folder named after the repo: the url is where to look
        ("- url: https://example.org/x%60id%60.git\n        ref: main\n", 4),
    ],
    ids=["target", "derived-from-url"],
)
def test_a_backtick_in_a_lesson_folder_is_refused(
    write_file, roster_problems, lesson, line
):
    path = yaml_file(write_file, f"courses:\n  - id: c1\n    lessons:\n      {lesson}")
    (problem,) = roster_problems([path])
    assert problem.startswith(f"{path}:{line}: lesson target folder "), problem
    assert "contains a backtick" in problem


def test_two_lessons_into_one_folder(write_file, roster_problems):
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: c1
            lessons:
              - url: https://example.org/a.git
                target: lessons
              - url: https://example.org/b.git
                target: lessons
        """,
    )
    (problem,) = roster_problems([path])
    # at the second repo's target: line
    assert (
        problem
        == f"{path}:7: lesson target folder 'lessons' is already used by the repo on line 4"
    )


def test_nested_lesson_folders(write_file, roster_problems):
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: c1
            lessons:
              - url: https://example.org/a.git
                target: lessons
              - url: https://example.org/b.git
                target: lessons/extra
        """,
    )
    (problem,) = roster_problems([path])
    assert (
        problem
        == f"{path}:7: lesson target folder 'lessons/extra' overlaps 'lessons', used by the repo on line 4"
    )


def test_yaml_tags_and_unhashable_keys_are_file_line_errors(
    write_file, roster_problems
):
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: !foo ds101
          - id: phys210
            kubespawner_override: {[1]: 2}
        """,
    )
    problems = roster_problems([path])
    assert [p.split(": ")[0] for p in problems] == [f"{path}:2", f"{path}:4"]
    assert "tag '!foo'" in problems[0]


def test_numbers_that_are_text_are_kept_as_written(write_file):
    # unquoted, YAML would read 0101 as octal 65 and 1.10 as 1.1
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: "2025"
            title: 1.10
            students: [0123456, 1_000]
          - id: 0101
        """,
    )
    roster = load_roster([path]).roster
    assert roster.course("2025").title == "1.10"
    assert roster.course("0101") is not None
    assert roster.is_enrolled("0123456") and roster.is_enrolled("1_000")


@pytest.mark.parametrize("value", ["1024", "0G", "1.5 G", "-1G"])
def test_memory_needs_a_unit_and_a_size(write_file, value, roster_problems):
    path = yaml_file(write_file, f"courses:\n  - id: ds101\n    mem_limit: {value}\n")
    assert roster_problems([path]) == [
        f"{path}:3: mem_limit '{value}' is not a memory size like 512M, 1.5G or 2G"
    ]


def test_cpu_must_be_finite_and_every_guarantee_problem_is_reported(
    write_file, roster_problems
):
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: ds101
            cpu_limit: .inf
          - id: phys210
            cpu_guarantee: 3
            cpu_limit: 1
            mem_guarantee: 2G
            mem_limit: 1G
        """,
    )
    problems = roster_problems([path])
    assert [p.split(": ")[0] for p in problems] == [
        f"{path}:3",
        f"{path}:5",
        f"{path}:7",
    ]


def test_a_bad_override_names_its_own_line(write_file, roster_problems):
    path = yaml_file(
        write_file,
        """\
        courses:
          - id: c1
            kubespawner_override:
              extra_labels: {course: c1}
              image_pull_policy: Always
              lifecycle_hooks: [postStart]
        """,
    )
    (problem,) = roster_problems([path])
    assert problem.startswith(f"{path}:6:"), problem
    assert "lifecycle_hooks: expected a dict" in problem


# -- text that reaches a terminal or a page -------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("title", '"Data\\e[2J Science"'),
        ("title", '"Data\\nScience"'),
        ("title", '"Data \\u202eecneicS"'),
        ("description", '"Tuesdays\\x07"'),
        ("image", '"quay.io/x\\ry:1"'),
    ],
)
def test_control_characters_in_course_text_are_file_line_problems(
    write_file, roster_problems, key, value
):
    path = yaml_file(write_file, f"courses:\n  - id: c1\n    {key}: {value}\n")
    (problem,) = roster_problems([path])
    assert problem.startswith(
        f"{path}:3: {key} contains the control character "
    ), problem


def test_a_description_may_have_several_lines_and_tabs(write_file):
    path = yaml_file(
        write_file, 'courses:\n  - id: c1\n    description: "Tue\\tThu\\nRoom 101"\n'
    )
    assert load_roster([path]).roster.course("c1").description == "Tue\tThu\nRoom 101"
