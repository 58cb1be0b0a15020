"""The init container spec, and running it the way a kubelet would."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from classroom_spawner.lessons import initcontainer, sync
from classroom_spawner.lessons.initcontainer import (
    NOTE_FILENAME,
    TERMINATION_MESSAGE_PATH,
    build_init_container,
    parse_termination_message,
    sync_script,
    sync_source,
)

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Instructor",
    "GIT_AUTHOR_EMAIL": "i@example.org",
    "GIT_COMMITTER_NAME": "Instructor",
    "GIT_COMMITTER_EMAIL": "i@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Lesson:
    url: str
    ref: str | None = None
    target: str | None = None
    depth: int | None = None


LESSONS = [
    {
        "url": "https://github.com/org/week1.git",
        "ref": "main",
        "target": "lessons/week1",
    },
    Lesson(url="git@github.com:org/week2.git", depth=1),
]


def build(**overrides):
    lessons = overrides.pop("lessons", LESSONS)
    args = dict(image="quay.io/jupyter/scipy-notebook:2024-05-01", uid=1000, gid=100)
    args.update(overrides)
    return build_init_container(lessons, **args)


def env_of(container) -> dict:
    return {item["name"]: item for item in container["env"]}


def test_container_shape():
    c = build(
        home_volume_name="home", home_mount_path="/home/jovyan", home_sub_path="alice"
    )
    assert c["name"] == "lesson-sync"
    assert c["image"] == "quay.io/jupyter/scipy-notebook:2024-05-01"
    assert c["command"][:3] == ["python3", "-I", "-c"]
    assert c["command"][3] == sync_script()
    assert "args" not in c
    assert c["volumeMounts"] == [
        {"name": "home", "mountPath": "/home/jovyan", "subPath": "alice"}
    ]
    assert c["workingDir"] == "/home/jovyan"
    assert c["terminationMessagePath"] == TERMINATION_MESSAGE_PATH
    assert c["terminationMessagePolicy"] == "File"
    assert c["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 100,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert c["resources"] == initcontainer.DEFAULT_RESOURCES
    assert c["resources"] is not initcontainer.DEFAULT_RESOURCES
    assert "imagePullPolicy" not in c


def test_job_environment():
    env = env_of(build(timeout=90))
    assert json.loads(env["CLASSROOM_LESSONS"]["value"]) == [
        {
            "url": "https://github.com/org/week1.git",
            "ref": "main",
            "target": "lessons/week1",
            "depth": None,
        },
        {
            "url": "git@github.com:org/week2.git",
            "ref": "",
            "target": "week2",
            "depth": 1,
        },
    ]
    assert env["CLASSROOM_HOME"]["value"] == "/home/jovyan"
    assert env["HOME"]["value"] == "/home/jovyan"
    assert env["CLASSROOM_SYNC_TIMEOUT"]["value"] == "90"
    assert env["CLASSROOM_TERMINATION_LOG"]["value"] == TERMINATION_MESSAGE_PATH
    assert "CLASSROOM_GIT_TOKEN" not in env
    assert env_of(build(timeout=2.5))["CLASSROOM_SYNC_TIMEOUT"]["value"] == "2.5"


def test_token_comes_from_the_secret_by_reference_only():
    c = build(
        token_secret_name="course-git-token",
        token_secret_key="token",
        token_hosts=["GitHub.com", " gitlab.example.org "],
        token_username="oauth2",
    )
    env = env_of(c)
    assert env["CLASSROOM_GIT_TOKEN"] == {
        "name": "CLASSROOM_GIT_TOKEN",
        "valueFrom": {
            "secretKeyRef": {
                "name": "course-git-token",
                "key": "token",
                "optional": True,
            }
        },
    }
    assert env["CLASSROOM_GIT_TOKEN_HOSTS"]["value"] == "github.com,gitlab.example.org"
    assert env["CLASSROOM_GIT_USERNAME"]["value"] == "oauth2"


def test_options():
    c = build(
        image_pull_policy="IfNotPresent",
        resources={"limits": {"memory": "1Gi"}},
        uid=0,
        gid=0,
    )
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"] == {"limits": {"memory": "1Gi"}}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "runAsNonRoot" not in c["securityContext"]
    assert c["name"] == "lesson-sync"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"lessons": [{"url": "http://x/y"}]},
            "lesson 1: lesson repo URL 'http://x/y' uses scheme 'http'",
        ),
        (
            {
                "lessons": [
                    {"url": "https://h/a", "target": "x"},
                    {"url": "https://h/b", "target": "x"},
                ]
            },
            "overlaps",
        ),
        ({"uid": -1}, "uid must be a whole number"),
        ({"gid": True}, "gid must be a whole number"),
        ({"image": ""}, "image"),
        ({"home_mount_path": "home/jovyan"}, "must be absolute"),
        ({"home_volume_name": "Home_Volume"}, "not a valid volume name"),
        ({"token_secret_name": "Bad_Name"}, "not a valid Secret name"),
        (
            {"token_secret_name": "ok", "token_secret_key": "a/b"},
            "not a valid Secret key",
        ),
        ({"token_secret_name": "ok", "token_hosts": ["a b"]}, "not a host name"),
        ({"timeout": 0}, "between 1 and 3600"),
        ({"timeout": "60"}, "number of seconds"),
    ],
)
def test_bad_arguments_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        build(**overrides)


def test_no_shell_and_no_template_fields_needed():
    c = build(token_secret_name="course-git-token")
    assert c["command"][0] == "python3"
    dumped = json.dumps(c)
    for shell in ('"sh"', '"bash"', '"/bin/sh"', '"-lc"'):
        assert shell not in dumped


def test_spec_is_a_valid_kubernetes_container():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "jupyter-alice"},
        "spec": {
            "initContainers": [
                build(token_secret_name="course-git-token", home_sub_path="alice")
            ],
            "containers": [
                {"name": "notebook", "image": "quay.io/jupyter/scipy-notebook"}
            ],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}
            ],
        },
    }
    kubernetes_validate.validate(pod, "1.30", strict=True)


# --------------------------------------------------------------------------- the script


def test_script_source_is_the_module():
    assert sync_source() == Path(sync.__file__).read_text(encoding="utf-8")


def test_minified_script_is_small_plain_python():
    script = sync_script()
    assert len(script.encode()) < 128 * 1024  # Linux MAX_ARG_STRLEN for one argv entry
    assert len(script) < len(sync_source())
    tree = ast.parse(script)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            assert not (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            )
    ast.parse(sync_source(), feature_version=(3, 8))
    ast.parse(script, feature_version=(3, 8))


def test_script_loads_from_a_zipped_wheel(tmp_path):
    """importlib.resources finds sync.py inside an installed wheel (here: the
    wheel itself on sys.path, the strictest case: a zip)."""
    root = Path(__file__).resolve().parents[1]
    wheel = tmp_path / "classroom_spawner.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in (root / "classroom_spawner").rglob("*.py"):
            zf.write(path, path.relative_to(root).as_posix())
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from classroom_spawner.lessons import initcontainer as ic\n"
        "assert ic.__file__.startswith(sys.argv[1]), ic.__file__\n"
        "print(len(ic.sync_source()), len(ic.sync_script()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(wheel)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(len(sync_source())), str(len(sync_script()))]


# --------------------------------------------------------------------------- like a kubelet


def run_like_kubelet(
    container: dict, secrets: dict, termination_file: Path
) -> subprocess.CompletedProcess:
    """Start the container as a process: its command, its env (secretKeyRef
    resolved from `secrets`), its working dir, the termination message file
    mapped to a local path."""
    env = {"PATH": os.environ["PATH"]}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None and not ref.get("optional"):
            raise AssertionError("the kubelet would refuse to start this container")
        if value is not None:
            env[item["name"]] = value
    assert env["CLASSROOM_TERMINATION_LOG"] == container["terminationMessagePath"]
    env["CLASSROOM_TERMINATION_LOG"] = str(termination_file)
    command = list(container["command"])
    command[0] = sys.executable  # the image's python3
    return subprocess.run(
        command,
        env=env,
        cwd=container["workingDir"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_upstream(root: Path) -> str:
    bare, work = root / "week1.git", root / "week1-work"
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(bare)],
        check=True,
        env=GIT_ENV,
    )
    subprocess.run(
        ["git", "init", "-q", "-b", "main", str(work)], check=True, env=GIT_ENV
    )
    (work / "intro.ipynb").write_text('{"cells": []}\n')
    for args in (
        ["add", "."],
        ["commit", "-qm", "lesson"],
        ["push", "-q", str(bare), "main"],
    ):
        subprocess.run(["git", *args], cwd=work, check=True, env=GIT_ENV)
    return bare.as_uri()


def test_built_container_runs_and_reports(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    url = make_upstream(tmp_path)
    lessons = [
        {"url": url, "target": "week1"},
        {"url": (tmp_path / "missing.git").as_uri(), "target": "missing"},
    ]
    container = build_init_container(
        lessons,
        image="img",
        uid=os.getuid(),
        gid=os.getgid(),
        home_mount_path=str(home),
        token_secret_name="absent-secret",
        timeout=60,
    )
    termination = tmp_path / "termination-log"

    proc = run_like_kubelet(container, secrets={}, termination_file=termination)

    assert proc.returncode == 0 and proc.stderr == ""
    assert (home / "week1/intro.ipynb").exists()
    assert not (home / "missing").exists()
    assert (home / NOTE_FILENAME).exists()
    message = termination.read_text()
    warnings = parse_termination_message(message)
    assert len(warnings) == 1
    level, text = warnings[0]
    assert level == "error" and text.startswith("missing: not synced: ")
    with_info = parse_termination_message(message, include_info=True)
    assert [lvl for lvl, _ in with_info] == ["info", "error"]
    assert with_info[0][1].startswith("week1: cloned default branch at ")


# --------------------------------------------------------------------------- parsing


def test_parse_termination_message():
    text = (
        "classroom-lesson-sync/1\n"
        "ok\ta\tup to date (abc1234)\n"
        "info\tb\tcloned main at abc1234\n"
        "warning\tc\tfolder set aside as c.backup-1 (it is a file); a fresh copy was cloned\n"
        "error\td\tnot synced: could not read from remote\n"
        "error\t*\tlesson sync failed: boom\n"
        "bogus line\n"
        "critical\te\tunknown level\n"
    )
    assert parse_termination_message(text) == [
        (
            "warning",
            "c: folder set aside as c.backup-1 (it is a file); a fresh copy was cloned",
        ),
        ("error", "d: not synced: could not read from remote"),
        ("error", "lesson sync failed: boom"),
    ]
    assert [lvl for lvl, _ in parse_termination_message(text, include_info=True)] == [
        "info",
        "warning",
        "error",
        "error",
    ]


@pytest.mark.parametrize(
    "text", [None, "", "classroom-lesson-sync/1\n", "something else\nerror\tx\ty\n"]
)
def test_parse_termination_message_ignores_other_text(text):
    assert parse_termination_message(text) == []


def test_termination_summary_fits_kubernetes_limit():
    outcomes = [sync.Outcome("error", f"lesson{i}", "x" * 400) for i in range(50)]
    text = sync.termination_summary(outcomes)
    assert len(text.encode()) <= 4096
    parsed = parse_termination_message(text)
    assert parsed[-1][1].endswith("more lesson(s) not listed")
    assert sync.termination_summary(
        [sync.Outcome("warning", "a\tb", "line\nbreak")]
    ).splitlines()[1] == ("warning\ta b\tline break")
