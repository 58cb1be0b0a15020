"""Load a whole roster from course files and the roster files they name.

Loading is all or nothing: any problem anywhere raises :class:`RosterError`
listing every problem found, and no partial roster is ever returned (a partial
roster could lock out a lecture hall, or let a dropped student in). What can be
skipped without that risk (a Canvas row of someone without a login, a section
filter that matches no one) is a warning carried next to the roster.

This module does blocking file I/O; the hub calls it from a thread
(see :class:`classroom_spawner.roster.ClassroomRoster`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .coursefile import read_course_file
from .csvsource import read_source
from .errors import ProblemCollector, RosterProblem
from .model import Course, Role, Roster

# What we remember about a file to notice that it changed: the path it resolves
# to, (device, inode), mtime, ctime and size. None: the file could not be read.
Fingerprint = tuple[str, int, int, int, int, int] | None


def fingerprint(path: str) -> Fingerprint:
    """What identifies the content behind ``path`` now.

    The resolved path matters for files behind symlinks that are swapped
    rather than written, as Kubernetes updates a ConfigMap volume: the new
    version may have the old one's size and mtime, and even (once the old
    directory is gone) its inode number, but never its timestamped directory.
    """
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


@dataclass(frozen=True)
class LoadResult:
    roster: Roster
    # every file the roster was read from, with its fingerprint taken before reading
    files: dict[str, Fingerprint]
    # things skipped or suspicious, the roster in force all the same
    warnings: tuple[RosterProblem, ...] = ()


def _read_bytes(
    path: str, problems: ProblemCollector, what: str, origin: str = ""
) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        named_in = f" (named in {origin})" if origin else ""
        problems.add(path, None, f"cannot read {what}{named_in}: {e.strerror or e}")
        return None


def load_roster(course_files: list[str]) -> LoadResult:
    """Read every course file and roster file. Raises RosterError on any problem."""
    problems = ProblemCollector()
    files: dict[str, Fingerprint] = {}
    courses: dict[str, Course] = {}
    enrolments: dict[str, dict[str, Role]] = {}

    def enrol(username: str, course_id: str, role: Role) -> None:
        mine = enrolments.get(username)
        if mine is None:
            enrolments[username] = {course_id: role}
            return
        current = mine.get(course_id)
        # listed twice (a TA who is also in the Canvas export): the higher role wins
        if current is None or role.rank > current.rank:
            mine[course_id] = role

    if not course_files:
        problems.add(
            "ClassroomRoster.course_files", None, "no course file is configured"
        )
    for raw_path in course_files:
        path = os.path.abspath(raw_path)
        files[path] = fingerprint(path)
        data = _read_bytes(path, problems, "course file")
        if data is None:
            continue
        for entry in read_course_file(path, data, problems):
            course = entry.course
            if course.id in courses:
                problems.add(
                    path,
                    entry.line,
                    f"duplicate course id {course.id!r} (first defined at {courses[course.id].origin})",
                )
                continue
            clash = next(
                (
                    c
                    for c in courses.values()
                    if set(c.lms_contexts) & set(course.lms_contexts)
                ),
                None,
            )
            if clash is not None:
                shared = sorted(set(clash.lms_contexts) & set(course.lms_contexts))
                problems.add(
                    path,
                    entry.line,
                    f"LMS context {shared[0]!r} of course {course.id!r} is listed by course"
                    f" {clash.id!r} too (at {clash.origin}): a launch must name one course",
                )
                continue
            courses[course.id] = course
            for username, role, _line in entry.members:
                enrol(username, course.id, role)
            for source in entry.sources:
                files[source.path] = fingerprint(source.path)
                data = _read_bytes(source.path, problems, "roster file", source.origin)
                if data is None:
                    continue
                for username, role, _line in read_source(source, data, problems):
                    enrol(username, course.id, role)
    problems.raise_if_any(files)
    return LoadResult(
        Roster(courses, enrolments, sources=list(files)),
        files,
        tuple(problems.warnings),
    )


def fingerprints(paths) -> dict[str, Fingerprint]:
    """The fingerprint of each path, as it is now."""
    return {path: fingerprint(path) for path in paths}


def files_changed(files: dict[str, Fingerprint]) -> bool:
    """True if any file differs from its remembered fingerprint (a few stat calls)."""
    return any(fingerprint(path) != fp for path, fp in files.items())
