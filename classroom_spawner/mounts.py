"""Merging a course's volumes into the hub's, whatever shape each is given in.

KubeSpawner's ``volumes`` and ``volume_mounts`` may be lists or dicts (Zero to
JupyterHub always writes dicts, keyed by a name of its own). A profile's
``kubespawner_override`` is applied by KubeSpawner with a merge only when both
sides are dicts; otherwise the override replaces the whole value, and a course
that adds a data volume as a list would drop the home volume with it.

:func:`merged_override` turns a course's override into one KubeSpawner applies
without losing anything: the hub's entries, then the course's, where a course
volume with the same ``name`` (a mount at the same ``mountPath``) replaces the
hub's. Pure functions, no spawner.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

#: what identifies an entry: two entries with the same value are the same one
IDENTITY = {"volumes": "name", "volume_mounts": "mountPath"}


def _entries(value: Any) -> list[tuple[str | None, dict]]:
    """(dict key or None, entry) pairs of a list- or dict-shaped value."""
    if isinstance(value, Mapping):
        return [(key, entry) for key, entry in value.items()]
    return [(None, entry) for entry in value or []]


def merge(base: Any, extra: Any, identity: str) -> Any:
    """``base`` with ``extra``'s entries added, in ``base``'s shape.

    An entry of ``extra`` whose ``identity`` field equals one of ``base``'s
    replaces it (in place, keeping the order); the others are added at the end.
    A dict-shaped result keeps ``base``'s keys and names new entries by their
    ``identity`` (or their key in ``extra``).
    """
    merged: list[list] = [[key, copy.deepcopy(entry)] for key, entry in _entries(base)]

    def ident(entry):
        return entry.get(identity) if isinstance(entry, Mapping) else None

    for key, entry in _entries(extra):
        entry = copy.deepcopy(entry)
        same = [
            m for m in merged if ident(m[1]) is not None and ident(m[1]) == ident(entry)
        ]
        if key is not None and isinstance(base, Mapping):
            same = same or [m for m in merged if m[0] == key]
        if same:
            same[0][1] = entry
        else:
            merged.append([key, entry])
    if not isinstance(base, Mapping):
        return [entry for _key, entry in merged]
    result = {}
    for key, entry in merged:
        name = key if key is not None else str(ident(entry) or len(result))
        while name in result:
            name += "-course"
        result[name] = entry
    return result


def merged_override(
    override: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of ``override`` whose ``volumes``/``volume_mounts`` keep ``current``'s.

    ``current`` holds the spawner's values before the override (the hub's
    configuration). A dict merged into a dict is left to KubeSpawner, which
    merges those itself.
    """
    result = dict(override)
    for trait, identity in IDENTITY.items():
        if trait not in override or callable(override[trait]):
            continue
        base = current.get(trait)
        if isinstance(base, Mapping) and isinstance(override[trait], Mapping):
            continue
        result[trait] = merge(base, override[trait], identity)
    return result


def merged_profile(
    profile: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of a profile whose overrides (its own and its choices') keep ``current``'s volumes."""
    profile = copy.deepcopy(dict(profile))
    profile["kubespawner_override"] = merged_override(
        profile.get("kubespawner_override") or {}, current
    )
    for option in (profile.get("profile_options") or {}).values():
        for choice in (option.get("choices") or {}).values():
            if "kubespawner_override" in choice:
                choice["kubespawner_override"] = merged_override(
                    choice["kubespawner_override"], current
                )
    return profile


def uses_pvc_name(value: Any) -> bool:
    """Does any string in a (list- or dict-shaped) volumes value name ``{pvc_name}``?"""
    if isinstance(value, str):
        return "{pvc_name}" in value
    if isinstance(value, Mapping):
        return any(uses_pvc_name(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(uses_pvc_name(v) for v in value)
    return False


def describe(volumes: Any, mounts: Any) -> list[str]:
    """One line per volume: its name, what it is, and where it is mounted."""
    where: dict[str, list[str]] = {}
    for _key, mount in _entries(mounts):
        if isinstance(mount, Mapping):
            path = str(mount.get("mountPath"))
            if mount.get("subPath"):
                path += f" (subPath {mount['subPath']})"
            if mount.get("readOnly"):
                path += " read-only"
            where.setdefault(str(mount.get("name")), []).append(path)
    lines = []
    for _key, volume in _entries(volumes):
        if not isinstance(volume, Mapping):
            continue
        name = str(volume.get("name"))
        kind = next((k for k in volume if k != "name"), "?")
        paths = ", ".join(where.get(name, [])) or "not mounted"
        lines.append(f"{name} ({kind}) at {paths}")
    return lines
