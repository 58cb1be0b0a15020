"""What the authenticator stores in a user's ``auth_state``, and how to read it back.

The spawner imports this module: it reads roster memberships from the roster
itself, and the memberships only the identity provider knows about (course
claims) from here, so it never has to talk to the identity provider.

The payload, under ``auth_state[AUTH_STATE_KEY]``::

    {
        "courses": {"ds101": "student", "phys210": "ta"},  # everything, merged
        "claimed": {"phys210": "ta"},                        # asserted by the provider
    }

``courses`` is what the user's groups and roles were computed from at the last
login or refresh (roster and claims merged, highest role wins); ``claimed`` is
the provider's part of it, for courses that are on the roster. Roles are the
strings of :class:`classroom_spawner.roster.Role`. auth_state is only persisted
with ``c.Authenticator.enable_auth_state = True`` (and ``JUPYTERHUB_CRYPT_KEY``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..roster import Role, parse_role

#: the key of our payload in ``auth_state``
AUTH_STATE_KEY = "classroom"


def build_payload(
    courses: Mapping[str, Role], claimed: Mapping[str, Role]
) -> dict[str, Any]:
    """The JSON-serialisable payload stored under :data:`AUTH_STATE_KEY`."""
    return {
        "courses": {
            course: Role(role).value for course, role in sorted(courses.items())
        },
        "claimed": {
            course: Role(role).value for course, role in sorted(claimed.items())
        },
    }


def _read(auth_state: Mapping[str, Any] | None, field: str) -> dict[str, Role]:
    if not isinstance(auth_state, Mapping):
        return {}
    payload = auth_state.get(AUTH_STATE_KEY)
    if not isinstance(payload, Mapping):
        return {}
    entries = payload.get(field)
    if not isinstance(entries, Mapping):
        return {}
    result = {}
    for course, role in entries.items():
        try:
            result[str(course)] = parse_role(role)
        except ValueError:
            # written by another version, or edited: skip what we cannot read
            continue
    return result


def claimed_courses(auth_state: Mapping[str, Any] | None) -> dict[str, Role]:
    """Courses the identity provider asserted at the last login/refresh: ``{course_id: Role}``.

    Empty if auth_state is None (auth_state disabled, or never stored) or holds
    no classroom payload. Never raises.
    """
    return _read(auth_state, "claimed")


def stored_courses(auth_state: Mapping[str, Any] | None) -> dict[str, Role]:
    """All courses (roster and claims merged) as of the last login/refresh."""
    return _read(auth_state, "courses")
