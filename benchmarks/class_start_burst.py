"""Benchmark: a lecture hall starts its first servers at once.

N students request their first server within W seconds, through JupyterHub's
REST API with their own tokens, against the Kubernetes stand-in with a stated
latency model: a storage provisioner that provisions P volumes at a time, T
seconds each (FIFO beyond P), a small image pull, and light singleuser
servers (one in-process HTTP answer per pod). Three scenarios run one after
another, each with a fresh stand-in and a fresh hub, and only the throttling
differs; the spawner is ClassroomSpawner in all three:

- ``queue``:    ClassroomSpawner ``first_spawn_limit = Q``,
                ``c.JupyterHub.concurrent_spawn_limit = 0``
- ``hub-429``:  ``c.JupyterHub.concurrent_spawn_limit = L``, ``first_spawn_limit = 0``;
                a student who gets 429 waits ``Retry-After`` seconds and asks again,
                until their give-up time
- ``no-limit``: both limits 0

Each student opens the progress event stream after the spawn request, as the
spawn page does, and is done at the ``ready`` or ``failed`` event. Printed at
the end, side by side: servers ready, failed spawns and why, 429s, makespan
against the physical bound N*T/P, each student's wait (request -> ready),
hub CPU per spawn, Kubernetes API requests, and the queue's own numbers.

All traffic goes to 127.0.0.1. Every loop has a hard cap; the hub, the proxy
and the stand-in are stopped at the end, also on Ctrl-C.

Run: ``python benchmarks/class_start_burst.py [--students N] [--window S] ...``
(see ``--help`` and docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import datetime
import heapq
import json
import logging
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from urllib.parse import quote

import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError

from classroom_spawner.local.gitrepo import NOTEBOOK, lesson_repo
from classroom_spawner.local.hub import HubProcess, event_stream_reader
from classroom_spawner.local.kube import (
    Faults,
    KubeletConfig,
    StandinProcess,
    kube_process,
)

SCENARIOS = ("queue", "hub-429", "no-limit", "kubespawner", "prepared")
# a lecture's lessons with --lessons: a few notebooks and a data file
LESSON_FILES = {
    **{f"{i:02d}-lesson.ipynb": NOTEBOOK for i in range(1, 6)},
    "data/measurements.csv": "t,value\n"
    + "".join(f"{i},{i * i}\n" for i in range(500)),
}
COURSE_ID = "lecture"
IMAGE = "example.org/lecture-notebook:2025.1"
NAMESPACE = "default"

# -- what one student saw ---------------------------------------------------------------


@dataclass
class Student:
    name: str
    offset: float  # planned arrival, seconds after the burst starts
    token: str = ""
    requested: float | None = None  # first spawn request (monotonic)
    accepted: float | None = None  # the request that was not refused with 429
    ready: float | None = None  # the hub said ready (event or 201)
    # not started | waiting | ready | start-timeout | api-timeout | error | gave-up | unfinished
    outcome: str = "not started"
    message: str = ""
    posts: int = 0
    throttled: int = 0  # 429 answers
    retry_after_waited: float = 0.0
    # the place in line first shown on the progress stream
    first_position: int | None = None
    position_updates: int = 0
    granted: float | None = None  # "It's your turn" seen
    reachable: bool | None = None  # a request through the proxy reached the server

    @property
    def wait(self) -> float | None:
        if self.ready is None or self.requested is None:
            return None
        return self.ready - self.requested


# -- small helpers ----------------------------------------------------------------------


def arrival_offsets(n: int, window: float, kind: str, seed: int) -> list[float]:
    """Planned arrival times in [0, window] (poisson: mean gap window/n, may run past it)."""
    rng = random.Random(seed)
    if n <= 0:
        return []
    if kind == "even":
        return [window * i / max(1, n - 1) for i in range(n)]
    if kind == "uniform":
        # n arrivals of a Poisson process, conditioned on falling in the window
        return sorted(rng.uniform(0, window) for _ in range(n))
    if kind == "poisson":
        t, out = 0.0, []
        for _ in range(n):
            out.append(t)
            t += rng.expovariate(n / window) if window > 0 else 0.0
        return out
    raise ValueError(kind)


def fifo_bound(arrivals: list[float], parallel: int, seconds: float) -> float:
    """Makespan of P identical servers taking jobs in arrival order, T each: the
    best any throttle could do when every disk is asked for on arrival."""
    if not arrivals:
        return 0.0
    arrivals = sorted(arrivals)
    free = [arrivals[0]] * max(1, parallel)
    end = arrivals[0]
    for a in arrivals:
        start = max(a, heapq.heappop(free))
        heapq.heappush(free, start + seconds)
        end = max(end, start + seconds)
    return end - arrivals[0]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    values = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[rank - 1]


def cpu_seconds(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return t.user + t.system


def _cpu_sum(pids) -> float | None:
    times = [cpu_seconds(pid) for pid in pids]
    return sum(t for t in times if t is not None) if pids else None


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def parse_position(message: str) -> int | None:
    """The place in line in ClassroomSpawner's queue message, 0 for "your turn"."""
    if "It's your turn" in message:
        return 0
    if "You are next in line" in message:
        return 1
    m = re.search(r"You are number (\d+) in line", message)
    return int(m.group(1)) if m else None


def classify_failure(message: str) -> str:
    """Why a spawn failed, from the progress stream's "Spawn failed: ..." message.

    - ``api-timeout``: KubeSpawner gave up creating the PVC or pod after
      ``k8s_api_request_retry_timeout`` (30 s) of API requests that each took
      longer than ``k8s_api_request_timeout`` (3 s).
    - ``start-timeout``: ``start_timeout`` ran out. JupyterHub 6.1 raises a bare
      ``asyncio.TimeoutError`` for its own start timeout, so the message is
      empty; KubeSpawner's says "did not start in N seconds".
    - ``error``: anything else.
    """
    text = message.strip()
    lower = text.lower()
    if "could not create" in lower:
        return "api-timeout"
    if (
        text in ("Spawn failed:", "Spawn failed: Timeout")
        or "did not start in" in lower
        or "failed to start in" in lower
        or "timed out" in lower
    ):
        return "start-timeout"
    return "error"


def prometheus_samples(text: str) -> list[tuple[str, dict, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.append((sample.name, dict(sample.labels), sample.value))
    return out


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style quantile estimate from cumulative (le, count) buckets."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


# -- the client side: HTTP on loopback ------------------------------------------------


class Client:
    """Requests to the hub's public URL (through configurable-http-proxy)."""

    def __init__(self, base_url: str, max_clients: int):
        self.base = base_url.rstrip("/")
        self.http = AsyncHTTPClient(force_instance=True, max_clients=max_clients)
        self.requests = 0

    def close(self):
        self.http.close()

    async def fetch(
        self,
        path,
        method="GET",
        token=None,
        body=None,
        timeout=60.0,
        headers=None,
        **kwargs,
    ):
        url = self.base + path
        assert url.startswith("http://127.0.0.1:"), url  # loopback only
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        elif method in ("POST", "PUT", "PATCH"):
            body = ""
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body,
            request_timeout=timeout,
            connect_timeout=min(timeout, 30),
            follow_redirects=False,
            allow_nonstandard_methods=True,
            **kwargs,
        )
        self.requests += 1
        started = time.monotonic()
        try:
            return await self.http.fetch(request, raise_error=False)
        except (OSError, StreamClosedError, HTTPClientError) as e:
            # a dropped connection is an answer too (599), not a crash of the student
            return Failed(e, time.monotonic() - started)


class Failed:
    """What :meth:`Client.fetch` returns when the connection itself failed."""

    code = 599
    body = b""
    headers: dict = {}

    def __init__(self, error, request_time):
        self.error = error
        self.request_time = request_time


# -- one scenario ---------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    queue_limit: int  # ClassroomSpawner.first_spawn_limit
    hub_limit: int  # JupyterHub.concurrent_spawn_limit
    spawner: str = "classroom"  # or "kubespawner": plain KubeSpawner, no course file
    prepared: bool = False  # classroom-spawner prepare ran before the burst
    spawn_limit: int | None = None  # ClassroomSpawner.spawn_limit; None: its default


def scenarios_of(args) -> dict[str, Scenario]:
    return {
        "queue": Scenario("queue", args.queue_limit, 0),
        "hub-429": Scenario("hub-429", 0, args.hub_limit, spawn_limit=0),
        "no-limit": Scenario("no-limit", 0, 0, spawn_limit=0),
        "kubespawner": Scenario("kubespawner", 0, 0, spawner="kubespawner"),
        "prepared": Scenario("prepared", args.queue_limit, 0, prepared=True),
    }


def hub_config(args, scenario: Scenario, course_file: str) -> str:
    if scenario.spawner == "kubespawner":
        # plain KubeSpawner with what ClassroomSpawner gives every student by default
        # (the image, a 10Gi volume of one's own at the home, uid 1000 / gid 100) and
        # nothing else: no roster, no profiles, no queue, no lessons
        spawner = textwrap.dedent(f"""
            c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
            c.KubeSpawner.image = {IMAGE!r}
            c.KubeSpawner.storage_pvc_ensure = True
            c.KubeSpawner.storage_capacity = "10Gi"
            c.KubeSpawner.volumes = [
                {{"name": "home", "persistentVolumeClaim": {{"claimName": "{{pvc_name}}"}}}}
            ]
            c.KubeSpawner.volume_mounts = [{{"name": "home", "mountPath": "/home/jovyan"}}]
            c.KubeSpawner.uid = 1000
            c.KubeSpawner.gid = 100
            c.KubeSpawner.fs_gid = 100
            """)
    else:
        spawner = textwrap.dedent(f"""
            from classroom_spawner.queue_api import SpawnQueueAPIHandler
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{course_file!r}]
            c.ClassroomSpawner.first_spawn_limit = {scenario.queue_limit!r}
            {"" if scenario.spawn_limit is None else f"c.ClassroomSpawner.spawn_limit = {scenario.spawn_limit!r}"}
            c.JupyterHub.extra_handlers = [
                (r"/api/classroom/spawn-queue", SpawnQueueAPIHandler)
            ]
            """)
    return spawner + textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.KubeSpawner.namespace = {NAMESPACE!r}
        c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
        c.KubeSpawner.start_timeout = {args.start_timeout!r}
        c.KubeSpawner.http_timeout = {args.http_timeout!r}
        c.Spawner.consecutive_failure_limit = {args.consecutive_failure_limit!r}
        c.JupyterHub.concurrent_spawn_limit = {scenario.hub_limit!r}
        # the stand-in kills every pod when it stops; don't make the hub stop N servers
        c.JupyterHub.cleanup_servers = False
        """) + "".join(f"{line}\n" for line in args.hub_config)


def write_course(directory: str, names: list[str], lessons: bool = False) -> str:
    """The course file: one course with every student, and with ``lessons`` a real
    lesson repository (``file://``: each pod's lesson sync clones it)."""
    roster = os.path.join(directory, "lecture.csv")
    with open(roster, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["username", "role"])
        w.writerows([n, "student"] for n in names)
    path = os.path.join(directory, "courses.yaml")
    with open(path, "w") as f:
        f.write(textwrap.dedent(f"""\
                courses:
                  - id: {COURSE_ID}
                    title: Lecture
                    image: {IMAGE}
                    rosters:
                      - file: lecture.csv
                """))
        if lessons:
            url = lesson_repo(directory, LESSON_FILES)
            f.write(f"    lessons:\n      - url: {url}\n        target: lecture\n")
    return path


async def prepare_users(
    hub: HubProcess, client: Client, students: list[Student], admin: str
):
    """Create the users and one API token each, before the burst."""
    names = [s.name for s in students]
    for i in range(0, len(names), 200):
        r = await client.fetch(
            "/hub/api/users",
            "POST",
            admin,
            {"usernames": names[i : i + 200]},
            timeout=120,
        )
        if r.code not in (201, 409):
            raise RuntimeError(f"creating users: {r.code} {r.body[:500]!r}")
    sem = asyncio.Semaphore(8)

    async def token(s: Student):
        async with sem:
            for _ in range(3):
                r = await client.fetch(
                    f"/hub/api/users/{quote(s.name)}/tokens",
                    "POST",
                    admin,
                    {"note": "burst benchmark"},
                    timeout=60,
                )
                if r.code in (200, 201):
                    s.token = json.loads(r.body)["token"]
                    return
                await asyncio.sleep(1)
            raise RuntimeError(f"token for {s.name}: {r.code} {r.body[:300]!r}")

    await asyncio.gather(*(token(s) for s in students))


async def prepare_course(args, k8s, hub: HubProcess) -> dict:
    """``classroom-spawner prepare`` of the course with the hub's own config, as an
    admin runs it the day before: every student's volume (and with --lessons their
    lessons). The provisioner's latency is switched off while it runs (a day
    before, N*T/P is no one's wait) and switched back on for the burst."""
    await k8s.set_faults(provision_delay=0, provision_max_in_flight=0)
    t = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "classroom_spawner.cli",
        "prepare",
        "-f",
        hub.config_path,
        COURSE_ID,
        "--concurrency",
        "50",
        *(["--lessons"] if args.lessons else []),
    ]
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": k8s.kubeconfig_path},
        cwd=os.path.dirname(hub.config_path),
    )
    out, _ = await proc.communicate()
    seconds = round(time.monotonic() - t, 1)
    await k8s.set_faults(
        provision_delay=args.provision_seconds,
        provision_max_in_flight=args.provision_parallel,
    )
    text = out.decode("utf8", "replace")
    summary = [line for line in text.splitlines() if line.strip()][-6:]
    print(f"  prepared in {seconds:.0f}s (exit {proc.returncode}):", flush=True)
    for line in summary:
        print(f"    {line}", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"classroom-spawner prepare failed:\n{text[-3000:]}")
    return {"seconds": seconds, "exit": proc.returncode, "summary": summary}


async def follow_progress(client: Client, s: Student, deadline: float):
    """Read the progress stream until ready/failed. Returns True when it ended in one."""
    done = asyncio.Event()
    last_position = [None]

    def on_event(event: dict):
        now = time.monotonic()
        message = event.get("message") or ""
        position = parse_position(message)
        if position is not None:
            if position == 0:
                if s.granted is None:
                    s.granted = now
            else:
                if s.first_position is None:
                    s.first_position = position
                if position != last_position[0]:
                    s.position_updates += 1
            last_position[0] = position
        if event.get("ready"):
            s.ready = s.ready or now
            s.outcome = "ready"
            done.set()
        elif event.get("failed"):
            s.message = message
            s.outcome = classify_failure(message)
            done.set()

    remaining = deadline - time.monotonic()
    if remaining <= 1:
        return False
    r = await client.fetch(
        f"/hub/api/users/{quote(s.name)}/server/progress",
        token=s.token,
        timeout=remaining,
        headers={"Accept": "text/event-stream"},
        streaming_callback=event_stream_reader(on_event),
    )
    if done.is_set():
        return True
    if r.code == 599:
        s.message = f"progress stream: {r.error}"
    elif r.code >= 400:
        s.message = f"progress stream: {r.code} {r.body[:200]!r}"
    return False


async def user_state(client: Client, s: Student) -> dict | None:
    r = await client.fetch(f"/hub/api/users/{quote(s.name)}", token=s.token, timeout=60)
    if r.code != 200:
        return None
    return json.loads(r.body)


async def run_student(client: Client, s: Student, t0: float, args, deadline: float):
    """One student: ask for the server, obey 429s, follow progress to the end."""
    await asyncio.sleep(max(0.0, t0 + s.offset - time.monotonic()))
    s.requested = time.monotonic()
    s.outcome = "waiting"
    give_up_at = min(deadline, s.requested + args.give_up)
    while s.posts < args.max_posts:
        s.posts += 1
        r = await client.fetch(
            f"/hub/api/users/{quote(s.name)}/server",
            "POST",
            s.token,
            {},
            timeout=max(1.0, deadline - time.monotonic()),
        )
        text = (r.body or b"")[:500].decode("utf8", "replace")
        if r.code == 429:
            s.throttled += 1
            try:
                retry_after = float(r.headers.get("Retry-After", "30"))
            except ValueError:
                retry_after = 30.0
            if time.monotonic() + retry_after > give_up_at:
                s.outcome, s.message = "gave-up", f"429 x{s.throttled}, last: {text}"
                return
            s.retry_after_waited += retry_after
            await asyncio.sleep(retry_after)
            continue
        if r.code == 201:
            s.accepted = s.ready = time.monotonic()
            s.outcome = "ready"
            break
        if r.code == 202 or (r.code == 400 and "already" in text):
            s.accepted = time.monotonic()
            break
        s.outcome = "error"
        s.message = f"POST {r.code}: {r.error if r.code == 599 else text}"
        return
    else:
        s.outcome, s.message = "gave-up", f"{s.posts} requests"
        return

    # follow the spawn page's event stream; if it breaks, look at the user model
    for _ in range(20):
        if s.outcome == "ready":
            break
        if await follow_progress(client, s, deadline):
            break
        if time.monotonic() >= deadline:
            s.outcome = "unfinished"
            break
        state = await user_state(client, s)
        server = ((state or {}).get("servers") or {}).get("")
        if server and server.get("ready"):
            s.ready, s.outcome = time.monotonic(), "ready"
            break
        if state is not None and not server and not state.get("pending"):
            s.outcome = "error"
            s.message = s.message or "server gone without a failed event"
            return
        await asyncio.sleep(1)
    else:
        s.outcome = "unfinished"

    if s.outcome == "ready" and args.check_proxy:
        r = await client.fetch(
            f"/user/{quote(s.name)}/api/status", token=s.token, timeout=60
        )
        s.reachable = r.code == 200


async def sample_loop(
    client: Client,
    admin: str,
    k8s: StandinProcess,
    hub_pid: int,
    students: list[Student],
    out: dict,
    stop: asyncio.Event,
    args,
):
    """Every ``--sample-interval`` s: the stand-in's provisioner, the queue gauges from
    /hub/metrics (the same cheap request in every scenario) and the hub's CPU time."""
    samples = out.setdefault("samples", [])
    while not stop.is_set():
        sample = {"t": time.monotonic(), "hub_cpu": cpu_seconds(hub_pid)}
        try:
            stats = await k8s.astats()
            sample["provisions_in_flight"] = stats.get("provisions_in_flight")
            sample["provisions_queued"] = stats.get("provisions_queued")
            sample["k8s_requests"] = stats.get("requests")
        except Exception as e:  # keep sampling; record why a sample is missing
            sample["standin_error"] = str(e)[:200]
        if args.queue_api_interval:
            if (
                not samples
                or sample["t"] - out.get("_last_queue_api", 0)
                >= args.queue_api_interval
            ):
                out["_last_queue_api"] = sample["t"]
                r = await client.fetch(
                    "/hub/api/classroom/spawn-queue", token=admin, timeout=30
                )
                sample["queue_api_seconds"] = r.request_time
                if r.code == 200:
                    q = json.loads(r.body).get("queues", {}).get("first-spawn")
                    if q:
                        sample["queue_waiting"] = q["waiting"]
                        sample["queue_in_flight"] = q["in_flight"]
        r = await client.fetch("/hub/metrics", token=admin, timeout=30)
        sample["metrics_seconds"] = r.request_time
        if r.code == 200:
            for name, labels, value in prometheus_samples(
                r.body.decode("utf8", "replace")
            ):
                if labels.get("queue") != "first-spawn":
                    continue
                if name == "classroom_spawn_queue_length":
                    sample["queue_waiting"] = max(
                        int(value), sample.get("queue_waiting", 0)
                    )
                elif name == "classroom_spawns_in_flight":
                    sample["queue_in_flight"] = max(
                        int(value), sample.get("queue_in_flight", 0)
                    )
        sample["students_waiting"] = sum(1 for s in students if s.outcome == "waiting")
        samples.append(sample)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), args.sample_interval)


def hub_log_summary(text: str) -> dict:
    """Errors, warnings and event-loop stalls in (the burst's part of) the hub's log."""
    lines = text.splitlines()
    errors = [line for line in lines if line.startswith("[E ")]
    warnings = [line for line in lines if line.startswith("[W ")]
    stalls = [
        float(m.group(1))
        for m in re.finditer(
            r"Event loop was unresponsive for at least ([\d.]+)s", text
        )
    ]

    def top(lines):
        counter = collections.Counter(
            re.sub(r"student\d+", "<user>", re.sub(r"^\[\w [^\]]*\]\s*", "", line))[
                :160
            ]
            for line in lines
        )
        return counter.most_common(8)

    entered = {}
    for m in re.finditer(
        r"^\[I (\S+ \S+) JupyterHub [^\]]*\] (\S+) waits for a first-spawn slot: number (\d+) in line",
        text,
        re.M,
    ):
        when = datetime.datetime.strptime(
            m.group(1), "%Y-%m-%d %H:%M:%S.%f"
        ).timestamp()
        entered[m.group(2)] = (when, int(m.group(3)))
    return {
        "entered_line": entered,
        "errors": len(errors),
        "warnings": len(warnings),
        "tracebacks": text.count("Traceback (most recent call last)"),
        "loop_stalls": len(stalls),
        "loop_stall_seconds": round(sum(stalls), 2),
        "loop_stall_max": max(stalls, default=0.0),
        "top_errors": top(errors),
        "top_warnings": top(warnings),
    }


async def run_scenario(args, scenario: Scenario, root: str) -> dict:
    workdir = os.path.join(root, scenario.name)
    os.makedirs(workdir, exist_ok=True)
    names = [f"student{i:04d}" for i in range(args.students)]
    offsets = arrival_offsets(args.students, args.window, args.arrivals, args.seed)
    students = [Student(n, o) for n, o in zip(names, offsets)]
    course_file = write_course(workdir, names, lessons=args.lessons)
    faults = Faults(
        seed=args.seed,
        provision_delay=args.provision_seconds,
        provision_max_in_flight=args.provision_parallel,
        image_pull_delay=args.image_pull_seconds,
    )
    # light servers for jupyterhub-singleuser; the lesson sync (and prepare's sync
    # pods) run for real
    kubelet = KubeletConfig(singleuser="light")
    result: dict = {
        "scenario": scenario.name,
        "queue_limit": scenario.queue_limit,
        "hub_limit": scenario.hub_limit,
        "spawner": scenario.spawner,
        "prepared": scenario.prepared,
    }
    print(
        f"\n== {scenario.name}: {scenario.spawner}, first_spawn_limit={scenario.queue_limit}, "
        f"concurrent_spawn_limit={scenario.hub_limit}"
        + (", prepared before the burst" if scenario.prepared else "")
        + " ==",
        flush=True,
    )

    async with kube_process(
        os.path.join(workdir, "k8s"), backend=args.kube, faults=faults, kubelet=kubelet
    ) as k8s:
        result["kube"] = k8s.backend
        if k8s.backend == "real":
            result["kube_version"] = k8s.version.get("gitVersion")
        hub = HubProcess(
            config=hub_config(args, scenario, course_file),
            workdir=os.path.join(workdir, "hub"),
            env={"KUBECONFIG": k8s.kubeconfig_path},
            log_level=args.hub_log_level,
            start_timeout=120,
            stop_timeout=30,
            keep_workdir=True,
        )
        async with hub:
            client = Client(hub.hub_url, max_clients=args.students * 2 + 50)
            try:
                t_prep = time.monotonic()
                await prepare_users(hub, client, students, hub.admin_token)
                print(
                    f"  {len(students)} users and tokens in {time.monotonic() - t_prep:.1f}s",
                    flush=True,
                )
                result["setup_seconds"] = round(time.monotonic() - t_prep, 1)
                if scenario.prepared:
                    result["prepare"] = await prepare_course(args, k8s, hub)
                log_offset = os.path.getsize(hub.log_path)
                await burst(args, hub, k8s, client, students, result)
            finally:
                client.close()
            with open(hub.log_path, "rb") as f:
                f.seek(log_offset)
                result["hub_log"] = hub_log_summary(f.read().decode("utf8", "replace"))
            result["hub_exit_code"] = hub.proc.poll()
        result["standin_final"] = {
            k: v
            for k, v in (await k8s.astats()).items()
            if isinstance(v, (int, float, type(None)))
        }
    result["students"] = [asdict(s) | {"wait": s.wait} for s in students]
    return result


async def burst(
    args, hub: HubProcess, k8s: StandinProcess, client: Client, students, result
):
    admin = hub.admin_token
    hub_pid = hub.proc.pid
    chp_pid = read_pid(hub.proxy_pid_file)
    me = psutil.Process()
    stats0 = await k8s.astats()
    # the real backend: etcd, kube-apiserver, kube-scheduler, kube-controller-manager
    control_plane = list((stats0.get("control_plane_pids") or {}).values())
    cpu0 = {
        "hub": cpu_seconds(hub_pid),
        "proxy": cpu_seconds(chp_pid),
        "standin": cpu_seconds(k8s.pid),
        "control_plane": _cpu_sum(control_plane),
        "client": sum(me.cpu_times()[:2]),
    }
    planned_end = max(s.offset for s in students)
    budget = args.deadline or (
        planned_end
        + max(
            args.give_up,
            2 * args.students * args.provision_seconds / args.provision_parallel,
        )
        + args.start_timeout
        + 120
    )
    result["load_before"] = round(os.getloadavg()[0], 2)
    t0 = time.monotonic() + 1.0
    result["wall_minus_monotonic"] = time.time() - time.monotonic()
    deadline = t0 + budget
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(
        sample_loop(client, admin, k8s, hub_pid, students, result, stop, args)
    )

    async def progress_report():
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 15)
            c = collections.Counter(
                s.outcome for s in students if s.requested is not None
            )
            print(
                f"  t={time.monotonic() - t0:6.0f}s  requested {sum(c.values()):4d}  "
                + "  ".join(f"{k} {v}" for k, v in sorted(c.items())),
                flush=True,
            )

    reporter = asyncio.ensure_future(progress_report())
    tasks = [
        asyncio.ensure_future(run_student(client, s, t0, args, deadline))
        for s in students
    ]
    try:
        done, pending = await asyncio.wait(tasks, timeout=budget + 5)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        # also on Ctrl-C: no student may outlive the burst
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stop.set()
        await asyncio.gather(sampler, reporter, return_exceptions=True)
    for s, t in zip(students, tasks):
        if not t.cancelled() and t.exception() is not None:
            s.outcome, s.message = "error", f"client: {t.exception()!r}"
        elif s.outcome in ("waiting", "not started"):
            s.outcome = "unfinished" if s.requested is not None else "not started"
    t_end = time.monotonic()
    cpu1 = {
        "hub": cpu_seconds(hub_pid),
        "proxy": cpu_seconds(chp_pid),
        "standin": cpu_seconds(k8s.pid),
        "control_plane": _cpu_sum(control_plane),
        "client": sum(me.cpu_times()[:2]),
    }
    stats1 = await k8s.astats()
    result["cpu_seconds"] = {
        k: (None if cpu0[k] is None or cpu1[k] is None else round(cpu1[k] - cpu0[k], 2))
        for k in cpu0
    }
    result["k8s_requests"] = stats1.get("requests", 0) - stats0.get("requests", 0)
    result["load_after"] = round(os.getloadavg()[0], 2)
    result["burst_seconds"] = round(t_end - t0, 1)
    result["t0"] = t0

    # after the burst: the hub's own numbers
    r = await client.fetch("/hub/metrics", token=admin, timeout=60)
    result["metrics"] = (
        metrics_summary(r.body.decode("utf8", "replace"))
        if r.code == 200
        else {"error": r.code}
    )
    r = await client.fetch("/hub/api/classroom/spawn-queue", token=admin, timeout=30)
    result["queue_final"] = (
        json.loads(r.body).get("queues") if r.code == 200 else {"error": r.code}
    )


def metrics_summary(text: str) -> dict:
    samples = prometheus_samples(text)
    out: dict = {"spawn_duration_count": {}}
    buckets = []
    for name, labels, value in samples:
        if name == "jupyterhub_server_spawn_duration_seconds_count" and value:
            key = f"{labels.get('status')}/{labels.get('reason') or '-'}"
            out["spawn_duration_count"][key] = int(value)
        if labels.get("queue") != "first-spawn":
            continue
        if name == "classroom_spawn_queue_wait_seconds_count":
            out["queue_wait_count"] = int(value)
        elif name == "classroom_spawn_queue_wait_seconds_sum":
            out["queue_wait_sum"] = value
        elif name == "classroom_spawn_queue_wait_seconds_bucket":
            buckets.append((float(labels["le"]), value))
    if out.get("queue_wait_count"):
        out["queue_wait_mean"] = out["queue_wait_sum"] / out["queue_wait_count"]
        out["queue_wait_p50"] = histogram_quantile(buckets, 0.5)
        out["queue_wait_p95"] = histogram_quantile(buckets, 0.95)
    return out


# -- figures ----------------------------------------------------------------------------


def summarise(args, result: dict) -> dict:
    students = [dict(s) for s in result["students"]]
    for s in students:
        if s["outcome"] in ("timeout", "error", "start-timeout", "api-timeout") and (
            s["message"] or ""
        ).startswith("Spawn failed"):
            s["outcome"] = classify_failure(s["message"])
    n = len(students)
    requested = [s["requested"] for s in students if s["requested"] is not None]
    ready = [s for s in students if s["outcome"] == "ready"]
    outcomes = collections.Counter(s["outcome"] for s in students)
    waits = [s["wait"] for s in ready if s["wait"] is not None]
    first = min(requested) if requested else None
    last_ready = max((s["ready"] for s in ready), default=None)
    makespan = (
        (last_ready - first) if first is not None and last_ready is not None else None
    )
    bound = n * args.provision_seconds / args.provision_parallel
    arrivals_bound = fifo_bound(
        requested, args.provision_parallel, args.provision_seconds
    )
    throttled = [s for s in students if s["throttled"]]
    samples = result.get("samples", [])
    # provisioner busy share while at least one student was waiting for a server
    busy = [
        min(1.0, (x.get("provisions_in_flight") or 0) / args.provision_parallel)
        for x in samples
        if x.get("students_waiting") and "provisions_in_flight" in x
    ]
    messages = collections.Counter(
        re.sub(r"\d+(\.\d+)?", "#", s["message"])[:140]
        for s in students
        if s["outcome"] not in ("ready",) and s["message"]
    )
    m = result.get("metrics", {})
    q_final = (
        (result.get("queue_final") or {}).get("first-spawn")
        if isinstance(result.get("queue_final"), dict)
        else None
    )
    waited = [
        s for s in students if s["granted"] is not None and s["requested"] is not None
    ]
    # when each student entered the line, from the hub's log (wall clock -> our monotonic clock)
    entered = result.get("hub_log", {}).get("entered_line", {})
    offset = result.get("wall_minus_monotonic", 0.0)
    lined = [
        dict(s, entered=entered[s["name"]][0] - offset)
        for s in students
        if s["name"] in entered
    ]
    entered_late = out_of_order(lined, "requested", "entered", 1.0, 0.5)
    served_out_of_line = out_of_order(lined, "entered", "granted", 0.5, 1.0)
    ready_n = len(ready)
    cpu = result.get("cpu_seconds", {})
    hub_log = result.get("hub_log", {})
    return {
        "students": n,
        "ready": ready_n,
        "reachable": sum(1 for s in ready if s["reachable"]),
        "failed": n - ready_n,
        "outcomes": dict(outcomes),
        "failure_messages": messages.most_common(5),
        "throttled_responses": sum(s["throttled"] for s in students),
        "throttled_students": len(throttled),
        "posts": sum(s["posts"] for s in students),
        "retry_after_waited_total": sum(s["retry_after_waited"] for s in students),
        "makespan": makespan,
        "bound": bound,
        "arrivals_bound": arrivals_bound,
        "wait_p50": percentile(waits, 50),
        "wait_p95": percentile(waits, 95),
        "wait_max": max(waits) if waits else None,
        "wait_mean": statistics.fmean(waits) if waits else None,
        "provisioner_busy": statistics.fmean(busy) if busy else None,
        "queue_max_waiting": max(
            (x.get("queue_waiting") or 0 for x in samples), default=0
        ),
        "queue_max_in_flight": max(
            (x.get("queue_in_flight") or 0 for x in samples), default=0
        ),
        "queue_final_in_flight": None if not q_final else q_final.get("in_flight"),
        "queue_final_waiting": None if not q_final else q_final.get("waiting"),
        "queue_students_waited": len(waited),
        "queue_position_updates": sum(s["position_updates"] for s in students),
        "queue_first_position_max": max(
            (s["first_position"] or 0 for s in students), default=0
        ),
        "overtaken": out_of_order(students, "requested", "ready", 5.0, 5.0),
        "queue_entered_line": len(lined),
        "queue_entered_late": entered_late,
        "queue_served_out_of_line": served_out_of_line,
        "queue_wait_metric_count": m.get("queue_wait_count"),
        "queue_wait_metric_mean": m.get("queue_wait_mean"),
        "queue_wait_metric_p50": m.get("queue_wait_p50"),
        "queue_wait_metric_p95": m.get("queue_wait_p95"),
        "spawn_duration_count": m.get("spawn_duration_count"),
        "hub_cpu": cpu.get("hub"),
        "hub_cpu_per_ready": (
            (cpu["hub"] / ready_n) if cpu.get("hub") is not None and ready_n else None
        ),
        "proxy_cpu": cpu.get("proxy"),
        "standin_cpu": cpu.get("standin"),
        "control_plane_cpu": cpu.get("control_plane"),
        "client_cpu": cpu.get("client"),
        "k8s_requests": result.get("k8s_requests"),
        "k8s_requests_per_ready": (
            (result["k8s_requests"] / ready_n)
            if ready_n and result.get("k8s_requests") is not None
            else None
        ),
        "hub_cpu_peak": peak_rate(samples, "hub_cpu", 5.0),
        "hub_loop_stalls": hub_log.get("loop_stalls"),
        "hub_loop_stall_seconds": hub_log.get("loop_stall_seconds"),
        "hub_loop_stall_max": hub_log.get("loop_stall_max"),
        "metrics_request_max": max(
            (x.get("metrics_seconds") or 0 for x in samples), default=None
        ),
        "queue_api_request_max": max(
            (x["queue_api_seconds"] for x in samples if "queue_api_seconds" in x),
            default=None,
        ),
        "hub_log_errors": hub_log.get("errors"),
        "hub_log_warnings": hub_log.get("warnings"),
        "hub_tracebacks": hub_log.get("tracebacks"),
        "burst_seconds": result.get("burst_seconds"),
        "prepare_seconds": (result.get("prepare") or {}).get("seconds"),
        "load": (result.get("load_before"), result.get("load_after")),
    }


def peak_rate(samples: list[dict], key: str, span: float) -> float | None:
    """Highest increase of ``key`` per second over any window of about ``span`` seconds."""
    points = [(x["t"], x[key]) for x in samples if x.get(key) is not None]
    best = None
    for i, (t1, v1) in enumerate(points):
        for t0, v0 in reversed(points[:i]):
            if t1 - t0 >= span:
                rate = (v1 - v0) / (t1 - t0)
                best = rate if best is None else max(best, rate)
                break
    return best


def out_of_order(
    records: list[dict], first: str, then: str, slack_first: float, slack_then: float
) -> int:
    """Students overtaken: someone who was more than ``slack_first`` s later by
    ``first`` got ahead of them by more than ``slack_then`` s in ``then``."""
    records = [
        r for r in records if r.get(first) is not None and r.get(then) is not None
    ]
    overtaken = set()
    for a in records:
        for b in records:
            if b[first] - a[first] > slack_first and a[then] - b[then] > slack_then:
                overtaken.add(a["name"])
                break
    return len(overtaken)


def fmt(value, spec="{:.0f}", none="-"):
    if value is None:
        return none
    return spec.format(value)


def table(args, summaries: dict[str, dict]) -> str:
    names = list(summaries)

    def row(label, fn):
        return [label] + [fn(summaries[n]) for n in names]

    def ratio(s):
        return (
            fmt(s["makespan"] / s["bound"], "{:.2f}x")
            if s["makespan"] and s["bound"] and not s["failed"]
            else "-"
        )

    def fails(s):
        o = s["outcomes"]
        parts = [
            f"{k} {o[k]}"
            for k in (
                "start-timeout",
                "api-timeout",
                "timeout",
                "error",
                "gave-up",
                "unfinished",
                "not started",
            )
            if o.get(k)
        ]
        return f"{s['failed']}" + (f" ({', '.join(parts)})" if parts else "")

    rows = [
        row("servers ready", lambda s: f"{s['ready']} / {s['students']}"),
        row(
            "  reachable through the proxy",
            lambda s: str(s["reachable"]) if args.check_proxy else "-",
        ),
        row("failed spawns", fails),
        row("429s seen (responses)", lambda s: str(s["throttled_responses"])),
        row("  students who saw a 429", lambda s: str(s["throttled_students"])),
        row("  spawn requests sent", lambda s: str(s["posts"])),
        row(
            "  student-seconds spent on Retry-After",
            lambda s: fmt(s["retry_after_waited_total"]),
        ),
        row(
            "makespan (first request -> last ready)",
            lambda s: fmt(s["makespan"], "{:.0f} s")
            + (f" (of {s['ready']} ready)" if s["makespan"] and s["failed"] else ""),
        ),
        row("  physical bound N*T/P", lambda s: fmt(s["bound"], "{:.0f} s")),
        row("  makespan / bound", ratio),
        row(
            "  bound with these arrivals",
            lambda s: fmt(s["arrivals_bound"], "{:.0f} s"),
        ),
        row("wait p50 (request -> ready)", lambda s: fmt(s["wait_p50"], "{:.0f} s")),
        row("wait p95", lambda s: fmt(s["wait_p95"], "{:.0f} s")),
        row("wait max", lambda s: fmt(s["wait_max"], "{:.0f} s")),
        row(
            "students overtaken by a later arrival (>5 s)",
            lambda s: str(s["overtaken"]),
        ),
        row(
            "provisioner busy while students waited",
            lambda s: fmt(
                s["provisioner_busy"] and 100 * s["provisioner_busy"], "{:.0f} %"
            ),
        ),
        row("queue: most waiting at once", lambda s: str(s["queue_max_waiting"])),
        row("queue: most in flight (limit)", lambda s: f"{s['queue_max_in_flight']}"),
        row(
            "queue: saw their place in line", lambda s: str(s["queue_students_waited"])
        ),
        row(
            "  place-in-line updates they received",
            lambda s: (
                str(s["queue_position_updates"]) if s["queue_students_waited"] else "-"
            ),
        ),
        row(
            "  highest place shown", lambda s: str(s["queue_first_position_max"] or "-")
        ),
        row(
            "queue: entered the line (hub log)",
            lambda s: str(s["queue_entered_line"]) if s["queue_entered_line"] else "-",
        ),
        row(
            "  overtaken before entering (>1 s)",
            lambda s: str(s["queue_entered_late"]) if s["queue_entered_line"] else "-",
        ),
        row(
            "  overtaken in the line",
            lambda s: (
                str(s["queue_served_out_of_line"]) if s["queue_entered_line"] else "-"
            ),
        ),
        row(
            "queue wait metric: n / mean",
            lambda s: (
                f"{s['queue_wait_metric_count']} / {fmt(s['queue_wait_metric_mean'], '{:.0f} s')}"
                if s["queue_wait_metric_count"]
                else "-"
            ),
        ),
        row(
            "queue wait metric: p50 / p95 (buckets)",
            lambda s: (
                f"{fmt(s['queue_wait_metric_p50'], '{:.0f}')} / {fmt(s['queue_wait_metric_p95'], '{:.0f} s')}"
                if s["queue_wait_metric_count"]
                else "-"
            ),
        ),
        row(
            "queue after the burst: in flight / waiting",
            lambda s: (
                f"{s['queue_final_in_flight']} / {s['queue_final_waiting']}"
                if s["queue_final_in_flight"] is not None
                else "-"
            ),
        ),
        row("hub CPU, total", lambda s: fmt(s["hub_cpu"], "{:.1f} s")),
        row(
            "hub CPU per ready server",
            lambda s: fmt(s["hub_cpu_per_ready"], "{:.3f} s"),
        ),
        row(
            "  hub CPU, busiest 5 s",
            lambda s: fmt(s["hub_cpu_peak"] and 100 * s["hub_cpu_peak"], "{:.0f} %"),
        ),
        row(
            "  hub event loop stalls >= 1 s (n / sum / max)",
            lambda s: f"{s['hub_loop_stalls']} / {fmt(s['hub_loop_stall_seconds'], '{:.0f}')} / {fmt(s['hub_loop_stall_max'], '{:.1f} s')}",
        ),
        row(
            "  slowest GET /hub/metrics",
            lambda s: fmt(s["metrics_request_max"], "{:.2f} s"),
        ),
        *(
            [
                row(
                    "  slowest GET spawn-queue API",
                    lambda s: fmt(s["queue_api_request_max"], "{:.2f} s"),
                )
            ]
            if args.queue_api_interval
            else []
        ),
        row(
            "proxy / stand-in / client CPU",
            lambda s: f"{fmt(s['proxy_cpu'], '{:.0f}')} / {fmt(s['standin_cpu'], '{:.0f}')} / {fmt(s['client_cpu'], '{:.0f}')} s",
        ),
        *(
            [
                row(
                    "  control plane CPU (etcd, apiserver, scheduler, controllers)",
                    lambda s: fmt(s["control_plane_cpu"], "{:.0f} s"),
                )
            ]
            if args.kube == "real"
            else []
        ),
        row(
            "Kubernetes API requests (per ready)",
            lambda s: f"{s['k8s_requests']} ({fmt(s['k8s_requests_per_ready'], '{:.1f}')})",
        ),
        row(
            "hub log: errors / warnings / tracebacks",
            lambda s: f"{s['hub_log_errors']} / {s['hub_log_warnings']} / {s['hub_tracebacks']}",
        ),
        row("burst phase wall time", lambda s: fmt(s["burst_seconds"], "{:.0f} s")),
        row(
            "prepare before the burst (no latency)",
            lambda s: fmt(s.get("prepare_seconds"), "{:.0f} s"),
        ),
        row(
            "machine load (1-min) before / after",
            lambda s: f"{fmt(s['load'][0], '{:.1f}')} / {fmt(s['load'][1], '{:.1f}')}",
        ),
    ]
    head = ["scenario"] + [
        (
            f"{n} (Q={summaries[n]['_queue_limit']})"
            if n == "queue"
            else f"{n} (L={summaries[n]['_hub_limit']})" if n == "hub-429" else n
        )
        for n in names
    ]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))
        )
        for r in [head] + rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def header(args) -> str:
    try:
        cpu_model = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu_model = platform.processor() or "?"
    import jupyterhub
    import kubespawner

    bound = args.students * args.provision_seconds / args.provision_parallel
    return "\n".join(
        [
            f"class-start burst, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
            f"machine: {cpu_model}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB;"
            f" Python {platform.python_version()}, JupyterHub {jupyterhub.__version__}, KubeSpawner {kubespawner.__version__}",
            f"students: {args.students} first spawns, arrivals {args.arrivals} over {args.window:g} s (seed {args.seed}),"
            f" each through the REST API with their own token, then the progress stream",
            (
                "Kubernetes: the stand-in"
                if args.kube == "standin"
                else "Kubernetes: a real control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager"
                " of make k8s-binaries) with the process kubelet and provisioner as its node; API requests counted"
                " are all of kube-apiserver's, also the scheduler's, the controllers' and the node's"
            ),
            f"latency model (node side): provisioner {args.provision_parallel} volumes at a time, {args.provision_seconds:g} s each"
            f" (FIFO beyond that); image pull {args.image_pull_seconds:g} s (once, on the one node); light singleuser servers;"
            + (
                " a real lesson repo (file://), cloned by each pod's lesson-sync init container"
                if getattr(args, "lessons", False)
                else " no lesson repos"
            ),
            f"hub: ClassroomSpawner (plain KubeSpawner in 'kubespawner'), start_timeout {args.start_timeout:g} s, http_timeout {args.http_timeout:g} s,"
            f" consecutive_failure_limit {args.consecutive_failure_limit}, slow_spawn_timeout 10 s (default);"
            f" 429'd students retry after Retry-After (JupyterHub: 30-60 s) for up to {args.give_up:g} s",
            f"physical bound N*T/P = {args.students}*{args.provision_seconds:g}/{args.provision_parallel} = {bound:.0f} s",
        ]
        + [f"extra hub config: {line}" for line in getattr(args, "hub_config", [])]
    )


# -- main -------------------------------------------------------------------------------


def print_report(args, head: str, results: dict, summaries: dict) -> None:
    print()
    print(head)
    print()
    print(table(args, summaries))
    for name, s in summaries.items():
        notes = []
        if s["failure_messages"]:
            notes.append(
                "failures: " + "; ".join(f"{c}x {m}" for m, c in s["failure_messages"])
            )
        hub_log = results[name].get("hub_log", {})
        if hub_log.get("top_errors"):
            notes.append(
                "hub errors: "
                + "; ".join(f"{c}x {m}" for m, c in hub_log["top_errors"][:4])
            )
        if s["spawn_duration_count"]:
            notes.append(
                "jupyterhub_server_spawn_duration_seconds counts: "
                + ", ".join(
                    f"{k} {v}" for k, v in sorted(s["spawn_duration_count"].items())
                )
            )
        if notes:
            print(f"\n[{name}]")
            for note in notes:
                print("  " + note)


def summarise_all(args, results: dict) -> dict:
    summaries = {}
    for name, result in results.items():
        summary = summarise(args, result)
        summary["_queue_limit"] = result["queue_limit"]
        summary["_hub_limit"] = result["hub_limit"]
        summaries[name] = summary
    return summaries


def ready_curve(result: dict) -> list[float]:
    """Seconds after the burst's start at which each server became ready, sorted."""
    t0 = result.get("t0")
    if t0 is None:
        return []
    return sorted(
        s["ready"] - t0
        for s in result["students"]
        if s["outcome"] == "ready" and s["ready"] is not None
    )


def write_plot(args, results: dict, path: str) -> None:
    """Servers ready over time per scenario (a step line each), the students who
    had asked by then, and the physical bound, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, ax = pyplot.subplots(figsize=(9, 5.5), dpi=110)
    for name, result in results.items():
        curve = ready_curve(result)
        ax.step(
            [0.0, *curve],
            range(len(curve) + 1),
            where="post",
            label=f"{name} ({len(curve)} ready)",
        )
    first = next(iter(results.values()))
    asked = sorted(s["offset"] for s in first["students"])
    ax.step(
        [0.0, *asked],
        range(len(asked) + 1),
        where="post",
        color="grey",
        linestyle=":",
        label="students who had asked",
    )
    bound = args.students * args.provision_seconds / args.provision_parallel
    ax.axvline(bound, color="black", linestyle="--", linewidth=0.8)
    ax.text(bound, 0, f" N*T/P = {bound:.0f} s", rotation=90, va="bottom", fontsize=8)
    ax.set_xlabel("seconds since the first student could ask")
    ax.set_ylabel("servers ready")
    ax.set_title(
        f"{args.students} first spawns over {args.window:g} s, P = {args.provision_parallel},"
        f" T = {args.provision_seconds:g} s"
        + (", with lessons" if args.lessons else "")
    )
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def report_from_json(path: str) -> int:
    """Print the table again from a ``--json`` file (with this version's summary)."""
    with open(path) as f:
        saved = json.load(f)
    args = argparse.Namespace(**saved["args"])
    print_report(
        args, saved["header"], saved["results"], summarise_all(args, saved["results"])
    )
    return 0


async def main_async(args) -> int:
    scenarios = scenarios_of(args)
    chosen = [scenarios[name] for name in args.scenarios]
    root = args.workdir or tempfile.mkdtemp(prefix="class-start-burst-")
    os.makedirs(root, exist_ok=True)
    head = header(args)
    print(head, flush=True)
    print(f"work directory (logs): {root}", flush=True)
    results = {}
    started = time.monotonic()
    try:
        for scenario in chosen:
            t = time.monotonic()
            result = await run_scenario(args, scenario, root)
            result["scenario_seconds"] = round(time.monotonic() - t, 1)
            results[scenario.name] = result
            summary = summarise(args, result)
            print(
                f"  done in {result['scenario_seconds']:.0f}s: {summary['ready']} ready, "
                f"{summary['failed']} failed",
                flush=True,
            )
    finally:
        summaries = summarise_all(args, results)
        if summaries:
            print_report(args, head, results, summaries)
            print(f"\ntotal run time {time.monotonic() - started:.0f} s")
        if args.json and results:
            with open(args.json, "w") as f:
                json.dump(
                    {
                        "header": head,
                        "args": vars(args),
                        "summaries": summaries,
                        "results": results,
                    },
                    f,
                    indent=1,
                    default=str,
                )
            print(f"JSON written to {args.json}")
        plot = args.plot or (
            os.path.splitext(args.json)[0] + ".png" if args.json else None
        )
        if plot and results:
            write_plot(args, results, plot)
            print(f"plot written to {plot}")
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--students", type=int, default=200, help="students in the lecture (N)"
    )
    p.add_argument(
        "--window", type=float, default=60, help="seconds over which they arrive (W)"
    )
    p.add_argument(
        "--arrivals",
        choices=("uniform", "poisson", "even"),
        default="uniform",
        help="uniform: random times in the window; poisson: exponential gaps of mean W/N; even: evenly spaced",
    )
    p.add_argument(
        "--seed", type=int, default=1, help="seed for arrival times and the stand-in"
    )
    p.add_argument(
        "--kube",
        choices=("standin", "real"),
        default="standin",
        help="standin: the package's Kubernetes stand-in; real: a real control plane"
        " (make k8s-binaries, docs/realkube.md) with the same process kubelet and"
        " provisioner as its node",
    )
    p.add_argument(
        "--provision-parallel",
        type=int,
        default=10,
        help="volumes the provisioner creates at once (P)",
    )
    p.add_argument(
        "--provision-seconds", type=float, default=5, help="seconds per volume (T)"
    )
    p.add_argument(
        "--image-pull-seconds",
        type=float,
        default=2,
        help="seconds to pull the image onto the node (once)",
    )
    p.add_argument(
        "--queue-limit",
        type=int,
        default=None,
        help="first_spawn_limit Q in the queue scenario (default 2*P)",
    )
    p.add_argument(
        "--hub-limit",
        type=int,
        default=64,
        help="concurrent_spawn_limit L in hub-429 (Z2JH's default 64)",
    )
    p.add_argument(
        "--start-timeout",
        type=float,
        default=300,
        help="Spawner.start_timeout (Z2JH: 300)",
    )
    p.add_argument(
        "--http-timeout", type=float, default=30, help="Spawner.http_timeout"
    )
    p.add_argument(
        "--consecutive-failure-limit",
        type=int,
        default=0,
        help="Spawner.consecutive_failure_limit (JupyterHub 0 = off; Z2JH sets 5, and the hub then exits)",
    )
    p.add_argument(
        "--give-up",
        type=float,
        default=600,
        help="a 429'd student stops retrying this long after the first request",
    )
    p.add_argument(
        "--max-posts",
        type=int,
        default=50,
        help="most spawn requests one student sends",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="hard cap in seconds on one burst (default: computed)",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, from: " + ", ".join(SCENARIOS),
    )
    p.add_argument(
        "--lessons",
        action="store_true",
        help="the course has a real lesson repository: every pod runs the lesson sync"
        " (an init container that clones it); plain KubeSpawner has none",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="servers ready over time, one line per scenario (default with --json:"
        " next to it, same name, .png)",
    )
    p.add_argument(
        "--no-proxy-check",
        dest="check_proxy",
        action="store_false",
        help="skip the request through the proxy to each ready server",
    )
    p.add_argument(
        "--sample-interval",
        type=float,
        default=1.0,
        help="seconds between samples of the provisioner, the queue gauges (/hub/metrics) and hub CPU",
    )
    p.add_argument(
        "--queue-api-interval",
        type=float,
        default=0,
        help="also poll GET /hub/api/classroom/spawn-queue this often during the burst (0: only after it)",
    )
    p.add_argument(
        "--hub-log-level",
        default="INFO",
        help="the hub's log level (DEBUG costs hub CPU)",
    )
    p.add_argument(
        "--json", help="write all figures and per-student records to this file"
    )
    p.add_argument(
        "--hub-config",
        action="append",
        default=[],
        metavar="LINE",
        help="a line of jupyterhub_config.py added in every scenario"
        " (e.g. 'c.KubeSpawner.k8s_api_request_timeout = 10'); repeatable",
    )
    p.add_argument(
        "--report",
        metavar="JSON",
        help="only print the table again from an earlier --json file (given alone)",
    )
    p.add_argument(
        "--workdir", help="keep configs and logs here (default: a temporary directory)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary work directory"
    )
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    if not 1 <= args.students <= 5000:
        p.error("--students must be between 1 and 5000")
    if args.provision_parallel < 1:
        p.error("--provision-parallel must be at least 1")
    if args.queue_limit is None:
        args.queue_limit = 2 * args.provision_parallel
    if args.queue_limit < 1:
        p.error("--queue-limit must be at least 1 (the queue scenario needs a queue)")
    if args.hub_limit < 1:
        p.error("--hub-limit must be at least 1")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--report"]:
        if len(argv) != 2:
            print("usage: class_start_burst.py --report RESULTS.json", file=sys.stderr)
            return 2
        return report_from_json(argv[1])
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )

    async def runner():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        signals = []

        def interrupted(signum):
            # the first Ctrl-C or SIGTERM cancels the run, so that every `async with`
            # stops its hub, proxy and stand-in; later ones must not cut that short
            signals.append(signum)
            if len(signals) == 1:
                # cancelled requests of the students make tornado log noise; it's expected
                logging.getLogger("tornado.application").setLevel(logging.CRITICAL)
                print(
                    "\nstopping: the hub, the proxy and the stand-in...",
                    file=sys.stderr,
                )
                task.cancel()
            else:
                print("still stopping (at most a minute or two)...", file=sys.stderr)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupted, signum)
        return await main_async(args)

    try:
        return asyncio.run(runner())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            "\ninterrupted; the hub, the proxy and the stand-in were stopped",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
