"""CSV roster files: plain ``username,role`` lists and LMS exports (Canvas gradebook).

Each source is described in the course file (which column is the login, how it
maps to a hub username, which role its people get). Reading a source yields
``(username, role, line)`` triples and reports every bad row as a problem with
its file and line; it never stops at the first one.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import ProblemCollector, shown
from .model import Role, normalize_username, parse_role

FORMATS = ("csv", "canvas")

# Canvas gradebook export: column names and the rows that are not people.
CANVAS_NAME_COLUMN = "Student"
CANVAS_DEFAULT_LOGIN_COLUMN = "SIS Login ID"
CANVAS_META_ROWS = {"points possible", "manual posting", "muted"}
# Canvas adds its "Test Student" (student view) to every course; the export
# shows it under its sortable name.
CANVAS_TEST_STUDENTS = {"test student", "student, test"}


# whitespace (any Unicode space) and control characters
_BAD_USERNAME_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class RosterSource:
    """How to read one roster file. Paths are absolute by the time a source is built."""

    path: str
    format: str = "csv"
    login_column: str | None = None
    role_column: str | None = None
    # the role of rows without one (files with no role column, Canvas exports)
    role: Role = Role.STUDENT
    strip_domain: str | bool | None = None
    add_domain: str | None = None
    sections: tuple[str, ...] | None = None
    # (course file, line) of each entry of ``sections``, for warnings about them
    section_origins: tuple[tuple[str, int], ...] = ()
    header: bool = True
    # "file:line" of the entry in the course file that names this source
    origin: str = ""


def map_username(login: str, source: RosterSource) -> str:
    """Map a login as written in the file to a JupyterHub username.

    Normalised like JupyterHub (stripped, lower case), then a domain is
    stripped (``alice@uni.edu`` -> ``alice``) or added (``alice`` ->
    ``alice@uni.edu``) as the source says.
    """
    name = normalize_username(login)
    strip = source.strip_domain
    if strip is True:
        name = name.rsplit("@", 1)[0] if "@" in name else name
    elif strip:
        suffix = "@" + str(strip).lower().lstrip("@")
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if source.add_domain and "@" not in name and name:
        name = f"{name}@{source.add_domain.lower().lstrip('@')}"
    return name


def check_username(name: str) -> str | None:
    """Why ``name`` cannot be a JupyterHub username, or None if it can."""
    if not name:
        return "empty login"
    if "/" in name:
        return (
            f"login {name!r} contains '/', which JupyterHub does not allow in usernames"
        )
    if _BAD_USERNAME_CHARS.search(name):
        return f"login {name!r} contains whitespace or control characters"
    return None


def decode_text(data: bytes, path: str, problems: ProblemCollector) -> str | None:
    """Decode a file as UTF-8 (with or without a BOM, as spreadsheets write it)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        problems.add(
            path,
            line,
            "not valid UTF-8 text (save the export as 'CSV UTF-8' and try again)",
        )
        return None


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """CSV records with the line each one starts on (quoted fields may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for row in reader:
        yield start, row
        start = reader.line_num + 1


def read_source(
    source: RosterSource, data: bytes, problems: ProblemCollector
) -> list[tuple[str, Role, int]]:
    """Parse one roster file's bytes into ``(username, role, line)`` entries."""
    text = decode_text(data, source.path, problems)
    if text is None:
        return []
    try:
        if source.format == "canvas":
            return list(_read_canvas(source, text, problems))
        return list(_read_plain(source, text, problems))
    except csv.Error as e:
        problems.add(source.path, None, f"not a readable CSV file: {e}")
        return []


def _column_index(
    header: list[str],
    wanted: str,
    source: RosterSource,
    problems: ProblemCollector,
    what: str,
) -> int | None:
    folded = [h.strip().lower() for h in header]
    try:
        return folded.index(wanted.strip().lower())
    except ValueError:
        columns = ", ".join(repr(h.strip()) for h in header) or "none"
        problems.add(
            source.path,
            1,
            f"no {what} column {wanted!r} in the header (columns: {columns}); "
            + (
                f"set '{what}_column' for this roster in {source.origin or 'the course file'}"
                if what in ("login", "role")
                else "a Canvas gradebook export always has it: is this the right file?"
            ),
        )
        return None


def _is_skipped(row: list[str]) -> bool:
    """A comment line (first cell starts with ``#``) or a blank one."""
    first = row[0].strip() if row else ""
    return first.startswith("#") or (
        not first and not any(cell.strip() for cell in row)
    )


def _read_plain(source: RosterSource, text: str, problems: ProblemCollector):
    if not text.strip():
        # most likely a file caught half-written; a course with nobody in it yet
        # still has its header line (or a comment)
        problems.add(
            source.path,
            1,
            "empty file; a roster with nobody in it still needs its header line",
        )
        return
    rows = (item for item in _rows(text) if not _is_skipped(item[1]))
    if source.header:
        first = next(rows, None)
        if first is None:
            problems.add(source.path, 1, "no header line, only comments")
            return
        _, header = first
        login_col = _column_index(
            header, source.login_column or "username", source, problems, "login"
        )
        if login_col is None:
            return
        role_col = None
        if source.role_column:
            role_col = _column_index(
                header, source.role_column, source, problems, "role"
            )
            if role_col is None:
                return
        elif "role" in [h.strip().lower() for h in header]:
            role_col = [h.strip().lower() for h in header].index("role")
    else:
        login_col, role_col = 0, 1
    for line, row in rows:
        login = row[login_col] if login_col < len(row) else ""
        role_text = (
            row[role_col] if role_col is not None and role_col < len(row) else ""
        )
        entry = _entry(source, line, login, role_text, problems)
        if entry:
            yield entry


def _read_canvas(source: RosterSource, text: str, problems: ProblemCollector):
    rows = _rows(text)
    first = next(rows, None)
    if first is None:
        problems.add(source.path, 1, "empty file; expected a Canvas gradebook export")
        return
    _, header = first
    name_col = _column_index(header, CANVAS_NAME_COLUMN, source, problems, "name")
    login_col = _column_index(
        header,
        source.login_column or CANVAS_DEFAULT_LOGIN_COLUMN,
        source,
        problems,
        "login",
    )
    if name_col is None or login_col is None:
        return
    section_col = None
    wanted: set[str] = set()
    if source.sections:
        section_col = _column_index(header, "Section", source, problems, "section")
        if section_col is None:
            return
        wanted = {s.strip().lower() for s in source.sections}
    # the Section cells of the people in the export, and the wanted sections found
    cells_seen: dict[str, None] = {}
    found: set[str] = set()
    for line, row in rows:
        cell = lambda i: row[i].strip() if i < len(row) else ""  # noqa: E731
        name = cell(name_col)
        if not name and not any(c.strip() for c in row):
            continue  # blank line
        folded_name = name.lower()
        if folded_name in CANVAS_META_ROWS or (not name and not cell(login_col)):
            continue  # "Points Possible" and similar rows that are not people
        if folded_name in CANVAS_TEST_STUDENTS:
            continue
        if section_col is not None:
            section = cell(section_col)
            if section:
                cells_seen.setdefault(section, None)
            hits = _sections_in(section, wanted)
            found |= hits
            if not hits:
                continue
        login = cell(login_col)
        if not login:
            # common: people without an SIS login (guests, late enrolments);
            # they cannot log in anyway, and the rest of the export is good
            column = source.login_column or CANVAS_DEFAULT_LOGIN_COLUMN
            problems.warn(
                source.path,
                line,
                f"skipped {shown(name)}: no login in column {column!r}"
                " (they cannot log in until the export has one)",
            )
            continue
        entry = _entry(source, line, login, "", problems, who=name)
        if entry:
            yield entry
    if section_col is not None:
        _warn_unmatched_sections(source, wanted - found, list(cells_seen), problems)


def _warn_unmatched_sections(
    source: RosterSource,
    missing: set[str],
    cells: list[str],
    problems: ProblemCollector,
) -> None:
    """A ``sections`` entry that no one in the export is in: most likely a typo,
    or the wrong export; the course silently lacks those students otherwise."""
    if not missing:
        return
    if cells:
        listed = ", ".join(shown(c, 40) for c in cells[:8])
        if len(cells) > 8:
            listed += f" and {len(cells) - 8} more"
        has = f"its Section cells: {listed}"
    else:
        has = "it lists no students"
    origins = list(source.section_origins) or [
        (source.origin or source.path, None)
    ] * len(source.sections or ())
    for section, (path, line) in zip(source.sections or (), origins):
        if section.strip().lower() in missing:
            problems.warn(
                path,
                line,
                f"section {shown(section)} matches no student in {source.path} ({has})",
            )


def _sections_in(cell: str, wanted: set[str]) -> set[str]:
    """The wanted sections (lower case) that a Canvas "Section" cell names.

    Canvas joins a student's sections into one cell ("Lab B and Lab A",
    "Lab B, Lab A and Lecture 1"). A wanted section matches as a whole part of
    that list, so a section whose own name has " and " or a comma in it
    ("Smith, J.", "Lab A and B") is found too, not cut in pieces.
    """
    text = " ".join(cell.lower().split())
    return {section for section in wanted if _section_pattern(section).search(text)}


@functools.lru_cache(maxsize=256)
def _section_pattern(section: str) -> re.Pattern:
    name = re.escape(" ".join(section.split()))
    return re.compile(rf"(?:^|,\s*|\sand\s){name}(?=$|\s*,|\sand\s)")


def _entry(
    source: RosterSource,
    line: int,
    login: str,
    role_text: str,
    problems: ProblemCollector,
    who: str = "",
) -> tuple[str, Role, int] | None:
    if not login.strip():
        column = source.login_column or (
            CANVAS_DEFAULT_LOGIN_COLUMN if source.format == "canvas" else "username"
        )
        whose = f" for {shown(who)}" if who else ""
        problems.add(source.path, line, f"missing login in column {column!r}{whose}")
        return None
    username = map_username(login, source)
    why_not = check_username(username)
    if why_not:
        problems.add(source.path, line, why_not)
        return None
    if role_text.strip():
        try:
            role = parse_role(role_text)
        except ValueError as e:
            problems.add(source.path, line, str(e))
            return None
    else:
        role = source.role
    return username, role, line
