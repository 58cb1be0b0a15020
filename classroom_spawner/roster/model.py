"""The roster model: courses, their settings, and who is enrolled with which role.

A :class:`Roster` is an immutable snapshot. Loading builds a new one; a running
hub swaps snapshots atomically, so a lookup never sees half a reload.
Lookups by username are dictionary lookups (O(1)), whatever the roster's size.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class Role(str, enum.Enum):
    """A member's role in one course. Ordered by privilege: student < ta < instructor."""

    STUDENT = "student"
    TA = "ta"
    INSTRUCTOR = "instructor"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    @property
    def is_staff(self) -> bool:
        """TAs and instructors look after a course's students."""
        return self is not Role.STUDENT

    def __str__(self) -> str:
        return self.value


_ROLE_RANK = {Role.STUDENT: 0, Role.TA: 1, Role.INSTRUCTOR: 2}

# What LMS exports and people write in a role column, mapped to our three roles.
# Keys are compared after lower-casing and folding "-", "_" and spaces.
ROLE_ALIASES = {
    "student": Role.STUDENT,
    "students": Role.STUDENT,
    "learner": Role.STUDENT,
    "studentenrollment": Role.STUDENT,
    "ta": Role.TA,
    "tas": Role.TA,
    "teachingassistant": Role.TA,
    "taenrollment": Role.TA,
    "tutor": Role.TA,
    "grader": Role.TA,
    "instructor": Role.INSTRUCTOR,
    "instructors": Role.INSTRUCTOR,
    "teacher": Role.INSTRUCTOR,
    "teacherenrollment": Role.INSTRUCTOR,
    "lecturer": Role.INSTRUCTOR,
    "professor": Role.INSTRUCTOR,
}


def parse_role(text: str) -> Role:
    """Turn a role as written in a roster into a :class:`Role`.

    Raises ValueError naming the accepted spellings for anything else.
    """
    return _parse_role_text(str(text))


@functools.lru_cache(maxsize=256)  # rosters repeat a handful of spellings many times
def _parse_role_text(text: str) -> Role:
    key = "".join(ch for ch in text.lower() if ch not in " -_")
    try:
        return ROLE_ALIASES[key]
    except KeyError:
        raise ValueError(
            f"unknown role {str(text)!r}; expected student, ta or instructor"
            " (also accepted: learner, teacher, teaching assistant, tutor, grader, lecturer)"
        ) from None


def normalize_username(name: str) -> str:
    """Normalise an identity the way JupyterHub normalises usernames.

    JupyterHub's ``Authenticator.normalize_username`` lower-cases; logins also
    arrive with stray whitespace from spreadsheets, so strip that too.
    ``Alice@Uni.EDU `` and ``alice@uni.edu`` are the same person.
    """
    return name.strip().lower()


@dataclass(frozen=True)
class LessonRepo:
    """A git repository of lesson material cloned into the students' homes.

    ``ref`` is a branch, tag or commit (None: the remote's default branch);
    ``target`` is the folder under the home directory; ``depth`` limits history
    (None: full history).
    """

    url: str
    target: str
    ref: str | None = None
    depth: int | None = None


@dataclass(frozen=True)
class SharedFolder:
    """A course folder mounted in every member's server: read-write for the
    course's staff, read-only (or absent: ``students="none"``) for students.

    Exactly one of ``pvc`` (an existing claim, ReadWriteMany), ``nfs_server`` +
    ``nfs_path`` or ``home_subpath`` (a directory of the hub's shared home volume)
    is set. ``mount_path`` None means ``<home>/shared/<name>``.
    """

    name: str
    pvc: str | None = None
    nfs_server: str | None = None
    nfs_path: str | None = None
    home_subpath: str | None = None
    mount_path: str | None = None
    students: str = "read-only"  # or "none"
    origin: str = ""


@dataclass(frozen=True)
class StaffSettings:
    """What a course's instructors and TAs get instead of the students' settings
    (None: the course's own)."""

    image: str | None = None
    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    mem_guarantee: str | None = None
    mem_limit: str | None = None
    kubespawner_override: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True)
class Course:
    """A course: what its students' servers look like, and where its settings came from.

    Resource fields use KubeSpawner's names and units (``cpu_limit=2``,
    ``mem_limit="2G"``); None means "use the spawner's configured default".
    """

    id: str
    title: str
    description: str = ""
    image: str | None = None
    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    mem_guarantee: str | None = None
    mem_limit: str | None = None
    lessons: tuple[LessonRepo, ...] = ()
    kubespawner_override: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # "file:line" of the course's definition, for error messages and `check`.
    origin: str = ""
    # LTI context ids of the LMS course pages that launch into this course
    lms_contexts: tuple[str, ...] = ()
    # course storage and role-aware servers (docs/course-storage.md)
    shared_folders: tuple[SharedFolder, ...] = ()
    staff: StaffSettings | None = None
    # KubeSpawner profile_options; a choice may carry ``staff_only: True``
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    staff_see_student_homes: bool = False


class Roster:
    """An immutable snapshot of every course and every enrolment.

    ``enrolments`` maps a normalised username to ``{course_id: Role}``.
    """

    __slots__ = ("_courses", "_by_user", "_sources")

    def __init__(
        self,
        courses: Mapping[str, Course],
        enrolments: Mapping[str, Mapping[str, Role]],
        sources: Iterable[str] = (),
    ):
        self._courses = MappingProxyType(dict(courses))
        self._by_user = {
            user: MappingProxyType(dict(m)) for user, m in enrolments.items()
        }
        self._sources = tuple(sources)

    @property
    def courses(self) -> Mapping[str, Course]:
        """Courses by id, in the order they were defined."""
        return self._courses

    @property
    def sources(self) -> tuple[str, ...]:
        """The files this snapshot was read from."""
        return self._sources

    def course(self, course_id: str) -> Course | None:
        return self._courses.get(course_id)

    def memberships(self, username: str) -> Mapping[str, Role]:
        """The courses ``username`` is enrolled in, with their role in each (O(1))."""
        return self._by_user.get(normalize_username(username), _EMPTY)

    def is_enrolled(self, username: str) -> bool:
        return normalize_username(username) in self._by_user

    def members(self, course_id: str) -> dict[str, Role]:
        """Everyone in one course. O(people); meant for reports, not per login."""
        return {
            user: m[course_id] for user, m in self._by_user.items() if course_id in m
        }

    def role_counts(self) -> dict[str, Counter]:
        """Per course, how many members have each role (one pass over the roster)."""
        counts: dict[str, Counter] = {cid: Counter() for cid in self._courses}
        for m in self._by_user.values():
            for cid, role in m.items():
                counts[cid][role] += 1
        return counts

    @property
    def people(self) -> int:
        return len(self._by_user)

    @property
    def enrolment_count(self) -> int:
        return sum(len(m) for m in self._by_user.values())

    def with_members(self, extra: Mapping[str, Mapping[str, Role]]) -> Roster:
        """A new snapshot with more members (``{course_id: {username: Role}}``,
        e.g. from the LMS); where both list someone the higher role wins.
        Courses that are not in this roster are ignored."""
        by_user = {user: dict(m) for user, m in self._by_user.items()}
        for course_id, members in extra.items():
            if course_id not in self._courses:
                continue
            for user, role in members.items():
                mine = by_user.setdefault(normalize_username(user), {})
                if course_id not in mine or role.rank > mine[course_id].rank:
                    mine[course_id] = role
        return Roster(self._courses, by_user, self._sources)

    def __repr__(self) -> str:
        return f"<Roster {len(self._courses)} courses, {self.people} people>"


_EMPTY: Mapping[str, Role] = MappingProxyType({})
