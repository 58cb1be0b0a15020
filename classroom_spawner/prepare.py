"""Class prep: every enrolled student's home volume (and lessons) ready before class.

``classroom-spawner prepare COURSE...`` runs with the admin's kubeconfig, not in
the hub. For each student it builds the user's spawner offline
(:func:`classroom_spawner.offline.build_spawner`) and creates the volume from the
spawner's own ``get_pvc_manifest()``, so name, labels, annotations, size and
storage class are exactly what the hub would create at the first spawn. With
``lessons`` it runs a short-lived pod per student: the spawner's own pod for the
course, with its ``lesson-sync`` init container as the only container, reads the
result from its termination message and deletes the pod.

A prepared volume is Bound, so the spawner's ``is_first_spawn()`` says False at
class time: the student takes no first-spawn slot, and the lesson sync finds the
lessons up to date. Only pods and PVCs are created, read, listed and deleted
(what Zero to JupyterHub's hub RBAC allows; nothing is patched). Nothing is
remembered between runs but what is in the cluster, so a second run creates
nothing and an interrupted run, started again, does the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from .lessons.initcontainer import CONTAINER_NAME, parse_termination_message
from .lessons.program import ensure_program_secret
from .offline import build_spawner
from .roster import ClassroomRoster, Role

# what a prep pod is labelled with instead of the notebook's component: the hub's
# pod reflector watches component=singleuser-server and must not see prep pods
PREP_COMPONENT = "classroom-prepare"
PREP_LABEL = "classroom-spawner/prepare"

MAX_CONCURRENCY = 50

log = logging.getLogger(__name__)


class PrepareError(Exception):
    """A problem with the request itself (an unknown course, no kubeconfig)."""


@dataclasses.dataclass
class Target:
    """One student (or staff member) to prepare, with the spawner the hub would build."""

    username: str
    course: str
    role: Role
    spawner: Any = None
    pvc: dict | None = None  # the spawner's PVC manifest (Kubernetes JSON), or None
    error: str | None = None  # why no spawner could be built for them

    @property
    def namespace(self) -> str:
        return self.spawner.namespace

    @property
    def pvc_name(self) -> str:
        return self.spawner.pvc_name

    @property
    def size(self) -> str:
        return (
            ((self.pvc or {}).get("spec") or {})
            .get("resources", {})
            .get("requests", {})
            .get("storage", "?")
        )


@dataclasses.dataclass
class Result:
    username: str
    course: str
    volume: str = ""  # created | already there | would create | no own volume | ""
    lessons: str = ""  # a short description of the lesson sync, if it ran
    warnings: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclasses.dataclass
class Summary:
    results: list[Result]
    interrupted: bool = False

    def count(self, volume: str) -> int:
        return sum(1 for r in self.results if not r.failed and r.volume == volume)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.failed]


# -- planning -------------------------------------------------------------------------


def enrolled(
    roster, courses: Iterable[str], *, staff: bool = False
) -> list[tuple[str, str, Role]]:
    """(username, course, role) of each person to prepare, once each: a person in
    two of the named courses is prepared for the first one named."""
    unknown = [c for c in courses if c not in roster.courses]
    if unknown:
        known = ", ".join(roster.courses) or "none"
        raise PrepareError(f"no such course: {', '.join(unknown)} (courses: {known})")
    seen: set[str] = set()
    people = []
    for course in courses:
        for username, role in sorted(roster.members(course).items()):
            if username in seen or (role.is_staff and not staff):
                continue
            seen.add(username)
            people.append((username, course, role))
    return people


async def plan(config, courses: Iterable[str], *, staff: bool = False) -> list[Target]:
    """The people of ``courses`` with their spawners, as the hub would build them
    for a spawn of that course (the course's profile applied, so a course's
    ``storage_capacity`` override is in the volume's size)."""
    from kubernetes_asyncio.client import ApiClient

    courses = list(dict.fromkeys(courses))
    roster = ClassroomRoster.from_config(config).load()
    targets = []
    async with ApiClient() as client:
        for username, course, role in enrolled(roster, courses, staff=staff):
            target = Target(username, course, role)
            try:
                spawner = await build_spawner(config, username)
                spawner.user_options = {"profile": course}
                await spawner.load_user_options()
            except (
                Exception
            ) as e:  # a user-facing refusal of that profile, a bad override
                target.error = _reason(e)
                targets.append(target)
                continue
            target.spawner = spawner
            if spawner.has_own_volume():
                target.pvc = client.sanitize_for_serialization(
                    spawner.get_pvc_manifest()
                )
                target.pvc.setdefault("apiVersion", "v1")
                target.pvc.setdefault("kind", "PersistentVolumeClaim")
            targets.append(target)
    return targets


_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "": 1,
}  # fmt: skip
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTPE]i|[kMGTPE])?$")


def _quantity(text: str) -> tuple[Decimal, str] | None:
    match = _QUANTITY.match(str(text).strip())
    if not match:
        return None
    return Decimal(match.group(1)), match.group(2) or ""


def _format_total(sizes: list[str]) -> str:
    parsed = [_quantity(s) for s in sizes]
    if any(p is None for p in parsed):
        return "?"
    units = {unit for _, unit in parsed}
    if len(units) == 1:
        (unit,) = units
        return f"{sum(n for n, _ in parsed).normalize():f}{unit}"
    total = sum(n * _SUFFIXES[unit] for n, unit in parsed) / _SUFFIXES["Gi"]
    return f"{total.quantize(Decimal('0.1')).normalize():f}Gi"


def cost_line(
    targets: list[Target], existing: set[tuple[str, str]] | None = None
) -> str:
    """What the run will create, e.g. "will create 150 volumes of 10Gi = 1500Gi"."""
    existing = existing or set()
    new = [
        t
        for t in targets
        if t.pvc is not None and (t.namespace, t.pvc_name) not in existing
    ]
    if not new:
        return "will create no volumes"
    by_size = Counter(t.size for t in new)
    parts = [
        f"{n} volume{'s' if n != 1 else ''} of {size}"
        for size, n in by_size.most_common()
    ]
    return f"will create {', '.join(parts)} = {_format_total([t.size for t in new])}"


# -- the cluster -------------------------------------------------------------------


def admin_kubeconfig(explicit: str | None = None) -> str | None:
    """The kubeconfig to use (``explicit``, else $KUBECONFIG or ~/.kube/config),
    or None in a pod with no kubeconfig (in-cluster credentials). Resolved before
    any spawner is built: building one points $KUBECONFIG at a dummy if unset."""
    path = explicit or os.path.expanduser(
        os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
    )
    if os.path.exists(path):
        return path
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not explicit:
        return None
    raise PrepareError(
        f"no kubeconfig at {path}: prepare talks to the cluster with your credentials"
        " (--kubeconfig FILE, or $KUBECONFIG)"
    )


@contextlib.asynccontextmanager
async def admin_client(kubeconfig: str | None, context: str | None = None):
    """A CoreV1Api from the admin's kubeconfig (None: in-cluster), with its own
    Configuration: the process-wide default, which KubeSpawner loads, is left alone."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    if kubeconfig is None:
        config.load_incluster_config(client_configuration=cfg)
    else:
        await config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=cfg
        )
    async with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


async def existing_volumes(
    api, namespaces: Iterable[str]
) -> dict[tuple[str, str], str]:
    """(namespace, name) -> phase of every PVC in these namespaces (one list each)."""
    found = {}
    for ns in sorted(set(namespaces)):
        claims = await api.list_namespaced_persistent_volume_claim(ns)
        for pvc in claims.items:
            found[(ns, pvc.metadata.name)] = (
                getattr(pvc.status, "phase", None) or "Pending"
            )
    return found


def _reason(e: BaseException) -> str:
    from kubernetes_asyncio.client.exceptions import ApiException

    if isinstance(e, ApiException):
        import json

        try:
            message = json.loads(e.body).get("message")
        except (TypeError, ValueError, AttributeError):
            message = None
        return f"HTTP {e.status} {e.reason}" + (f": {message}" if message else "")
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    text = getattr(e, "message", None) or getattr(e, "log_message", None) or str(e)
    return str(text)[:300] or type(e).__name__


def prep_pod_name(spawner) -> str:
    name = f"prep-{spawner.pod_name}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-.')}-{digest}"


async def prep_pod_manifest(spawner, client) -> dict | None:
    """The spawner's own pod for its course, with the ``lesson-sync`` init
    container as its only container (the init containers before it stay, so
    the home is set up as for the notebook), ``restartPolicy: Never``. None if
    the course has no lessons (or no home volume to put them in)."""
    pod = await spawner.get_pod_manifest()
    if spawner.modify_pod_hook:
        from jupyterhub.utils import maybe_future

        pod = await maybe_future(spawner.modify_pod_hook(spawner, pod))
    pod = client.sanitize_for_serialization(pod)
    spec = pod["spec"]
    inits = spec.get("initContainers") or []
    index = next(
        (i for i, c in enumerate(inits) if c.get("name") == CONTAINER_NAME), None
    )
    if index is None:
        return None
    spec["containers"] = [inits[index]]
    if inits[:index]:
        spec["initContainers"] = inits[:index]
    else:
        spec.pop("initContainers", None)
    spec["restartPolicy"] = "Never"
    meta = pod["metadata"]
    meta["name"] = prep_pod_name(spawner)
    labels = meta.setdefault("labels", {})
    labels["component"] = PREP_COMPONENT
    labels[PREP_LABEL] = "true"
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    return pod


# -- running ------------------------------------------------------------------------


class Preparer:
    """One run of ``prepare`` over planned targets, ``concurrency`` at a time."""

    def __init__(
        self,
        api,
        targets: list[Target],
        *,
        lessons: bool = False,
        concurrency: int = 5,
        bind_timeout: float = 120,
        pod_timeout: float = 600,
        poll: float = 1.0,
        on_result: Callable[[Result], None] | None = None,
    ):
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise PrepareError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
        self.api = api
        self.targets = targets
        self.lessons = lessons
        self.concurrency = concurrency
        self.bind_timeout = bind_timeout
        self.pod_timeout = pod_timeout
        self.poll = poll
        self.on_result = on_result or (lambda result: None)
        self.results: list[Result] = []
        self.existing: dict[tuple[str, str], str] = {}

    async def scan(self) -> dict[tuple[str, str], str]:
        """The volumes already there (read only)."""
        namespaces = [t.namespace for t in self.targets if t.pvc is not None]
        self.existing = await existing_volumes(self.api, namespaces)
        return self.existing

    async def run(self) -> Summary:
        from kubernetes_asyncio.client import ApiClient

        queue: asyncio.Queue[Target] = asyncio.Queue()
        for target in self.targets:
            queue.put_nowait(target)
        async with ApiClient() as serializer:

            async def worker():
                while not queue.empty():
                    target = queue.get_nowait()
                    result = await self.prepare_one(target, serializer)
                    self.results.append(result)
                    self.on_result(result)

            workers = [asyncio.ensure_future(worker()) for _ in range(self.concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        return Summary(self.results)

    async def prepare_one(self, target: Target, serializer) -> Result:
        result = Result(target.username, target.course)
        if target.error:
            result.error = target.error
            return result
        try:
            if target.pvc is None:
                result.volume = "no own volume"
            else:
                result.volume = await self.ensure_volume(target)
            if self.lessons:
                await self.sync_lessons(target, result, serializer)
            if target.pvc is not None:
                await self.wait_bound(target)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            result.error = _reason(e)
        return result

    async def ensure_volume(self, target: Target) -> str:
        from kubernetes_asyncio.client.exceptions import ApiException

        if (target.namespace, target.pvc_name) in self.existing:
            return "already there"
        try:
            await self.api.create_namespaced_persistent_volume_claim(
                target.namespace, body=target.pvc
            )
        except ApiException as e:
            if e.status == 409:  # made since the scan (another run, the hub)
                return "already there"
            raise
        return "created"

    async def wait_bound(self, target: Target) -> None:
        deadline = time.monotonic() + self.bind_timeout
        while True:
            pvc = await self.api.read_namespaced_persistent_volume_claim(
                target.pvc_name, target.namespace
            )
            phase = getattr(pvc.status, "phase", None) or "Pending"
            if phase == "Bound":
                return
            if phase in ("Lost",) or time.monotonic() > deadline:
                hint = (
                    ""
                    if self.lessons
                    else "; a storage class with volumeBindingMode"
                    " WaitForFirstConsumer binds a volume only once a pod uses it: run with"
                    " --lessons, or the student's first spawn will bind it (and queue)"
                )
                raise RuntimeError(
                    f"volume {target.pvc_name} is {phase} after {self.bind_timeout:g} s{hint}"
                )
            await asyncio.sleep(self.poll)

    async def sync_lessons(self, target: Target, result: Result, serializer) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        spawner = target.spawner
        if spawner.lesson_sync_program_secret:
            # the program's Secret, as the hub makes it before a start with lessons
            # (if it cannot be made, the pod carries the program in its command)
            await ensure_program_secret(
                self.api,
                target.namespace,
                timeout=spawner.k8s_api_request_timeout,
                log=log,
            )
        pod = await prep_pod_manifest(spawner, serializer)
        if pod is None:
            result.lessons = "no lessons"
            return
        name, ns = pod["metadata"]["name"], target.namespace
        try:
            await self.api.create_namespaced_pod(ns, body=pod)
        except ApiException as e:
            if e.status != 409:  # 409: left by an interrupted run, read it instead
                raise
        try:
            status = await asyncio.wait_for(self._finished(name, ns), self.pod_timeout)
        except asyncio.TimeoutError:
            raise RuntimeError(
                f"lesson sync pod {name} did not finish in {self.pod_timeout:g} s"
            ) from None
        finally:
            await self._delete_pod(name, ns)
        terminated = status.get("terminated") or {}
        lines = parse_termination_message(terminated.get("message"), include_info=True)
        result.warnings = [
            f"{level}: {text}" for level, text in lines if level != "info"
        ]
        changes = [text for level, text in lines if level == "info"]
        if terminated.get("exitCode") not in (0, None) and not lines:
            raise RuntimeError(
                f"lesson sync exited with {terminated.get('exitCode')}"
                f" ({terminated.get('reason') or 'no reason given'})"
            )
        result.lessons = "; ".join(changes) if changes else "up to date"

    async def _finished(self, name: str, ns: str) -> dict:
        """The lesson-sync container's status once it terminated."""
        while True:
            pod = await self.api.read_namespaced_pod(name, ns)
            pod = self.api.api_client.sanitize_for_serialization(pod)
            status = pod.get("status") or {}
            for c in status.get("containerStatuses") or []:
                if c.get("name") == CONTAINER_NAME and (c.get("state") or {}).get(
                    "terminated"
                ):
                    return c["state"]
            if status.get("phase") in ("Succeeded", "Failed"):
                reason = (
                    status.get("reason") or status.get("message") or status.get("phase")
                )
                raise RuntimeError(f"lesson sync pod {name} ended: {reason}")
            await asyncio.sleep(self.poll)

    async def _delete_pod(self, name: str, ns: str) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            await asyncio.shield(
                self.api.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            )
        except ApiException as e:
            if e.status != 404:
                raise


# -- reporting ----------------------------------------------------------------------


class Progress:
    """A progress bar on a terminal, one plain line per person otherwise."""

    def __init__(self, out, total: int, *, tty: bool | None = None, printable=str):
        self.out = out
        self.total = total
        self.done = 0
        self.counts: Counter = Counter()
        self.tty = out.isatty() if tty is None else tty
        self.printable = printable

    def __call__(self, result: Result) -> None:
        self.done += 1
        self.counts["failed" if result.failed else result.volume or "done"] += 1
        if self.tty:
            width = 30
            filled = width * self.done // max(self.total, 1)
            tally = ", ".join(f"{n} {what}" for what, n in sorted(self.counts.items()))
            self.out.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  {tally}\x1b[K"
            )
            if self.done == self.total:
                self.out.write("\n")
            self.out.flush()
            return
        print(self.printable(describe(result)), file=self.out, flush=True)

    def finish(self) -> None:
        if self.tty and self.done and self.done != self.total:
            self.out.write("\n")
            self.out.flush()


def describe(result: Result) -> str:
    parts = [f"{result.username} ({result.course}):"]
    if result.failed:
        parts.append(f"failed: {result.error}")
        return " ".join(parts)
    parts.append(f"volume {result.volume}")
    if result.lessons:
        parts[-1] += ","
        parts.append(f"lessons {result.lessons}")
    line = " ".join(parts)
    for warning in result.warnings:
        line += f"\n  {warning}"
    return line


def summary_lines(summary: Summary, *, lessons: bool) -> list[str]:
    lines = [
        f"created: {summary.count('created')}, already there: {summary.count('already there')}"
        + (
            f", no own volume: {summary.count('no own volume')}"
            if summary.count("no own volume")
            else ""
        )
        + f", failed: {len(summary.failed)}"
    ]
    if lessons:
        ran = [r for r in summary.results if r.lessons and not r.failed]
        current = sum(1 for r in ran if r.lessons == "up to date")
        lines.append(
            f"lessons: {len(ran)} synced ({current} already up to date),"
            f" {sum(1 for r in ran if r.warnings)} with warnings"
        )
    for result in summary.failed:
        lines.append(f"  failed: {result.username} ({result.course}): {result.error}")
    return lines
