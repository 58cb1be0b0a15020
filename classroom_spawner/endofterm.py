"""End of term: list the home volumes, archive and delete those nobody on a roster owns.

``classroom-spawner volumes`` talks to the cluster with the admin's kubeconfig. A
home volume is a PVC that KubeSpawner made (label ``component=singleuser-storage``,
the user in the ``hub.jupyter.org/username`` annotation, unescaped, and label,
escaped). Its owner is looked up in the roster as the hub reads it.

An archive is read through the Kubernetes API only (pods and their logs, no
``exec``), so it works wherever the admin's kubeconfig does. A short-lived pod
mounts the claim read-only and prints the size and SHA-256 of ``tar | gzip -n`` of
it; then a second pod makes the same tar.gz in its scratch volume, checks it is the
one measured, and prints it base64-encoded in chunks of 4 MiB, one init container
(so one log) per chunk: no log grows past the size at which the kubelet rotates
container logs (``containerLogMaxSize``, 10Mi by default), which would lose data
even from a followed log. The chunks are decoded into
``<archive dir>/<claim>.tar.gz``; the archive counts only if every chunk has its
length, the whole has the measured checksum and it reads back as a complete
tar.gz. A volume is deleted only after its archive counted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from .roster import Role, Roster, normalize_username

STORAGE_COMPONENT = "singleuser-storage"
USERNAME_KEY = "hub.jupyter.org/username"
ARCHIVE_COMPONENT = "classroom-archive"
END_MARK = "CLASSROOM-SPAWNER-ARCHIVE-END"
SOURCE_PATH = "/archive-source"
SCRATCH_PATH = "/archive-scratch"
# a chunk's log (base64: 4/3 of it, plus newlines) stays well under the kubelet's
# containerLogMaxSize (10Mi by default), so no chunk is ever rotated away
CHUNK_BYTES = 4 * 1024 * 1024
CHUNKS_PER_POD = 200

# The measuring pod prints one line: END_MARK, tar's status, the size and SHA-256 of
# the tar.gz. gzip -n leaves out the time, so the same files give the same bytes.
MEASURE_SCRIPT = f"""\
cd {SCRATCH_PATH} || exit 2
mkfifo tar.fifo || exit 2
sha256sum < tar.fifo > tar.sha256 &
summer=$!
{{ rc=0; tar -cf - --exclude=./lost+found -C {SOURCE_PATH} . 2> tar.errors || rc=$?; echo "$rc" > tar.rc; }} \\
  | gzip -n | tee tar.fifo | wc -c > tar.size
wait "$summer"
rc=$(cat tar.rc)
echo "{END_MARK} $rc $(cat tar.size) $(cut -d ' ' -f 1 tar.sha256)"
head -c 2000 tar.errors
exit "$rc"
"""

# The copying pod's first init container makes the same tar.gz again in its scratch
# volume and checks that it is the one measured ($EXPECTED_SHA256).
PACK_SCRIPT = f"""\
cd {SCRATCH_PATH} || exit 2
{{ tar -cf - --exclude=./lost+found -C {SOURCE_PATH} . || echo "$?" > tar.rc; }} | gzip -n > archive.tar.gz
if [ -s tar.rc ]; then echo "tar failed (exit code $(cat tar.rc))"; exit 1; fi
sum=$(sha256sum archive.tar.gz | cut -d ' ' -f 1)
if [ "$sum" != "$EXPECTED_SHA256" ]; then
  echo "the files changed between two readings (a server using the volume?)"
  exit 3
fi
"""


def chunk_script(index: int, chunk_bytes: int) -> str:
    """Chunk ``index`` of the archive, base64, then END_MARK (one init container each)."""
    return (
        f"cd {SCRATCH_PATH} || exit 2\n"
        f"dd if=archive.tar.gz bs={chunk_bytes} skip={index} count=1 2>/dev/null | base64\n"
        f'echo "{END_MARK}"\n'
    )


class EndOfTermError(Exception):
    """Something that stops the command before it changes anything."""


@dataclass
class HomeVolume:
    """One user's home volume, and what the roster and the hub know of its owner."""

    claim: str
    username: str | None
    label: str
    size: str
    phase: str
    memberships: Mapping[str, Role] = field(default_factory=dict)
    last_activity: str = "unknown"
    used_by: list[str] = field(default_factory=list)
    # on no roster, but the hub lets them in anyway (a hub admin, allowed_users)
    kept: str | None = None

    @property
    def owner(self) -> str:
        return self.username if self.username is not None else f"(label {self.label})"

    @property
    def orphaned(self) -> bool:
        return not self.memberships and self.kept is None

    def as_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "user": self.username,
            "label": self.label,
            "size": self.size,
            "phase": self.phase,
            "courses": {c: r.value for c, r in self.memberships.items()},
            "orphaned": self.orphaned,
            "kept": self.kept,
            "last_activity": self.last_activity,
            "used_by": self.used_by,
        }


@dataclass
class Outcome:
    """What happened to one volume: archived (where, size, checksum), deleted, or why not."""

    volume: HomeVolume
    archive: str | None = None
    archive_bytes: int | None = None
    sha256: str | None = None
    files: int | None = None
    deleted: bool = False
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "claim": self.volume.claim,
            "user": self.volume.username,
            "archive": self.archive,
            "archive_bytes": self.archive_bytes,
            "sha256": self.sha256,
            "files": self.files,
            "deleted": self.deleted,
            "error": self.error,
        }


def _rostered_labels(roster: Roster) -> dict[str, str]:
    """The escaped username label of everyone on a roster -> their username."""
    from kubespawner.slugs import is_valid_label, safe_slug

    labels = {}
    for course_id in roster.courses:
        for user in roster.members(course_id):
            labels[safe_slug(user, is_valid=is_valid_label)] = user
    return labels


def _claims_in_use(pods) -> dict[str, list[str]]:
    """claim name -> the pods that use it and have not finished."""
    used: dict[str, list[str]] = {}
    for pod in pods:
        if (pod.status and pod.status.phase) in ("Succeeded", "Failed"):
            continue
        for volume in pod.spec.volumes or []:
            claim = volume.persistent_volume_claim
            if claim is not None:
                used.setdefault(claim.claim_name, []).append(pod.metadata.name)
    return used


def storage_selector(common_labels: Mapping[str, str]) -> str:
    """The label selector of the hub's home volumes (its ``common_labels`` too, so
    that another hub's volumes in the same namespace are left alone)."""
    parts = [f"component={STORAGE_COMPONENT}", USERNAME_KEY]
    parts += [f"{k}={v}" for k, v in sorted(common_labels.items()) if k != "component"]
    return ",".join(parts)


async def list_home_volumes(
    v1,
    namespace: str,
    roster: Roster,
    *,
    common_labels: Mapping[str, str] | None = None,
    activity: Mapping[str, str | None] | None = None,
    keep: Mapping[str, str] | None = None,
) -> list[HomeVolume]:
    """Every home volume in ``namespace``, its owner's courses and last activity.

    ``activity`` is the hub's ``last_activity`` by username; without it the last
    activity is ``unknown``, as nothing else tells it honestly. ``keep``: people
    on no roster whom the hub lets in all the same (username -> why), whose
    volumes are not orphaned."""
    keep = keep or {}
    claims = await v1.list_namespaced_persistent_volume_claim(
        namespace, label_selector=storage_selector(common_labels or {})
    )
    pods = await v1.list_namespaced_pod(namespace)
    used = _claims_in_use(pods.items)
    by_label = _rostered_labels(roster)
    volumes = []
    for pvc in claims.items:
        meta = pvc.metadata
        label = (meta.labels or {}).get(USERNAME_KEY, "")
        name = (meta.annotations or {}).get(USERNAME_KEY)
        if name is not None:
            name = normalize_username(name)
            memberships = roster.memberships(name)
        else:
            # only the escaped label: whoever on a roster has that label owns it
            owner = by_label.get(label)
            memberships = roster.memberships(owner) if owner else {}
            name = owner
        capacity = (pvc.status.capacity or {}) if pvc.status else {}
        requested = (pvc.spec.resources.requests or {}) if pvc.spec.resources else {}
        if activity is None:
            last = "unknown"
        elif name is None or name not in activity:
            last = "unknown (not a hub user)"
        else:
            last = activity[name] or "never"
        volumes.append(
            HomeVolume(
                claim=meta.name,
                username=name,
                label=label,
                size=capacity.get("storage") or requested.get("storage") or "?",
                phase=(pvc.status.phase if pvc.status else None) or "?",
                memberships=dict(memberships),
                last_activity=last,
                used_by=used.get(meta.name, []),
                kept=None if memberships or name is None else keep.get(name),
            )
        )
    volumes.sort(key=lambda v: (v.orphaned is False, v.owner, v.claim))
    return volumes


def choose(volumes: list[HomeVolume], users: list[str]) -> list[HomeVolume]:
    """The volumes to archive and delete: the orphaned ones, or with ``users``
    exactly the named people's (on a roster or not). A name with no volume is an
    error, so that a typo in a list never goes unnoticed."""
    if not users:
        return [v for v in volumes if v.orphaned]
    from kubespawner.slugs import is_valid_label, safe_slug

    chosen = []
    missing = []
    for user in dict.fromkeys(normalize_username(u) for u in users):
        label = safe_slug(user, is_valid=is_valid_label)
        mine = [
            v
            for v in volumes
            if v.username == user or (v.username is None and v.label == label)
        ]
        if not mine:
            missing.append(user)
        chosen += [v for v in mine if v not in chosen]
    if missing:
        raise EndOfTermError(
            "no home volume found for " + ", ".join(repr(u) for u in missing)
        )
    return chosen


def _pod_manifest(
    kind: str,
    claim: str,
    image: str,
    containers: list[dict[str, Any]],
    init_containers: list[dict[str, Any]] | None = None,
    *,
    uid: int | None = None,
    gid: int | None = None,
    supplemental_gids: list[int] | None = None,
) -> dict[str, Any]:
    """A short-lived pod that reads one claim (mounted read-only) with ``sh``."""
    digest = hashlib.sha256(claim.encode()).hexdigest()[:12]
    mounts = [
        {"name": "source", "mountPath": SOURCE_PATH, "readOnly": True},
        {"name": "scratch", "mountPath": SCRATCH_PATH},
    ]
    context: dict[str, Any] = {}
    if uid is not None:
        context["runAsUser"] = uid
    if gid is not None:
        context["runAsGroup"] = gid
    if supplemental_gids:
        context["supplementalGroups"] = list(supplemental_gids)

    if isinstance(uid, int) and uid != 0:
        context["runAsNonRoot"] = True
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    # what the "restricted" Pod Security Standard asks for: it reads files, nothing more
    restricted = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }

    def container(c):
        return {
            "image": image,
            "volumeMounts": mounts,
            "securityContext": restricted,
            **c,
        }

    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": False,
        "containers": [container(c) for c in containers],
        "volumes": [
            {
                "name": "source",
                "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
            },
            {"name": "scratch", "emptyDir": {}},
        ],
    }
    if init_containers:
        spec["initContainers"] = [container(c) for c in init_containers]
    spec["securityContext"] = context
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"archive-{digest}-{kind}",
            "labels": {
                "component": ARCHIVE_COMPONENT,
                "app.kubernetes.io/managed-by": "classroom-spawner",
            },
            "annotations": {"classroom-spawner/archive-of": claim},
        },
        "spec": spec,
    }


def measure_pod_manifest(claim: str, image: str, **security) -> dict[str, Any]:
    """The pod that reads the claim once: the size and checksum of its tar.gz."""
    main = {"name": "measure", "command": ["sh", "-c", MEASURE_SCRIPT]}
    return _pod_manifest("measure", claim, image, [main], **security)


def copy_pod_manifest(
    claim: str,
    image: str,
    expected_sha256: str,
    chunks: range,
    chunk_bytes: int = CHUNK_BYTES,
    **security,
) -> dict[str, Any]:
    """The pod that makes the tar.gz again, then prints ``chunks`` of it, one
    init container (and so one log) per chunk."""
    init = [
        {
            "name": "pack",
            "command": ["sh", "-c", PACK_SCRIPT],
            "env": [{"name": "EXPECTED_SHA256", "value": expected_sha256}],
        }
    ]
    init += [
        {"name": f"chunk-{k}", "command": ["sh", "-c", chunk_script(k, chunk_bytes)]}
        for k in chunks
    ]
    main = {"name": "done", "command": ["sh", "-c", "exit 0"]}
    kind = f"copy-{chunks.start}"
    return _pod_manifest(kind, claim, image, [main], init, **security)


def _decode(log: bytes) -> tuple[bytes, list[str]] | str:
    """The data base64-encoded in a log up to END_MARK, and the words and lines
    after the mark; or why the log is not that."""
    data = bytearray()
    pending = ""
    lines = log.split(b"\n")
    for i, raw in enumerate(lines):
        text = raw.decode("ascii", "replace").strip()
        if text.startswith(END_MARK):
            if pending:
                return "the archive in the pod's log is cut short"
            after = [
                line.decode("utf-8", "replace")[:300]
                for line in lines[i + 1 :]
                if line.strip()
            ]
            return bytes(data), text.split()[1:] + after
        if not text:
            continue
        pending += text
        cut = len(pending) - len(pending) % 4
        try:
            data += base64.b64decode(pending[:cut], validate=True)
        except (binascii.Error, ValueError):
            return f"the pod's log is not the archive: {text[:80]!r}"
        pending = pending[cut:]
    return "the pod's log ended before the archive did"


def _container_status(pod, name: str):
    statuses = (pod.status.init_container_statuses or []) + (
        pod.status.container_statuses or []
    )
    return next((s for s in statuses if s.name == name), None)


async def _wait_terminated(
    v1, namespace: str, pod_name: str, container: str, timeout: float
):
    """Until ``container`` of the pod has run to its end (its termination state),
    or why it will not."""
    deadline = time.monotonic() + timeout
    reason = "not scheduled"
    while True:
        pod = await v1.read_namespaced_pod(pod_name, namespace)
        status = _container_status(pod, container)
        state = status.state if status is not None else None
        if state is not None and state.terminated is not None:
            return state.terminated
        if pod.status.phase == "Failed":
            raise EndOfTermError(f"the archive pod failed before {container} ran")
        if state is not None and state.waiting is not None and state.waiting.reason:
            waiting = state.waiting
            reason = waiting.reason + (
                f": {waiting.message}" if waiting.message else ""
            )
            if waiting.reason in ("ErrImageNeverPull", "InvalidImageName"):
                raise EndOfTermError(f"the archive pod cannot start: {reason[:200]}")
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                reason = condition.message or condition.reason or reason
        if time.monotonic() > deadline:
            raise EndOfTermError(
                f"the archive pod's {container} did not run in {timeout:.0f}s ({reason[:200]})"
            )
        await asyncio.sleep(0.2)


async def _log(v1, namespace: str, pod_name: str, container: str) -> bytes:
    response = await v1.read_namespaced_pod_log(
        pod_name,
        namespace,
        container=container,
        _preload_content=False,
        _request_timeout=aiohttp.ClientTimeout(sock_connect=30, sock_read=300),
    )
    try:
        return await response.read()
    finally:
        response.release()


async def _delete_pod(v1, namespace: str, name: str) -> None:
    try:
        await v1.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as e:
        if e.status != 404:
            raise
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            await v1.read_namespaced_pod(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        await asyncio.sleep(0.2)


async def _run_pod(v1, namespace: str, manifest: dict[str, Any]):
    """Create the pod, replacing one an interrupted run left behind (its output
    would be stale); yields its name. The caller deletes it."""
    name = manifest["metadata"]["name"]
    await _delete_pod(v1, namespace, name)
    await v1.create_namespaced_pod(namespace, manifest)
    return name


def _count_members(path: str) -> int:
    """The number of entries in a tar.gz, reading all of it (gzip checks its CRC
    and length at the end, so a cut or damaged archive raises)."""
    with tarfile.open(path, "r:gz") as tar:
        return sum(1 for _ in tar)


async def _measure(
    v1, namespace, claim, image, security, start_timeout
) -> tuple[int, str]:
    name = await _run_pod(v1, namespace, measure_pod_manifest(claim, image, **security))
    try:
        terminated = await _wait_terminated(
            v1, namespace, name, "measure", start_timeout
        )
        log = await _log(v1, namespace, name, "measure")
    finally:
        await _delete_pod(v1, namespace, name)
    decoded = _decode(log)
    if isinstance(decoded, str) or len(decoded[1]) < 3:
        raise EndOfTermError(
            f"measuring the volume failed (exit code {terminated.exit_code}):"
            f" {log[-300:].decode('utf-8', 'replace').strip()!r}"
        )
    rc, size, sha, *said = decoded[1]
    if rc != "0" or terminated.exit_code != 0:
        raise EndOfTermError(
            f"tar failed in the pod (exit code {rc}){': ' + '; '.join(said[:5]) if said else ''}"
        )
    return int(size), sha


async def archive_volume(
    v1,
    namespace: str,
    claim: str,
    archive_dir: str,
    *,
    image: str,
    uid: int | None = None,
    gid: int | None = None,
    supplemental_gids: list[int] | None = None,
    start_timeout: float = 300,
    chunk_bytes: int = CHUNK_BYTES,
    chunks_per_pod: int = CHUNKS_PER_POD,
) -> tuple[str, int, str, int]:
    """Archive one claim to ``<archive_dir>/<claim>.tar.gz``: (path, bytes,
    sha256, entries). Raises :class:`EndOfTermError` (leaving nothing behind but
    the reason) when the archive cannot be trusted.

    A pod measures the tar.gz of the claim (size, SHA-256); then pods make it
    again and print it chunk by chunk, each chunk in its own init container's
    log, so that no log grows past the size at which the kubelet rotates it."""
    path = os.path.join(archive_dir, f"{claim}.tar.gz")
    if os.path.exists(path):
        raise EndOfTermError(
            f"{path} exists already (from an earlier run?); move it away first"
        )
    security = {"uid": uid, "gid": gid, "supplemental_gids": supplemental_gids}
    size, expected = await _measure(
        v1, namespace, claim, image, security, start_timeout
    )
    chunks = max(1, -(-size // chunk_bytes))
    partial = f"{path}.partial"
    sha = hashlib.sha256()
    written = 0
    try:
        with open(partial, "wb") as f:
            for first in range(0, chunks, chunks_per_pod):
                part = range(first, min(chunks, first + chunks_per_pod))
                manifest = copy_pod_manifest(
                    claim, image, expected, part, chunk_bytes, **security
                )
                name = await _run_pod(v1, namespace, manifest)
                try:
                    pack = await _wait_terminated(
                        v1, namespace, name, "pack", start_timeout
                    )
                    if pack.exit_code != 0:
                        said = (await _log(v1, namespace, name, "pack"))[-300:]
                        raise EndOfTermError(
                            f"making the archive in the pod failed (exit code {pack.exit_code}):"
                            f" {said.decode('utf-8', 'replace').strip()!r}"
                        )
                    for k in part:
                        container = f"chunk-{k}"
                        done = await _wait_terminated(
                            v1, namespace, name, container, start_timeout
                        )
                        decoded = _decode(await _log(v1, namespace, name, container))
                        want = min(chunk_bytes, size - k * chunk_bytes)
                        if isinstance(decoded, str):
                            raise EndOfTermError(
                                f"chunk {k + 1} of {chunks}: {decoded}"
                            )
                        if done.exit_code != 0 or len(decoded[0]) != want:
                            raise EndOfTermError(
                                f"chunk {k + 1} of {chunks}: {len(decoded[0])} bytes"
                                f" in the pod's log, not {want} (log rotated or lost?)"
                            )
                        f.write(decoded[0])
                        sha.update(decoded[0])
                        written += len(decoded[0])
                finally:
                    await _delete_pod(v1, namespace, name)
        if written != size or sha.hexdigest() != expected:
            raise EndOfTermError(
                "the archive read from the logs does not match the pod's checksum"
            )
        try:
            files = await asyncio.to_thread(_count_members, partial)
        except (OSError, tarfile.TarError, EOFError) as e:
            raise EndOfTermError(
                f"the archive does not read back as a tar.gz: {e}"
            ) from None
        os.rename(partial, path)
    finally:
        _remove(partial)
    return path, size, expected, files


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


async def delete_volume(
    v1, namespace: str, claim: str, timeout: float = 30
) -> str | None:
    """Delete a claim; None once it is gone, else what keeps it."""
    try:
        await v1.delete_namespaced_persistent_volume_claim(claim, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await v1.read_namespaced_persistent_volume_claim(claim, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        await asyncio.sleep(0.2)
    return f"deletion requested but the claim is still there after {timeout:.0f}s (a pod uses it?)"


async def archive_and_delete(
    v1,
    namespace: str,
    volumes: list[HomeVolume],
    archive_dir: str,
    *,
    image: str,
    uid: int | None = None,
    gid: int | None = None,
    supplemental_gids: list[int] | None = None,
    start_timeout: float = 300,
    chunk_bytes: int = CHUNK_BYTES,
    progress=None,
) -> list[Outcome]:
    """Archive each volume, then delete it if (and only if) its archive counted.
    One at a time, so one failure never touches the others."""
    outcomes = []
    for volume in volumes:
        outcome = Outcome(volume)
        outcomes.append(outcome)
        if volume.used_by:
            outcome.error = (
                f"in use by pod {', '.join(volume.used_by)}: stop the server first"
            )
        else:
            try:
                path, size, sha, files = await archive_volume(
                    v1,
                    namespace,
                    volume.claim,
                    archive_dir,
                    image=image,
                    uid=uid,
                    gid=gid,
                    supplemental_gids=supplemental_gids,
                    start_timeout=start_timeout,
                    chunk_bytes=chunk_bytes,
                )
            except EndOfTermError as e:
                outcome.error = f"archive failed: {e}"
            except ApiException as e:
                outcome.error = f"archive failed: Kubernetes API: {e.status} {e.reason}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                outcome.error = (
                    f"archive failed: reading the pod's log: {e or type(e).__name__}"
                )
            else:
                outcome.archive, outcome.archive_bytes = path, size
                outcome.sha256, outcome.files = sha, files
                try:
                    kept = await delete_volume(v1, namespace, volume.claim)
                except ApiException as e:
                    kept = f"delete failed: Kubernetes API: {e.status} {e.reason}"
                outcome.deleted = kept is None
                outcome.error = kept
        if progress is not None:
            progress(outcome)
    return outcomes


def write_report(archive_dir: str, namespace: str, outcomes: list[Outcome]) -> str:
    """A JSON record of the run next to the archives; returns its path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(archive_dir, f"end-of-term-{stamp}.json")
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(archive_dir, f"end-of-term-{stamp}-{n}.json")
    with open(path, "w") as f:
        json.dump(
            {"namespace": namespace, "volumes": [o.as_json() for o in outcomes]},
            f,
            indent=1,
        )
        f.write("\n")
    return path


async def hub_last_activity(
    api_url: str, token: str, page_size: int = 200, admins: set | None = None
) -> dict[str, str | None]:
    """username -> ``last_activity`` from the hub's REST API (``GET /users``,
    page by page). Needs a token with ``read:users:activity`` (or admin). The
    hub's admins are added to ``admins`` when it is given (with ``read:users``)."""
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    client = AsyncHTTPClient()
    found: dict[str, str | None] = {}
    offset = 0
    while True:
        url = f"{api_url.rstrip('/')}/users?" + urlencode(
            {"offset": offset, "limit": page_size}
        )
        try:
            response = await client.fetch(
                url,
                headers={
                    "Authorization": f"token {token}",
                    "Accept": "application/jupyterhub-pagination+json",
                },
                request_timeout=60,
            )
        except HTTPClientError as e:
            raise EndOfTermError(f"{api_url}: HTTP {e.code} {e.message}") from None
        except OSError as e:
            raise EndOfTermError(f"cannot reach {api_url}: {e}") from None
        try:
            data = json.loads(response.body)
        except ValueError:
            raise EndOfTermError(f"{api_url}/users did not answer with JSON") from None
        items = data.get("items", []) if isinstance(data, dict) else data
        for user in items:
            found[normalize_username(user["name"])] = user.get("last_activity")
            if admins is not None and user.get("admin"):
                admins.add(normalize_username(user["name"]))
        nxt = (
            (data.get("_pagination") or {}).get("next")
            if isinstance(data, dict)
            else None
        )
        if not nxt or not items:
            return found
        offset = nxt.get("offset", offset + len(items))


# -- the command: classroom-spawner volumes ----------------------------------------


def hub_roster(config, config_file: str) -> tuple[Roster, list[str]]:
    """The roster as the hub reads it: the course files, plus the membership lists
    from the LMS that the hub saved (``lms_roster_file``, relative to the config's
    folder as ``check`` reads it). Second: the courses listed by an LMS whose list
    is not saved here, so that their members cannot be told from the orphans."""
    from .roster import ClassroomRoster
    from .roster.nrps import read_state

    roster = ClassroomRoster.from_config(config).load()
    lms_courses = [c.id for c in roster.courses.values() if c.lms_contexts]
    if not lms_courses:
        return roster, []
    section = config.get("ClassroomLTI13Authenticator", {})
    path = section.get("lms_roster_file", "classroom-lms-rosters.json")
    saved = {}
    if path:
        path = os.path.join(os.path.dirname(os.path.abspath(config_file)), path)
        try:
            saved = read_state(path)
        except (OSError, ValueError):
            saved = {}
    lists = {c: dict(saved[c].members) for c in lms_courses if c in saved}
    roster = roster.with_members(lists)
    return roster, [c for c in lms_courses if c not in saved]


def configured_keepers(config) -> dict[str, str]:
    """The people the config lets in without a roster: every ``admin_users`` and
    ``allowed_users`` set in the config (any authenticator's section)."""
    keep: dict[str, str] = {}
    for trait in ("allowed_users", "admin_users"):
        for section, values in config.items():
            if not isinstance(values, dict):
                continue
            names = values.get(trait)
            if not isinstance(names, (set, list, tuple, frozenset)):
                continue
            for name in names:
                if isinstance(name, str):
                    keep[normalize_username(name)] = f"{section}.{trait}"
    return keep


def _courses_text(volume: HomeVolume) -> str:
    if not volume.memberships:
        return "-"
    return ", ".join(f"{c} {r.value}" for c, r in sorted(volume.memberships.items()))


def _status(volume: HomeVolume) -> str:
    if volume.kept:
        status = f"no roster, kept: {volume.kept}"
    else:
        status = "no roster" if volume.orphaned else "on a roster"
    if volume.used_by:
        status += ", in use"
    return status


def _size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _kube_configuration(kubeconfig: str | None, context: str | None = None):
    """A kubernetes_asyncio Configuration from the admin's kubeconfig (or the pod's
    service account, in a cluster); an error that says what is missing."""
    from kubernetes_asyncio import client, config

    path = (
        kubeconfig
        or os.environ.get("KUBECONFIG")
        or os.path.expanduser("~/.kube/config")
    )
    path = path.split(os.pathsep)[0]
    cfg = client.Configuration()
    if os.path.exists(path):
        asyncio.run(
            config.load_kube_config(
                config_file=path, context=context, client_configuration=cfg
            )
        )
    elif os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
        config.load_incluster_config(client_configuration=cfg)
    else:
        raise EndOfTermError(
            f"no kubeconfig at {path}: pass --kubeconfig or set $KUBECONFIG to the cluster's"
        )
    return cfg


async def _with_v1(cfg, fn):
    from kubernetes_asyncio import client

    async with client.ApiClient(cfg) as api:
        return await fn(client.CoreV1Api(api))


def run(args, out, err, ask=input) -> int:
    """``classroom-spawner volumes``: list; with ``--archive-dir`` archive and delete."""
    from .cli import _printable
    from .hubconfig import load_hub_config
    from .offline import build_spawner

    if not args.chunk_size > 0:
        print("error: --chunk-size must be more than 0 MiB", file=err)
        return 1
    try:
        cfg = _kube_configuration(args.kubeconfig, args.context)
        config = load_hub_config(args.config)
        roster, unsure = hub_roster(config, args.config)
        spawner = asyncio.run(build_spawner(config, "classroom-volumes"))
        namespace = args.namespace or spawner.namespace
        activity = None
        keep = configured_keepers(config)
        if args.hub_api_url and args.token:
            admins: set[str] = set()
            activity = asyncio.run(
                hub_last_activity(args.hub_api_url, args.token, admins=admins)
            )
            for name in admins:
                keep.setdefault(name, "hub admin")
        try:
            volumes = asyncio.run(
                _with_v1(
                    cfg,
                    lambda v1: list_home_volumes(
                        v1,
                        namespace,
                        roster,
                        common_labels=spawner.common_labels,
                        activity=activity,
                        keep=keep,
                    ),
                )
            )
        except ApiException as e:
            raise EndOfTermError(
                f"listing the volumes in namespace {namespace!r}: Kubernetes API:"
                f" {e.status} {e.reason}"
            ) from None
        except aiohttp.ClientError as e:
            raise EndOfTermError(f"cannot reach the cluster: {e}") from None
        chosen = choose(volumes, args.user) if (args.user or args.archive_dir) else []
    except EndOfTermError as e:
        print(f"error: {_printable(e)}", file=err)
        return 1

    shown = chosen if args.user else volumes
    if args.json and not args.archive_dir:
        json.dump(
            {"namespace": namespace, "volumes": [v.as_json() for v in shown]},
            out,
            indent=2,
        )
        print(file=out)
        return 0
    rows = [("CLAIM", "USER", "COURSES", "SIZE", "LAST ACTIVITY", "STATUS")]
    for v in shown:
        rows.append(
            tuple(
                _printable(x)
                for x in (
                    v.claim,
                    v.owner,
                    _courses_text(v),
                    v.size,
                    v.last_activity,
                    _status(v),
                )
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(
        f"Home volumes in namespace {_printable(namespace)}: {len(volumes)}", file=out
    )
    for row in rows:
        print(
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out
        )
    orphans = sum(v.orphaned for v in volumes)
    kept = sum(v.kept is not None for v in volumes)
    print(
        f"{orphans} of them belong to no one on a roster"
        + (
            f" ({kept} more are kept: the hub lets their owners in without one)"
            if kept
            else ""
        )
        + ".",
        file=out,
    )
    if activity is None:
        print(
            "Last activity is unknown without the hub's API (--hub-api-url and --token).",
            file=out,
        )
    for course in unsure:
        print(
            f"warning: course {_printable(course)} gets members from the LMS, and the hub's"
            " saved list of them is not here: its students look like they are on no roster",
            file=out,
        )
    if not args.archive_dir:
        return 0
    if unsure and not args.user:
        print(
            "error: not deleting by roster while an LMS course's members are unknown;"
            " name the people (--user) or run where the hub's lms_roster_file is",
            file=err,
        )
        return 1
    if not chosen:
        print("Nothing to archive or delete.", file=out)
        return 0
    archive_dir = os.path.abspath(args.archive_dir)
    verb = "Would archive" if args.dry_run else "Will archive"
    print(f"{verb} to {_printable(archive_dir)}, then delete:", file=out)
    plan = []
    for v in chosen:
        why = "no roster" if v.orphaned else f"named ({v.kept or _courses_text(v)})"
        if v.used_by:
            why += f"; in use by {', '.join(v.used_by)}: will be skipped"
        plan.append(tuple(_printable(x) for x in (v.claim, v.owner, why)))
    widths = [max(len(r[i]) for r in plan) for i in range(3)]
    for row in plan:
        print(
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out
        )
    if args.dry_run:
        print(f"Dry run: nothing changed ({len(chosen)} volumes).", file=out)
        return 0
    if not args.yes:
        try:
            answer = ask(f"Type {len(chosen)} (the number of volumes) to go on: ")
        except EOFError:
            answer = ""
        if answer.strip() != str(len(chosen)):
            print("Not confirmed: nothing changed.", file=out)
            return 1
    try:
        os.makedirs(archive_dir, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create {_printable(archive_dir)}: {e}", file=err)
        return 1
    image = args.archive_image or spawner.image
    uid, gid, fs_gid = (
        x if isinstance(x, int) else None
        for x in (spawner.uid, spawner.gid, spawner.fs_gid)
    )

    def progress(o: Outcome) -> None:
        claim = _printable(o.volume.claim)
        if o.archive:
            print(
                f"archived {claim} -> {_printable(o.archive)} ({_size_text(o.archive_bytes)},"
                f" {o.files} entries, sha256 {o.sha256})",
                file=out,
            )
        if o.deleted:
            print(f"deleted {claim}", file=out)
        if o.error:
            kept = "" if o.deleted else " (volume kept)"
            print(f"FAILED {claim}: {_printable(o.error)}{kept}", file=out)
        out.flush()

    outcomes = asyncio.run(
        _with_v1(
            cfg,
            lambda v1: archive_and_delete(
                v1,
                namespace,
                chosen,
                archive_dir,
                image=image,
                uid=uid,
                gid=gid,
                supplemental_gids=[fs_gid] if fs_gid is not None else None,
                start_timeout=args.start_timeout,
                chunk_bytes=int(args.chunk_size * 1024 * 1024),
                progress=progress,
            ),
        )
    )
    report = write_report(archive_dir, namespace, outcomes)
    deleted = sum(o.deleted for o in outcomes)
    failed = sum(o.error is not None for o in outcomes)
    print(
        f"{deleted} archived and deleted, {failed} failed. Report: {_printable(report)}",
        file=out,
    )
    return 1 if failed else 0
