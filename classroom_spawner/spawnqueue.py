"""A FIFO queue in front of expensive spawns: at most N run at once, the rest wait in line.

Pure asyncio, no JupyterHub: the spawner takes a :class:`Ticket` before its
expensive work and gives it back when that work ends, however it ends.

Design points:

- **FIFO with cancellation.** Waiters are served strictly in arrival order; a
  waiter that is cancelled (the user or an admin stops the spawn, the hub shuts
  down) leaves the line and never holds a slot, even if the slot was handed to
  it in the same instant.
- **Cheap positions.** Each ticket has a sequence number; a waiter's place is
  its distance from the head of the line minus the waiters ahead of it that
  left early (a short sorted list). Hundreds of progress streams asking once a
  second cost a few bisections each, not a scan of the line.
- **Honest estimates.** The expected wait is the place in line divided by the
  rate at which slots were recently freed, measured, not assumed. With no
  measurement yet, there is no estimate (None), rather than a made-up one.
- **No leaks.** A slot is released exactly once, whether by ``release()``, by
  leaving an ``async with``, or by cancellation while waiting.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Ticket:
    """One spawn's place in the queue. Granted tickets hold a slot until released."""

    queue: SpawnQueue
    seq: int
    key: str
    enqueued_at: float
    granted_at: float | None = None
    released: bool = False
    _future: asyncio.Future | None = field(default=None, repr=False)

    @property
    def granted(self) -> bool:
        return self.granted_at is not None

    @property
    def waiting(self) -> bool:
        return not self.granted and not self.released

    @property
    def position(self) -> int:
        """1 = next in line; 0 once granted (or gone)."""
        return self.queue.position(self)

    @property
    def waited(self) -> float:
        """Seconds spent waiting so far (or in total, once granted)."""
        end = self.granted_at if self.granted_at is not None else time.monotonic()
        return end - self.enqueued_at

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until granted. On timeout or cancellation the ticket leaves the line."""
        if self.granted:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except BaseException:
            self.queue._abandon(self)
            raise

    async def wait_granted(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the slot; True once granted.

        Unlike :meth:`wait`, running out of time keeps the place in line. Each
        waiter waits on its own ticket, so the line moving wakes nobody but the
        one who got the slot.
        """
        if self._future is not None and not self._future.done():
            await asyncio.wait({self._future}, timeout=timeout)
        return self.granted and not self.released

    def release(self) -> None:
        """Give the slot back (or leave the line). Safe to call more than once."""
        self.queue._abandon(self)

    async def __aenter__(self) -> Ticket:
        await self.wait()
        return self

    async def __aexit__(self, *exc) -> None:
        self.release()


class SpawnQueue:
    """At most ``limit`` holders at a time; everyone else waits in FIFO order."""

    def __init__(
        self,
        limit: int,
        *,
        rate_window: int = 20,
        on_change: Callable[[SpawnQueue], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if limit < 1:
            raise ValueError(f"a spawn queue needs at least one slot, not {limit}")
        self.limit = limit
        self._clock = clock
        self._seq = itertools.count(1)
        self._waiting: collections.OrderedDict[int, Ticket] = collections.OrderedDict()
        # sequence numbers of tickets that left the line early, not yet passed by the head
        self._left_early: list[int] = []
        self._holders: dict[int, Ticket] = {}
        self._releases: collections.deque[float] = collections.deque(
            maxlen=max(2, rate_window)
        )
        self._on_change = on_change
        self.granted_total = 0
        self.abandoned_total = 0

    # -- state ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._holders)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def waiters(self) -> list[Ticket]:
        """Tickets in line, first first."""
        return list(self._waiting.values())

    def holders(self) -> list[Ticket]:
        return list(self._holders.values())

    def position(self, ticket: Ticket) -> int:
        if ticket.seq not in self._waiting:
            return 0
        head = next(iter(self._waiting))
        left_between = bisect.bisect_left(
            self._left_early, ticket.seq
        ) - bisect.bisect_left(self._left_early, head)
        return ticket.seq - head - left_between + 1

    def release_rate(self) -> float | None:
        """Slots freed per second, over the last few releases; None until measured."""
        if len(self._releases) < 2:
            return None
        span = self._releases[-1] - self._releases[0]
        if span <= 0:
            return None
        return (len(self._releases) - 1) / span

    def estimate_wait(self, position: int) -> float | None:
        """Seconds until ``position`` gets a slot at the recent rate, or None."""
        rate = self.release_rate()
        if rate is None or position <= 0:
            return None if position > 0 else 0.0
        return position / rate

    # -- entering and leaving ---------------------------------------------------------

    def enter(self, key: str = "") -> Ticket:
        """Take a ticket. It is granted at once if a slot is free and nobody waits."""
        ticket = Ticket(self, next(self._seq), key, self._clock())
        if self._slot_free() and not self._waiting:
            self._grant(ticket)
        else:
            ticket._future = asyncio.get_running_loop().create_future()
            self._waiting[ticket.seq] = ticket
        self._notify()
        return ticket

    def _slot_free(self) -> bool:
        return len(self._holders) < self.limit

    def _grant(self, ticket: Ticket) -> None:
        ticket.granted_at = self._clock()
        self._holders[ticket.seq] = ticket
        self.granted_total += 1
        if ticket._future is not None and not ticket._future.done():
            ticket._future.set_result(None)

    def _abandon(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        if ticket.seq in self._holders:
            del self._holders[ticket.seq]
            self._releases.append(self._clock())
        elif ticket.seq in self._waiting:
            head = next(iter(self._waiting))
            del self._waiting[ticket.seq]
            self.abandoned_total += 1
            if ticket.seq != head:
                bisect.insort(self._left_early, ticket.seq)
            if ticket._future is not None and not ticket._future.done():
                ticket._future.cancel()
        self._fill()
        self._notify()

    def resize(self, limit: int) -> None:
        """Change the number of slots; a larger limit lets the next in line in at once."""
        if limit < 1:
            raise ValueError(f"a spawn queue needs at least one slot, not {limit}")
        self.limit = limit
        self._fill()
        self._notify()

    def _fill(self) -> None:
        while self._waiting and self._slot_free():
            _, ticket = self._waiting.popitem(last=False)
            self._grant(ticket)
        # forget early leavers the head has passed
        if self._waiting:
            head = next(iter(self._waiting))
            cut = bisect.bisect_left(self._left_early, head)
            if cut:
                del self._left_early[:cut]
        else:
            self._left_early.clear()

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change(self)

    def snapshot(self) -> dict:
        """The queue's state, for admins and metrics."""
        now = self._clock()
        rate = self.release_rate()
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "release_rate_per_minute": None if rate is None else round(rate * 60, 2),
            "holders": [
                {"key": t.key, "running_seconds": round(now - t.granted_at, 1)}
                for t in self.holders()
            ],
            "waiters": [
                {
                    "key": t.key,
                    "position": i,
                    "waiting_seconds": round(now - t.enqueued_at, 1),
                    "estimated_wait_seconds": _round(self.estimate_wait(i)),
                }
                for i, t in enumerate(self.waiters(), start=1)
            ],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# -- one spawn's way through the queues it needs ---------------------------------------


class AdmissionTimeout(Exception):
    """A spawn waited longer than its deadline allows without getting every slot."""

    def __init__(self, waited: float):
        super().__init__(f"no slot after {waited:.0f} s in line")
        self.waited = waited


@dataclass(frozen=True)
class Need:
    """One queue a spawn must pass: its name (for logs and metrics), the queue, and
    what the spawn waits for, in the words of the spawn page ("a new server")."""

    name: str
    queue: SpawnQueue
    what: str


class Admission:
    """One spawn's way through every queue it needs, in order, under one deadline.

    ``take()`` waits for a slot in each queue in turn and yields progress events
    on the way (the place in line with an estimate, then "your turn"); the
    events are also kept for :meth:`follow`, so a spawn page that opens late
    still sees where the spawn is. Once every slot is held a single safety
    timer is armed: the slots go back after ``hold_for`` seconds whatever
    happens to the spawn. ``release()`` gives everything back (slots held and
    places in line) and can be called any number of times.

    If ``take()`` ends any other way than with every slot held (the deadline
    passed, the task was cancelled, the generator was closed early, an
    exception), nothing is held afterwards.
    """

    def __init__(
        self,
        needs: list[Need],
        key: str,
        *,
        deadline: float,
        hold_for: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.needs = list(needs)
        self.key = key
        self.deadline = deadline
        self.hold_for = hold_for
        self._clock = clock
        self._tickets: list[Ticket] = []
        self._timer: asyncio.TimerHandle | None = None
        self._events: list[dict] = []
        self._changed = asyncio.Event()
        self._over = False
        #: seconds waited in each queue (by name), once its slot came
        self.waited: dict[str, float] = {}
        self.admitted = False

    @property
    def over(self) -> bool:
        """Did take() end (admitted, or given up), or was the admission released?"""
        return self._over

    def waiting_in(self) -> tuple[Need, int] | None:
        """The queue this spawn waits in now and its place there (1 = next), if any."""
        for need, ticket in zip(self.needs, self._tickets):
            if ticket.waiting:
                return need, ticket.position
        return None

    async def take(self):
        """Wait for every slot; yield a progress event whenever the page should change.

        Raises :class:`AdmissionTimeout` when the deadline passes first.
        """
        if self.admitted or self._over:
            raise RuntimeError("an admission can be taken once")
        waited = False
        try:
            for need in self.needs:
                ticket = need.queue.enter(self.key)
                self._tickets.append(ticket)
                last = None
                while not ticket.granted:
                    remaining = self.deadline - self._clock()
                    if remaining <= 0:
                        raise AdmissionTimeout(ticket.waited)
                    position = ticket.position
                    message = describe_wait(
                        position,
                        need.queue.limit,
                        need.queue.estimate_wait(position),
                        what=need.what,
                    )
                    if message != last:
                        last, waited = message, True
                        yield self._record({"progress": 2, "message": message})
                    interval = update_interval(need.queue.waiting)
                    await ticket.wait_granted(min(interval, remaining))
                    if ticket.released:  # released from outside while waiting
                        raise asyncio.CancelledError()
                self.waited[need.name] = ticket.waited
            self.admitted = True
            if self.needs:
                self._timer = asyncio.get_running_loop().call_later(
                    self.hold_for, self.release
                )
            if waited:
                yield self._record({"progress": 3, "message": describe_wait(0, 1, 0)})
        finally:
            if not self.admitted:
                self.release()
            self._over = True
            self._changed.set()

    def _record(self, event: dict) -> dict:
        self._events.append(event)
        self._changed.set()
        return event

    async def follow(self):
        """The events ``take()`` yields, from the first, until it ended."""
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if self._over:
                return
            self._changed.clear()
            await self._changed.wait()

    def release(self) -> None:
        """Give back every slot and place in line. Safe to call more than once."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for ticket in self._tickets:
            ticket.release()
        if not self.admitted:
            self._over = True
        self._changed.set()

    @property
    def held(self) -> bool:
        """Are slots held right now?"""
        return any(t.granted and not t.released for t in self._tickets)


# -- named queues shared by every spawner in the hub -----------------------------------

_QUEUES: dict[str, SpawnQueue] = {}


def shared_queue(name: str, limit: int, **kwargs) -> SpawnQueue:
    """The hub-wide queue called ``name``; made on first use, resized if the limit changed."""
    queue = _QUEUES.get(name)
    if queue is None:
        queue = _QUEUES[name] = SpawnQueue(limit, **kwargs)
    elif queue.limit != limit:
        queue.resize(limit)
    return queue


def shared_queues() -> dict[str, SpawnQueue]:
    return dict(_QUEUES)


def update_interval(waiting: int) -> float:
    """Seconds between place-in-line updates on each spawn page.

    Every slot that frees up moves everyone behind it, so updating each page
    at every move costs the hub (lines x moves) events. One a second is plenty
    for a short line; a long line, which moves by less per second relative to
    its length, is updated less often (10 s for 1000 waiting).
    """
    return min(10.0, max(1.0, waiting / 100))


def describe_wait(
    position: int, limit: int, estimate: float | None, *, what: str = "a new server"
) -> str:
    """What a student reads on the spawn page while waiting."""
    if position <= 0:
        return "It's your turn: setting up your server."
    place = "next in line" if position == 1 else f"number {position} in line"
    if estimate is None:
        eta = "Working out how long the wait will be..."
    elif estimate < 60:
        eta = "Expected wait: less than a minute."
    else:
        minutes = round(estimate / 60)
        eta = f"Expected wait: about {minutes} minute{'s' if minutes != 1 else ''}."
    return (
        f"Many people are starting at once, so servers are set up {limit} at a time."
        f" You are {place} for {what}. {eta} Keep this page open; it continues by itself."
    )
