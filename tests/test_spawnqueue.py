"""The first-spawn queue on its own: limits, order, cancellation, no leaks."""

import asyncio
import random

import pytest

from classroom_spawner.spawnqueue import SpawnQueue, update_interval


class Tracker:
    """Counts holders at every moment, and the order they got in."""

    def __init__(self):
        self.now = 0
        self.peak = 0
        self.order = []

    def enter(self, key):
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.order.append(key)

    def leave(self):
        self.now -= 1


async def test_hundreds_of_spawns_never_exceed_the_limit_and_go_in_order():
    queue = SpawnQueue(limit=7)
    tracker = Tracker()
    rng = random.Random(4)

    async def spawn(i):
        async with queue.enter(f"user{i}"):
            tracker.enter(i)
            await asyncio.sleep(rng.random() * 0.01)
            tracker.leave()

    tasks = [asyncio.create_task(spawn(i)) for i in range(500)]
    await asyncio.gather(*tasks)
    assert tracker.peak == 7
    assert tracker.order == list(range(500))  # FIFO
    assert queue.in_flight == 0 and queue.waiting == 0
    assert queue.granted_total == 500


async def test_positions_count_down_to_zero():
    queue = SpawnQueue(limit=1)
    holder = queue.enter("first")
    assert holder.granted and holder.position == 0
    tickets = [queue.enter(f"u{i}") for i in range(5)]
    assert [t.position for t in tickets] == [1, 2, 3, 4, 5]
    seen = []
    last = tickets[-1]
    waiter = asyncio.create_task(last.wait())
    holder.release()
    for t in tickets[:-1]:
        seen.append(last.position)
        await t.wait()
        t.release()
    await waiter
    assert seen == [4, 3, 2, 1]
    assert last.granted and last.position == 0
    last.release()
    assert queue.in_flight == 0


async def test_cancelled_waiters_leave_the_line_and_others_move_up():
    queue = SpawnQueue(limit=1)
    holder = queue.enter("holder")
    tickets = [queue.enter(f"u{i}") for i in range(6)]
    waits = [asyncio.create_task(t.wait()) for t in tickets]
    await asyncio.sleep(0)
    waits[1].cancel()
    waits[3].cancel()
    await asyncio.sleep(0)
    assert [t.position for t in tickets] == [1, 0, 2, 0, 3, 4]
    assert queue.waiting == 4
    holder.release()
    await waits[0]
    assert tickets[0].granted
    assert [t.position for t in tickets[2:]] == [1, 0, 2, 3]
    for i in (0, 2, 4, 5):
        tickets[i].release()
        if i != 5:
            nxt = {0: 2, 2: 4, 4: 5}[i]
            await waits[nxt]
    assert queue.in_flight == 0 and queue.waiting == 0
    assert queue.abandoned_total == 2


async def test_a_cancelled_spawn_never_holds_a_slot_even_if_granted_at_that_moment():
    queue = SpawnQueue(limit=1)
    holder = queue.enter("holder")
    ticket = queue.enter("late")
    waiter = asyncio.create_task(ticket.wait())
    await asyncio.sleep(0)
    holder.release()  # grants `ticket`, but its waiter has not run yet...
    waiter.cancel()  # ...and is cancelled before it does
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.in_flight == 0
    assert queue.enter("next").granted


async def test_a_wait_that_times_out_leaves_the_line():
    queue = SpawnQueue(limit=1)
    holder = queue.enter("holder")
    ticket = queue.enter("impatient")
    with pytest.raises(asyncio.TimeoutError):
        await ticket.wait(timeout=0.01)
    assert queue.waiting == 0 and ticket.position == 0
    holder.release()
    assert queue.in_flight == 0


@pytest.mark.parametrize("stage", ["waiting", "holding"])
async def test_exceptions_release_the_slot_at_every_stage(stage):
    queue = SpawnQueue(limit=2)
    blockers = [queue.enter("a"), queue.enter("b")] if stage == "waiting" else []

    async def spawn():
        async with queue.enter("c"):
            raise RuntimeError("provisioning failed")

    task = asyncio.create_task(spawn())
    await asyncio.sleep(0)
    if stage == "waiting":
        task.cancel()  # e.g. the hub shuts down while the spawn waits
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(RuntimeError):
            await task
    for b in blockers:
        b.release()
    assert queue.in_flight == 0 and queue.waiting == 0


async def test_release_twice_is_harmless():
    queue = SpawnQueue(limit=1)
    t = queue.enter("x")
    t.release()
    t.release()
    other = queue.enter("y")
    third = queue.enter("z")
    t.release()
    assert other.granted and not third.granted and queue.in_flight == 1


async def test_no_leak_after_thousands_of_spawns_with_every_ending():
    queue = SpawnQueue(limit=5)
    rng = random.Random(11)

    entered = []

    async def spawn(i):
        ticket = queue.enter(f"u{i}")
        entered.append(ticket)
        try:
            await ticket.wait(timeout=rng.choice([None, None, 0.001]))
            await asyncio.sleep(0)
            if i % 7 == 0:
                raise ValueError("spawn failed")
        finally:
            ticket.release()

    tasks = [asyncio.create_task(spawn(i)) for i in range(3000)]
    for i in range(0, 3000, 11):
        tasks[i].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert queue.in_flight == 0 and queue.waiting == 0
    assert queue._left_early == []
    # every ticket either got its slot or left the line; none is still counted
    assert queue.granted_total + queue.abandoned_total == len(entered)
    assert all(t.released for t in entered)


async def test_estimate_comes_from_measured_releases():
    now = [0.0]
    queue = SpawnQueue(limit=1, clock=lambda: now[0])
    first = queue.enter("a")
    waiting = [queue.enter(f"w{i}") for i in range(4)]
    assert queue.estimate_wait(1) is None  # nothing measured yet: no made-up number
    for ticket in [first] + waiting[:2]:
        now[0] += 10
        ticket.release()
    # released every 10 s: 0.1 per second; w2 holds the slot, w3 is next
    assert queue.release_rate() == pytest.approx(0.1)
    assert waiting[3].position == 1
    assert queue.estimate_wait(waiting[3].position) == pytest.approx(10)
    assert queue.estimate_wait(3) == pytest.approx(30)


async def test_wait_granted_wakes_when_the_slot_comes():
    queue = SpawnQueue(limit=1)
    holder = queue.enter("a")
    ticket = queue.enter("b")
    waiter = asyncio.create_task(ticket.wait_granted(30))
    await asyncio.sleep(0)
    holder.release()
    assert await asyncio.wait_for(waiter, 1) is True


async def test_wait_granted_keeps_the_place_on_timeout():
    queue = SpawnQueue(limit=1)
    queue.enter("a")
    ticket = queue.enter("b")
    assert await ticket.wait_granted(0.01) is False
    assert ticket.position == 1
    assert queue.waiting == 1


def test_update_interval_grows_with_the_line():
    assert update_interval(0) == 1
    assert update_interval(150) == pytest.approx(1.5)
    assert update_interval(5000) == 10


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="at least one slot"):
        SpawnQueue(limit=0)


async def test_a_larger_limit_lets_the_next_in_at_once_and_is_reported():
    seen = []
    queue = SpawnQueue(
        limit=1, on_change=lambda q: seen.append((len(q.holders()), len(q.waiters())))
    )
    tickets = [queue.enter(f"u{i}") for i in range(4)]
    seen.clear()
    queue.resize(3)
    assert [t.granted for t in tickets] == [True, True, True, False]
    assert seen == [(3, 1)]  # the gauges hear of it
    with pytest.raises(ValueError):
        queue.resize(0)


# -- Admission: one spawn's way through several queues ---------------------------------

from classroom_spawner.spawnqueue import Admission, AdmissionTimeout, Need  # noqa: E402


def needs(*queues):
    return [Need(f"q{i}", q, "a server") for i, q in enumerate(queues)]


async def drain(admission):
    return [event async for event in admission.take()]


async def test_admission_goes_through_two_queues_in_order_and_first_come_first_served():
    first, second = SpawnQueue(limit=1), SpawnQueue(limit=1)
    blocker = second.enter("blocker")  # the second queue is busy
    order = []

    async def spawn(name):
        admission = Admission(needs(first, second), name, deadline=1e12, hold_for=60)
        await drain(admission)
        order.append(name)
        return admission

    a = asyncio.create_task(spawn("a"))
    await asyncio.sleep(0.01)
    b = asyncio.create_task(spawn("b"))
    await asyncio.sleep(0.01)
    # a holds the first queue's slot and waits in the second; b waits in the first
    assert [t.key for t in first.holders()] == ["a"] and [
        t.key for t in first.waiters()
    ] == ["b"]
    assert [t.key for t in second.waiters()] == ["a"]
    blocker.release()
    admitted_a = await a
    assert order == ["a"] and admitted_a.admitted and admitted_a.held
    admitted_a.release()  # a's start ended
    admitted_b = await b
    assert order == ["a", "b"]
    admitted_b.release()
    assert (first.in_flight, first.waiting, second.in_flight, second.waiting) == (
        0,
        0,
        0,
        0,
    )


async def test_the_safety_timer_runs_only_once_every_slot_is_held():
    # the old per-queue timer released the first slot while the spawn still waited
    # for the second: here the spawn waits longer than hold_for in the second queue
    first, second = SpawnQueue(limit=1), SpawnQueue(limit=1)
    blocker = second.enter("blocker")
    admission = Admission(needs(first, second), "a", deadline=1e12, hold_for=0.2)
    task = asyncio.create_task(drain(admission))
    await asyncio.sleep(0.5)  # more than hold_for, still waiting for the second slot
    assert [t.key for t in first.holders()] == ["a"], "the first slot was given away"
    blocker.release()
    await task
    assert admission.held and first.in_flight == 1 and second.in_flight == 1
    await asyncio.sleep(0.5)  # now the timer runs: nothing is held past hold_for
    assert not admission.held
    assert (first.in_flight, second.in_flight) == (0, 0)


@pytest.mark.parametrize("where", ["waiting-first", "waiting-second", "between-events"])
async def test_a_cancelled_admission_holds_nothing_wherever_it_was(where):
    first, second = SpawnQueue(limit=1), SpawnQueue(limit=1)
    holders = []
    if where == "waiting-first":
        holders.append(first.enter("x"))
    holders.append(second.enter("y"))
    admission = Admission(needs(first, second), "a", deadline=1e12, hold_for=60)
    if where == "between-events":
        gen = admission.take()
        await gen.__anext__()  # the first place-in-line event
        await gen.aclose()  # the page went away and the spawn with it
    else:
        task = asyncio.create_task(drain(admission))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not admission.held and admission.over
    assert "a" not in [
        t.key for q in (first, second) for t in q.holders() + q.waiters()
    ]
    for ticket in holders:
        ticket.release()
    assert (first.in_flight, first.waiting, second.in_flight, second.waiting) == (
        0,
        0,
        0,
        0,
    )


async def test_release_from_outside_while_waiting_ends_the_wait():
    queue = SpawnQueue(limit=1)
    holder = queue.enter("x")
    admission = Admission(needs(queue), "a", deadline=1e12, hold_for=60)
    task = asyncio.create_task(drain(admission))
    await asyncio.sleep(0.05)
    admission.release()  # the spawn was stopped
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queue.waiting == 0
    holder.release()
    assert queue.in_flight == 0


async def test_the_deadline_ends_the_wait_with_nothing_held():
    first, second = SpawnQueue(limit=1), SpawnQueue(limit=1)
    blocker = second.enter("y")
    loop = asyncio.get_running_loop()
    admission = Admission(
        needs(first, second),
        "a",
        deadline=loop.time() + 0.3,
        hold_for=60,
        clock=loop.time,
    )
    with pytest.raises(AdmissionTimeout):
        await drain(admission)
    assert not admission.held and first.in_flight == 0 and second.waiting == 0
    blocker.release()


async def test_admission_events_say_the_place_then_your_turn_and_late_followers_see_them():
    queue = SpawnQueue(limit=1)
    ahead = [queue.enter(f"u{i}") for i in range(3)]  # one holder, two waiting
    admission = Admission(needs(queue), "a", deadline=1e12, hold_for=60)
    events = []

    async def consume():
        async for event in admission.take():
            events.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert "You are number 3 in line for a server" in events[-1]["message"]
    follower = asyncio.create_task(_collect(admission.follow()))  # a page opened late
    for ticket in ahead:
        ticket.release()
        await asyncio.sleep(0.01)
    await task
    assert events[-1] == {
        "progress": 3,
        "message": "It's your turn: setting up your server.",
    }
    assert [e["progress"] for e in events] == [2] * (len(events) - 1) + [3]
    assert await asyncio.wait_for(follower, 1) == events
    admission.release()


async def _collect(gen):
    return [e async for e in gen]


async def test_an_admission_that_needs_no_queue_is_admitted_at_once_and_quietly():
    admission = Admission([], "a", deadline=1e12, hold_for=60)
    assert await drain(admission) == []
    assert admission.admitted and not admission.held
    assert await _collect(admission.follow()) == []
