"""One pod's Kubernetes events from KubeSpawner's event reflector, cheaply.

KubeSpawner's ``events`` sorts every event the reflector holds for the namespace,
then keeps the pod's, and its ``progress`` asks once a second for every start whose
spawn page is open. After a lecture hall's spawns the reflector holds thousands of
events (about six per pod); with hundreds of starts in progress at once (returning
users, whom no queue holds back) that is millions of events looked at per second,
and the hub's event loop falls behind until KubeSpawner's API requests time out.

Here the events are grouped by pod once (and again at most every ``max_age``
seconds, when asked), shared by every spawner of the hub, so a spawner's question
costs a dictionary lookup. The order and the marker rule are KubeSpawner's.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

Event = Mapping[str, Any]


def _when(event: Event) -> Any:
    # the reflector's own order: the low-resolution lastTimestamp, or the
    # high-resolution eventTime where only that is set
    return event["lastTimestamp"] or event["eventTime"]


def by_pod(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events grouped by the name of their object, each group in time order."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        groups.setdefault(event["involvedObject"]["name"], []).append(event)
    for group in groups.values():
        group.sort(key=_when)  # stable: ties keep the reflector's order
    return groups


def after(events: list[Event], uid: str | None) -> list[Event]:
    """The events after the one with ``uid`` (the last one a previous start saw),
    or all of them when it is not among them."""
    if uid:
        for index in range(len(events) - 1, -1, -1):
            if events[index]["metadata"]["uid"] == uid:
                return events[index + 1 :]
    return list(events)


def pod_events(
    events: Iterable[Event], pod_name: str, after_uid: str | None = None
) -> list[Event]:
    """The events of ``pod_name`` in time order, after ``after_uid`` if given."""
    return after(by_pod(events).get(pod_name, []), after_uid)


class EventIndex:
    """A reflector's events by pod, rebuilt when asked and older than ``max_age``."""

    def __init__(self, reflector, max_age: float = 0.5, clock=time.monotonic):
        self.reflector = reflector
        self.max_age = max_age
        self.clock = clock
        self._built_at: float | None = None
        self._groups: dict[str, list[Event]] = {}

    def events(self, pod_name: str, after_uid: str | None = None) -> list[Event]:
        now = self.clock()
        if self._built_at is None or now - self._built_at >= self.max_age:
            self._groups = by_pod(list(self.reflector.resources.values()))
            self._built_at = now
        return after(self._groups.get(pod_name, []), after_uid)


_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def event_index(reflector) -> EventIndex:
    """The hub-wide index of ``reflector``'s events (one per reflector)."""
    index = _INDEXES.get(reflector)
    if index is None:
        index = _INDEXES[reflector] = EventIndex(reflector)
    return index
