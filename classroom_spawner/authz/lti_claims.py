"""What an LTI 1.3 launch says: which course, which role, which lesson.

A launch's id_token (already verified by the authenticator) carries the LMS
course it came from (the *context* claim), the person's roles in it (the
*roles* claim, LIS role URIs) and, optionally, custom parameters and the
target link the instructor put on the course page. This module turns those
into our terms: a course id (through the course file's ``lms_contexts:``), a
:class:`~classroom_spawner.roster.Role`, and a lesson notebook to open.

The role table (:data:`DEFAULT_ROLE_MAP`), by LIS v2 role URI:

=====================================================  ==========
LTI role                                               our role
=====================================================  ==========
``membership#Learner`` (and its sub-roles)             student
``membership#Member``                                  student
``membership/Instructor#TeachingAssistant``            ta
``membership/Instructor#Grader``                       ta
``membership#ContentDeveloper`` (and its sub-roles)    ta
``membership#Instructor`` (and its other sub-roles)    instructor
``membership#Administrator`` (the course's)            instructor
``institution/person#Student`` / ``#Learner``          student (*)
``institution/person#Faculty`` / ``#Instructor``       instructor (*)
``membership#Mentor``, ``#Manager``, ``#Officer``      (none)
=====================================================  ==========

(*) Institution roles say what someone is at the university, not in this
course: they count only when the launch carries no course (membership) role at
all. The highest role wins, except that a TA sub-role (TeachingAssistant,
Grader) makes the ``membership#Instructor`` that LMSs send along with it count
as TA. The short forms (``Learner``, ``Instructor``, ...) that LTI 1.3 allows
for course roles are read like the full URIs. A launch with no role we map is
refused. System roles (``system/person#Administrator``) never make anyone a hub
admin.

Everything here is pure: no hub, no I/O.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

from ..roster import Course, Role, parse_role

CONTEXT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/context"
ROLES_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/roles"
CUSTOM_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/custom"
TARGET_LINK_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/target_link_uri"
DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
MEMBERSHIP = LIS + "membership"
INSTITUTION = LIS + "institution/person"

#: LIS role (full URI, or ``membership#Name`` / ``membership/Principal#Sub``
#: relative to the LIS v2 vocabulary) -> our role. Sub-roles not listed take
#: their principal role's entry.
DEFAULT_ROLE_MAP: dict[str, str] = {
    "membership#Learner": "student",
    "membership#Member": "student",
    "membership/Instructor#TeachingAssistant": "ta",
    "membership/Instructor#Grader": "ta",
    "membership#ContentDeveloper": "ta",
    "membership#Instructor": "instructor",
    "membership#Administrator": "instructor",
    "institution/person#Student": "student",
    "institution/person#Learner": "student",
    "institution/person#Faculty": "instructor",
    "institution/person#Instructor": "instructor",
}

_TA_SUBROLES = (
    "membership/Instructor#TeachingAssistant",
    "membership/Instructor#Grader",
)
_SHORT_ROLE = re.compile(r"^[A-Za-z]+$")


def parse_role_map(raw: Mapping[str, Any]) -> dict[str, Role | None]:
    """Validate a role table (``lti_role_map``): keys are LIS role URIs (full, or
    relative to the LIS v2 vocabulary), values ``student``/``ta``/``instructor``
    or None (the role gives no access). Raises ValueError naming the entry."""
    table: dict[str, Role | None] = {}
    for uri, value in raw.items():
        if not isinstance(uri, str) or not uri.strip():
            raise ValueError(
                f"lti_role_map: role URIs must be non-empty strings, got {uri!r}"
            )
        key = _relative(uri.strip())
        if value is None or value == "":
            table[key] = None
            continue
        try:
            table[key] = parse_role(value)
        except ValueError as e:
            raise ValueError(f"lti_role_map[{uri!r}]: {e}") from None
    return table


def _relative(uri: str) -> str:
    """A role URI relative to the LIS v2 vocabulary; short course roles expanded."""
    if uri.startswith(LIS):
        return uri[len(LIS) :]
    if _SHORT_ROLE.match(uri):  # LTI 1.3 allows "Learner" for the course role
        return f"membership#{uri}"
    return uri


def _principal(role: str) -> str:
    """``membership/Learner#GuestLearner`` -> ``membership#Learner``."""
    head = role.partition("#")[0]
    if head.startswith("membership/"):
        return "membership#" + head[len("membership/") :]
    return role


def lti_role(
    roles: Any, table: Mapping[str, Role | None]
) -> tuple[Role | None, list[str]]:
    """Our role for a launch's roles claim, and notes on what was ignored.

    None if no role in the claim gives access (see the module's table).
    """
    notes: list[str] = []
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, (list, tuple)):
        return None, ["the launch has no roles claim"]
    course_roles: list[tuple[str, Role | None]] = []
    institution_roles: list[tuple[str, Role | None]] = []
    for uri in roles:
        if not isinstance(uri, str) or not uri:
            continue
        rel = _relative(uri)
        if rel.startswith("membership"):
            if rel in table:
                course_roles.append((rel, table[rel]))
            elif _principal(rel) in table:
                course_roles.append((rel, table[_principal(rel)]))
            else:
                course_roles.append((rel, None))
                notes.append(f"LTI role {rel!r} is not in the role table")
        elif rel.startswith("institution/"):
            institution_roles.append((rel, table.get(rel)))
        # system roles (and anything else) are ignored on purpose
    candidates = course_roles or institution_roles
    has_ta_subrole = any(rel in _TA_SUBROLES for rel, _ in course_roles)
    best: Role | None = None
    for rel, role in candidates:
        if role is None:
            continue
        if (
            has_ta_subrole
            and rel == "membership#Instructor"
            and role is Role.INSTRUCTOR
        ):
            role = Role.TA
        if best is None or role.rank > best.rank:
            best = role
    return best, notes


@dataclass(frozen=True)
class ContextIndex:
    """LMS context id -> course id, built from the courses' ``lms_contexts``."""

    courses: Mapping[str, str]
    #: context ids that two courses both list (a launch from them is refused)
    ambiguous: Mapping[str, tuple[str, ...]]


def context_index(courses: Mapping[str, Course]) -> ContextIndex:
    found: dict[str, list[Course]] = {}
    for course in courses.values():
        for context in course.lms_contexts:
            found.setdefault(context, []).append(course)
    index = {ctx: cs[0].id for ctx, cs in found.items() if len(cs) == 1}
    ambiguous = {
        ctx: tuple(f"{c.id} ({c.origin})" for c in cs)
        for ctx, cs in found.items()
        if len(cs) > 1
    }
    return ContextIndex(index, ambiguous)


def launch_context(id_token: Mapping[str, Any]) -> tuple[str | None, str]:
    """The context (LMS course) id of a launch and its title, for messages."""
    context = id_token.get(CONTEXT_CLAIM)
    if not isinstance(context, Mapping):
        return None, ""
    cid = context.get("id")
    if not isinstance(cid, str) or not cid:
        return None, ""
    title = context.get("title") or context.get("label") or ""
    return cid, str(title)[:200]


# -- lessons --------------------------------------------------------------

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,127}$")


def _clean_path(text: str, what: str, max_parts: int) -> str:
    if not isinstance(text, str) or not text:
        raise ValueError(f"{what} is empty")
    if "\\" in text or text.startswith("/") or len(text) > 512:
        raise ValueError(f"{what} must be a relative path with '/' between folders")
    parts = text.split("/")
    if len(parts) > max_parts:
        raise ValueError(f"{what} has more than {max_parts} parts")
    for part in parts:
        if part in ("", ".", "..") or not _SEGMENT.match(part):
            raise ValueError(
                f"{what} has a part that is not a plain file or folder name"
                " (letters, digits, spaces, '.', '_', '+', '-'; no '..')"
            )
    if posixpath.normpath(text) != text:
        raise ValueError(f"{what} is not a normalised path")
    return text


@dataclass(frozen=True)
class LessonLink:
    lesson: str  # a lesson repo's target folder
    notebook: str  # a path inside it

    @property
    def path(self) -> str:
        return f"{self.lesson}/{self.notebook}"


def lesson_link(
    id_token: Mapping[str, Any], course: Course | None
) -> tuple[LessonLink | None, str | None]:
    """The lesson notebook a launch asks to open, and why it was refused, if it was.

    Read from the custom parameters ``lesson`` and ``notebook`` (first), else
    from the ``lesson`` and ``notebook`` query parameters of the target link
    URI. ``lesson`` must be the target folder of one of the course's lesson
    repos; ``notebook`` a plain relative path inside it. Returns
    ``(None, None)`` if the launch names no lesson.
    """
    custom = id_token.get(CUSTOM_CLAIM)
    lesson = notebook = None
    if isinstance(custom, Mapping) and (custom.get("lesson") or custom.get("notebook")):
        lesson, notebook = custom.get("lesson"), custom.get("notebook")
    else:
        target = id_token.get(TARGET_LINK_CLAIM)
        if isinstance(target, str) and "?" in target:
            query = parse_qs(urlparse(target).query)
            lesson = (query.get("lesson") or [None])[0]
            notebook = (query.get("notebook") or [None])[0]
    if not lesson and not notebook:
        return None, None
    if course is None:
        return None, "the launch names a lesson but no course"
    try:
        lesson = _clean_path(str(lesson or ""), "the lesson", 8)
        notebook = _clean_path(str(notebook or ""), "the notebook", 16)
    except ValueError as e:
        return None, str(e)
    if lesson not in {repo.target for repo in course.lessons}:
        return None, f"course {course.id!r} has no lesson {lesson!r}"
    return LessonLink(lesson, notebook), None


def loggable_roles(roles: Any) -> list[str]:
    """The roles claim cut to what is safe to log (role URIs, at most 10)."""
    if not isinstance(roles, (list, tuple)):
        roles = [roles]
    return [str(r)[:120] for r in roles[:10]]
