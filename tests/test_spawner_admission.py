"""ClassroomSpawner's way through the spawn queues, without a hub or a cluster:
the spawner's own pre-spawn hook and post-stop hook against the hub-wide queues."""

import asyncio

import pytest
from traitlets.config import Config

from classroom_spawner.offline import build_spawner
from classroom_spawner.spawnqueue import shared_queue, shared_queues


@pytest.fixture
def config(write_file):
    courses = write_file(
        "courses.yaml",
        "courses:\n  - id: c1\n    title: C1\n    students: [ann, ben]\n",
    )
    c = Config()
    c.ClassroomRoster.course_files = [courses]
    c.ClassroomSpawner.first_spawn_limit = 1
    c.ClassroomSpawner.spawn_limit = 1
    # a slot is held at most start_timeout + http_timeout + 60 s: here 1 s
    c.KubeSpawner.start_timeout = -59
    c.KubeSpawner.http_timeout = 0
    # the API does not answer: every spawn counts as a first spawn
    c.KubeSpawner.k8s_api_request_timeout = 1
    return c


@pytest.fixture(autouse=True)
def empty_queues():
    yield
    for queue in shared_queues().values():
        assert queue.in_flight == 0 and queue.waiting == 0, queue.snapshot()


async def test_the_first_spawn_slot_is_kept_while_the_spawn_waits_for_its_second_slot(
    config,
):
    spawner = await build_spawner(config, "ann")
    # somebody else holds the only slot for any spawn
    other = shared_queue("spawn", 1).enter("somebody")
    hook = asyncio.create_task(spawner.run_pre_spawn_hook())
    await asyncio.sleep(2.5)  # longer than a slot may be held once every slot is held
    first = shared_queue("first-spawn", 1)
    assert [t.key for t in first.holders()] == [
        "ann"
    ], "the first-spawn slot was given away"
    assert not hook.done()
    other.release()
    await asyncio.wait_for(hook, 5)
    assert [t.key for t in first.holders()] == ["ann"]
    assert [t.key for t in shared_queue("spawn", 1).holders()] == ["ann"]
    spawner.run_post_stop_hook()  # the spawn ended
    assert first.in_flight == 0


async def test_a_stopped_spawn_leaves_the_line(config):
    spawner = await build_spawner(config, "ben")
    other = shared_queue("first-spawn", 1).enter("somebody")
    hook = asyncio.create_task(spawner.run_pre_spawn_hook())
    await asyncio.sleep(1.5)
    assert [t.key for t in shared_queue("first-spawn", 1).waiters()] == ["ben"]
    progress = spawner.progress()
    event = await asyncio.wait_for(progress.__anext__(), 5)
    assert "You are next in line for a new server" in event["message"]
    await progress.aclose()
    spawner.run_post_stop_hook()  # JupyterHub stops a pending spawn: the hook is cancelled
    hook.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hook
    other.release()
