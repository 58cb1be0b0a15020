"""The lesson-sync init container, as a plain Kubernetes dict.

Everything here is pure: no I/O besides reading our own ``sync.py`` from the
installed package.  The spawner adds the container to the pod itself, after
KubeSpawner has built it, because KubeSpawner runs ``str.format`` over its
``init_containers`` and the script is full of braces.

The container runs ``python3 -I -c <sync.py>`` in the course's own image (no
extra image to pull; ``-I`` keeps the student's files and PYTHON* variables
out of ``sys.path``), as the notebook's UID/GID, with the job in environment
variables.  The only secret, the git token, comes from a Kubernetes Secret
through ``valueFrom.secretKeyRef`` (marked optional, so a missing Secret
costs the student the private lessons, not the server).  The script writes
a summary to the termination-message file; ``parse_termination_message``
turns it back into warnings for the spawn progress stream.
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import importlib.resources
import inspect
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from . import sync as _sync

CONTAINER_NAME = "lesson-sync"
NOTE_FILENAME = _sync.NOTE_FILENAME
TERMINATION_HEADER = _sync.TERMINATION_HEADER
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TOKEN_ENV = "CLASSROOM_GIT_TOKEN"
DEFAULT_TIMEOUT = 120
MAX_TIMEOUT = int(_sync.MAX_TIMEOUT)
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    # git index-pack is the hungry part of a clone; 512Mi covers lesson-sized repos.
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}

_DNS_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@functools.cache
def sync_source() -> str:
    """The text of ``sync.py`` as installed (works from a wheel or a zip too)."""
    try:
        return (
            importlib.resources.files(__package__)
            .joinpath("sync.py")
            .read_text(encoding="utf-8")
        )
    except (FileNotFoundError, OSError, TypeError):  # pragma: no cover - exotic loaders
        return inspect.getsource(_sync)


@functools.cache
def sync_script(minify: bool = True) -> str:
    """The program the container runs.

    Minified means docstrings and comments dropped (via ``ast``): the script
    lives in every pod object, which the hub lists and watches, so half the
    size is worth it.  The result is still plain, readable Python.
    """
    source = sync_source()
    if not minify:
        return source
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(
            node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        ):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    header = (
        "# classroom-spawner lesson sync: classroom_spawner/lessons/sync.py "
        "with docstrings and comments removed\n"
    )
    return header + ast.unparse(tree) + "\n"


#: the lesson sync program's home in the pod, and in its Secret
SCRIPT_VOLUME = "lesson-sync-program"
SCRIPT_DIR = "/opt/classroom-lesson-sync"
SCRIPT_KEY = "sync.py"
SCRIPT_LABELS = {
    "app.kubernetes.io/name": "classroom-spawner",
    "app.kubernetes.io/component": "lesson-sync",
}


def script_secret_name() -> str:
    """The name of the Secret that holds this version of the program: one per version,
    so pods of an older hub keep theirs while a new one rolls out."""
    digest = hashlib.sha256(sync_script().encode("utf-8")).hexdigest()[:12]
    return f"classroom-lesson-sync-{digest}"


def script_secret() -> dict[str, Any]:
    """The Secret (a Kubernetes dict) that carries the program to the init containers.

    Mounted read-only, it keeps the ~50 KB program out of every pod's spec (and out
    of every pod watch event the hub parses). Nothing in it is secret; a Secret is
    what Zero to JupyterHub's hub may create (no ConfigMaps).
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": script_secret_name(), "labels": dict(SCRIPT_LABELS)},
        "type": "Opaque",
        "data": {
            SCRIPT_KEY: base64.b64encode(sync_script().encode("utf-8")).decode("ascii")
        },
    }


def script_volume(secret_name: str) -> dict[str, Any]:
    """The pod volume of the program's Secret."""
    return {
        "name": SCRIPT_VOLUME,
        "secret": {
            "secretName": secret_name,
            "defaultMode": 0o444,
            "items": [{"key": SCRIPT_KEY, "path": SCRIPT_KEY}],
        },
    }


def lessons_job(lessons: Iterable[Any]) -> list[dict[str, Any]]:
    """Validate lessons (dicts or objects with url/ref/target/depth) into the
    JSON-ready list the script reads from CLASSROOM_LESSONS."""
    return _sync.validate_lessons(list(lessons))


def build_init_container(
    lessons: Iterable[Any],
    *,
    image: str,
    uid: int,
    gid: int,
    home_mount_path: str = "/home/jovyan",
    home_volume_name: str = "home",
    home_sub_path: str | None = None,
    token_secret_name: str | None = None,
    token_secret_key: str = "token",
    token_hosts: Iterable[str] | None = None,
    token_username: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    resources: Mapping[str, Any] | None = None,
    image_pull_policy: str | None = None,
    program_secret: str | None = None,
) -> dict[str, Any]:
    """The init container spec (Kubernetes field names) for one pod.

    ``lessons`` are validated again here, so a bad entry raises ValueError
    instead of reaching a pod.  With ``program_secret`` (a Secret's name) the program comes from
    that Secret (see :func:`script_secret`; the pod needs :func:`script_volume`),
    mounted read-only; without, it rides in the command.
    """
    _check_args(image, uid, gid, home_mount_path, home_volume_name, timeout)
    job = lessons_job(lessons)
    mount: dict[str, Any] = {"name": home_volume_name, "mountPath": home_mount_path}
    if home_sub_path:
        mount["subPath"] = home_sub_path
    env = [
        {"name": "CLASSROOM_LESSONS", "value": json.dumps(job, separators=(",", ":"))},
        {"name": "CLASSROOM_HOME", "value": home_mount_path},
        {"name": "HOME", "value": home_mount_path},
        {"name": "CLASSROOM_SYNC_TIMEOUT", "value": _format_seconds(timeout)},
        {"name": "CLASSROOM_TERMINATION_LOG", "value": TERMINATION_MESSAGE_PATH},
    ]
    env += _token_env(token_secret_name, token_secret_key, token_hosts, token_username)
    security: dict[str, Any] = {
        "runAsUser": uid,
        "runAsGroup": gid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if uid != 0:
        security["runAsNonRoot"] = True
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": ["python3", "-I", "-c", sync_script()],
        "env": env,
        "workingDir": home_mount_path,
        "volumeMounts": [mount],
        "resources": _copy_resources(
            resources if resources is not None else DEFAULT_RESOURCES
        ),
        "securityContext": security,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
    }
    if program_secret:
        container["command"] = ["python3", "-I", f"{SCRIPT_DIR}/{SCRIPT_KEY}"]
        container["volumeMounts"].append(
            {"name": SCRIPT_VOLUME, "mountPath": SCRIPT_DIR, "readOnly": True}
        )
    if image_pull_policy:
        container["imagePullPolicy"] = image_pull_policy
    return container


def _check_args(image, uid, gid, home_mount_path, home_volume_name, timeout):
    if not isinstance(image, str) or not image.strip():
        raise ValueError("lesson sync image must be a non-empty image name")
    for label, value in (("uid", uid), ("gid", gid)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"lesson sync {label} must be a whole number >= 0, not {value!r}"
            )
    if not isinstance(home_mount_path, str) or not home_mount_path.startswith("/"):
        raise ValueError(f"home mount path must be absolute, not {home_mount_path!r}")
    if not isinstance(home_volume_name, str) or not _DNS_LABEL.match(home_volume_name):
        raise ValueError(
            f"home volume name {home_volume_name!r} is not a valid volume name"
        )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(
            f"lesson sync timeout must be a number of seconds, not {timeout!r}"
        )
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise ValueError(
            f"lesson sync timeout must be between 1 and {MAX_TIMEOUT} seconds"
        )


def sync_seconds(sync_timeout: float, start_timeout: float) -> float:
    """The seconds the sync gets: its own limit, but at most half of the start's
    (the rest is for the volume, the image and the notebook), and at least one."""
    if start_timeout <= 0 or sync_timeout <= start_timeout / 2:
        return sync_timeout
    return max(start_timeout / 2, 1.0)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def _token_env(secret_name, secret_key, hosts, username) -> list[dict[str, Any]]:
    """The token as a secretKeyRef: the pod spec names the Secret, never the value."""
    if not secret_name:
        return []
    if not _DNS_SUBDOMAIN.match(secret_name) or len(secret_name) > 253:
        raise ValueError(
            f"token secret name {secret_name!r} is not a valid Secret name"
        )
    if not _SECRET_KEY.match(secret_key or ""):
        raise ValueError(f"token secret key {secret_key!r} is not a valid Secret key")
    env: list[dict[str, Any]] = [
        {
            "name": TOKEN_ENV,
            "valueFrom": {
                # optional: a missing Secret must not keep the pod from starting
                "secretKeyRef": {
                    "name": secret_name,
                    "key": secret_key,
                    "optional": True,
                }
            },
        }
    ]
    if username:
        if not re.match(r"^[A-Za-z0-9._@+-]+$", username):
            raise ValueError(f"token user name {username!r} has unexpected characters")
        env.append({"name": "CLASSROOM_GIT_USERNAME", "value": username})
    host_list = sorted({h.strip().lower() for h in hosts or () if h.strip()})
    for host in host_list:
        if not re.match(r"^[a-z0-9.-]+$", host):
            raise ValueError(f"token host {host!r} is not a host name")
    if host_list:
        env.append({"name": "CLASSROOM_GIT_TOKEN_HOSTS", "value": ",".join(host_list)})
    return env


def _copy_resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    return {key: dict(value) for key, value in resources.items()}


def parse_termination_message(
    text: str | None, include_info: bool = False
) -> list[tuple[str, str]]:
    """Warnings for the spawn progress from the container's termination message.

    The message is a header line ``classroom-lesson-sync/1`` followed by one
    ``level<TAB>target<TAB>message`` line per lesson, level being ok, info,
    warning or error.  Returns ``[(level, "target: message"), ...]`` for the
    warning and error lines (and info ones with ``include_info``); anything
    that is not in this format yields ``[]``.
    """
    if not text:
        return []
    lines = text.splitlines()
    if not lines or lines[0].strip() != TERMINATION_HEADER:
        return []
    wanted = {"warning", "error"} | ({"info"} if include_info else set())
    result = []
    for line in lines[1:]:
        parts = line.split("\t", 2)
        if len(parts) != 3 or parts[0] not in wanted:
            continue
        level, target, message = parts
        result.append((level, message if target == "*" else f"{target}: {message}"))
    return result
