"""One pod's Kubernetes events from KubeSpawner's event reflector, cheaply.

KubeSpawner's ``events`` sorts every event the reflector holds for the namespace,
then keeps the pod's; its ``progress`` does that once a second for every start in
progress. After a lecture hall's first spawns the reflector holds thousands of
events (about six per pod), so the hub sorted thousands of events per start per
second. Here the pod's events are picked out first and only they are sorted, with
the same key and the same result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _when(event: Mapping[str, Any]) -> Any:
    # the reflector's own order: the low-resolution lastTimestamp, or the
    # high-resolution eventTime where only that is set
    return event["lastTimestamp"] or event["eventTime"]


def pod_events(
    events: Iterable[Mapping[str, Any]], pod_name: str, after_uid: str | None = None
) -> list[Mapping[str, Any]]:
    """The events of ``pod_name`` in time order; with ``after_uid``, only those after
    the event of that uid (the last one a previous start saw), if it is among them."""
    mine = sorted(
        (e for e in events if e["involvedObject"]["name"] == pod_name), key=_when
    )
    if after_uid:
        for index in range(len(mine) - 1, -1, -1):
            if mine[index]["metadata"]["uid"] == after_uid:
                return mine[index + 1 :]
    return mine
