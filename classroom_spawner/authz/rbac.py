"""JupyterHub roles for course staff (used with ``Authenticator.manage_roles``).

Every instructor and TA gets one role per course they teach, e.g.
``ds101-instructor`` or ``ds101-ta``, whose scopes reach that course's
students' group only::

    admin-ui                           the admin page (it shows what the scopes allow)
    list:users!group=ds101             list the course's students
    read:users!group=ds101             read their user models (name, groups, activity)
    read:servers!group=ds101           see their servers
    servers!group=ds101                start and stop their servers
    access:servers!group=ds101         open their servers, to help
    list:groups!group=ds101            see the course group ...
    read:groups!group=ds101            ... and who is in it

Never ``groups!group=...``: whoever may edit a group's members can add
themselves to any group and reach everything its roles reach.

Everything here is pure: no hub, no I/O (JupyterHub's scope and role tables
are imported, read-only, for validation).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..roster import Course, Role
from .groups import STAFF_ROLES, GroupNaming, render

DEFAULT_STAFF_SCOPES = (
    "admin-ui",
    "list:users!group={group}",
    "read:users!group={group}",
    "read:servers!group={group}",
    "servers!group={group}",
    "access:servers!group={group}",
    "list:groups!group={group}",
    "read:groups!group={group}",
)

# scopes that let their holder change group membership: with a filter they are
# as good as access to everything the group's roles reach
_GROUP_WRITE_SCOPES = {"groups", "admin:groups"}

# JupyterHub's rule for role names (jupyterhub.roles._role_name_pattern)
ROLE_NAME_RE = re.compile(r"^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$")

_ROLE_LABELS = {Role.INSTRUCTOR: "Instructor", Role.TA: "Teaching assistant"}


def known_scopes() -> set[str]:
    """JupyterHub's scope names (without filters)."""
    from jupyterhub.scopes import scope_definitions

    return set(scope_definitions)


def parse_staff_scopes(raw: Mapping[Any, Any]) -> dict[Role, tuple[str, ...]]:
    """Validate ``staff_scopes``: ``{"instructor": [...], "ta": [...]}``.

    Roles may be spelled as in rosters (``teacher``, ``teaching assistant``);
    a role left out keeps the default scopes. Every scope must exist in this
    JupyterHub, templates may use ``{group}`` and ``{course}``. Raises
    ValueError naming the offending entry.
    """
    from ..roster import parse_role

    result = {role: DEFAULT_STAFF_SCOPES for role in STAFF_ROLES}
    scopes_known = known_scopes()
    for key, scopes in raw.items():
        try:
            role = parse_role(key)
        except ValueError as e:
            raise ValueError(f"staff_scopes: {e}") from None
        if not role.is_staff:
            raise ValueError(
                f"staff_scopes[{key!r}]: only instructor and ta roles get scopes"
            )
        if isinstance(scopes, str) or not all(isinstance(s, str) for s in scopes):
            raise ValueError(f"staff_scopes[{key!r}] must be a list of scope strings")
        for scope in scopes:
            rendered = render(
                scope, f"staff_scopes[{key!r}] scope", group="ds101", course="ds101"
            )
            base = rendered.split("!", 1)[0]
            if base not in scopes_known:
                raise ValueError(
                    f"staff_scopes[{key!r}]: {scope!r} is not a JupyterHub scope"
                )
        result[role] = tuple(scopes)
    return result


def risky_scopes(staff_scopes: Mapping[Role, Iterable[str]]) -> list[str]:
    """Configured scopes that let staff change group membership (worth a warning)."""
    return sorted(
        {
            s
            for scopes in staff_scopes.values()
            for s in scopes
            if s.split("!", 1)[0] in _GROUP_WRITE_SCOPES
        }
    )


def check_role_template(template: str) -> None:
    for field in ("{course}", "{role}"):
        if field not in template:
            raise ValueError(f"staff_role_template {template!r} must contain {field}")
    role_name("ds101", Role.INSTRUCTOR, template)


def role_name(course: str, role: Role, template: str = "{course}-{role}") -> str:
    """The role of ``role`` staff in ``course``, e.g. ``ds101-ta``.

    JupyterHub role names must start with a letter; a name that does not (a
    course id such as ``2025-ds101``) gets ``course-`` in front. ValueError if
    the name is invalid even then (a bad template).
    """
    name = render(template, "staff_role_template", course=course, role=role.value)
    if ROLE_NAME_RE.match(name):
        return name
    prefixed = f"course-{name}"
    if ROLE_NAME_RE.match(prefixed):
        return prefixed
    raise ValueError(
        f"staff_role_template {template!r} gives {name!r} for course {course!r}, which is not a"
        " valid JupyterHub role name (3-255 characters: lower-case letters, digits and -_~.,"
        " starting with a letter)"
    )


def staff_role(
    course: str,
    role: Role,
    *,
    naming: GroupNaming,
    staff_scopes: Mapping[Role, Iterable[str]],
    role_template: str = "{course}-{role}",
    title: str | None = None,
) -> dict[str, Any]:
    """The role definition for one staff membership (no ``users`` key: the
    authenticator assigns it at login, JupyterHub's ``sync_roles`` keeps it)."""
    group = naming.student_group(course)
    scopes = sorted(
        {
            render(s, "staff scope", group=group, course=course)
            for s in staff_scopes[role]
        }
    )
    label = _ROLE_LABELS[role]
    what = f"{course} ({title})" if title and title != course else course
    return {
        "name": role_name(course, role, role_template),
        "description": f"{label} of {what}: see, start, stop and open its students' servers"
        " (classroom-spawner)",
        "scopes": scopes,
    }


def staff_roles(
    memberships: Mapping[str, Role],
    *,
    naming: GroupNaming,
    staff_scopes: Mapping[Role, Iterable[str]],
    role_template: str = "{course}-{role}",
    courses: Mapping[str, Course] | None = None,
) -> list[dict[str, Any]]:
    """The staff roles for a user's memberships (students get none)."""
    roles = []
    for course, role in sorted(memberships.items()):
        if not role.is_staff:
            continue
        title = courses[course].title if courses and course in courses else None
        roles.append(
            staff_role(
                course,
                role,
                naming=naming,
                staff_scopes=staff_scopes,
                role_template=role_template,
                title=title,
            )
        )
    return roles


def all_staff_role_names(
    courses: Iterable[str], role_template: str = "{course}-{role}"
) -> set[str]:
    """The names of every staff role of these courses."""
    return {
        role_name(course, role, role_template)
        for course in courses
        for role in STAFF_ROLES
    }


def all_staff_roles(
    courses: Mapping[str, Course],
    *,
    naming: GroupNaming,
    staff_scopes: Mapping[Role, Iterable[str]],
    role_template: str = "{course}-{role}",
) -> list[dict[str, Any]]:
    """Every staff role of every course: what ``load_managed_roles`` returns.

    ValueError if two courses' roles would get the same name (``2025-ds101`` and
    ``course-2025-ds101`` both make ``course-2025-ds101-ta``): one role shared by
    two courses would let each course's staff reach the other's students.
    """
    roles = []
    owner: dict[str, str] = {}
    for cid, course in courses.items():
        for role in STAFF_ROLES:
            spec = staff_role(
                cid,
                role,
                naming=naming,
                staff_scopes=staff_scopes,
                role_template=role_template,
                title=course.title,
            )
            other = owner.setdefault(spec["name"], cid)
            if other != cid:
                raise ValueError(
                    f"courses {other!r} and {cid!r} would share the staff role"
                    f" {spec['name']!r}; rename one course or change the role template"
                )
            roles.append(spec)
    return roles


def default_role(
    name: str,
    load_roles: Iterable[Mapping[str, Any]] = (),
    extra_user_scopes: Iterable[str] = (),
) -> dict[str, Any]:
    """JupyterHub's ``user`` or ``admin`` role, as this hub defines it.

    With ``manage_roles`` the list an authenticator returns is authoritative,
    so it must include ``user`` (and ``admin`` for admins). Giving the full
    definition, built the way JupyterHub builds it at start-up (the default,
    plus ``JupyterHub.extra_user_scopes``, overridden by a ``load_roles``
    entry of the same name), keeps JupyterHub from warning about a role "with
    no scopes" at each login and never changes the role's scopes.
    """
    from jupyterhub.roles import get_default_roles

    spec = dict(next(r for r in get_default_roles() if r["name"] == name))
    spec["scopes"] = list(spec.get("scopes") or [])
    if name == "user":
        spec["scopes"].extend(s for s in extra_user_scopes if s not in spec["scopes"])
    for override in load_roles or ():
        if isinstance(override, Mapping) and override.get("name") == name:
            spec.update(
                {k: override[k] for k in ("description", "scopes") if k in override}
            )
    return {
        "name": name,
        "description": spec.get("description"),
        "scopes": list(spec.get("scopes") or []),
    }
