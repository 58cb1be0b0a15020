"""The lesson sync against real git repositories, run the way the pod runs it.

Every sync here is a subprocess ``python -I -c <sync.py source>`` with the
job in environment variables and HOME pointing at a temporary home, exactly
as the init container does; only a few unit-level checks call functions
in-process.  Upstreams are bare repositories served over file://, git's own
protocol (``git daemon``) and HTTPS with basic auth (``git http-backend``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from classroom_spawner.lessons import sync
from classroom_spawner.lessons.initcontainer import (
    parse_termination_message,
    sync_script,
)
from classroom_spawner.local.hub import free_port

SYNC_SOURCE = Path(sync.__file__).read_text(encoding="utf-8")
REAL_GIT = shutil.which("git")

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Instructor",
    "GIT_AUTHOR_EMAIL": "instructor@example.org",
    "GIT_COMMITTER_NAME": "Instructor",
    "GIT_COMMITTER_EMAIL": "instructor@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args, cwd=None, check=True) -> str:
    proc = subprocess.run(
        ["git", *map(str, args)], cwd=cwd, env=GIT_ENV, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr}")
    return proc.stdout.strip()


class Upstream:
    """A bare repository plus the instructor's working clone of it."""

    def __init__(self, root: Path, name: str = "lesson"):
        root.mkdir(parents=True, exist_ok=True)
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        git("init", "--quiet", "--bare", "--initial-branch=main", self.bare)
        git("init", "--quiet", "--initial-branch=main", self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, files: dict, message: str = "update", branch: str = "main") -> str:
        """Write (str/bytes) or delete (None) files, commit and push."""
        for name, content in files.items():
            path = self.work / name
            if content is None:
                git("rm", "--quiet", "-r", "--", name, cwd=self.work)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            git("add", "--force", "--", name, cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"HEAD:{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def show(self, sha: str, path: str) -> str:
        return git("show", f"{sha}:{path}", cwd=self.work)


class SyncRun:
    def __init__(self, proc: subprocess.CompletedProcess, termination: str):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.termination = termination
        self.entries = [
            tuple(line.split("\t", 2)) for line in termination.splitlines()[1:] if line
        ]

    def level(self, target: str) -> str:
        return next(level for level, name, _ in self.entries if name == target)

    def message(self, target: str) -> str:
        return next(message for _, name, message in self.entries if name == target)


def _run_in_own_session(argv, cwd, env, timeout) -> subprocess.CompletedProcess:
    """subprocess.run, but a timeout kills the whole process group: git's children
    hold the output pipes, and killing only the direct child would leave
    communicate() waiting for them forever."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_sync(
    home: Path,
    lessons,
    *,
    timeout: float = 60,
    env: dict | None = None,
    python: str = sys.executable,
    script: str = SYNC_SOURCE,
    run_as: list[str] = (),
) -> SyncRun:
    """Run the sync as the init container does: a fresh isolated interpreter,
    the job in the environment, the home as HOME and working directory."""
    termination = home.parent / "termination-log"
    if termination.exists():
        termination.unlink()
    run_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CLASSROOM_HOME": str(home),
        "CLASSROOM_LESSONS": (
            lessons if isinstance(lessons, str) else json.dumps(lessons)
        ),
        "CLASSROOM_SYNC_TIMEOUT": str(timeout),
        "CLASSROOM_TERMINATION_LOG": str(termination),
    }
    run_env.update(env or {})
    proc = _run_in_own_session(
        [*run_as, python, "-I", "-c", script], home, run_env, timeout + 120
    )
    result = SyncRun(proc, termination.read_text() if termination.exists() else "")
    assert result.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return result


def snapshot(root: Path, skip=(sync.NOTE_FILENAME,), with_git: bool = True) -> dict:
    """Every path under root with its type, content hash, mode and mtime."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if not with_git and ".git" in dirnames:
            dirnames.remove(".git")
        for name in dirnames + filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in skip:
                continue
            full = os.path.join(dirpath, name)
            info = os.lstat(full)
            digest = None
            if os.path.isfile(full) and not os.path.islink(full):
                digest = hashlib.sha256(Path(full).read_bytes()).hexdigest()
            state[rel] = (info.st_mode, digest, info.st_mtime_ns)
    return state


def temp_leftovers(home: Path) -> list[str]:
    return [p.name for p in home.iterdir() if p.name.startswith(sync.TMP_PREFIX)]


def backups(home: Path, target: str) -> list[Path]:
    parent = (home / target).parent
    return sorted(parent.glob(Path(target).name + ".backup-*"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    up = Upstream(tmp_path / "upstream")
    up.commit(
        {
            "README.md": "# Lesson\n",
            "lesson1.ipynb": '{"cells": ["original"]}\n',
            "notes.txt": "line 1\nline 2\n",
            "data/table.csv": "a,b\n1,2\n",
            "solutions.py": "print('todo')\n",
            "old.txt": "to be removed upstream\n",
            "extra.txt": "student will change, upstream deletes\n",
            "helper.py": "x = 1\n",
        },
        "initial lesson",
    )
    return up


def lesson(up: Upstream, target: str = "lessons/week1", **extra) -> dict:
    return {"url": up.url, "target": target, **extra}


# ---------------------------------------------------------------------------
# First start
# ---------------------------------------------------------------------------


def test_first_start_clones_into_target(home, upstream):
    result = run_sync(home, [lesson(upstream)])

    repo = home / "lessons/week1"
    assert (repo / "lesson1.ipynb").read_text() == '{"cells": ["original"]}\n'
    assert (repo / "data/table.csv").exists()
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo) == "main"
    assert git("config", "branch.main.remote", cwd=repo) == "origin"
    assert git("config", "remote.origin.url", cwd=repo) == upstream.url
    assert git("status", "--porcelain", cwd=repo) == ""
    assert result.entries[0][:2] == ("info", "lessons/week1")
    assert "cloned" in result.message("lessons/week1")
    assert "lesson-sync: lessons/week1: cloned" in result.stdout
    assert not (home / sync.NOTE_FILENAME).exists()
    assert temp_leftovers(home) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_created_files_follow_the_umask(home, upstream, umask):
    old = os.umask(umask)  # the sync's process inherits it
    try:
        run_sync(home, [lesson(upstream)])
    finally:
        os.umask(old)
    for path in [
        home / "lessons",
        home / "lessons/week1",
        home / "lessons/week1/README.md",
    ]:
        mode = path.stat().st_mode
        assert mode & 0o040, path  # group-readable under both
        assert bool(mode & 0o004) == (umask == 0o022), (path, oct(mode))


def test_target_defaults_to_repo_name(home, upstream):
    run_sync(home, [{"url": upstream.url}])
    assert (home / "lesson" / "README.md").exists()  # lesson.git -> lesson


def test_empty_target_folder_is_filled(home, upstream):
    (home / "lessons/week1").mkdir(parents=True)
    result = run_sync(home, [lesson(upstream)])
    assert result.level("lessons/week1") == "info"
    assert (home / "lessons/week1/README.md").exists()
    assert backups(home, "lessons/week1") == []


# ---------------------------------------------------------------------------
# Later starts: nothing of the student's is lost
# ---------------------------------------------------------------------------


def test_second_start_keeps_student_work_and_brings_upstream_changes(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    # the student edits, deletes and creates files
    (repo / "lesson1.ipynb").write_text(
        '{"cells": ["my answers"]}\n'
    )  # upstream changes it too
    (repo / "notes.txt").write_text("line 1\nline 2\nmy note\n")  # upstream does not
    (repo / "extra.txt").write_text("my version\n")  # upstream deletes it
    (repo / "solutions.py").unlink()  # deleted by the student
    (repo / "mine.py").write_text("print('mine')\n")  # new, upstream knows nothing
    (repo / "week2.ipynb").write_text("my own week2\n")  # upstream adds the same name
    # the instructor changes the same and other files
    new = upstream.commit(
        {
            "lesson1.ipynb": '{"cells": ["fixed typo"]}\n',
            "helper.py": "x = 2\n",
            "week2.ipynb": '{"cells": ["week 2"]}\n',
            "data/more.csv": "c\n3\n",
            "old.txt": None,
            "extra.txt": None,
        },
        "week 2",
    )

    result = run_sync(home, [lesson(upstream)])

    short = new[:7]
    # the student's versions win, upstream's are next to them
    assert (repo / "lesson1.ipynb").read_text() == '{"cells": ["my answers"]}\n'
    assert (
        repo / f"lesson1.upstream-{short}.ipynb"
    ).read_text() == '{"cells": ["fixed typo"]}\n'
    assert (repo / "week2.ipynb").read_text() == "my own week2\n"
    assert (
        repo / f"week2.upstream-{short}.ipynb"
    ).read_text() == '{"cells": ["week 2"]}\n'
    assert (repo / "notes.txt").read_text() == "line 1\nline 2\nmy note\n"
    assert (repo / "extra.txt").read_text() == "my version\n"
    assert (repo / "mine.py").read_text() == "print('mine')\n"
    # upstream's other changes arrive
    assert (repo / "helper.py").read_text() == "x = 2\n"
    assert (repo / "data/more.csv").exists()
    assert not (repo / "old.txt").exists()
    # a lesson file the student deleted comes back (documented choice)
    assert (repo / "solutions.py").read_text() == "print('todo')\n"
    # the student's changes are in history, under a fixed author
    log = git("log", "--format=%an|%s", cwd=repo).splitlines()
    assert log[0].startswith("Lesson sync|Lesson sync: merge lesson update")
    assert any(
        line.startswith("Lesson sync|Lesson sync: save your changes") for line in log
    )
    git(
        "merge-base", "--is-ancestor", new, "HEAD", cwd=repo
    )  # raises unless upstream is merged
    assert git("status", "--porcelain", cwd=repo) == "?? mine.py"
    # told, not silently
    assert result.level("lessons/week1") == "warning"
    assert "2 file(s) changed on both sides" in result.message("lessons/week1")
    note = (home / sync.NOTE_FILENAME).read_text()
    assert f"lessons/week1/lesson1.upstream-{short}.ipynb" in note
    assert f"lessons/week1/week2.upstream-{short}.ipynb" in note
    assert "lessons/week1/extra.txt" in note
    assert temp_leftovers(home) == []


def test_clean_clone_fast_forwards(home, upstream):
    run_sync(home, [lesson(upstream)])
    new = upstream.commit({"notes.txt": "new notes\n", "README.md": None})
    result = run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    assert git("rev-parse", "HEAD", cwd=repo) == new  # no merge commit needed
    assert (repo / "notes.txt").read_text() == "new notes\n"
    assert not (repo / "README.md").exists()
    assert result.level("lessons/week1") == "info"
    assert git("rev-parse", "origin/main", cwd=repo) == new


def test_sync_with_nothing_new_is_a_no_op(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "notes.txt").write_text("student edit, not committed\n")
    before = snapshot(home, with_git=False)
    refs = git("for-each-ref", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo)

    result = run_sync(home, [lesson(upstream)])

    assert snapshot(home, with_git=False) == before
    assert git("for-each-ref", cwd=repo) == refs
    assert git("rev-parse", "HEAD", cwd=repo) == head
    assert result.level("lessons/week1") == "ok"
    assert not (home / sync.NOTE_FILENAME).exists()


def test_after_a_merge_the_next_start_is_quiet_and_the_note_goes(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "notes.txt").write_text("mine\n")
    upstream.commit({"notes.txt": "theirs\n"})
    assert run_sync(home, [lesson(upstream)]).level("lessons/week1") == "warning"
    assert (home / sync.NOTE_FILENAME).exists()
    before = snapshot(home, with_git=False)
    head = git("rev-parse", "HEAD", cwd=repo)

    result = run_sync(home, [lesson(upstream)])

    assert result.level("lessons/week1") == "ok"
    assert not (home / sync.NOTE_FILENAME).exists()
    assert (
        snapshot(home, with_git=False) == before
    )  # side copy and merge are not redone
    assert git("rev-parse", "HEAD", cwd=repo) == head


def test_student_commits_are_merged_like_uncommitted_work(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "helper.py").write_text("x = 'mine'\n")
    git("commit", "-qam", "my work", cwd=repo)
    upstream.commit({"helper.py": "x = 'theirs'\n", "new.txt": "new\n"})
    run_sync(home, [lesson(upstream)])
    assert (repo / "helper.py").read_text() == "x = 'mine'\n"
    assert (repo / "new.txt").exists()
    assert len(list(repo.glob("helper.upstream-*.py"))) == 1


def test_deletion_committed_with_git_is_respected(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    git("rm", "-q", "old.txt", cwd=repo)
    git("commit", "-qm", "not needed", cwd=repo)
    upstream.commit({"helper.py": "x = 3\n"})
    run_sync(home, [lesson(upstream)])
    assert not (repo / "old.txt").exists()
    # ...unless upstream changes the file again: then it comes back
    upstream.commit({"old.txt": "rewritten by the instructor\n"})
    result = run_sync(home, [lesson(upstream)])
    assert (repo / "old.txt").read_text() == "rewritten by the instructor\n"
    assert result.level("lessons/week1") == "warning"  # the note says why it is back


def test_deleted_file_comes_back_without_upstream_changes(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "lesson1.ipynb").unlink()
    result = run_sync(home, [lesson(upstream)])
    assert (repo / "lesson1.ipynb").read_text() == '{"cells": ["original"]}\n'
    assert result.level("lessons/week1") == "info"
    assert "restored 1 deleted file" in result.message("lessons/week1")


def test_student_file_where_upstream_adds_a_folder_and_vice_versa(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "images").write_text("my file called images\n")
    (repo / "scratch").mkdir()
    (repo / "scratch/mine.txt").write_text("mine\n")
    new = upstream.commit({"images/plot.png": b"\x89PNG", "scratch": "upstream file\n"})

    result = run_sync(home, [lesson(upstream)])

    short = new[:7]
    assert (repo / "images").read_text() == "my file called images\n"
    assert (repo / f"images.upstream-{short}/plot.png").read_bytes() == b"\x89PNG"
    assert (repo / "scratch/mine.txt").read_text() == "mine\n"
    assert (repo / f"scratch.upstream-{short}").read_text() == "upstream file\n"
    assert result.level("lessons/week1") == "warning"


def test_ignored_student_file_is_not_overwritten(home, upstream):
    upstream.commit({".gitignore": "*.log\n"})
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "run.log").write_text("my precious log\n")
    new = upstream.commit({"run.log": "upstream log\n"})  # force-added upstream
    run_sync(home, [lesson(upstream)])
    assert (repo / "run.log").read_text() == "my precious log\n"
    assert (repo / f"run.upstream-{new[:7]}.log").read_text() == "upstream log\n"


def test_student_changed_mode_and_symlinks_survive(home, upstream):
    upstream.commit({"run.sh": "echo hi\n"})
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "run.sh").chmod(0o755)
    (repo / "link").symlink_to("notes.txt")
    upstream.commit({"run.sh": "echo hello\n"})
    run_sync(home, [lesson(upstream)])
    assert os.access(repo / "run.sh", os.X_OK)
    assert (repo / "run.sh").read_text() == "echo hi\n"
    assert os.readlink(repo / "link") == "notes.txt"


# ---------------------------------------------------------------------------
# Broken folders are set aside, never deleted
# ---------------------------------------------------------------------------


def _assert_set_aside(home, result, target, files: dict) -> Path:
    (backup,) = backups(home, target)
    for name, content in files.items():
        assert (backup / name).read_text() == content
    assert (home / target / "README.md").read_text() == "# Lesson\n"
    assert git("status", "--porcelain", cwd=home / target) == ""
    assert result.level(target) == "warning"
    assert backup.name in result.message(target)
    note = (home / sync.NOTE_FILENAME).read_text()
    assert backup.name in note
    assert temp_leftovers(home) == []
    return backup


def test_folder_that_is_no_longer_a_repo_is_set_aside(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "notes.txt").write_text("my notes\n")
    (repo / "mine.txt").write_text("mine\n")
    shutil.rmtree(repo / ".git")
    result = run_sync(home, [lesson(upstream)])
    _assert_set_aside(
        home, result, "lessons/week1", {"notes.txt": "my notes\n", "mine.txt": "mine\n"}
    )
    assert "not a git repository" in result.message("lessons/week1")


def test_unrelated_history_is_set_aside(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    shutil.rmtree(repo / ".git")
    git("init", "-q", "-b", "main", cwd=repo)
    git("remote", "add", "origin", upstream.url, cwd=repo)
    (repo / "notes.txt").write_text("my fresh start\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "my own history", cwd=repo)
    upstream.commit({"helper.py": "x = 9\n"})
    result = run_sync(home, [lesson(upstream)])
    _assert_set_aside(home, result, "lessons/week1", {"notes.txt": "my fresh start\n"})
    assert "nothing in common" in result.message("lessons/week1")


def test_clone_of_another_repo_is_set_aside(home, upstream, tmp_path):
    other = Upstream(tmp_path / "other", "other")
    other.commit({"theirs.txt": "other repo\n"})
    run_sync(home, [lesson(other)])
    result = run_sync(home, [lesson(upstream)])
    _assert_set_aside(home, result, "lessons/week1", {"theirs.txt": "other repo\n"})
    assert "another repository" in result.message("lessons/week1")


def test_stale_index_lock_is_set_aside(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "notes.txt").write_text("half-committed work\n")
    (repo / ".git/index.lock").write_text("")
    result = run_sync(home, [lesson(upstream)])
    backup = _assert_set_aside(
        home, result, "lessons/week1", {"notes.txt": "half-committed work\n"}
    )
    assert (backup / ".git/index.lock").exists()
    assert "lock file" in result.message("lessons/week1")


def test_unfinished_merge_is_set_aside(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    head = git("rev-parse", "HEAD", cwd=repo)
    (repo / ".git/MERGE_HEAD").write_text(head + "\n")
    result = run_sync(home, [lesson(upstream)])
    _assert_set_aside(home, result, "lessons/week1", {})
    assert "merge was left unfinished" in result.message("lessons/week1")


def test_upstream_force_push_is_set_aside(home, upstream):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "notes.txt").write_text("mine\n")
    git("reset", "-q", "--hard", "HEAD", cwd=upstream.work)
    git("commit", "-q", "--amend", "-m", "rewritten history", cwd=upstream.work)
    git("push", "-q", "--force", "origin", "HEAD:main", cwd=upstream.work)
    result = run_sync(home, [lesson(upstream)])
    _assert_set_aside(home, result, "lessons/week1", {"notes.txt": "mine\n"})
    assert "rewritten upstream" in result.message("lessons/week1")


def test_file_or_symlink_in_place_of_the_folder_is_set_aside(home, upstream, tmp_path):
    (home / "lessons").mkdir()
    (home / "lessons/week1").write_text("a file named like the lesson\n")
    (tmp_path / "elsewhere").mkdir()
    (home / "week2").symlink_to(tmp_path / "elsewhere")
    result = run_sync(home, [lesson(upstream), lesson(upstream, "week2")])
    (backup,) = backups(home, "lessons/week1")
    assert backup.read_text() == "a file named like the lesson\n"
    (link,) = backups(home, "week2")
    assert link.is_symlink()
    assert (home / "week2").is_dir() and not (home / "week2").is_symlink()
    assert result.level("week2") == "warning"


def test_set_aside_names_are_unique(home, monkeypatch):
    monkeypatch.setattr(sync, "_timestamp", lambda: "20240101-120000")
    target = home / "lesson"
    for content in ("first", "second", "third"):
        target.mkdir()
        (target / "f").write_text(content)
        sync.set_aside(str(target))
    names = sorted(p.name for p in home.iterdir())
    assert names == [
        "lesson.backup-20240101-120000",
        "lesson.backup-20240101-120000-2",
        "lesson.backup-20240101-120000-3",
    ]
    assert (home / "lesson.backup-20240101-120000-3/f").read_text() == "third"


def test_target_behind_a_symlink_leading_outside_home_is_refused(
    home, upstream, tmp_path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "lessons").symlink_to(outside)
    result = run_sync(home, [lesson(upstream)])
    assert result.level("lessons/week1") == "error"
    assert list(outside.iterdir()) == []


# ---------------------------------------------------------------------------
# Failures leave the home alone and never block the server
# ---------------------------------------------------------------------------


def test_unreachable_remote_on_first_start_creates_nothing(home, tmp_path):
    url = (tmp_path / "does-not-exist.git").as_uri()
    result = run_sync(home, [{"url": url, "target": "lessons/week1"}])
    assert result.level("lessons/week1") == "error"
    assert "lesson-sync ERROR: lessons/week1: not synced" in result.stdout
    assert sorted(p.name for p in home.iterdir()) == [sync.NOTE_FILENAME]
    note = (home / sync.NOTE_FILENAME).read_text()
    assert "could not be synced" in note and "lessons/week1" in note


def test_unreachable_remote_later_leaves_the_clone_untouched(home, upstream, tmp_path):
    run_sync(home, [lesson(upstream)])
    repo = home / "lessons/week1"
    (repo / "notes.txt").write_text("my work\n")
    (repo / "README.md").unlink()
    moved = tmp_path / "moved.git"
    upstream.bare.rename(moved)
    before = snapshot(home)
    result = run_sync(home, [lesson(upstream)])
    assert snapshot(home) == before
    assert result.level("lessons/week1") == "error"
    assert (home / sync.NOTE_FILENAME).exists()
    # and when the remote is back, the note goes away again
    moved.rename(upstream.bare)
    result = run_sync(home, [lesson(upstream)])
    assert result.level("lessons/week1") == "info"  # README.md restored
    assert not (home / sync.NOTE_FILENAME).exists()


@pytest.mark.parametrize(
    "ref", ["no-such-branch", "v9.9", "0123456789abcdef0123456789abcdef01234567"]
)
def test_bad_ref_leaves_the_home_untouched(home, upstream, ref):
    run_sync(home, [lesson(upstream)])
    (home / "lessons/week1/notes.txt").write_text("my work\n")
    before = snapshot(home, with_git=False)
    result = run_sync(home, [lesson(upstream, ref=ref)])
    assert snapshot(home, with_git=False) == before
    assert result.level("lessons/week1") == "error"
    assert "not synced" in result.message("lessons/week1")


def test_bad_ref_on_first_start_creates_nothing(home, upstream):
    result = run_sync(home, [lesson(upstream, ref="nope")])
    assert "no branch or tag 'nope'" in result.message("lessons/week1")
    assert sorted(p.name for p in home.iterdir()) == [sync.NOTE_FILENAME]


def test_two_repos_one_fails_the_other_syncs(home, upstream, tmp_path):
    broken = {"url": (tmp_path / "gone.git").as_uri(), "target": "broken"}
    result = run_sync(home, [broken, lesson(upstream)])
    assert result.level("broken") == "error"
    assert result.level("lessons/week1") == "info"
    assert (home / "lessons/week1/README.md").exists()
    assert not (home / "broken").exists()
    note = (home / sync.NOTE_FILENAME).read_text()
    assert "`broken`" in note and "lessons/week1" not in note


def test_invalid_job_and_missing_home_still_exit_zero(home, tmp_path):
    result = run_sync(home, "this is not json")
    assert result.entries[0][0] == "error"
    result = run_sync(
        home,
        [{"url": "https://example.org/x.git"}],
        env={"CLASSROOM_HOME": str(tmp_path / "nope")},
    )
    assert result.entries[0][0] == "error"
    result = run_sync(home, [], env={})
    assert result.entries == []


def test_missing_git_is_reported_not_fatal(home, upstream, tmp_path):
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    result = run_sync(home, [lesson(upstream)], env={"PATH": str(empty_path)})
    assert "git is not installed" in result.message("lessons/week1")


def test_student_edited_note_is_kept(home, tmp_path):
    url = (tmp_path / "gone.git").as_uri()
    run_sync(home, [{"url": url, "target": "x"}])
    note = home / sync.NOTE_FILENAME
    note.write_text(note.read_text() + "\nmy own remark\n")
    run_sync(home, [])  # nothing to report: our note would be removed...
    assert "my own remark" in note.read_text()  # ...but the student edited it
    run_sync(home, [{"url": url, "target": "x"}])  # a new note is needed
    (kept,) = home.glob("LESSONS-SYNC-NOTE.backup-*.md")
    assert "my own remark" in kept.read_text()
    assert "my own remark" not in note.read_text()


# ---------------------------------------------------------------------------
# Refs and depth
# ---------------------------------------------------------------------------


def test_branch_tag_and_commit_refs(home, upstream):
    first = git("rev-parse", "HEAD", cwd=upstream.work)
    git("tag", "v1", cwd=upstream.work)
    git("push", "-q", "origin", "v1", cwd=upstream.work)
    second = upstream.commit({"notes.txt": "on main\n"})
    git("checkout", "-q", "-b", "solutions", cwd=upstream.work)
    upstream.commit({"answers.txt": "42\n"}, branch="solutions")
    git("checkout", "-q", "main", cwd=upstream.work)

    result = run_sync(
        home,
        [
            lesson(upstream, "branch", ref="solutions"),
            lesson(upstream, "tag", ref="v1"),
            lesson(upstream, "full", ref=first),
            lesson(upstream, "short", ref=first[:8]),
            lesson(upstream, "default"),
        ],
    )

    assert {level for level, _, _ in result.entries} == {"info"}
    assert (home / "branch/answers.txt").exists()
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=home / "branch") == "solutions"
    for target in ("tag", "full", "short"):
        assert git("rev-parse", "HEAD", cwd=home / target) == first, target
        assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=home / target) == "lesson"
    assert git("rev-parse", "HEAD", cwd=home / "default") == second
    assert git("for-each-ref", "refs/classroom/all", cwd=home / "short") == ""

    # a pinned commit stays put; moving the pin brings the new commit
    run_sync(home, [lesson(upstream, "full", ref=first)])
    assert git("rev-parse", "HEAD", cwd=home / "full") == first
    run_sync(home, [lesson(upstream, "full", ref=second)])
    assert git("rev-parse", "HEAD", cwd=home / "full") == second


def test_shallow_clone_and_later_merges(home, upstream):
    upstream.commit({"notes.txt": "second\n"})
    upstream.commit({"notes.txt": "third\n"})
    run_sync(home, [lesson(upstream, depth=1)])
    repo = home / "lessons/week1"
    assert git("rev-parse", "--is-shallow-repository", cwd=repo) == "true"
    assert git("rev-list", "--count", "HEAD", cwd=repo) == "1"

    (repo / "notes.txt").write_text("mine\n")
    (repo / "helper.py").write_text("x = 'mine'\n")
    new = upstream.commit({"notes.txt": "fourth\n", "added.txt": "new\n"})
    result = run_sync(home, [lesson(upstream, depth=1)])

    assert result.level("lessons/week1") == "warning"
    assert (repo / "notes.txt").read_text() == "mine\n"
    assert (repo / f"notes.upstream-{new[:7]}.txt").read_text() == "fourth\n"
    assert (repo / "helper.py").read_text() == "x = 'mine'\n"
    assert (repo / "added.txt").exists()
    assert backups(home, "lessons/week1") == []


def test_shallow_clone_whose_branch_changes(home, upstream):
    """A new ref forked below the shallow boundary needs the full history."""
    base = git("rev-parse", "HEAD", cwd=upstream.work)
    upstream.commit({"notes.txt": "main moves on\n"})
    run_sync(home, [lesson(upstream, depth=1)])
    git("checkout", "-q", "-b", "week2", base, cwd=upstream.work)
    upstream.commit({"week2.txt": "week 2\n"}, branch="week2")
    result = run_sync(home, [lesson(upstream, ref="week2", depth=1)])
    # a different branch that does not contain the old one: set aside, fresh clone
    assert result.level("lessons/week1") == "warning", result.termination
    assert (home / "lessons/week1/week2.txt").exists()
    assert len(backups(home, "lessons/week1")) == 1


# ---------------------------------------------------------------------------
# Hostile input never executes
# ---------------------------------------------------------------------------


def test_hostile_strings_never_execute(home, upstream, tmp_path):
    marker = tmp_path / "pwned"
    m = str(marker)
    hostile = [
        {"url": f"$(touch {m})"},
        {"url": f"`touch {m}`"},
        {"url": f"file:///x;touch {m}"},
        {"url": f"--upload-pack=touch {m}"},
        {"url": f"ext::sh -c touch% {m}"},
        {"url": f"ext::sh%20-c%20touch%20{m}"},
        {"url": upstream.url + "\n[core]\n\tsshCommand = touch " + m},
        {"url": f"file:///nonexistent/$(touch%20{m})", "target": "a"},
        {"url": f"file:///nonexistent;touch%20{m}", "target": "b"},
        {"url": upstream.url, "ref": f"$(touch${{IFS}}{m})", "target": "c"},
        {"url": upstream.url, "ref": f"`touch${{IFS}}{m}`", "target": "d"},
        {"url": upstream.url, "ref": f";touch${{IFS}}{m}", "target": "e"},
        {
            "url": upstream.url,
            "ref": f"main\n[core]\n\tfsmonitor = touch {m}",
            "target": "f",
        },
        {"url": upstream.url, "ref": f"--upload-pack=touch {m}", "target": "g"},
        {"url": upstream.url, "ref": "-b", "target": "h"},
        {"url": upstream.url, "target": f"-rf {m}"},
        {"url": upstream.url, "target": f"x\n[core]\n\thooksPath = {m}"},
        {"url": upstream.url, "target": "../escape"},
        {"url": upstream.url, "target": "/etc/escape"},
        {"url": upstream.url, "target": "lessons/.git/hooks"},
        {"url": upstream.url, "depth": f"1; touch {m}", "target": "i"},
    ]
    good = {"url": upstream.url, "target": "$(touch pwned-by-target)"}
    result = run_sync(home, hostile + [good])

    assert not marker.exists()
    assert not (home / "pwned-by-target").exists()
    assert not (tmp_path / "escape").exists()
    levels = [level for level, _, _ in result.entries]
    assert levels.count("error") == len(hostile)
    # the hostile-looking but valid target is just a folder name
    assert (home / "$(touch pwned-by-target)" / "README.md").exists()
    assert sorted(p.name for p in home.iterdir()) == sorted(
        [sync.NOTE_FILENAME, "$(touch pwned-by-target)"]
    )


def test_git_itself_refuses_helpers_and_option_urls(home, tmp_path):
    """Defence in depth: even if validation were bypassed, the git runner
    blocks ext:: and treats an option-looking URL as a path."""
    marker = tmp_path / "pwned"
    env = sync.base_git_env({"PATH": os.environ["PATH"]})
    runner = sync.Git(REAL_GIT, env, sync.Deadline(60))
    for url in (f"ext::sh -c touch% {marker}", f"--upload-pack=touch {marker}"):
        with pytest.raises(sync.GitFailed):
            runner.run(["ls-remote", "--", url], str(home))
    assert not marker.exists()


# ---------------------------------------------------------------------------
# Time bound
# ---------------------------------------------------------------------------


class HangingServer:
    """Accepts connections and never answers: a remote that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def all_closed_by_peer(self) -> bool:
        for conn in self.connections:
            conn.settimeout(30)
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                return False
        return bool(self.connections)

    def close(self):
        self.sock.close()
        for conn in self.connections:
            conn.close()


def test_timeout_kills_git_and_leaves_no_half_clone(home, upstream):
    server = HangingServer()
    try:
        hanging = {"url": f"git://127.0.0.1:{server.port}/lesson.git", "target": "slow"}
        result = run_sync(home, [hanging, lesson(upstream)], timeout=3)
        assert result.level("slow") == "error"
        assert "ran out of time" in result.message("slow")
        assert (
            result.level("lessons/week1") == "info"
        )  # the other lesson was not held up
        assert not (home / "slow").exists()
        assert temp_leftovers(home) == []
        assert server.all_closed_by_peer()  # git (and its children) were killed
    finally:
        server.close()


def test_stale_temp_folders_are_cleaned_but_foreign_ones_kept(home, upstream):
    stale = home / (sync.TMP_PREFIX + "old")
    stale.mkdir()
    (stale / sync.TMP_MARKER).write_text("")
    (stale / "repo").mkdir()
    foreign = home / (sync.TMP_PREFIX + "student")
    foreign.mkdir()
    old = time.time() - sync.TMP_STALE_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    run_sync(home, [lesson(upstream)])
    assert not stale.exists()
    assert foreign.exists()  # no marker: not ours


# ---------------------------------------------------------------------------
# Other transports: git daemon, HTTPS with a token
# ---------------------------------------------------------------------------


def _wait_for_port(port: int, proc: subprocess.Popen | None = None):
    for _ in range(200):
        if proc is not None and proc.poll() is not None:
            raise AssertionError("server exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def git_daemon(upstream):
    port = free_port()
    root = upstream.bare.parent
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            f"--base-path={root}",
            "--export-all",
            "--reuseaddr",
            f"--port={port}",
            "--listen=127.0.0.1",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, proc)
        yield f"git://127.0.0.1:{port}/{upstream.bare.name}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_git_protocol_clone_and_update(home, upstream, git_daemon):
    run_sync(home, [{"url": git_daemon, "target": "lesson", "depth": 1}])
    repo = home / "lesson"
    assert (repo / "README.md").exists()
    (repo / "notes.txt").write_text("mine\n")
    upstream.commit({"notes.txt": "theirs\n", "new.txt": "new\n"})
    result = run_sync(home, [{"url": git_daemon, "target": "lesson"}])
    assert result.level("lesson") == "warning"
    assert (repo / "notes.txt").read_text() == "mine\n"
    assert (repo / "new.txt").exists()


TOKEN = "s3cr3t-t0ken-Zq9"


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class GitHTTPHandler(BaseHTTPRequestHandler):
    """git http-backend behind HTTP basic auth: a private repo host."""

    # a client that goes away mid-request must not leave a thread blocked forever
    timeout = 30

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def log_message(self, *args):
        pass

    def _serve(self):
        if self.server.busy > 0:  # a host under load: 503 to the next requests
            self.server.busy -= 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        expected = (
            "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        )
        if self.headers.get("Authorization") != expected:
            self.server.denied += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="lessons"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self._body()
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": "student",
            "REMOTE_ADDR": "127.0.0.1",
        }
        out = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=60,
        ).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(sep)
        status, headers = 200, []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        self.send_header("Connection", "close")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class TLSServer(ThreadingHTTPServer):
    """HTTPS with the handshake and a clean TLS close in each request's thread."""

    daemon_threads = True
    connections = 0
    drops = 0  # so many next connections are closed before the TLS handshake
    busy = 0  # so many next requests get 503 Service Unavailable

    def finish_request(self, request, client_address):
        self.connections += 1
        if self.drops > 0:
            self.drops -= 1
            return  # the socket is closed: "TLS connection non-properly terminated"
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        self.RequestHandlerClass(tls, client_address, self)
        try:
            tls.unwrap()  # send close_notify before the socket goes away
        except (OSError, ssl.SSLError):
            pass


@pytest.fixture
def https_repo(upstream, tls_cert):
    cert, key = tls_cert
    server = TLSServer(("127.0.0.1", 0), GitHTTPHandler)
    server.root = upstream.bare.parent
    server.denied = 0
    server.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.context.load_cert_chain(cert, key)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"https://127.0.0.1:{server.server_address[1]}/{upstream.bare.name}"
    finally:
        server.shutdown()
        server.server_close()


def _git_argv_logger(tmp_path: Path) -> tuple[Path, Path]:
    """A `git` early on PATH that records its argv, then runs the real git."""
    folder = tmp_path / "logging-bin"
    folder.mkdir()
    log = tmp_path / "git-argv.log"
    wrapper = folder / "git"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"for a in \"$@\"; do printf '%s\\0' \"$a\" >> '{log}'; done; printf '\\n' >> '{log}'\n"
        f"exec '{REAL_GIT}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return folder, log


def _tree_contains(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            hits.append(str(path))
    return hits


@pytest.mark.parametrize("legacy_git_config", [False, True])
def test_private_repo_token_is_used_but_never_written_down(
    home, upstream, https_repo, tls_cert, tmp_path, monkeypatch, legacy_git_config
):
    server, url = https_repo
    bindir, argv_log = _git_argv_logger(tmp_path)
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "GIT_SSL_CAINFO": str(tls_cert[0]),
        "CLASSROOM_GIT_TOKEN": TOKEN + "\n",  # secrets made with echo end in a newline
    }
    if legacy_git_config:
        # pretend git is older than 2.31: the header goes via GIT_CONFIG_PARAMETERS
        script = SYNC_SOURCE.replace("if tuple(version) >= (2, 31, 0):", "if False:")
        assert script != SYNC_SOURCE
    else:
        script = SYNC_SOURCE

    without = run_sync(
        home,
        [{"url": url, "target": "private"}],
        env={k: v for k, v in env.items() if k != "CLASSROOM_GIT_TOKEN"},
    )
    assert without.level("private") == "error"
    assert server.denied == 1  # asked once: a refusal is not tried again
    assert "trying again" not in without.stdout
    assert not (home / "private").exists()

    first = run_sync(home, [{"url": url, "target": "private"}], env=env, script=script)
    assert first.level("private") == "info", first.termination
    (home / "private/notes.txt").write_text("mine\n")
    upstream.commit({"notes.txt": "theirs\n"})
    second = run_sync(home, [{"url": url, "target": "private"}], env=env, script=script)
    assert second.level("private") == "warning", second.termination

    secret_forms = [
        TOKEN.encode(),
        base64.b64encode(f"x-access-token:{TOKEN}".encode()),
    ]
    for needle in secret_forms:
        assert (
            _tree_contains(home, needle) == []
        )  # .git/config, FETCH_HEAD, logs, note...
        assert needle not in argv_log.read_bytes()
        for run in (first, second):
            assert needle.decode() not in run.stdout + run.stderr + run.termination
    assert (
        git("config", "--list", "--local", cwd=home / "private").count("extraheader")
        == 0
    )
    assert git("config", "remote.origin.url", cwd=home / "private") == url


@pytest.mark.parametrize("fault", ["drops", "busy"])
def test_a_git_host_that_fails_for_a_moment_is_tried_again(
    home, upstream, https_repo, tls_cert, fault
):
    server, url = https_repo
    env = {"GIT_SSL_CAINFO": str(tls_cert[0]), "CLASSROOM_GIT_TOKEN": TOKEN}
    script = SYNC_SOURCE.replace(
        "NET_RETRY_DELAYS = (1.0, 4.0)", "NET_RETRY_DELAYS = (0.1, 0.2)"
    )
    assert script != SYNC_SOURCE
    setattr(server, fault, 2)
    first = run_sync(home, [{"url": url, "target": "private"}], env=env, script=script)
    assert first.level("private") == "info", first.termination
    assert first.stdout.count("trying again") == 2, first.stdout
    assert (home / "private/.git").is_dir()

    # a host that stays down: three tries, then the usual error, home untouched
    (home / "private/notes.txt").write_text("mine\n")
    upstream.commit({"notes.txt": "theirs\n"})
    before = snapshot(home)
    setattr(server, fault, 1000)
    server.connections = 0
    second = run_sync(home, [{"url": url, "target": "private"}], env=env, script=script)
    assert second.level("private") == "error", second.termination
    assert server.connections == 3, (second.stdout, second.termination)
    assert second.stdout.count("trying again") == 2
    assert snapshot(home) == before


@pytest.mark.parametrize(
    "stderr, transient",
    [
        (
            "error: RPC failed; curl 35 gnutls_handshake() failed: The TLS connection was "
            "non-properly terminated.\nfatal: expected flush after ref listing",
            True,
        ),
        (
            "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 503",
            True,
        ),
        (
            "error: RPC failed; HTTP 429 curl 22 The requested URL returned error: 429",
            True,
        ),
        (
            "fatal: unable to access 'https://h/r.git/': Failed to connect to h port 443 after "
            "3 ms: Couldn't connect to server",
            True,
        ),
        ("fatal: unable to access 'https://h/r.git/': Could not resolve host: h", True),
        (
            "error: RPC failed; curl 56 GnuTLS recv error (-9): A TLS packet with unexpected "
            "length was received.",
            True,
        ),
        (
            "fetch-pack: unexpected disconnect while reading sideband packet\nfatal: early EOF",
            True,
        ),
        ("fatal: read error: Connection reset by peer", True),
        (
            "fatal: unable to access 'https://h/r.git/': gnutls_handshake() failed: Error in "
            "the pull function.",
            True,
        ),
        ("fatal: unable to access 'https://h/r.git/': SSL connect error", True),
        (
            "fatal: unable to access 'https://h/r.git/': Failure when receiving data from the peer",
            True,
        ),
        (
            "fatal: could not read Username for 'https://h': No such device or address",
            False,
        ),
        ("fatal: Authentication failed for 'https://h/r.git/'", False),
        (
            "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 403",
            False,
        ),
        (
            "remote: Repository not found.\nfatal: repository 'https://h/r.git/' not found",
            False,
        ),
        (
            "fatal: unable to access 'https://h/r.git/': server certificate verification failed. "
            "CAfile: none CRLfile: none",
            False,
        ),
        ("fatal: couldn't find remote ref refs/heads/nope", False),
    ],
)
def test_which_git_failures_are_worth_a_second_try(stderr, transient):
    assert sync._is_transient(stderr.encode()) is transient


def test_student_repo_config_never_sees_the_token(
    home, upstream, https_repo, tls_cert, tmp_path
):
    """The student owns .git/config: a proxy, disabled TLS checks or a filter
    program there must not get hold of the token, and no filter runs at all."""
    _, url = https_repo
    env = {"GIT_SSL_CAINFO": str(tls_cert[0]), "CLASSROOM_GIT_TOKEN": TOKEN}
    run_sync(home, [{"url": url, "target": "private"}], env=env)
    repo = home / "private"
    trap = HangingServer()  # a "proxy" that would see the CONNECT and maybe more
    stolen = tmp_path / "stolen-env"
    steal = f"sh -c 'env >> {stolen}; cat'"
    try:
        for key, value in [
            ("http.proxy", f"http://127.0.0.1:{trap.port}"),
            ("http.sslVerify", "false"),
            ("filter.steal.clean", steal),
            ("filter.steal.smudge", steal),
            (
                "filter.steal.required",
                "true",
            ),  # would make git fail without the program
            ("filter.my.steal.process", steal),  # a driver name with a dot in it
        ]:
            git("config", key, value, cwd=repo)
        (repo / ".git/info/attributes").write_text(
            "* filter=steal\n*.txt filter=my.steal\n"
        )
        (repo / "notes.txt").write_text("mine\n")
        upstream.commit({"notes.txt": "theirs\n", "new.txt": "new\n"})

        result = run_sync(home, [{"url": url, "target": "private"}], env=env)

        assert result.level("private") == "warning", result.termination
        assert (repo / "new.txt").read_text() == "new\n"
        assert (repo / "notes.txt").read_text() == "mine\n"
        assert trap.connections == []
        assert not stolen.exists()  # the student's filter programs never ran
    finally:
        trap.close()


NOBODY = 65534


@pytest.mark.skipif(
    os.geteuid() != 0
    or not shutil.which("setpriv")
    or not os.path.exists("/usr/bin/python3"),
    reason="runs the sync as another user: needs root, setpriv and /usr/bin/python3",
)
def test_another_program_of_the_same_user_cannot_read_the_token_from_the_sync(
    monkeypatch,
):
    """The sync's environment holds the token; a program running as the same
    user at the same time (here: a wrapper around git itself) must not be able
    to read it from /proc/<pid>/environ."""
    root = Path(tempfile.mkdtemp(prefix="sync-as-nobody-"))
    try:
        root.chmod(0o755)
        # the test's own git calls (as root) work in repos that belong to nobody
        (root / "gitconfig").write_text("[safe]\n\tdirectory = *\n")
        monkeypatch.setitem(GIT_ENV, "GIT_CONFIG_GLOBAL", str(root / "gitconfig"))
        upstream = Upstream(root / "upstream")
        upstream.commit({"notes.txt": "one\n"})
        home = root / "home"
        home.mkdir()
        stolen = root / "stolen"
        bindir = root / "bin"
        bindir.mkdir()
        (bindir / "git").write_text(
            "#!/bin/sh\n"
            f"for f in /proc/[0-9]*/environ; do cat \"$f\" 2>/dev/null; echo; done | tr '\\000' '\\n' >> {stolen}\n"
            f"echo wrapper-ran >> {stolen}\n"
            f"exec '{REAL_GIT}' \"$@\"\n"
        )
        (bindir / "git").chmod(0o755)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(root)], check=True)
        result = run_sync(
            home,
            [{"url": upstream.url, "target": "lesson"}],
            env={
                "CLASSROOM_GIT_TOKEN": TOKEN,
                "PATH": f"{bindir}:{os.environ['PATH']}",
            },
            python="/usr/bin/python3",
            run_as=[
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
            ],
        )
        assert result.level("lesson") == "info", result.termination
        seen = stolen.read_text()
        assert "wrapper-ran" in seen  # the program ran, as the sync's user...
        assert "PATH=" in seen  # ...and read what it could (its own environment)
        assert TOKEN not in seen  # ...but not the sync's
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_token_only_goes_to_listed_hosts(home, upstream, https_repo, tls_cert):
    _, url = https_repo
    env = {
        "GIT_SSL_CAINFO": str(tls_cert[0]),
        "CLASSROOM_GIT_TOKEN": TOKEN,
        "CLASSROOM_GIT_TOKEN_HOSTS": "github.com",
    }
    result = run_sync(home, [{"url": url, "target": "private"}], env=env)
    assert result.level("private") == "error"


def test_malformed_token_is_reported_and_public_lessons_still_sync(home, upstream):
    result = run_sync(home, [lesson(upstream)], env={"CLASSROOM_GIT_TOKEN": "abc\ndef"})
    assert result.level("lessons/week1") == "info"
    assert result.level("*") == "warning"
    assert "abc" not in result.termination + result.stdout
    assert "malformed" in (home / sync.NOTE_FILENAME).read_text()


def test_auth_env_scopes_the_header_to_the_repo_host():
    env = sync.auth_env(
        "https://git.example.org:8443/a/b.git", "tok", "u", set(), (2, 39, 5)
    )
    assert env["GIT_CONFIG_KEY_0"] == "http.https://git.example.org:8443/.extraHeader"
    assert (
        env["GIT_CONFIG_VALUE_0"]
        == "Authorization: Basic " + base64.b64encode(b"u:tok").decode()
    )
    assert sync.auth_env("git://h/x", "tok", "u", set(), (2, 39, 5)) == {}
    assert sync.auth_env("https://h/x", "", "u", set(), (2, 39, 5)) == {}
    legacy = sync.auth_env("https://h/x", "tok", "u", set(), (2, 25, 1))
    assert legacy == {
        "GIT_CONFIG_PARAMETERS": "'http.https://h/.extraHeader=Authorization: Basic dTp0b2s='"
    }


def test_git_environment_drops_redirecting_variables():
    env = sync.base_git_env(
        {
            "PATH": "/bin",
            "GIT_DIR": "/x",
            "GIT_CONFIG_PARAMETERS": "'core.x=y'",
            "GIT_SSL_CAINFO": "/ca",
            "CLASSROOM_GIT_TOKEN": "t",
            "GIT_TRACE_CURL": "1",
        }
    )
    assert "GIT_DIR" not in env and "GIT_TRACE_CURL" not in env
    assert "CLASSROOM_GIT_TOKEN" not in env and "GIT_CONFIG_PARAMETERS" not in env
    assert env["GIT_SSL_CAINFO"] == "/ca"
    assert env["GIT_ALLOW_PROTOCOL"] == "https:ssh:git:file"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_GLOBAL"] == os.devnull


# ---------------------------------------------------------------------------
# The shipped script, in old interpreters
# ---------------------------------------------------------------------------


def _oldest_python() -> str | None:
    pyenv = Path.home() / ".pyenv/versions"
    for version in ("3.6", "3.7", "3.8"):
        candidates = [
            str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"))
        ]
        candidates.append(shutil.which(f"python{version}") or "")
        for candidate in filter(None, candidates):
            if (
                subprocess.run(
                    [candidate, "-c", "pass"], capture_output=True
                ).returncode
                == 0
            ):
                return candidate
    return None


def test_minified_script_in_the_oldest_python_available(home, upstream):
    python = _oldest_python()
    if python is None:
        pytest.skip("no Python 3.6-3.8 interpreter on this machine")
    run_sync(home, [lesson(upstream)], python=python, script=sync_script())
    repo = home / "lessons/week1"
    (repo / "notes.txt").write_text("mine\n")
    (repo / "README.md").unlink()
    new = upstream.commit({"notes.txt": "theirs\n", "new.txt": "new\n"})
    result = run_sync(home, [lesson(upstream)], python=python, script=sync_script())
    assert (repo / "notes.txt").read_text() == "mine\n"
    assert (repo / f"notes.upstream-{new[:7]}.txt").exists()
    assert (repo / "README.md").exists()
    assert parse_termination_message(result.termination) == [
        ("warning", "lessons/week1: " + result.message("lessons/week1"))
    ]


# -- the note's Markdown ---------------------------------------------------------


def _code_spans(markdown: str) -> list[str]:
    """The text of every code span in a CommonMark document, as a renderer sees it."""
    from markdown_it import MarkdownIt

    spans = []
    for token in MarkdownIt("commonmark").parse(markdown):
        for child in token.children or []:
            if child.type == "code_inline":
                spans.append(child.content)
    return spans


@pytest.mark.parametrize(
    "name",
    ["week1", "week`1", "`week1`", "a``b```c", "` `", "two  spaces", " padded "],
)
def test_note_code_spans_hold_any_name(name):
    text = sync._code(name)
    assert _code_spans(f"- see {text} here\n") == [name]


def test_note_code_spans_keep_a_name_with_a_line_break_in_its_list_item():
    # a newline followed by '#' would otherwise start a heading mid-note
    assert _code_spans("- " + sync._code("a\n# b") + "\n") == ["a?# b"]


def test_the_note_quotes_lesson_folders_and_file_names_with_backticks(home, upstream):
    """A lesson folder or file name with backticks must not break out of its
    code span in the note (the folder is refused in a course file, but the
    sync must not depend on that, and file names come from the repo)."""
    target = "lessons/`week1`"
    upstream.commit({"a`b``.txt": "original\n"})
    run_sync(home, [lesson(upstream, target=target)])
    (home / target / "a`b``.txt").write_text("mine\n")
    new = upstream.commit({"a`b``.txt": "theirs\n"})
    result = run_sync(home, [lesson(upstream, target=target)])
    assert result.level(target) == "warning"
    note = (home / sync.NOTE_FILENAME).read_text()
    spans = _code_spans(note)
    assert spans[0] == target  # the heading
    assert f"{target}/a`b``.txt" in spans
    assert f"{target}/a`b``.upstream-{new[:7]}.txt" in spans
