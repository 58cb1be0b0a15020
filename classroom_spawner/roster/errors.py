"""Roster errors that always say where: ``file:line: reason``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RosterProblem:
    """One thing wrong with a roster input, located in its file."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}:{self.line}: {self.reason}"


def shown(text: str, limit: int = 60) -> str:
    """Quote text from an input file for a message: repr() (control characters
    escaped, so a log line stays one line) and cut to about ``limit`` characters."""
    text = str(text)
    if len(text) > limit:
        return repr(text[:limit]) + f" (cut, {len(text)} characters)"
    return repr(text)


class RosterError(Exception):
    """A roster could not be loaded. Carries every problem found, not just the first,
    so an admin fixes a file in one round."""

    def __init__(
        self,
        problems: list[RosterProblem],
        files: dict | None = None,
        warnings: list[RosterProblem] | None = None,
    ):
        self.problems = list(problems)
        # the files the failed read looked at, with their fingerprints
        self.files = dict(files or {})
        # what would have been warnings had the roster been readable
        self.warnings = list(warnings or [])
        super().__init__(self.__str__())

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the course roster:"
        return "\n".join([head] + [f"  {p}" for p in self.problems])


class ProblemCollector:
    """Collects problems while a loader keeps going, so one run reports them all.

    A problem makes the whole roster unreadable; a warning is something skipped
    or suspicious that the admin should see, with the roster still in force.
    """

    def __init__(self):
        self.problems: list[RosterProblem] = []
        self.warnings: list[RosterProblem] = []

    def add(self, path: str, line: int | None, reason: str) -> None:
        self.problems.append(RosterProblem(str(path), line, reason))

    def warn(self, path: str, line: int | None, reason: str) -> None:
        self.warnings.append(RosterProblem(str(path), line, reason))

    def raise_if_any(self, files: dict | None = None) -> None:
        if self.problems:
            raise RosterError(self.problems, files, self.warnings)
