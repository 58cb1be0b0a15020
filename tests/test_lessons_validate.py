"""Validation of lesson URLs, refs, targets and depths.

The course-file loader reports these messages as ``file:line: <message>``,
so they are checked for content, not just for raising.
"""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from classroom_spawner.lessons.sync import (
    default_target,
    is_commit_hash,
    validate_depth,
    validate_lesson,
    validate_lessons,
    validate_ref,
    validate_repo_url,
    validate_target,
)

# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://github.com/org/lesson.git", None),
        ("HTTPS://github.com/org/lesson", "https://github.com/org/lesson"),
        ("https://git.example.org:8443/a/b", None),
        ("https://[::1]:8443/repo.git", None),
        ("https://host/a;b,c(d)", None),  # legal URL characters, passed safely
        ("ssh://git@github.com/org/lesson.git", None),
        ("ssh://git@host:2222/lesson", None),
        ("git://127.0.0.1:9418/lesson.git", None),
        ("file:///srv/lessons/week1.git", None),
        ("file://localhost/srv/lessons/week1.git", None),
        ("git@github.com:org/lesson.git", None),
        ("deploy@10.0.0.1:/abs/path/lesson.git", None),
    ],
)
def test_valid_urls(url, expected):
    assert validate_repo_url(url) == (expected or url)


@pytest.mark.parametrize(
    "url, message",
    [
        ("", "lesson repo URL is empty"),
        (
            "http://x",
            "lesson repo URL 'http://x' uses scheme 'http'; allowed: https, ssh, git, file",
        ),
        ("ftp://host/x", "uses scheme 'ftp'"),
        ("ext::sh", "asks git for the remote helper 'ext'"),
        ("fd::17", "remote helper 'fd'"),
        ("ext::sh -c touch% /tmp/x", "whitespace or a control character"),
        (
            "https://user:tok@github.com/x",
            "embeds credentials; put the token in a Kubernetes Secret",
        ),
        ("https://tok@github.com/x", "embeds credentials"),
        ("git://user@host/x", "embeds credentials"),
        ("ssh://user:pw@host/x", "embeds a password"),
        ("-u", "starts with '-'"),
        ("--upload-pack=touch", "starts with '-'"),
        (
            "https://host/x\n",
            "whitespace or a control character ('\\n' at position 14)",
        ),
        (
            "https://host/x\n[core]\n\tsshCommand = x",
            "whitespace or a control character",
        ),
        ("https://host/ x", "whitespace"),
        ("https://host/\u200bx", "control character"),
        ("https://host/x\x00", "control character"),
        ("https://host/`id`", "contains '`'"),
        ("https://host/x|y", "contains '|'"),
        ("https://host/${IFS}", "contains '{' '}'"),
        ("/srv/lessons/x.git", "is not a URL git can use here"),
        ("relative/path", "is not a URL git can use here"),
        ("github.com:org/repo", "is not a URL git can use here"),
        ("git@-host:x", "is not a URL git can use here"),
        ("git@host:-x", "has an unsafe path"),
        ("file://host/x", "file URLs look like file:///path/to/repo"),
        ("file:///", "has no repository path"),
        ("https://", "has no valid host name"),
        ("https://host", "has no repository path"),
        ("https://host/", "has no repository path"),
        ("https://-host/x", "has no valid host name"),
        ("ssh://-oProxyCommand=x/y", "has no valid host name"),
        ("https://host:99999/x", "cannot be parsed"),
        ("https://" + "a" * 2050, "longer than 2048"),
    ],
)
def test_invalid_urls(url, message):
    with pytest.raises(ValueError) as info:
        validate_repo_url(url)
    assert message in str(info.value)


@pytest.mark.parametrize("value", [42, None, ["https://x/y"], b"https://x/y"])
def test_url_must_be_text(value):
    with pytest.raises(ValueError, match="must be text"):
        validate_repo_url(value)


# --------------------------------------------------------------------------- refs


@pytest.mark.parametrize(
    "ref",
    [
        "main",
        "feature/x",
        "v1.0",
        "refs/heads/main",
        "release-2024",
        "übung",
        "0123abc",
        "HEAD",
        "$(id)",
        "`id`",
        ";rm",
        "{x}",
        "#x",
    ],
)
def test_valid_refs(ref):
    assert validate_ref(ref) == ref


@pytest.mark.parametrize("ref", [None, ""])
def test_empty_ref_means_default_branch(ref):
    assert validate_ref(ref) == ""


@pytest.mark.parametrize(
    "ref, message",
    [
        ("-b", "starts with '-'"),
        ("--upload-pack=x", "starts with '-'"),
        ("a..b", "contains '..'"),
        ("a b", "whitespace"),
        ("a~1", "contains '~'"),
        ("a^", "contains '^'"),
        ("a:b", "contains ':'"),
        ("a?", "contains '?'"),
        ("a*", "contains '*'"),
        ("a[", "contains '['"),
        ("a\\b", "contains '\\\\'"),
        ("@", "it is '@'"),
        ("a@{1}", "contains '@{'"),
        (".hidden", "starts with '.'"),
        ("a/.b", "starts with '.'"),
        ("x.lock", "ends with '.lock'"),
        ("a/x.lock/b", "ends with '.lock'"),
        ("a/", "starts or ends with '/'"),
        ("/a", "starts or ends with '/'"),
        ("a//b", "contains '//'"),
        ("a.", "ends with '.'"),
        ("main\n[core]\n\tsshCommand = x", "control character"),
        ("a\x7fb", "control character"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_invalid_refs(ref, message):
    with pytest.raises(ValueError) as info:
        validate_ref(ref)
    assert str(info.value).startswith("lesson ref ")
    assert message in str(info.value)


@pytest.mark.parametrize("value", [1234567, 1.5, True])
def test_ref_must_be_text(value):
    with pytest.raises(ValueError, match="in YAML, put it in quotes"):
        validate_ref(value)


REF_SAMPLES = [
    "main",
    "a/b",
    "a..b",
    "a b",
    "a~",
    "a^",
    "a:",
    "a?",
    "a*",
    "a[",
    "a\\",
    "@",
    "a@{",
    ".a",
    "a/.b",
    "a.lock",
    "a.lock/b",
    "a/",
    "/a",
    "a//b",
    "a.",
    "$(id)",
    "`id`",
    ";x",
    "{x}",
    "a@b",
    "@a",
    "a@",
    "refs/heads/x",
    "x/y.z",
    "-x",
    "x-",
    "x\x01",
    "x\x7f",
    "übung",
    "a/b/c.d",
    "a.b.lock.c",
    "...",
    "a/../b",
]


@pytest.mark.parametrize("ref", REF_SAMPLES)
def test_ref_rules_agree_with_git(ref):
    """Our Python rules give git's own verdict (plus: no leading '-')."""
    proc = subprocess.run(
        ["git", "check-ref-format", "--allow-onelevel", ref], capture_output=True
    )
    git_ok = proc.returncode == 0 and not ref.startswith("-")
    try:
        validate_ref(ref)
        ours = True
    except ValueError:
        ours = False
    assert ours == git_ok


def test_commit_hash_detection():
    assert is_commit_hash("0123abc")
    assert is_commit_hash("0" * 40)
    assert is_commit_hash("a" * 64)
    assert not is_commit_hash("0123ab")  # too short
    assert not is_commit_hash("0123ABC")  # branch names may be upper case hex
    assert not is_commit_hash("main")
    assert not is_commit_hash("")


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    "target, expected",
    [
        ("lessons/week1", "lessons/week1"),
        ("a//b/./c/", "a/b/c"),
        ("./lesson", "lesson"),
        ("Week 1", "Week 1"),
        ("Übung 2/Teil a", "Übung 2/Teil a"),
        (".lessons", ".lessons"),
        ("x.git", "x.git"),
        ("$(touch x)", "$(touch x)"),  # just a folder name; nothing runs it
    ],
)
def test_valid_targets(target, expected):
    assert validate_target(target) == expected


@pytest.mark.parametrize(
    "target, message",
    [
        ("", "is empty"),
        (".", "is the home directory itself"),
        ("./", "is the home directory itself"),
        (
            "/abs/path",
            "is an absolute path; give a folder relative to the home directory",
        ),
        ("~/lessons", "starts with '~'"),
        ("../x", "contains '..'"),
        ("a/../b", "contains '..'"),
        ("-rf", "has a part starting with '-'"),
        ("a/-b", "has a part starting with '-'"),
        ("a\nb", "control character"),
        ("a\tb", "control character"),
        ("x\n[core]\n\thooksPath = y", "control character"),
        (" a", "starting or ending with a space"),
        ("a /b", "starting or ending with a space"),
        (".git", "contains a '.git' folder"),
        ("a/.git/hooks", "contains a '.git' folder"),
        (".GIT", "contains a '.git' folder"),
        (".git.", "contains a '.git' folder"),
        ("git~1", "contains a '.git' folder"),
        ("a\\b", "contains a backslash"),
        ("x" * 256, "longer than 255 bytes"),
    ],
)
def test_invalid_targets(target, message):
    with pytest.raises(ValueError) as info:
        validate_target(target)
    assert str(info.value).startswith("lesson target folder")
    assert message in str(info.value)


def test_target_must_be_text():
    with pytest.raises(ValueError, match="must be text"):
        validate_target(5)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://github.com/org/Lesson-1.git", "Lesson-1"),
        ("https://github.com/org/lesson/", "lesson"),
        ("git@github.com:org/repo.git", "repo"),
        ("git@host:repo", "repo"),
        ("file:///srv/repos/x/", "x"),
        ("https://host/my%20lesson.git", "my lesson"),
        ("ssh://git@host:22/a/b.git", "b"),
    ],
)
def test_default_target(url, expected):
    assert default_target(url) == expected


@pytest.mark.parametrize(
    "url", ["https://host/.git", "https://host/-x.git", "https://host/%2e%2e"]
)
def test_default_target_that_cannot_be_derived(url):
    with pytest.raises(ValueError, match="cannot derive a folder name .*; set target"):
        default_target(url)


# --------------------------------------------------------------------------- depth


@pytest.mark.parametrize(
    "depth, expected", [(None, None), ("", None), (1, 1), ("5", 5), (1000, 1000)]
)
def test_valid_depths(depth, expected):
    assert validate_depth(depth) == expected


@pytest.mark.parametrize(
    "depth, message",
    [
        (0, "out of range; use 1 to 1000000, or leave it out for the full history"),
        (-1, "out of range"),
        (10**7, "out of range"),
        (True, "must be a positive whole number"),
        (1.5, "must be a positive whole number, not float"),
        ("1.0", "is not a positive whole number"),
        ("abc", "is not a positive whole number"),
        ("1; touch x", "is not a positive whole number"),
        ("١", "is not a positive whole number"),  # a non-ASCII digit
    ],
)
def test_invalid_depths(depth, message):
    with pytest.raises(ValueError) as info:
        validate_depth(depth)
    assert str(info.value).startswith("lesson depth")
    assert message in str(info.value)


# --------------------------------------------------------------------------- lessons


def test_lesson_from_dict_and_object():
    expected = {"url": "https://h/org/x.git", "ref": "", "target": "x", "depth": None}
    assert validate_lesson({"url": "https://h/org/x.git"}) == expected
    obj = SimpleNamespace(url="https://h/org/x.git", ref="main", target="a/b", depth=2)
    assert validate_lesson(obj) == {
        "url": "https://h/org/x.git",
        "ref": "main",
        "target": "a/b",
        "depth": 2,
    }


def test_lesson_errors():
    with pytest.raises(
        ValueError, match="unknown field.*branch; known: url, ref, target, depth"
    ):
        validate_lesson({"url": "https://h/x", "branch": "main"})
    with pytest.raises(ValueError, match="lesson has no url"):
        validate_lesson({"target": "x"})


def test_lesson_list_names_the_bad_entry():
    with pytest.raises(ValueError) as info:
        validate_lessons([{"url": "https://h/a"}, {"url": "http://h/b"}])
    assert str(info.value).startswith(
        "lesson 2: lesson repo URL 'http://h/b' uses scheme 'http'"
    )


@pytest.mark.parametrize(
    "targets",
    [("a", "a"), ("a", "a/b"), ("a/b", "a"), ("x/./y", "x/y")],
)
def test_overlapping_targets_are_rejected(targets):
    lessons = [{"url": f"https://h/{i}", "target": t} for i, t in enumerate(targets)]
    with pytest.raises(ValueError, match="lesson 2 folder .* overlaps lesson 1 folder"):
        validate_lessons(lessons)


def test_sibling_targets_are_fine():
    lessons = [
        {"url": "https://h/a", "target": "a"},
        {"url": "https://h/b", "target": "ab"},
        {"url": "https://h/c", "target": "a-b/c"},
    ]
    assert [l["target"] for l in validate_lessons(lessons)] == ["a", "ab", "a-b/c"]
