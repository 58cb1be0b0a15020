"""Bring a course's lesson repositories into a student's home directory.

This module runs in every student's pod, in an init container, before the
notebook server starts.  The hub ships it as source text and runs it as
``python3 -I -c <source>`` in the course's own image, so it depends on
nothing but the standard library and stays compatible with old Pythons
(3.6+ syntax, no f-strings).  The package imports the ``validate_*``
functions from here so that the course-file loader and the pod apply the
very same rules.

The job comes from environment variables (see ``main``), and the script
always exits 0: a failing init container would keep the pod from ever
starting (restartPolicy OnFailure retries it forever), and a student without
the latest lesson is far better off than a student without a server.

What happens to one lesson repo (``url``, ``ref``, ``target``, ``depth``):

* The folder does not exist (or is empty): the repo is cloned into a
  temporary folder in the home directory and renamed into place only when
  complete, so a failed or timed-out clone leaves nothing behind.
* The folder is a clone of that repo: upstream is fetched and merged with
  *file-level* rules, decided so that a student can predict them:

  - a file the student did not change follows upstream (changed, added,
    deleted);
  - a file the student changed keeps exactly the student's content; when
    upstream changed it too, upstream's version is saved next to it as
    ``name.upstream-<sha>.ext`` and the note says so.  (nbgitpuller merges
    line-wise with ``-Xours`` instead; that can splice JSON notebooks into
    files the student did not write and that may not open any more.)
  - a file the student created is never touched; when upstream adds a file
    at the same path, the student's stays and upstream's is saved as above;
  - a lesson file the student deleted (without git) comes back at the next
    start, which gives students a simple "reset this file" recipe; a deletion
    committed with git is respected unless upstream changes the file again;
  - a file the student changed and upstream deleted stays.

  The student's changes are first saved in an automatic commit (fixed
  author "Lesson sync"), and the merge is recorded as a merge commit, so
  ``git log`` shows exactly what was theirs and what came from upstream.
* The folder cannot be updated safely -- it is not a git repo any more,
  points to another repository, has no history in common with upstream, was
  left mid-merge or with a lock file, or upstream rewrote its history -- then
  a fresh clone is made first and, only if that worked, the old folder is
  renamed to ``<target>.backup-<timestamp>`` (never overwriting anything)
  and the fresh clone takes its place.

Nothing in the home directory is deleted, and a lesson that cannot be synced
(network, authentication, bad ref, time limit) leaves the home as it was.
Each git call gets the time left until a shared deadline and is killed with
its whole process group when that runs out.  A network call (``ls-remote``,
``fetch``) that fails the way a busy or briefly unreachable git host fails --
a dropped connection or TLS handshake, a timeout, HTTP 408/429/5xx -- is
tried again after a short pause, twice at most and only while the deadline
allows; authentication errors, missing repos and bad refs are not retried.

Git is only ever run with argument lists (never a shell), with ``--`` before
URLs and paths, with protocols limited to https/ssh/git/file, with hooks,
fsmonitor, credential helpers and prompts disabled, without the student's
``~/.gitconfig``, and in the student's clone without the filter programs its
configuration defines.  A token for private repos is handed to git as
an HTTP header through ``GIT_CONFIG_COUNT`` environment variables: it never
appears in a command line, a URL, ``.git/config`` or any file.

The outcome is reported three ways: one line per repo on stdout (the pod
log), a summary in the Kubernetes termination-message file that the hub
turns into warnings in the spawn progress, and -- only when something needs
the student's attention -- a note ``~/LESSONS-SYNC-NOTE.md`` that is removed
again once everything is fine.
"""

import base64
import datetime
import hashlib
import json
import os
import posixpath
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from urllib.parse import unquote, urlsplit

ALLOWED_SCHEMES = ("https", "ssh", "git", "file")
NOTE_FILENAME = "LESSONS-SYNC-NOTE.md"
TERMINATION_HEADER = "classroom-lesson-sync/1"
TERMINATION_LOG_DEFAULT = "/dev/termination-log"
TERMINATION_MAX_BYTES = 4000  # Kubernetes keeps at most 4096 bytes
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 3600.0
DEFAULT_TOKEN_USERNAME = "x-access-token"
MAX_PARALLEL = 4
# pauses before the second and third try of a network call that failed
# in a way that may pass (see _is_transient)
NET_RETRY_DELAYS = (1.0, 4.0)

FETCHED_REF = "refs/classroom/fetched"
UPSTREAM_REF = "refs/classroom/upstream"
ALL_REFS = "refs/classroom/all/"
DETACHED_BRANCH = "lesson"
TMP_PREFIX = ".lesson-sync-tmp-"
TMP_MARKER = "LESSON-SYNC-TEMPORARY-FOLDER"
TMP_STALE_SECONDS = 2 * MAX_TIMEOUT
SIDE_INFIX = ".upstream-"
SYNC_AUTHOR_NAME = "Lesson sync"
SYNC_AUTHOR_EMAIL = "lesson-sync@classroom-spawner.invalid"

# Configuration every git call gets on its command line.  It neutralises
# anything in the repository or the image that could run code or prompt.
GIT_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.askPass=",
    "credential.helper=",
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.ssh.allow=always",
    "protocol.git.allow=always",
    "protocol.file.allow=always",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "commit.gpgSign=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
    # a staging repo borrows the student's objects; it must not run git in
    # the student's repo to list refs (it negotiates from its own ref)
    "core.alternateRefsPrefixes=refs/classroom/none/",
)

# Inherited GIT_* variables that only tune transport (certificates, ssh);
# every other GIT_* variable could redirect git to another repository.
GIT_ENV_KEEP = frozenset(
    [
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
        "GIT_SSL_CERT",
        "GIT_SSL_KEY",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSH_VARIANT",
        "GIT_EXEC_PATH",
        "GIT_HTTP_USER_AGENT",
    ]
)


# ---------------------------------------------------------------------------
# Validation (shared with the course-file loader)
# ---------------------------------------------------------------------------

_URL_FORBIDDEN = frozenset('`"<>\\^{}|')
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HELPER_RE = re.compile(r"^([A-Za-z0-9+._~-]+)::")
_SCP_RE = re.compile(
    r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9._+-]*)@"
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)$"
)
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9.-]*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$")
_COMMIT_RE = re.compile(r"^(?:[0-9a-f]{7,40}|[0-9a-f]{64})$")
_REF_FORBIDDEN = frozenset(" ~^:?*[\\")
MAX_URL_LENGTH = 2048
MAX_REF_LENGTH = 255
MAX_DEPTH = 1000000


def _show(value, limit=80):
    """Quote a value for an error message: repr() so newlines stay visible."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 4] + "...'"
    return text


def _is_invisible(ch):
    """Control, format, unassigned and separator characters (incl. space)."""
    return unicodedata.category(ch)[0] in "CZ"


def _first_invisible(value, allow_space=False):
    for index, ch in enumerate(value):
        if allow_space and ch == " ":
            continue
        if _is_invisible(ch):
            return index, ch
    return None


def _require_text(value, what):
    if not isinstance(value, str):
        raise ValueError(
            "%s must be text, not %s (in YAML, put it in quotes)"
            % (what, type(value).__name__)
        )


def validate_repo_url(url):
    """Check a lesson repo URL; return it with its scheme in lower case.

    Allowed: https://, ssh://, git://, file:/// and scp-like user@host:path.
    Rejected: anything git would hand to a remote helper (``ext::``), plain
    http, credentials in the URL (tokens belong in a Kubernetes Secret), and
    characters no URL needs that a shell would love (whitespace, control
    characters, quotes, backticks, a leading '-').
    """
    _require_text(url, "lesson repo URL")
    if not url:
        raise ValueError("lesson repo URL is empty")
    found = _first_invisible(url)
    if found:
        raise ValueError(
            "lesson repo URL %s contains whitespace or a control character (%r at position %d)"
            % (_show(url), found[1], found[0])
        )
    if url.startswith("-"):
        raise ValueError("lesson repo URL %s starts with '-'" % _show(url))
    if len(url) > MAX_URL_LENGTH:
        raise ValueError("lesson repo URL is longer than %d characters" % MAX_URL_LENGTH)
    bad = sorted(set(url) & _URL_FORBIDDEN)
    if bad:
        raise ValueError(
            "lesson repo URL %s contains %s, which has no place in a URL"
            % (_show(url), " ".join(repr(ch) for ch in bad))
        )
    scheme_match = _SCHEME_RE.match(url)
    if scheme_match:
        return _validate_scheme_url(url, scheme_match.group(1).lower())
    helper = _HELPER_RE.match(url)
    if helper:
        raise ValueError(
            "lesson repo URL %s asks git for the remote helper %r; allowed: %s"
            % (_show(url), helper.group(1), ", ".join(ALLOWED_SCHEMES))
        )
    scp = _SCP_RE.match(url)
    if scp:
        path = scp.group("path")
        if path.startswith("-") or "::" in url:
            raise ValueError("lesson repo URL %s has an unsafe path" % _show(url))
        return url
    raise ValueError(
        "lesson repo URL %s is not a URL git can use here; write https://host/path, "
        "ssh://host/path, git://host/path, file:///path or user@host:path" % _show(url)
    )


def _validate_scheme_url(url, scheme):
    if scheme not in ALLOWED_SCHEMES:
        raise ValueError(
            "lesson repo URL %s uses scheme %r; allowed: %s"
            % (_show(url), scheme, ", ".join(ALLOWED_SCHEMES))
        )
    url = scheme + url[len(scheme) :]
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError("lesson repo URL %s cannot be parsed (%s)" % (_show(url), exc))
    netloc = parts.netloc
    if scheme == "file":
        if netloc not in ("", "localhost"):
            raise ValueError(
                "lesson repo URL %s names host %r; file URLs look like file:///path/to/repo"
                % (_show(url), netloc)
            )
        if not parts.path.startswith("/") or parts.path == "/":
            raise ValueError("lesson repo URL %s has no repository path" % _show(url))
        return url
    userinfo, _, hostport = netloc.rpartition("@")
    if userinfo and scheme != "ssh":
        raise ValueError(
            "lesson repo URL %s embeds credentials; put the token in a Kubernetes Secret "
            "and name it in the course config instead" % _show(url)
        )
    if ":" in userinfo:
        raise ValueError(
            "lesson repo URL %s embeds a password; use an ssh key or a token Secret"
            % _show(url)
        )
    if userinfo.startswith("-"):
        raise ValueError("lesson repo URL %s has a user name starting with '-'" % _show(url))
    host = parts.hostname or ""
    if not host or not _HOST_RE.match(host) or host.startswith("-"):
        raise ValueError("lesson repo URL %s has no valid host name" % _show(url))
    if parts.path in ("", "/"):
        raise ValueError("lesson repo URL %s has no repository path" % _show(url))
    return url


def validate_ref(ref):
    """Check a branch, tag or commit; return it, or "" for the default branch.

    Implements ``git check-ref-format --branch`` in Python (so that nothing
    depends on which git the hub has), plus a few limits of our own.
    """
    if ref is None:
        return ""
    _require_text(ref, "lesson ref")
    if ref == "":
        return ""
    problem = _ref_problem(ref)
    if problem:
        raise ValueError("lesson ref %s is not a valid git ref: %s" % (_show(ref), problem))
    return ref


def _ref_problem(ref):
    if len(ref) > MAX_REF_LENGTH:
        return "it is longer than %d characters" % MAX_REF_LENGTH
    for ch in ref:
        if ord(ch) < 32 or ord(ch) == 127 or _is_invisible(ch):
            return "it contains whitespace or a control character (%r)" % ch
        if ch in _REF_FORBIDDEN:
            return "it contains %r" % ch
    if ref.startswith("-"):
        return "it starts with '-'"
    if ref == "@":
        return "it is '@'"
    if ".." in ref:
        return "it contains '..'"
    if "@{" in ref:
        return "it contains '@{'"
    if ref.startswith("/") or ref.endswith("/"):
        return "it starts or ends with '/'"
    if ref.endswith("."):
        return "it ends with '.'"
    for part in ref.split("/"):
        if part == "":
            return "it contains '//'"
        if part.startswith("."):
            return "a part of it starts with '.'"
        if part.endswith(".lock"):
            return "a part of it ends with '.lock'"
    return None


def is_commit_hash(ref):
    """Whether a ref looks like a (possibly abbreviated) commit hash."""
    return bool(ref) and bool(_COMMIT_RE.match(ref))


def validate_target(path):
    """Check a folder name relative to the home directory; return it normalised.

    ``a//b/./c/`` becomes ``a/b/c``.  Absolute paths, ``~``, ``..``, parts
    starting with '-', control characters and anything git would treat as
    its own ``.git`` folder are rejected.  Plain spaces inside names are fine.
    """
    _require_text(path, "lesson target folder")
    if path == "":
        raise ValueError("lesson target folder is empty")
    found = _first_invisible(path, allow_space=True)
    if found:
        raise ValueError(
            "lesson target folder %s contains a control character (%r at position %d)"
            % (_show(path), found[1], found[0])
        )
    if path.startswith("/"):
        raise ValueError(
            "lesson target folder %s is an absolute path; give a folder relative to "
            "the home directory" % _show(path)
        )
    if path.startswith("~"):
        raise ValueError(
            "lesson target folder %s starts with '~'; give a folder relative to the home "
            "directory, without '~/'" % _show(path)
        )
    if "\\" in path:
        raise ValueError("lesson target folder %s contains a backslash" % _show(path))
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        raise ValueError("lesson target folder %s is the home directory itself" % _show(path))
    for part in parts:
        _check_target_part(path, part)
    return "/".join(parts)


def _check_target_part(path, part):
    if part == "..":
        raise ValueError("lesson target folder %s contains '..'" % _show(path))
    if part.startswith("-"):
        raise ValueError("lesson target folder %s has a part starting with '-'" % _show(path))
    if part != part.strip(" "):
        raise ValueError(
            "lesson target folder %s has a part starting or ending with a space" % _show(path)
        )
    if part.lower().rstrip(". ") in (".git", "git~1"):
        raise ValueError("lesson target folder %s contains a '.git' folder" % _show(path))
    if len(part.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError("lesson target folder %s has a part longer than 255 bytes" % _show(path))


def default_target(url):
    """The folder a repo lands in when no target is given: its name minus .git."""
    url = validate_repo_url(url)
    if _SCHEME_RE.match(url):
        path = urlsplit(url).path
    else:
        path = url.split(":", 1)[1]
    name = unquote(path.rstrip("/").rsplit("/", 1)[-1])
    if name.endswith(".git") and len(name) > 4:
        name = name[:-4]
    try:
        return validate_target(name)
    except ValueError as exc:
        raise ValueError(
            "cannot derive a folder name from lesson repo URL %s (%s); set target"
            % (_show(url), exc)
        )


def validate_depth(depth):
    """Check a clone depth: a positive whole number, or None for full history."""
    if depth is None or depth == "":
        return None
    if isinstance(depth, bool):
        raise ValueError("lesson depth must be a positive whole number, not %s" % depth)
    if isinstance(depth, str):
        if not re.match(r"^[0-9]+$", depth):
            raise ValueError("lesson depth %s is not a positive whole number" % _show(depth))
        depth = int(depth)
    if not isinstance(depth, int):
        raise ValueError(
            "lesson depth must be a positive whole number, not %s" % type(depth).__name__
        )
    if depth < 1 or depth > MAX_DEPTH:
        raise ValueError(
            "lesson depth %d is out of range; use 1 to %d, or leave it out for the full history"
            % (depth, MAX_DEPTH)
        )
    return depth


LESSON_FIELDS = ("url", "ref", "target", "depth")


def validate_lesson(entry):
    """Validate one lesson (a dict or an object with url/ref/target/depth).

    Returns a plain dict with all four keys; the target defaults to the name
    of the repo.
    """
    if isinstance(entry, dict):
        unknown = sorted(str(key) for key in entry if key not in LESSON_FIELDS)
        if unknown:
            raise ValueError(
                "lesson has unknown field(s) %s; known: %s"
                % (", ".join(unknown), ", ".join(LESSON_FIELDS))
            )
        get = entry.get
    else:
        def get(key):
            return getattr(entry, key, None)
    if get("url") is None:
        raise ValueError("lesson has no url")
    url = validate_repo_url(get("url"))
    target = get("target")
    target = default_target(url) if target is None or target == "" else validate_target(target)
    return {
        "url": url,
        "ref": validate_ref(get("ref")),
        "target": target,
        "depth": validate_depth(get("depth")),
    }


def check_targets_distinct(targets):
    """Raise ValueError when two lessons would share or nest their folders."""
    seen = []
    for index, target in enumerate(targets):
        for other_index, other in seen:
            if target == other or target.startswith(other + "/") or other.startswith(target + "/"):
                raise ValueError(
                    "lesson %d folder %s overlaps lesson %d folder %s"
                    % (index + 1, _show(target), other_index + 1, _show(other))
                )
        seen.append((index, target))


def validate_lessons(entries):
    """Validate a whole lesson list; error messages name the lesson number."""
    if not isinstance(entries, (list, tuple)):
        raise ValueError("lessons must be a list, not %s" % type(entries).__name__)
    result = []
    for index, entry in enumerate(entries):
        try:
            result.append(validate_lesson(entry))
        except ValueError as exc:
            raise ValueError("lesson %d: %s" % (index + 1, exc))
    check_targets_distinct([lesson["target"] for lesson in result])
    return result


# ---------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------


class Outcome(object):
    """What happened to one lesson: a level, a one-line message, note lines."""

    def __init__(self, level, target, message, details=None):
        self.printed = False
        self.level = level
        self.target = target
        self.message = message
        self.details = list(details or [])

    def __repr__(self):
        return "Outcome(%r, %r, %r)" % (self.level, self.target, self.message)


class SyncError(Exception):
    """The lesson could not be synced; the home directory was left as it was."""


class OutOfTime(SyncError):
    """The shared deadline passed."""


class GitFailed(SyncError):
    """A git command exited with an error."""

    def __init__(self, args, returncode, stderr):
        self.returncode = returncode
        self.reason = _git_reason(stderr) or "git %s failed (exit %d)" % (args[0], returncode)
        SyncError.__init__(self, self.reason)


class SetAside(Exception):
    """The folder cannot be updated safely: move it aside and clone fresh."""


_SECRETS = []


def _redact(text):
    for secret in _SECRETS:
        if secret:
            text = text.replace(secret, "***")
    return text


def _one_line(text, limit=300):
    text = " ".join(_redact(str(text)).split())
    text = "".join(ch if not _is_invisible(ch) or ch == " " else "?" for ch in text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _git_reason(stderr):
    """The most telling line of git's error output."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return _one_line(line[len(prefix) :], 200)
    return _one_line(lines[-1], 200) if lines else ""


# What git (through curl, or a git/ssh connection) prints when the host was
# busy or the network dropped something: worth a second try.  Certificate
# problems, authentication, missing repos and refs are not in here.
_TRANSIENT_RE = re.compile(
    r"HTTP (?:408|429|5[0-9][0-9])\b"
    r"|returned error: (?:408|429|5[0-9][0-9])\b"
    r"|\bcurl (?:6|7|16|18|28|35|52|55|56|92)\b"
    r"|early EOF"
    r"|the remote end hung up unexpectedly"
    r"|unexpected disconnect"
    r"|connection (?:was )?reset"
    r"|connection refused"
    r"|connection timed out"
    r"|operation timed out"
    r"|could not resolve host"
    r"|failed to connect to"
    r"|empty reply from server"
    r"|(?:recv|send) failure"
    r"|ssl_error_syscall"
    r"|non-properly terminated"
    r"|error in the (?:pull|push) function"
    r"|ssl connect error"
    r"|failure when receiving data from the peer"
    r"|failed sending data to the peer"
    r"|unexpected eof while reading",
    re.IGNORECASE,
)


def _is_transient(stderr):
    """Did git fail in a way that may not happen again a moment later?"""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return _TRANSIENT_RE.search(text) is not None


# ---------------------------------------------------------------------------
# Running git
# ---------------------------------------------------------------------------


class Deadline(object):
    """One deadline shared by every git call of the job."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self):
        return self.end - time.monotonic()


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (OSError, AttributeError):
        try:
            proc.kill()
        except OSError:
            pass


class Git(object):
    """Runs git with the safe configuration, an environment and a deadline.

    ``retry_delays`` (for the network calls only) are the pauses before
    trying a call again that failed in a way that may pass.
    """

    def __init__(self, executable, env, deadline, retry_delays=(), config=()):
        self.executable = executable
        self.env = env
        self.deadline = deadline
        self.retry_delays = tuple(retry_delays)
        self.config = tuple(config)

    def with_env(self, extra):
        env = dict(self.env)
        env.update(extra)
        return Git(self.executable, env, self.deadline, self.retry_delays, self.config)

    def with_config(self, items):
        """This git with more ``-c name=value`` settings on every command line."""
        return Git(self.executable, self.env, self.deadline, self.retry_delays, self.config + tuple(items))

    def run(self, args, cwd, input=None, check=True, env=None):
        """Run ``git <args>`` in cwd; return (returncode, stdout, stderr) bytes.

        The process gets its own session so that a timeout kills git and
        everything it started (remote helpers, ssh, upload-pack).  Git never
        looks for a repository above cwd (GIT_CEILING_DIRECTORIES).
        """
        for delay in self.retry_delays:
            code, out, err = self._run_once(args, cwd, input, env)
            # a try must leave the next one some time of its own
            if code == 0 or not _is_transient(err) or self.deadline.remaining() < delay + 5:
                break
            _log_line("lesson-sync: 'git %s' failed (%s); trying again in %g s"
                      % (args[0], _git_reason(err), delay))
            time.sleep(delay)
        else:
            code, out, err = self._run_once(args, cwd, input, env)
        if check and code != 0:
            raise GitFailed(args, code, err)
        return code, out, err

    def _run_once(self, args, cwd, input, env):
        remaining = self.deadline.remaining()
        if remaining <= 0:
            raise OutOfTime("ran out of time (the sync may take %d s)" % self.deadline.seconds)
        command = [self.executable]
        for item in GIT_SAFE_CONFIG + self.config:
            command += ["-c", item]
        command += list(args)
        run_env = dict(env if env is not None else self.env)
        run_env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(os.path.realpath(cwd))
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=run_env,
                stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise SyncError("could not run git: %s" % exc)
        try:
            out, err = proc.communicate(input, timeout=remaining)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _reap(proc)
            raise OutOfTime(
                "ran out of time during 'git %s' (the sync may take %d s)"
                % (args[0], self.deadline.seconds)
            )
        except BaseException:
            _kill_group(proc)
            _reap(proc)
            raise
        return proc.returncode, out, err

    def out(self, args, cwd, **kwargs):
        return self.run(args, cwd, **kwargs)[1].decode("utf-8", "replace").strip()

    def ok(self, args, cwd, **kwargs):
        return self.run(args, cwd, check=False, **kwargs)[0] == 0


def _reap(proc):
    try:
        proc.communicate(timeout=5)
    except Exception:
        pass


def git_version(executable, env):
    """(major, minor, patch) of the installed git, (0, 0, 0) when unknown."""
    try:
        out = subprocess.run(
            [executable, "version"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=20,
        ).stdout.decode("ascii", "replace")
    except (OSError, subprocess.SubprocessError):
        return (0, 0, 0)
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not match:
        return (0, 0, 0)
    return tuple(int(part or 0) for part in match.groups())


def base_git_env(environ):
    """The environment of every git call: inherited, minus anything that
    could point git elsewhere or leak the token, plus safety settings."""
    env = {}
    for key, value in environ.items():
        if key.startswith("GIT_") and key not in GIT_ENV_KEEP:
            continue
        if key.startswith("CLASSROOM_"):
            continue
        env[key] = value
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_ALLOW_PROTOCOL": ":".join(ALLOWED_SCHEMES),
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": SYNC_AUTHOR_NAME,
            "GIT_AUTHOR_EMAIL": SYNC_AUTHOR_EMAIL,
            "GIT_COMMITTER_NAME": SYNC_AUTHOR_NAME,
            "GIT_COMMITTER_EMAIL": SYNC_AUTHOR_EMAIL,
            "LC_ALL": "C",
            # Large files stay pointer files: git-lfs would fetch them without
            # our time bound and, for private repos, without the token.
            "GIT_LFS_SKIP_SMUDGE": "1",
        }
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _sq(text):
    """Quote for git's GIT_CONFIG_PARAMETERS (shell-like single quotes)."""
    return "'" + text.replace("'", "'\\''") + "'"


def auth_env(url, token, username, hosts, version):
    """Environment that makes git send the token to this repo's host only.

    git >= 2.31 reads extra configuration from GIT_CONFIG_COUNT/KEY/VALUE;
    older git from GIT_CONFIG_PARAMETERS.  Either way the header exists only
    in the environment of our git processes, never in argv or on disk.
    """
    if not token:
        return {}
    parts = urlsplit(url)
    if parts.scheme != "https":
        return {}
    if hosts and (parts.hostname or "") not in hosts:
        return {}
    key = "http.https://%s/.extraHeader" % parts.netloc
    credentials = base64.b64encode((username + ":" + token).encode("utf-8")).decode("ascii")
    value = "Authorization: Basic " + credentials
    if tuple(version) >= (2, 31, 0):
        return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": key, "GIT_CONFIG_VALUE_0": value}
    return {"GIT_CONFIG_PARAMETERS": _sq(key + "=" + value)}


def _split_z(data):
    return [os.fsdecode(item) for item in data.split(b"\0") if item]


def _join_z(paths):
    return b"".join(os.fsencode(path) + b"\0" for path in paths)


# ---------------------------------------------------------------------------
# Upstream: which commit do we want?
# ---------------------------------------------------------------------------


class Upstream(object):
    """The resolved ref: kind is branch, tag, ref, head or commit."""

    def __init__(self, kind, src, branch=None):
        self.kind = kind
        self.src = src
        self.branch = branch


def resolve_upstream(git, repo, url, ref):
    """Ask the remote (git ls-remote) what ``ref`` is, before touching anything.

    Branches win over tags of the same name (as with ``git clone --branch``);
    a hex string that is neither is taken as a commit hash.
    """
    wanted = ref if ref and ref != "HEAD" else "HEAD"
    out = git.out(["ls-remote", "--symref", "--", url, wanted], repo)
    head_target, refs = None, {}
    for line in out.splitlines():
        if line.startswith("ref: "):
            target, _, name = line[5:].partition("\t")
            if name == "HEAD":
                head_target = target
        elif "\t" in line:
            sha, _, name = line.partition("\t")
            refs[name] = sha
    if wanted == "HEAD":
        if "HEAD" in refs and head_target and head_target.startswith("refs/heads/"):
            branch = head_target[len("refs/heads/") :]
            if _ref_problem(branch) is None:
                return Upstream("branch", head_target, branch)
        if "HEAD" in refs:
            return Upstream("head", "HEAD")
        raise SyncError("the repository has no commits on its default branch")
    candidates = [ref] if ref.startswith("refs/") else ["refs/heads/" + ref, "refs/tags/" + ref]
    for name in candidates:
        if name in refs:
            if name.startswith("refs/heads/"):
                return Upstream("branch", name, name[len("refs/heads/") :])
            return Upstream("tag" if name.startswith("refs/tags/") else "ref", name)
    if is_commit_hash(ref):
        return Upstream("commit", ref)
    raise SyncError("there is no branch or tag %s in the repository" % _show(ref))


def _fetch(git, repo, url, refspecs, depth=None):
    args = ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules"]
    if depth:
        args += ["--depth", str(depth)]
    git.run(args + ["--", url] + list(refspecs), repo)


def fetch_upstream(git, repo, url, upstream, depth):
    """Fetch the wanted commit into FETCHED_REF; return its hash."""
    if upstream.kind == "commit":
        return _fetch_commit(git, repo, url, upstream.src, depth)
    _fetch(git, repo, url, ["+%s:%s" % (upstream.src, FETCHED_REF)], depth)
    return git.out(["rev-parse", "--verify", FETCHED_REF + "^{commit}"], repo)


def _fetch_commit(git, repo, url, commit, depth):
    """Servers let clients fetch full hashes directly (protocol v2, GitHub);
    abbreviated ones need every branch and tag to look the hash up."""
    if len(commit) in (40, 64):
        try:
            _fetch(git, repo, url, ["+%s:%s" % (commit, FETCHED_REF)], depth)
            return git.out(["rev-parse", "--verify", FETCHED_REF + "^{commit}"], repo)
        except GitFailed:
            pass
    refspecs = ["+refs/heads/*:%sheads/*" % ALL_REFS, "+refs/tags/*:%stags/*" % ALL_REFS]
    try:
        _fetch(git, repo, url, refspecs, None)
        code, out, _ = git.run(["rev-parse", "--verify", "--quiet", commit + "^{commit}"], repo, check=False)
        if code != 0:
            raise SyncError("commit %s was not found in the repository" % _show(commit))
        sha = out.decode("ascii").strip()
        git.run(["update-ref", FETCHED_REF, sha], repo)
        return sha
    finally:
        _drop_refs(git, repo, ALL_REFS)


def _drop_refs(git, repo, prefix):
    names = git.out(["for-each-ref", "--format=%(refname)", prefix], repo).split()
    if names:
        commands = "".join("delete %s\n" % name for name in names).encode("utf-8")
        git.run(["update-ref", "--stdin"], repo, input=commands)


def record_synced(git, repo, upstream, sha):
    """Remember what was merged, and keep origin/<branch> current for the
    student's own git tools."""
    names = [UPSTREAM_REF]
    if upstream.kind == "branch":
        names.append("refs/remotes/origin/" + upstream.branch)
    for name in names:
        code, out, _ = git.run(["rev-parse", "--verify", "--quiet", name], repo, check=False)
        if code != 0 or out.decode("ascii").strip() != sha:
            git.run(["update-ref", name, sha], repo)


# ---------------------------------------------------------------------------
# The home directory
# ---------------------------------------------------------------------------


def _timestamp():
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def unique_path(base, suffix=""):
    """base+suffix, or base-2+suffix, ... whichever does not exist yet."""
    candidate, number = base + suffix, 2
    while os.path.lexists(candidate):
        candidate = "%s-%d%s" % (base, number, suffix)
        number += 1
    return candidate


def set_aside(path):
    """Rename path to <path>.backup-<timestamp>[-N]; return the new path."""
    backup = unique_path("%s.backup-%s" % (path, _timestamp()))
    os.rename(path, backup)
    return backup


def make_temp_dir(home):
    """A private folder in the home volume, so the final rename is atomic."""
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=home)
    with open(os.path.join(tmp, TMP_MARKER), "w") as marker:
        marker.write("Left by an interrupted lesson sync; safe to delete.\n")
    return tmp


def remove_temp_dir(tmp):
    if tmp and os.path.isfile(os.path.join(tmp, TMP_MARKER)):
        shutil.rmtree(tmp, ignore_errors=True)


def clean_stale_temp_dirs(home):
    """Remove our own temporary folders left by a sync that was killed."""
    try:
        names = os.listdir(home)
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(home, name)
        if not name.startswith(TMP_PREFIX) or os.path.islink(path):
            continue
        try:
            if now - os.lstat(path).st_mtime > TMP_STALE_SECONDS:
                remove_temp_dir(path)
        except OSError:
            pass


def check_inside_home(home, path):
    real_home = os.path.realpath(home)
    parent = os.path.realpath(os.path.dirname(path))
    if parent != real_home and not parent.startswith(real_home.rstrip(os.sep) + os.sep):
        raise SyncError("its folder leads outside the home directory (through a symbolic link)")


def inspect_target(path):
    """'absent', 'empty' or 'repo'; raises SetAside for anything unsafe."""
    if not os.path.lexists(path):
        return "absent"
    if os.path.islink(path):
        raise SetAside("it is a symbolic link")
    if not os.path.isdir(path):
        raise SetAside("it is a file, not a folder")
    if not os.listdir(path):
        return "empty"
    gitdir = os.path.join(path, ".git")
    if os.path.islink(gitdir) or not os.path.isdir(gitdir):
        raise SetAside("it is not a git repository any more")
    for name in ("index.lock", "HEAD.lock", "config.lock", "shallow.lock", "packed-refs.lock"):
        if os.path.lexists(os.path.join(gitdir, name)):
            raise SetAside("git left a lock file (.git/%s) behind" % name)
    unfinished = (
        ("MERGE_HEAD", "merge"), ("CHERRY_PICK_HEAD", "cherry-pick"), ("REVERT_HEAD", "revert"),
        ("rebase-merge", "rebase"), ("rebase-apply", "rebase"), ("BISECT_LOG", "bisect"),
    )
    for name, what in unfinished:
        if os.path.lexists(os.path.join(gitdir, name)):
            raise SetAside("a git %s was left unfinished" % what)
    return "repo"


def _same_repo_url(left, right):
    def norm(url):
        url = url.strip().rstrip("/")
        return url[:-4] if url.endswith(".git") else url
    return norm(left) == norm(right)


def without_student_filters(git, repo):
    """This git, for the student's clone, with every filter driver its
    configuration defines switched off.

    A filter (``filter.<name>.clean/smudge/process`` with a matching
    attribute) is a program the student chose, and git would run it while the
    sync saves their work and checks out the update, as the same user and
    while the token is around. The sync needs none: files are compared and
    written as they are. Settings on the command line win over the repo's.
    """
    code, out, _ = git.run(["config", "-z", "--get-regexp", r"^filter\."], repo, check=False)
    names = set()
    for entry in out.split(b"\0") if code == 0 else ():
        key = entry.split(b"\n", 1)[0].decode("utf-8", "surrogateescape")
        if key.startswith("filter.") and key.count(".") >= 2:
            names.add(key[len("filter."):key.rindex(".")])
    items = []
    for name in sorted(names):
        if "=" in name or _first_invisible(name, allow_space=True):
            raise SyncError("its git configuration defines a filter %s that the sync cannot "
                            "switch off" % _show(name))
        items += ["filter.%s.clean=" % name, "filter.%s.smudge=" % name,
                  "filter.%s.process=" % name, "filter.%s.required=false" % name]
    return git.with_config(items)


def verify_repo(git, repo, url):
    """Make sure the folder is its own, healthy clone of this very repo."""
    code, out, err = git.run(["rev-parse", "--show-toplevel"], repo, check=False)
    if code != 0:
        raise SetAside("git cannot use it (%s)" % _git_reason(err))
    top = os.fsdecode(out.rstrip(b"\n"))
    if os.path.realpath(top) != os.path.realpath(repo):
        raise SetAside("its .git folder belongs to another repository")
    code, out, _ = git.run(["config", "--get", "remote.origin.url"], repo, check=False)
    origin = out.decode("utf-8", "replace").strip()
    if code != 0 or not origin:
        raise SetAside("it has no 'origin' remote any more")
    if not _same_repo_url(origin, url):
        raise SetAside("it is a clone of another repository (%s)" % _one_line(origin, 100))
    if not git.ok(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], repo):
        raise SetAside("it has no commits")
    if git.run(["ls-files", "-z", "--unmerged"], repo)[1]:
        raise SetAside("it has unresolved merge conflicts")


# ---------------------------------------------------------------------------
# First clone and set-aside
# ---------------------------------------------------------------------------


def clone_into_temp(gits, home, lesson):
    """Clone the lesson into a temporary folder; return (tmp, repo, upstream, sha).

    The new repository's configuration is ours alone, so the network steps
    (with the token) can run in it directly; the checkout runs without it.
    """
    local, net = gits
    url = lesson["url"]
    tmp = make_temp_dir(home)
    try:
        repo = os.path.join(tmp, "repo")
        local.run(["init", "--quiet", "--", repo], tmp)
        local.run(["config", "--", "remote.origin.url", url], repo)
        local.run(["config", "--", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"], repo)
        upstream = resolve_upstream(net, repo, url, lesson["ref"])
        sha = fetch_upstream(net, repo, url, upstream, lesson["depth"])
        branch = upstream.branch or DETACHED_BRANCH
        local.run(["checkout", "--quiet", "-B", branch, sha, "--"], repo)
        if upstream.kind == "branch":
            local.run(["config", "--", "branch.%s.remote" % branch, "origin"], repo)
            local.run(["config", "--", "branch.%s.merge" % branch, upstream.src], repo)
        record_synced(local, repo, upstream, sha)
        return tmp, repo, upstream, sha
    except BaseException:
        remove_temp_dir(tmp)
        raise


def _describe(lesson, sha):
    return "%s at %s" % (lesson["ref"] or "default branch", sha[:7])


def clone_fresh(gits, home, lesson, path):
    """First start: clone, then rename into place (parents made only now)."""
    tmp, repo, upstream, sha = clone_into_temp(gits, home, lesson)
    try:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        os.rename(repo, path)  # replaces an empty folder, never a full one
    finally:
        remove_temp_dir(tmp)
    return Outcome("info", lesson["target"], "cloned %s" % _describe(lesson, sha))


def replace_with_fresh_clone(gits, home, lesson, path, reason):
    """Clone first; only then move the old folder aside and put the clone in."""
    tmp, repo, upstream, sha = clone_into_temp(gits, home, lesson)
    try:
        backup = set_aside(path)
        try:
            os.rename(repo, path)
        except OSError:
            os.rename(backup, path)
            raise
    finally:
        remove_temp_dir(tmp)
    backup_name = os.path.relpath(backup, home)
    message = "folder set aside as %s (%s); a fresh copy was cloned (%s)" % (
        backup_name, reason, _describe(lesson, sha))
    details = [
        "Your folder %s could not be updated because %s. Nothing was deleted: it was "
        "renamed to %s, and a fresh copy of the lesson was put at %s. Copy anything "
        "you need from the old folder."
        % (_code(lesson["target"]), reason, _code(backup_name), _code(lesson["target"]))
    ]
    return Outcome("warning", lesson["target"], message, details)


# ---------------------------------------------------------------------------
# Update in place
# ---------------------------------------------------------------------------


def _is_shallow(repo):
    return os.path.isfile(os.path.join(repo, ".git", "shallow"))


def _is_ancestor(git, repo, older, newer):
    return git.ok(["merge-base", "--is-ancestor", older, newer], repo)


def _merge_base(git, repo, left, right):
    code, out, _ = git.run(["merge-base", left, right], repo, check=False)
    return out.decode("ascii").strip() if code == 0 else None


def fetch_via_staging(gits, home, repo, url, ref, upstream=None, full=False):
    """Fetch upstream into the student's repo without letting the student's
    repo configuration near the token; return (upstream, sha).

    The student owns ``.git/config``: settings such as ``http.sslVerify``,
    ``http.proxy`` or filter drivers there could hand the token to someone
    else.  So the network part runs in a fresh bare "staging" repository of
    ours that borrows the student's objects (alternates, so only new objects
    travel), and the result is then fetched locally, without the token, into
    the student's repo.  ``full`` fetches the complete history, to deepen a
    shallow clone.
    """
    local, net = gits
    tmp = make_temp_dir(home)
    try:
        staging = os.path.join(tmp, "staging.git")
        local.run(["init", "--quiet", "--bare", "--", staging], tmp)
        at_staging = {"GIT_DIR": staging}
        if not full:
            _borrow_objects(local.with_env(at_staging), staging, local, repo)
        net_staging = net.with_env(at_staging)
        if upstream is None:
            upstream = resolve_upstream(net_staging, staging, url, ref)
        sha = fetch_upstream(net_staging, staging, url, upstream, None)
        args = ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules"]
        if full and _is_shallow(repo):
            # the shallow boundary may lie on the branch cloned back then
            _fetch(net_staging, staging, url, ["+refs/heads/*:%sheads/*" % ALL_REFS])
            args.append("--unshallow")
        try:
            local.run(args + ["--", staging, "+%s:%s" % (FETCHED_REF, FETCHED_REF)], repo)
        except GitFailed as exc:
            if full:  # e.g. the old commits are gone upstream
                raise SetAside("its shallow history cannot be completed (%s)" % exc.reason)
            raise
        return upstream, sha
    finally:
        remove_temp_dir(tmp)


def _borrow_objects(staging_git, staging, local, repo):
    """Let staging see the student's objects and start negotiating from the
    last commit we synced, so a fetch only downloads what is new."""
    gitdir = os.path.join(os.path.realpath(repo), ".git")
    with open(os.path.join(staging, "objects", "info", "alternates"), "w") as handle:
        handle.write(os.path.join(gitdir, "objects") + "\n")
    if _is_shallow(repo):  # tell the server which parents we do not have
        shutil.copyfile(os.path.join(gitdir, "shallow"), os.path.join(staging, "shallow"))
    last = _rev_parse_optional(local, repo, UPSTREAM_REF + "^{commit}")
    if last:
        staging_git.run(["update-ref", "refs/have/upstream", last], staging)


def _rev_parse_optional(git, repo, name):
    code, out, _ = git.run(["rev-parse", "--verify", "--quiet", name], repo, check=False)
    return out.decode("ascii").strip() if code == 0 else ""


def _lstat_mode(path):
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


def _real_dirs_above(repo, relpath):
    """True when every parent of relpath inside repo is a real folder (or missing)."""
    parts = relpath.split("/")[:-1]
    current = repo
    for part in parts:
        current = os.path.join(current, part)
        mode = _lstat_mode(current)
        if mode is None:
            return True
        if not stat.S_ISDIR(mode):
            return False
    return True


def restore_deleted(git, repo):
    """Bring back lesson files the student deleted without git (see module doc)."""
    deleted = _split_z(git.run(["ls-files", "-z", "--deleted"], repo)[1])
    restorable = sorted(
        set(p for p in deleted
            if not os.path.lexists(os.path.join(repo, p)) and _real_dirs_above(repo, p))
    )
    if restorable:
        git.run(["checkout-index", "-z", "--stdin"], repo, input=_join_z(restorable))
    return restorable


def _ls_tree(git, repo, commit):
    """{path: (mode, sha)} of every file, symlink and submodule in a commit."""
    entries = {}
    out = git.run(["ls-tree", "-r", "-z", "--full-tree", commit], repo)[1]
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _, sha = meta.decode("ascii").split(" ")
        entries[os.fsdecode(path)] = (mode, sha)
    return entries


def save_student_work(git, repo, upstream_sha):
    """Commit the student's changes to tracked files, and their own files
    that sit where upstream adds a file, as an automatic commit.

    Other untracked files (data, checkpoints) stay out of git.
    """
    head = git.out(["rev-parse", "HEAD"], repo)
    git.run(["add", "--update"], repo)
    tracked = set(_split_z(git.run(["ls-files", "-z"], repo)[1]))
    in_the_way = []
    for path in _ls_tree(git, repo, upstream_sha):
        if path in tracked or not _real_dirs_above(repo, path):
            continue
        mode = _lstat_mode(os.path.join(repo, path))
        if mode is not None and not stat.S_ISDIR(mode):
            in_the_way.append(path)
    if in_the_way:
        git.run(["update-index", "--add", "-z", "--stdin"], repo, input=_join_z(sorted(in_the_way)))
    tree = git.out(["write-tree"], repo)
    if tree == git.out(["rev-parse", "HEAD^{tree}"], repo):
        return head
    message = "Lesson sync: save your changes before updating to %s" % upstream_sha[:7]
    commit = git.out(["commit-tree", tree, "-p", head, "-m", message], repo)
    git.run(["update-ref", "-m", "lesson sync: save changes", "HEAD", commit, head], repo)
    return commit


def _split_ext(name):
    stem, ext = posixpath.splitext(name)
    return (stem, ext) if stem else (name, "")


def side_name(path, tag, taken, repo, is_dir=False):
    """Where upstream's version of a path goes when the student's is kept:
    ``dir/name.upstream-<sha>.ext`` (the extension stays, so a notebook
    still opens as a notebook), made unique against the tree and the disk."""
    head, base = posixpath.split(path)
    stem, ext = (base, "") if is_dir else _split_ext(base)
    number = 1
    while True:
        suffix = SIDE_INFIX + tag + ("" if number == 1 else "-%d" % number)
        candidate = posixpath.join(head, stem + suffix + ext)
        if candidate not in taken and not os.path.lexists(os.path.join(repo, candidate)):
            return candidate
        number += 1


class TreeMerge(object):
    """File-level three-way merge of base, ours (student) and theirs (upstream).

    ``entries`` maps path -> (mode, sha) of the result, ``origin`` says whose
    each entry is ("ours" or "theirs"), ``events`` lists what the student
    should hear about.
    """

    def __init__(self, repo, base, ours, theirs, tag):
        self.repo = repo
        self.ours = ours
        self.theirs = theirs
        self.tag = tag
        self.entries = {}
        self.origin = {}
        self.events = []
        self._merge_paths(base)
        self._resolve_clashes()

    def _merge_paths(self, base):
        pending_copies = []
        for path in sorted(set(base) | set(self.ours) | set(self.theirs)):
            b, o, t = base.get(path), self.ours.get(path), self.theirs.get(path)
            if o == t or t == b:
                chosen, whose = o, "ours"
            elif o == b:
                chosen, whose = t, "theirs"
            elif o is None:
                chosen, whose = t, "theirs"
                self.events.append(("returned", path))
            elif t is None:
                chosen, whose = o, "ours"
                self.events.append(("kept-removed", path))
            else:
                chosen, whose = o, "ours"
                if o[1] != t[1] and t[0] != "160000":
                    pending_copies.append((path, t))
            if chosen is not None:
                self.entries[path] = chosen
                self.origin[path] = whose
        for path, entry in pending_copies:
            copy = side_name(path, self.tag, self._taken(), self.repo)
            self.entries[copy] = entry
            self.origin[copy] = "theirs"
            self.events.append(("both-changed", path, copy))

    def _taken(self):
        taken = set()
        for path in self.entries:
            parts = path.split("/")
            for index in range(1, len(parts) + 1):
                taken.add("/".join(parts[:index]))
        return taken

    def _resolve_clashes(self):
        """Upstream may want a file where the student has a folder, or a
        folder where the student has a file (in git or only on disk).  The
        student's stays; upstream's moves to a side name."""
        while True:
            clash = self._find_clash()
            if clash is None:
                return
            kind, path = clash
            if kind == "file":
                new = side_name(path, self.tag, self._taken(), self.repo)
                self.entries[new] = self.entries.pop(path)
                self.origin[new] = self.origin.pop(path)
            else:
                new = side_name(path, self.tag, self._taken(), self.repo, is_dir=True)
                for old in [p for p in self.entries if p.startswith(path + "/")]:
                    if self.origin[old] == "theirs":
                        moved = new + old[len(path) :]
                        self.entries[moved] = self.entries.pop(old)
                        self.origin[moved] = self.origin.pop(old)
            self.events.append(("moved", path, new))

    def _find_clash(self):
        ours_dirs = set()
        for path in self.ours:
            parts = path.split("/")
            for index in range(1, len(parts)):
                ours_dirs.add("/".join(parts[:index]))
        for path in sorted(self.entries):
            theirs = self.origin[path] == "theirs"
            parts = path.split("/")
            for index in range(1, len(parts)):
                prefix = "/".join(parts[:index])
                if prefix in self.entries:
                    if self.origin[prefix] == "theirs":
                        return ("file", prefix)
                    if theirs:
                        return ("dir", prefix)
                elif theirs and prefix not in ours_dirs and prefix not in self.ours:
                    mode = _lstat_mode(os.path.join(self.repo, prefix))
                    if mode is not None and not stat.S_ISDIR(mode):
                        return ("dir", prefix)
            if theirs and path not in self.ours and path not in ours_dirs:
                mode = _lstat_mode(os.path.join(self.repo, path))
                if mode is not None and stat.S_ISDIR(mode):
                    return ("file", path)
        return None


def write_tree(git, repo, entries):
    """Turn {path: (mode, sha)} into a git tree, using a private index file."""
    index_file = os.path.join(repo, ".git", "lesson-sync-index")
    for leftover in (index_file, index_file + ".lock"):
        if os.path.lexists(leftover):
            os.remove(leftover)
    env = dict(git.env, GIT_INDEX_FILE=index_file)
    lines = []
    for path in sorted(entries):
        mode, sha = entries[path]
        kind = "commit" if mode == "160000" else "blob"
        lines.append(("%s %s %s\t" % (mode, kind, sha)).encode("ascii") + os.fsencode(path) + b"\0")
    try:
        git.run(["update-index", "-z", "--index-info"], repo, input=b"".join(lines), env=env)
        return git.out(["write-tree"], repo, env=env)
    finally:
        if os.path.lexists(index_file):
            os.remove(index_file)


def update_in_place(gits, home, lesson, path):
    """Fetch and merge upstream into an existing clone (see module doc)."""
    url = lesson["url"]
    verify_repo(gits[0], path, url)
    gits = (without_student_filters(gits[0], path), gits[1])
    git = gits[0]
    upstream, sha = fetch_via_staging(gits, home, path, url, lesson["ref"])
    _check_history_not_rewritten(gits, home, path, url, upstream, sha)
    restored = restore_deleted(git, path)
    head = git.out(["rev-parse", "HEAD"], path)
    if _is_ancestor(git, path, sha, head):
        record_synced(git, path, upstream, sha)
        return _restored_outcome(lesson, sha, restored)
    base = _merge_base(git, path, head, sha)
    if base is None and _is_shallow(path):
        fetch_via_staging(gits, home, path, url, lesson["ref"], upstream, full=True)
        base = _merge_base(git, path, head, sha)
    if base is None:
        raise SetAside("its history has nothing in common with the lesson's")
    ours_commit = save_student_work(git, path, sha)
    merge = TreeMerge(
        path, _ls_tree(git, path, base), _ls_tree(git, path, ours_commit),
        _ls_tree(git, path, sha), sha[:7],
    )
    result = _commit_merge(git, path, head, ours_commit, sha, merge)
    try:
        git.run(["read-tree", "-m", "-u", ours_commit, result], path)
    except GitFailed as exc:
        raise SetAside("merging the update failed (%s)" % exc.reason)
    git.run(["update-ref", "-m", "lesson sync: update", "HEAD", result, ours_commit], path)
    record_synced(git, path, upstream, sha)
    return _merged_outcome(lesson, sha, merge, restored, ours_commit != head)


def _check_history_not_rewritten(gits, home, repo, url, upstream, sha):
    git = gits[0]
    last = _rev_parse_optional(git, repo, UPSTREAM_REF + "^{commit}")
    if not last or _is_ancestor(git, repo, last, sha):
        return
    if _is_shallow(repo):
        fetch_via_staging(gits, home, repo, url, None, upstream, full=True)
        if _is_ancestor(git, repo, last, sha):
            return
    raise SetAside(
        "the lesson's history was rewritten upstream, by a force-push or a change "
        "of branch"
    )


def _commit_merge(git, repo, head, ours_commit, sha, merge):
    """Fast-forward when the student changed nothing, else a merge commit."""
    if ours_commit == head and merge.entries == merge.theirs and _is_ancestor(git, repo, head, sha):
        return sha
    tree = write_tree(git, repo, merge.entries)
    message = "Lesson sync: merge lesson update %s (your changes kept)" % sha[:7]
    return git.out(["commit-tree", tree, "-p", ours_commit, "-p", sha, "-m", message], repo)


def _restored_outcome(lesson, sha, restored):
    if not restored:
        return Outcome("ok", lesson["target"], "up to date (%s)" % sha[:7])
    return Outcome(
        "info", lesson["target"],
        "up to date (%s); restored %d deleted file(s)" % (sha[:7], len(restored)),
        ["These lesson files were missing and were restored: %s."
         % _list_paths([lesson["target"] + "/" + p for p in restored])],
    )


def _list_paths(paths, limit=10):
    shown = ", ".join(_code(p) for p in paths[:limit])
    if len(paths) > limit:
        shown += " and %d more" % (len(paths) - limit)
    return shown


def _merged_outcome(lesson, sha, merge, restored, saved):
    target = lesson["target"]
    details, copies = [], []
    for event in merge.events:
        if event[0] == "both-changed":
            copies.append(event[2])
            details.append(
                "You and the lesson both changed %s: your version stays, the lesson's "
                "new version is saved as %s." % (_code(target + "/" + event[1]),
                                                 _code(target + "/" + event[2])))
        elif event[0] == "moved":
            copies.append(event[2])
            details.append(
                "The lesson now has %s, but something of yours is already there: yours "
                "stays, the lesson's is saved as %s." % (_code(target + "/" + event[1]),
                                                         _code(target + "/" + event[2])))
        elif event[0] == "kept-removed":
            details.append(
                "The lesson no longer has %s, but you had changed it, so your copy stays."
                % _code(target + "/" + event[1]))
        elif event[0] == "returned":
            details.append(
                "%s, which you had deleted, was changed in the lesson and is back."
                % _code(target + "/" + event[1]))
    if restored:
        details.append("These lesson files were missing and were restored: %s."
                       % _list_paths([target + "/" + p for p in restored]))
    message = "updated to %s" % sha[:7]
    if saved:
        message += "; your changes were kept"
    returned = [event for event in merge.events if event[0] == "returned"]
    if returned:
        message += "; %d file(s) you had deleted came back with lesson changes" % len(returned)
    if copies:
        message += (
            "; %d file(s) changed on both sides: the lesson's versions are saved next to "
            "yours as *%s%s*" % (len(copies), SIDE_INFIX, sha[:7]))
    if copies or returned:
        return Outcome("warning", target, message, details)
    return Outcome("info", target, message, details)


# ---------------------------------------------------------------------------
# One lesson, start to end
# ---------------------------------------------------------------------------


def sync_lesson(gits, home, lesson):
    """Sync one validated lesson; never raises.

    ``gits`` is (local, net): the same git, without and with the token in
    its environment; only ls-remote and fetch in repositories of ours get
    the second one.
    """
    target = lesson["target"]
    path = os.path.join(home, target)
    try:
        check_inside_home(home, path)
        try:
            state = inspect_target(path)
            if state == "repo":
                return update_in_place(gits, home, lesson, path)
            return clone_fresh(gits, home, lesson, path)
        except SetAside as aside:
            return replace_with_fresh_clone(gits, home, lesson, path, str(aside))
    except OutOfTime as exc:
        return Outcome("error", target, "not synced: %s; will try again at the next start" % exc,
                       ["%s was not updated: %s. It will be tried again at your next start."
                        % (_code(target), exc)])
    except (SyncError, OSError) as exc:
        reason = exc.reason if isinstance(exc, GitFailed) else str(exc)
        return Outcome(
            "error", target, "not synced: %s" % _one_line(reason),
            ["%s could not be synced: %s. Your files were not changed; it will be tried "
             "again at your next start." % (_code(target), _one_line(reason))],
        )
    except Exception as exc:  # a bug must not cost anyone their server
        return Outcome("error", target, "not synced: internal error %s" % _one_line(repr(exc)),
                       ["%s could not be synced because of an internal error." % _code(target)])


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def termination_summary(outcomes):
    """Text for the Kubernetes termination message (read back by the hub):
    a header line, then one ``level<TAB>target<TAB>message`` line per lesson."""
    lines = [TERMINATION_HEADER]
    size = len(TERMINATION_HEADER) + 1
    for index, outcome in enumerate(outcomes):
        line = "%s\t%s\t%s" % (outcome.level, _one_line(outcome.target, 200),
                               _one_line(outcome.message, 500))
        if size + len(line.encode("utf-8")) + 1 > TERMINATION_MAX_BYTES - 80:
            lines.append("warning\t*\t%d more lesson(s) not listed" % (len(outcomes) - index))
            break
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    return "\n".join(lines) + "\n"


def write_termination_log(environ, outcomes):
    path = environ.get("CLASSROOM_TERMINATION_LOG")
    if not path:
        if not os.path.exists(TERMINATION_LOG_DEFAULT):
            return
        path = TERMINATION_LOG_DEFAULT
    try:
        with open(path, "w", encoding="utf-8", errors="replace") as handle:
            handle.write(termination_summary(outcomes))
    except OSError:
        pass


_NOTE_MARK = re.compile(r"^<!-- lesson-sync note sha256=([0-9a-f]{64}) -->\n")


def _note_state(path):
    """None if there is no note, 'ours' if it is exactly as we wrote it,
    'theirs' if the student edited it (or it is not ours)."""
    if not os.path.lexists(path):
        return None
    if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 1000000:
        return "theirs"
    try:
        with open(path, "rb") as handle:
            data = handle.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return "theirs"
    match = _NOTE_MARK.match(data)
    if match and hashlib.sha256(data[match.end():].encode("utf-8")).hexdigest() == match.group(1):
        return "ours"
    return "theirs"


def _code(text):
    """``text`` as a Markdown code span that nothing in it can end early.

    In CommonMark a span opened by N backticks ends at the next run of exactly
    N, so the fence is one backtick longer than the longest run inside, with a
    space inside each end (which renderers drop) so that a backtick at either
    end of the text stays apart from the fence.  Line breaks and other
    invisible characters (a newline would end the list item) show as '?'.
    """
    text = "".join("?" if ch != " " and _is_invisible(ch) else ch for ch in str(text))
    longest = max([len(run) for run in re.findall("`+", text)] or [0])
    fence = "`" * (longest + 1)
    if longest or not text or (text.startswith(" ") and text.endswith(" ")):
        return "%s %s %s" % (fence, text, fence)
    return "%s%s%s" % (fence, text, fence)


def render_note(outcomes, when):
    body = [
        "# Lesson sync: please have a look",
        "",
        "When your server started (%s), updating the lesson folders needed your attention." % when,
        "Nothing of yours was deleted.",
        "",
    ]
    for outcome in outcomes:
        if outcome.level not in ("warning", "error"):
            continue
        body.append("## " + _code(outcome.target) if outcome.target != "*" else "## All lessons")
        body.append("")
        for line in outcome.details or [outcome.message]:
            body.append("- " + line)
        body.append("")
    body += [
        "How the sync works: a file you changed is never overwritten. When the lesson changed",
        "it too, the lesson's version is saved next to yours with `.upstream-<code>` in its",
        "name. A lesson file you delete comes back, fresh, at your next start.",
        "",
        "This note is rewritten at each start and removed when there is nothing to report.",
        "",
    ]
    text = "\n".join(body)
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return "<!-- lesson-sync note sha256=%s -->\n%s" % (digest, text)


def update_note(home, outcomes):
    """Write the note when something needs attention; remove our stale note
    otherwise.  A note the student edited is renamed, never overwritten."""
    path = os.path.join(home, NOTE_FILENAME)
    needed = any(outcome.level in ("warning", "error") for outcome in outcomes)
    try:
        state = _note_state(path)
        if not needed:
            if state == "ours":
                os.remove(path)
            return
        if state == "theirs":
            stem, ext = os.path.splitext(path)
            os.rename(path, unique_path("%s.backup-%s" % (stem, _timestamp()), ext))
        when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        text = render_note(outcomes, when).encode("utf-8", "replace")
        fd, tmp = tempfile.mkstemp(prefix=".lesson-sync-note-", dir=home)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(text)
            os.chmod(tmp, 0o666 & ~_umask())
            os.rename(tmp, path)
        except BaseException:
            if os.path.lexists(tmp):
                os.remove(tmp)
            raise
    except OSError:
        pass


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_PRINT_LOCK = threading.Lock()


def _log_line(text):
    """One line in the pod log (stdout), whole even with lessons in parallel."""
    with _PRINT_LOCK:
        sys.stdout.write(_one_line(text, 800) + "\n")
        sys.stdout.flush()


def print_outcome(outcome):
    """One concise line per lesson in the pod log."""
    outcome.printed = True
    prefix = "lesson-sync" if outcome.level in ("ok", "info") else "lesson-sync %s" % outcome.level.upper()
    _log_line("%s: %s: %s" % (prefix, _one_line(outcome.target, 200), _one_line(outcome.message, 500)))


# ---------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------


def _read_timeout(environ):
    try:
        seconds = float(environ.get("CLASSROOM_SYNC_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        seconds = DEFAULT_TIMEOUT
    if seconds != seconds:  # NaN
        seconds = DEFAULT_TIMEOUT
    return min(max(seconds, 1.0), MAX_TIMEOUT)


def load_job(environ):
    """(lessons, outcomes): validated lessons, and error outcomes for bad ones."""
    raw = environ.get("CLASSROOM_LESSONS", "")
    if not raw.strip():
        return [], []
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        return [], [Outcome("error", "*", "CLASSROOM_LESSONS is not valid JSON (%s)" % exc)]
    if not isinstance(entries, list):
        return [], [Outcome("error", "*", "CLASSROOM_LESSONS must be a JSON list")]
    lessons, outcomes, targets = [], [], []
    for index, entry in enumerate(entries):
        name = entry.get("target") if isinstance(entry, dict) else None
        label = name if isinstance(name, str) and name else "lesson %d" % (index + 1)
        try:
            lesson = validate_lesson(entry)
            check_targets_distinct(targets + [lesson["target"]])
        except (ValueError, TypeError, AttributeError) as exc:
            outcomes.append(Outcome("error", _one_line(label, 100), "not synced: %s" % _one_line(exc),
                                    ["The course lists an invalid lesson: %s." % _one_line(exc)]))
            continue
        lessons.append(lesson)
        targets.append(lesson["target"])
    return lessons, outcomes


def _read_token(environ):
    token = environ.get("CLASSROOM_GIT_TOKEN", "").strip()
    if token and (_first_invisible(token) or len(token) > 4096):
        return None
    return token


def _keep_others_out():
    """Make this process non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``).

    The token is in this process's environment and memory for the whole run,
    and everything else in the container runs as the same user (git, and
    whatever git might start that the sync did not think of). A non-dumpable
    process's ``/proc/<pid>/environ`` and memory are closed to other
    processes of its user. Best effort: without ctypes or on another system,
    the sync goes on as before.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(4, 0, 0, 0, 0) == 0  # 4: PR_SET_DUMPABLE
    except Exception:
        return False


def run_job(environ):
    """Validate the job, sync every lesson (up to MAX_PARALLEL at once)."""
    lessons, outcomes = load_job(environ)
    if not lessons:
        return outcomes
    home = environ.get("CLASSROOM_HOME") or environ.get("HOME") or ""
    if not os.path.isabs(home) or not os.path.isdir(home):
        return outcomes + [Outcome("error", l["target"], "not synced: home directory %s is missing"
                                   % _show(home)) for l in lessons]
    home = os.path.realpath(home)
    executable = shutil.which("git", path=environ.get("PATH", os.defpath))
    if not executable:
        return outcomes + [Outcome("error", l["target"], "not synced: git is not installed in this image")
                           for l in lessons]
    token = _read_token(environ)
    if token is None:
        token = ""
        outcomes.append(Outcome(
            "warning", "*", "the git token from the Secret contains whitespace or control "
            "characters and was not used; private lessons will fail",
            ["The course's git token is malformed, so private lessons could not be fetched."]))
    if token:
        _SECRETS.append(token)
        _keep_others_out()
    deadline = Deadline(_read_timeout(environ))
    env = base_git_env(environ)
    version = git_version(executable, env)
    username = environ.get("CLASSROOM_GIT_USERNAME", "").strip() or DEFAULT_TOKEN_USERNAME
    hosts = set(h.strip().lower() for h in environ.get("CLASSROOM_GIT_TOKEN_HOSTS", "").split(",") if h.strip())
    clean_stale_temp_dirs(home)

    local = Git(executable, env, deadline)
    network = Git(executable, env, deadline, NET_RETRY_DELAYS)

    def gits_for(lesson):
        extra = auth_env(lesson["url"], token, username, hosts, version)
        if extra:
            _SECRETS.append(base64.b64encode((username + ":" + token).encode("utf-8")).decode("ascii"))
        return local, network.with_env(extra)

    return outcomes + _run_parallel(lessons, lambda l: sync_lesson(gits_for(l), home, l), deadline)


def _run_parallel(lessons, work, deadline):
    results = [None] * len(lessons)
    gate = threading.Semaphore(MAX_PARALLEL)

    def runner(index, lesson):
        with gate:
            results[index] = work(lesson)
        print_outcome(results[index])

    threads = []
    for index, lesson in enumerate(lessons):
        thread = threading.Thread(target=runner, args=(index, lesson))
        thread.daemon = True
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(deadline.remaining(), 0) + 15)
    for index, lesson in enumerate(lessons):
        if results[index] is None:
            results[index] = Outcome("error", lesson["target"], "not synced: ran out of time")
    return results


def main(environ=None):
    """Entry point in the pod.  Reads:

    CLASSROOM_LESSONS          JSON list of {url, ref, target, depth}
    CLASSROOM_HOME             home directory (default $HOME)
    CLASSROOM_SYNC_TIMEOUT     seconds for the whole job (default 120)
    CLASSROOM_GIT_TOKEN        token for https repos (from a Secret via secretKeyRef)
    CLASSROOM_GIT_USERNAME     user name sent with the token (default x-access-token)
    CLASSROOM_GIT_TOKEN_HOSTS  comma-separated hosts that may see the token (default: all)
    CLASSROOM_TERMINATION_LOG  summary file (default /dev/termination-log if it exists)

    Always returns 0.
    """
    environ = os.environ if environ is None else environ
    try:
        outcomes = run_job(environ)
    except BaseException as exc:  # never block the server
        outcomes = [Outcome("error", "*", "lesson sync failed: %s" % _one_line(repr(exc)))]
    try:
        for outcome in outcomes:
            if not outcome.printed:
                print_outcome(outcome)
        write_termination_log(environ, outcomes)
        home = environ.get("CLASSROOM_HOME") or environ.get("HOME") or ""
        if os.path.isabs(home) and os.path.isdir(home):
            update_note(home, outcomes)
    except BaseException:
        pass
    return 0


if __name__ == "__main__":
    main()
    sys.exit(0)
