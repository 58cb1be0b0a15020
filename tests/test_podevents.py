"""podevents.pod_events gives what KubeSpawner's ``events`` property gives."""

import random

import pytest
from kubespawner import KubeSpawner
from kubespawner.spawner import EventReflector

from classroom_spawner.podevents import EventIndex, event_index, pod_events


def event(uid, pod, last=None, when=None):
    return {
        "metadata": {"uid": uid},
        "involvedObject": {"name": pod},
        "lastTimestamp": last,
        "eventTime": when,
    }


def namespace_events(seed):
    rng = random.Random(seed)
    events = []
    for i in range(300):
        pod = rng.choice(["jupyter-alice", "jupyter-bob", "jupyter-carol"])
        stamp = f"2026-12-01T10:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
        # some events carry only the high-resolution time, as the API may send them
        if rng.random() < 0.3:
            events.append(event(f"u{i}", pod, None, stamp[:-1] + ".123456Z"))
        else:
            events.append(event(f"u{i}", pod, stamp))
    return events


def kubespawner_events(events, pod, last_event):
    """KubeSpawner's own property, run on the same events (a reflector that holds
    them without watching anything)."""
    reflector = EventReflector.__new__(EventReflector)
    reflector.resources = {e["metadata"]["uid"]: e for e in events}
    holder = type(
        "Holder",
        (),
        {"event_reflector": reflector, "pod_name": pod, "_last_event": last_event},
    )()
    return KubeSpawner.events.fget(holder)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("pod", ["jupyter-alice", "jupyter-nobody"])
def test_the_same_events_as_kubespawner_gives(seed, pod):
    events = namespace_events(seed)
    expected = kubespawner_events(events, pod, None)
    assert pod_events(events, pod) == expected
    if pod == "jupyter-alice":
        assert expected  # the comparison compares something


@pytest.mark.parametrize("seed", [1, 2])
def test_after_the_marker_only_later_events(seed):
    events = namespace_events(seed)
    mine = kubespawner_events(events, "jupyter-bob", None)
    marker = mine[len(mine) // 2]["metadata"]["uid"]
    expected = kubespawner_events(events, "jupyter-bob", marker)
    got = pod_events(events, "jupyter-bob", marker)
    assert got == expected
    assert 0 < len(got) < len(mine)
    # a marker of another pod's event changes nothing
    other = kubespawner_events(events, "jupyter-alice", None)[0]["metadata"]["uid"]
    assert pod_events(events, "jupyter-bob", other) == mine


class Reflector:
    """What the index reads of KubeSpawner's reflector: its ``resources``."""

    def __init__(self, events):
        self.resources = {e["metadata"]["uid"]: e for e in events}


def test_the_index_gives_the_same_and_sees_changes_after_max_age():
    events = namespace_events(4)
    reflector = Reflector(events)
    now = [100.0]
    index = EventIndex(reflector, max_age=0.5, clock=lambda: now[0])
    for pod in ("jupyter-alice", "jupyter-bob", "jupyter-nobody"):
        assert index.events(pod) == kubespawner_events(events, pod, None)
    marker = index.events("jupyter-carol")[3]["metadata"]["uid"]
    assert index.events("jupyter-carol", marker) == kubespawner_events(
        events, "jupyter-carol", marker
    )
    # a new event: not seen within max_age, seen after it
    new = event("new", "jupyter-alice", "2026-12-01T11:00:00Z")
    reflector.resources["new"] = new
    now[0] += 0.2
    assert new not in index.events("jupyter-alice")
    now[0] += 0.3
    assert index.events("jupyter-alice")[-1] == new
    # a relist replaces the whole dict: seen too
    reflector.resources = {"only": event("only", "jupyter-bob", "2026-12-01T12:00:00Z")}
    now[0] += 1
    assert index.events("jupyter-alice") == []
    assert [e["metadata"]["uid"] for e in index.events("jupyter-bob")] == ["only"]


def test_one_index_per_reflector():
    a, b = Reflector([]), Reflector([])
    assert event_index(a) is event_index(a)
    assert event_index(a) is not event_index(b)
