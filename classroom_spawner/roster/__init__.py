"""Course rosters: one model of courses and members, read from files admins already have."""

from .configurable import ClassroomRoster
from .errors import RosterError, RosterProblem
from .model import Course, LessonRepo, Role, Roster, normalize_username, parse_role

__all__ = [
    "ClassroomRoster",
    "Course",
    "LessonRepo",
    "Role",
    "Roster",
    "RosterError",
    "RosterProblem",
    "normalize_username",
    "parse_role",
]
