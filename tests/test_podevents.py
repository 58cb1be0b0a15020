"""podevents.pod_events gives what KubeSpawner's ``events`` property gives."""

import random

import pytest
from kubespawner import KubeSpawner
from kubespawner.spawner import EventReflector

from classroom_spawner.podevents import pod_events


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
