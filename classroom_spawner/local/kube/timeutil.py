"""Kubernetes timestamps: ``Time`` has second resolution, ``MicroTime`` microseconds."""

from datetime import datetime, timezone


def now():
    return datetime.now(timezone.utc)


def rfc3339(dt=None):
    return (dt or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(dt=None):
    return (dt or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text):
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    return datetime.fromisoformat(text)
