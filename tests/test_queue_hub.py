"""The first-spawn queue in a real JupyterHub on the Kubernetes stand-in: a lecture hall
starts at once, with a slow storage provisioner and a short start_timeout."""

import asyncio
import os
import re
import sys
import textwrap

import pytest
import pytest_asyncio

from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.kube import Faults, KubeletConfig, kube_process

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

STUDENTS = [f"student{i:02d}" for i in range(10)]
LATE = [f"late{i}" for i in range(5)]
RETURNING = [f"back{i}" for i in range(4)]
HOOK_FAILS = "hookfail"  # their pre_spawn_hook raises, after the queue gave them a slot
DROP_LINE = [
    f"drop{i}" for i in range(4)
]  # one of them leaves the course while in line
LIMIT = 2
PLACE = re.compile(r"You are (?:number (\d+) in line|next in line)")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("queue-hub")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def k8s(workdir):
    # a provisioner that makes one disk at a time, 1.5 s each: 10 first spawns
    # take at least 15 s, longer than the 8 s start_timeout below
    faults = Faults(provision_delay=1.5, provision_max_in_flight=1)
    async with kube_process(
        workdir / "k8s", faults=faults, kubelet=KubeletConfig(singleuser="light")
    ) as standin:
        yield standin


def course_text(students, seminar=DROP_LINE):
    return (
        "courses:\n"
        "  - id: lecture\n    title: Big Lecture\n    students: [%s]\n"
        "  - id: seminar\n    title: Seminar\n    students: [%s]\n"
    ) % (", ".join(students), ", ".join(seminar))


EVERYONE = STUDENTS + LATE + RETURNING + [HOOK_FAILS] + DROP_LINE


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(k8s, workdir):
    course_file = workdir / "courses.yaml"
    course_file.write_text(course_text(EVERYONE))
    config = textwrap.dedent(f"""
        from jupyterhub.auth import DummyAuthenticator
        from classroom_spawner.queue_api import SpawnQueueAPIMixin

        # any authenticator serves the queue's API with the mixin (docs/queue.md)
        class Authenticator(SpawnQueueAPIMixin, DummyAuthenticator):
            pass

        c.JupyterHub.authenticator_class = Authenticator
        c.Authenticator.allow_all = True
        c.Authenticator.admin_users = {{"prof"}}
        c.JupyterHub.spawner_class = "classroom"
        # the queue, not a 429, absorbs the burst
        c.JupyterHub.concurrent_spawn_limit = 0
        c.ClassroomRoster.course_files = [{str(course_file)!r}]
        c.ClassroomRoster.check_interval = 0
        c.ClassroomSpawner.first_spawn_limit = {LIMIT}
        c.KubeSpawner.namespace = "default"
        c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
        c.KubeSpawner.storage_capacity = "1Gi"
        # short: a queued spawn would time out if waiting in line counted
        c.KubeSpawner.start_timeout = 8
        c.KubeSpawner.http_timeout = 30
        c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}

        def pre_spawn_hook(spawner):
            if spawner.user.name == {HOOK_FAILS!r}:
                raise RuntimeError("the admin's pre_spawn_hook failed")

        c.Spawner.pre_spawn_hook = pre_spawn_hook
        """)
    async with HubProcess(
        config=config,
        workdir=workdir / "hub",
        env={"KUBECONFIG": k8s.kubeconfig_path},
        start_timeout=120,
    ) as hub:
        await hub.create_user("prof", admin=True)
        hub.tokens = {}
        for name in EVERYONE:
            await hub.create_user(name)
            hub.tokens[name] = await hub.user_token(name)
        hub.course_file = course_file
        yield hub


def places(events):
    """Queue positions shown in a progress stream, in order (1 for 'next in line')."""
    found = []
    for event in events:
        m = PLACE.search(event.get("message", ""))
        if m:
            found.append(int(m.group(1) or 1))
    return found


async def test_lecture_hall_burst_everyone_gets_a_server(hub):
    requests = [
        hub.api(
            "POST",
            f"users/{name}/server",
            json={},
            token=hub.tokens[name],
            raise_error=False,
        )
        for name in STUDENTS
    ]
    responses = await asyncio.gather(*requests)
    # nobody is told "429 Too many users, try again"
    assert [r.code for r in responses] == [202] * len(STUDENTS), [
        r.text for r in responses
    ]
    streams = await asyncio.gather(
        *(hub.progress(name, token=hub.tokens[name], timeout=300) for name in STUDENTS)
    )
    for name, events in zip(STUDENTS, streams):
        assert events[-1].get("ready") is True, (name, events[-3:])
        shown = places(events)
        # positions only ever count down
        assert shown == sorted(shown, reverse=True), (name, shown)
        assert not any(e.get("failed") for e in events), (name, events)
    # more students than slots: most waited, and their place counted down to 1
    waited = [places(events) for events in streams if places(events)]
    assert len(waited) >= len(STUDENTS) - LIMIT
    assert max(max(p) for p in waited) >= len(STUDENTS) - LIMIT - 1
    assert any(len(p) >= 3 and p[-1] == 1 for p in waited)
    assert any(
        "It's your turn" in e.get("message", "") for events in streams for e in events
    )
    for name in STUDENTS:
        user = (await hub.api("GET", f"users/{name}")).json()
        assert user["servers"][""]["ready"] is True
    log = hub.read_log()
    assert "did not start in 8 seconds" not in log
    assert "Too many users" not in log
    # who was a first spawn came from the hub's cache of volumes, not a GET per spawn
    assert "volume claim-student00 is missing (volume cache)" in log
    assert "Could not check for" not in log and "asking the API" not in log

    # afterwards the line is empty, and the metrics say what happened
    state = (await hub.api("GET", "classroom/spawn-queue")).json()["queues"][
        "first-spawn"
    ]
    assert state["limit"] == LIMIT
    assert state["waiting"] == 0 and state["in_flight"] == 0
    metrics = (await hub.api("GET", "../metrics")).text
    assert (
        f'classroom_spawn_queue_wait_seconds_count{{queue="first-spawn"}} {float(len(STUDENTS))}'
        in metrics
    )
    assert 'classroom_spawn_queue_length{queue="first-spawn"} 0.0' in metrics
    assert 'classroom_spawns_in_flight{queue="first-spawn"} 0.0' in metrics

    # and the command line reads the same from the running hub
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    proc = await asyncio.create_subprocess_exec(
        exe, "queue", "--hub-api-url", hub.api_url, "--token", hub.admin_token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    first, every = sorted(out.decode().splitlines())
    # nobody in line, and the rate at which first spawns finished
    assert re.fullmatch(
        rf"first-spawn: 0/{LIMIT} running, 0 waiting, about [\d.]+ finishing per minute",
        first,
    )
    # every start also went through the line of all starts (spawn_limit, default 64)
    assert re.fullmatch(
        r"spawn: 0/64 running, 0 waiting, about [\d.]+ finishing per minute", every
    ), every


async def test_returning_students_are_not_queued(hub):
    # their first start provisions their volumes (through the line)
    await asyncio.gather(*(hub.start_server(n, timeout=120) for n in RETURNING))
    for name in RETURNING:
        await hub.stop_server(name)
    responses = await asyncio.gather(
        *(
            hub.api("POST", f"users/{n}/server", json={}, token=hub.tokens[n])
            for n in RETURNING
        )
    )
    assert {r.code for r in responses} <= {201, 202}
    streams = await asyncio.gather(
        *(hub.progress(n, token=hub.tokens[n], timeout=120) for n in RETURNING)
    )
    for events in streams:
        assert events[-1].get("ready") is True
        assert places(events) == []
    for name in RETURNING:
        await hub.stop_server(name)


async def test_a_cancelled_queued_spawn_leaves_the_line(hub):
    # students who never started before: each spawn is a first spawn
    # all at once, so that the line is long whatever the machine's speed
    responses = await asyncio.gather(
        *(
            hub.api("POST", f"users/{n}/server", json={}, token=hub.tokens[n])
            for n in LATE
        )
    )
    assert [r.code for r in responses] == [202] * len(LATE)
    for _ in range(100):  # each takes its place once its volume check answers
        state = await _queue(hub)
        if state["waiting"] >= 2:
            break
        await asyncio.sleep(0.05)
    waiting = [w["user"] for w in state["waiters"]]
    assert len(waiting) >= 2, state
    # a student reading the queue sees only themself, with their real place in line
    last = waiting[-1]
    mine = await _queue(hub, token=hub.tokens[last])
    seen = [w["user"] for w in mine["waiters"]] + [h["user"] for h in mine["holders"]]
    assert seen == [last]
    # the count is the whole line's, and the position is the real one (not 1 of 1)
    assert mine["waiting"] >= 2, mine
    (entry,) = mine["waiters"]
    assert 1 < entry["position"] <= len(waiting), (state, mine)
    gone = waiting[0]
    r = await hub.api("DELETE", f"users/{gone}/server", raise_error=False)
    assert r.code in (202, 204)
    state = await _queue(hub)
    assert gone not in [w["user"] for w in state["waiters"]]
    for name in LATE:
        if name != gone:
            await hub.wait_for_server(name, timeout=120)
    user = (await hub.api("GET", f"users/{gone}")).json()
    assert not user["servers"]
    # the cancelled spawn holds no slot: the queue drains completely
    state = await _queue(hub)
    assert state["waiting"] == 0 and state["in_flight"] == 0


async def _queue(hub, token=None):
    r = await hub.api("GET", "classroom/spawn-queue", token=token)
    # (the queue appears with the first first spawn)
    empty = {"waiting": 0, "in_flight": 0, "waiters": [], "holders": []}
    return r.json()["queues"].get("first-spawn", empty)


async def test_a_spawn_that_fails_before_start_gives_its_slot_back(hub):
    # the queue grants the slot, then the admin's pre_spawn_hook raises: start()
    # never runs, yet the slot must come back at once (not after the watchdog)
    token = hub.tokens[HOOK_FAILS]
    for _ in range(300):  # whatever ran before has finished
        state = await _queue(hub)
        if state["in_flight"] == 0 and state["waiting"] == 0:
            break
        await asyncio.sleep(0.2)
    for attempt in range(2):
        r = await hub.api(
            "POST",
            f"users/{HOOK_FAILS}/server",
            json={},
            token=token,
            raise_error=False,
        )
        # (JupyterHub answers 202, or 201 when the spawn has already failed)
        assert r.code in (201, 202), (r.code, r.text)
        for _ in range(100):
            user = (await hub.api("GET", f"users/{HOOK_FAILS}")).json()
            if not user["pending"]:
                break
            await asyncio.sleep(0.1)
        assert not user["pending"] and not user["servers"], user
        state = await _queue(hub)
        assert state["in_flight"] == 0 and state["waiting"] == 0, (attempt, state)


async def test_a_student_dropped_from_their_course_while_in_line_is_told_so(
    hub, rewrite_file
):
    # the roster is checked before the line and again when the slot comes:
    # minutes may pass in between, and the registrar may drop someone
    responses = await asyncio.gather(
        *(
            hub.api(
                "POST",
                f"users/{n}/server",
                json={"profile": "seminar"},
                token=hub.tokens[n],
            )
            for n in DROP_LINE
        )
    )
    assert [r.code for r in responses] == [202] * len(DROP_LINE)
    for _ in range(100):
        state = await _queue(hub)
        if state["waiting"] >= 2:
            break
        await asyncio.sleep(0.05)
    dropped = state["waiters"][-1]["user"]
    # still in the lecture, but no longer in the seminar they asked for
    rewrite_file(
        hub.course_file, course_text(EVERYONE, [n for n in DROP_LINE if n != dropped])
    )
    try:
        events = await hub.progress(dropped, token=hub.tokens[dropped], timeout=120)
        assert events[-1].get("failed") is True, events[-3:]
        assert "profile 'seminar' is not available" in events[-1]["message"], events[-1]
        for name in DROP_LINE:
            if name != dropped:
                await hub.wait_for_server(name, timeout=120)
    finally:
        rewrite_file(hub.course_file, course_text(EVERYONE))
    user = (await hub.api("GET", f"users/{dropped}")).json()
    assert not user["servers"]
    state = await _queue(hub)
    assert state["waiting"] == 0 and state["in_flight"] == 0
    log = hub.read_log()
    assert "No such profile" not in log and "ValueError" not in log
