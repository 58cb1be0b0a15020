"""Course memberships asserted by the identity provider (a ``groups`` claim).

Some identity providers already know enrolments: a Keycloak or Azure AD group
per course, for instance. Two ways to map the provider's group names to
courses, usable together:

- an explicit map, ``{"idp-group": "ds101"}``; a value may also be
  ``{"course": "ds101", "role": "ta"}`` or a list of such entries;
- a regular expression with a named group ``course`` (and optionally ``role``)
  that each provider group must match in full, e.g.
  ``course:(?P<course>[a-z0-9._-]+)(:(?P<role>[a-z]+))?``.

Everything here is pure: no hub, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ..roster import Role, parse_role

ClaimMap = dict[str, tuple[tuple[str, Role], ...]]


def _parse_entry(group: str, value: Any) -> tuple[str, Role]:
    if isinstance(value, str):
        course, role = value, Role.STUDENT
    elif isinstance(value, Mapping):
        unknown = set(value) - {"course", "role"}
        if unknown or "course" not in value:
            raise ValueError(
                f"course_claim_groups[{group!r}]: expected {{'course': ..., 'role': ...}},"
                f" got {dict(value)!r}"
            )
        course = value["course"]
        try:
            role = parse_role(value.get("role", "student"))
        except ValueError as e:
            raise ValueError(f"course_claim_groups[{group!r}]: {e}") from None
    else:
        raise ValueError(
            f"course_claim_groups[{group!r}]: expected a course id, a"
            f" {{'course': ..., 'role': ...}} dict or a list of them, got {value!r}"
        )
    if not isinstance(course, str) or not course.strip():
        raise ValueError(
            f"course_claim_groups[{group!r}]: the course id must be a non-empty string"
        )
    return course.strip().lower(), role


def parse_claim_map(raw: Mapping[str, Any]) -> ClaimMap:
    """Validate ``course_claim_groups`` and bring it into one shape.

    Raises ValueError naming the offending provider group.
    """
    parsed: ClaimMap = {}
    for group, value in raw.items():
        if not isinstance(group, str) or not group:
            raise ValueError(
                f"course_claim_groups: provider group names must be strings, got {group!r}"
            )
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise ValueError(f"course_claim_groups[{group!r}]: empty list")
        parsed[group] = tuple(_parse_entry(group, v) for v in values)
    return parsed


def compile_claim_pattern(pattern: str) -> re.Pattern | None:
    """Compile ``course_claim_pattern``; ValueError if it is invalid or has no ``course`` group."""
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ValueError(
            f"course_claim_pattern {pattern!r} is not a valid regular expression: {e}"
        ) from None
    if "course" not in compiled.groupindex:
        raise ValueError(
            f"course_claim_pattern {pattern!r} needs a named group for the course id,"
            " e.g. 'course:(?P<course>[a-z0-9._-]+)'"
        )
    return compiled


def provider_group_names(value: Any) -> list[str]:
    """The provider's groups claim as a list of strings, whatever shape it came in.

    A list (the usual), a single string (one group), None or anything else
    unusable (no groups).
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Mapping):
        return []
    try:
        return [str(v) for v in value if v is not None and str(v)]
    except TypeError:
        return []


def merge_memberships(*memberships: Mapping[str, Role]) -> dict[str, Role]:
    """Union of several ``{course: Role}`` maps; where they overlap the higher role wins."""
    merged: dict[str, Role] = {}
    for m in memberships:
        for course, role in m.items():
            if course not in merged or role.rank > merged[course].rank:
                merged[course] = role
    return merged


def claimed_memberships(
    groups: Iterable[str],
    claim_map: ClaimMap,
    pattern: re.Pattern | None,
    known_courses: Collection[str],
) -> tuple[dict[str, Role], list[str]]:
    """Map the provider's groups to ``{course: Role}``.

    Only courses in ``known_courses`` (the roster's) count: a provider group for
    a course the hub does not run is ignored. Returns the memberships and a list
    of human-readable notes about what was ignored and why (for a debug log).
    """
    claimed: dict[str, Role] = {}
    notes: list[str] = []

    def add(course: str, role: Role, group: str) -> None:
        if course not in known_courses:
            notes.append(
                f"provider group {group!r} names course {course!r}, which is not on the roster"
            )
            return
        if course not in claimed or role.rank > claimed[course].rank:
            claimed[course] = role

    for group in groups:
        for course, role in claim_map.get(group, ()):
            add(course, role, group)
        if pattern is not None:
            match = pattern.fullmatch(group)
            if not match or not match.group("course"):
                continue
            role = Role.STUDENT
            role_text = match.groupdict().get("role")
            if role_text:
                try:
                    role = parse_role(role_text)
                except ValueError as e:
                    notes.append(f"provider group {group!r}: {e}")
                    continue
            add(match.group("course").strip().lower(), role, group)
    return claimed, notes
