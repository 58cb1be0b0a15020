"""Prometheus metrics for the spawn queues, served with JupyterHub's own at /hub/metrics.

JupyterHub exposes prometheus_client's default registry, so metrics registered
here appear next to ``jupyterhub_server_spawn_duration_seconds`` and friends.
"""

from prometheus_client import Gauge, Histogram

SPAWN_QUEUE_LENGTH = Gauge(
    "classroom_spawn_queue_length",
    "Spawns waiting in line for a slot",
    ["queue"],
)
SPAWNS_IN_FLIGHT = Gauge(
    "classroom_spawns_in_flight",
    "Spawns holding a slot (their expensive part is running)",
    ["queue"],
)
SPAWN_QUEUE_WAIT_SECONDS = Histogram(
    "classroom_spawn_queue_wait_seconds",
    "Time a spawn waited in line before it got a slot",
    ["queue"],
    buckets=(
        0.5,
        1,
        2.5,
        5,
        10,
        20,
        30,
        60,
        120,
        300,
        600,
        1200,
        1800,
        3600,
        float("inf"),
    ),
)


def observe_queue(name: str):
    """An on_change callback keeping the gauges of queue ``name`` current."""

    def update(queue) -> None:
        SPAWN_QUEUE_LENGTH.labels(queue=name).set(queue.waiting)
        SPAWNS_IN_FLIGHT.labels(queue=name).set(queue.in_flight)

    return update
