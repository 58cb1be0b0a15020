"""JupyterHub group names for course memberships.

One group per course holding its **students** (by default named like the
course, ``ds101``), plus staff groups (``ds101-instructors``, ``ds101-tas``).
Staff roles are scoped to the students' group, so a TA can reach the students'
servers but not the instructor's. Optionally nbgrader's conventional groups:
``nbgrader-<course>`` (students) and ``formgrade-<course>`` (instructors and TAs).

Everything here is pure: no hub, no I/O.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..roster import Role

STAFF_ROLES = (Role.INSTRUCTOR, Role.TA)

# characters that would break scope filters (``!group=``), REST URLs or logs
_FORBIDDEN = set("!/=,") | set(string.whitespace)


def render(template: str, what: str, **fields: str) -> str:
    """``template.format(**fields)``, with a config-error message naming ``what``."""
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        allowed = ", ".join("{%s}" % f for f in fields)
        raise ValueError(
            f"{what} template {template!r} is invalid ({e!r}); it may use {allowed}"
        ) from None


def check_group_template(template: str, what: str, needs_role: bool) -> None:
    """Raise ValueError if ``template`` cannot produce good, distinct group names."""
    if "{course}" not in template:
        raise ValueError(f"{what} template {template!r} must contain {{course}}")
    fields = {"course": "ds101"}
    if needs_role:
        fields["role"] = "instructor"
    sample = render(template, what, **fields)
    check_group_name(sample, f"{what} template {template!r}")


def check_group_name(name: str, what: str) -> None:
    if not name or _FORBIDDEN & set(name):
        raise ValueError(
            f"{what} gives the group name {name!r}; group names must be non-empty"
            " and contain no spaces or any of ! / = ,"
        )


@dataclass(frozen=True)
class GroupNaming:
    """How course memberships become JupyterHub group names."""

    student_template: str = "{course}"
    staff_template: str = "{course}-{role}s"
    nbgrader: bool = False

    def validate(self) -> None:
        check_group_template(
            self.student_template, "student_group_template", needs_role=False
        )
        check_group_template(
            self.staff_template, "staff_group_template", needs_role=True
        )

    def student_group(self, course: str) -> str:
        """The group of a course's students: the group staff roles are scoped to."""
        return render(self.student_template, "student_group_template", course=course)

    def staff_group(self, course: str, role: Role) -> str:
        return render(
            self.staff_template, "staff_group_template", course=course, role=role.value
        )

    def groups(self, course: str, role: Role) -> list[str]:
        """The groups of one membership."""
        if role.is_staff:
            names = [self.staff_group(course, role)]
            if self.nbgrader:
                names.append(f"formgrade-{course}")
        else:
            names = [self.student_group(course)]
            if self.nbgrader:
                names.append(f"nbgrader-{course}")
        return names

    def groups_for(self, memberships: Mapping[str, Role]) -> set[str]:
        """Every group a user with these memberships belongs to."""
        result: set[str] = set()
        for course, role in memberships.items():
            result.update(self.groups(course, role))
        return result

    def all_groups(self, courses: Iterable[str]) -> set[str]:
        """Every group these courses can produce, whatever the role."""
        result: set[str] = set()
        for course in courses:
            for role in Role:
                result.update(self.groups(course, role))
        return result

    def collisions(self, courses: Iterable[str]) -> list[str]:
        """Names that two different courses (or a course's students and its
        staff) would share, as messages. Instructors and TAs of one course may
        share a group (a staff template without ``{role}``)."""
        owners: dict[str, tuple[str, bool]] = {}
        problems = []
        for course in courses:
            for role in Role:
                for name in self.groups(course, role):
                    owner = (course, role.is_staff)
                    seen = owners.setdefault(name, owner)
                    if seen != owner:
                        problems.append(
                            f"group {name!r} would hold both {_describe(seen)} and {_describe(owner)}"
                        )
        return sorted(set(problems))


def _describe(owner: tuple[str, bool]) -> str:
    course, staff = owner
    return f"the {'staff' if staff else 'students'} of {course}"
