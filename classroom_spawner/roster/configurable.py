"""ClassroomRoster: the one place a hub admin configures rosters.

The authenticator and the spawner both read rosters through this class, so the
course files are configured once (``c.ClassroomRoster.course_files``) and read
once per change, whichever of the two asks first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import ClassVar

from traitlets import Float, List, Unicode, Union, validate
from traitlets.config import Config, LoggingConfigurable

from .errors import RosterError, RosterProblem
from .loader import LoadResult, files_changed, fingerprints, load_roster
from .model import Role, Roster


class ClassroomRoster(LoggingConfigurable):
    """Courses and their members, read from course files and roster exports.

    Changes on disk are picked up without restarting the hub. A roster that
    breaks while the hub runs keeps the last good roster in force and logs
    every problem with its file and line.
    """

    course_files = Union(
        [List(Unicode()), Unicode()],
        default_value=[],
        config=True,
        help="""
        YAML course files: each lists courses with their settings (title, image,
        CPU and memory, lesson repos), their members by role, and the CSV roster
        files (plain ``username,role`` lists or Canvas gradebook exports) that add
        more members. Relative paths in a course file are relative to that file.

        Example::

            c.ClassroomRoster.course_files = ["/srv/classroom/courses.yaml"]

        A single path is accepted too. A course id may appear in only one file.
        See the roster documentation for the full format.
        """,
    ).tag(allow_config=True)

    @validate("course_files")
    def _validate_course_files(self, proposal):
        value = proposal.value
        if isinstance(value, str):
            value = [value]
        return [os.path.expanduser(p) for p in value]

    check_interval = Float(
        10,
        config=True,
        help="""
        Seconds between checks for changed roster files.

        At most once per interval, a login or spawn that reads the roster looks
        at the files' modification times (a few ``stat`` calls, off the event
        loop); only a changed file leads to a re-read. 0 checks on every read.
        """,
    )

    # Snapshots shared by every instance configured with the same files: the
    # authenticator and each user's spawner get their own ClassroomRoster, but
    # the roster is read once per change.
    _shared: ClassVar[dict[tuple, _SharedState]] = {}

    @classmethod
    def from_config(cls, config: Config | None, log=None) -> ClassroomRoster:
        """The roster as configured in ``config`` (the hub's config object)."""
        kwargs = {"config": config or Config()}
        if log is not None:
            kwargs["log"] = log
        return cls(**kwargs)

    @property
    def _state(self) -> _SharedState:
        key = tuple(os.path.abspath(p) for p in self.course_files)
        state = self._shared.get(key)
        if state is None:
            state = self._shared[key] = _SharedState()
        return state

    # -- loading --------------------------------------------------------------

    def load(self) -> Roster:
        """Read the roster now, blocking. For hub start-up and the CLI.

        Raises :class:`RosterError` (every problem with file and line) if the
        roster cannot be read; nothing is replaced then.
        """
        result = load_roster(self.course_files)
        state = self._state
        state.install(result)
        self._log_loaded(result)
        return state.roster

    def ensure_loaded(self) -> Roster:
        """The current snapshot, reading the files first if nothing was read yet."""
        state = self._state
        if state.result is None:
            return self.load()
        return state.roster

    @property
    def last_error(self) -> RosterError | None:
        """Why the files on disk are not in force, if the last re-read failed."""
        return self._state.error

    @property
    def warnings(self) -> tuple[RosterProblem, ...]:
        """What reading the roster in force skipped or found suspicious (rows
        without a login, a section filter that matches no one), with file and line."""
        result = self._state.result
        return result.warnings if result is not None else ()

    async def current(self) -> Roster:
        """The roster in force, re-read first if the files changed (at most once
        per :attr:`check_interval`). Never raises for a broken file once a good
        roster was loaded: the last good one stays in force.
        """
        state = self._state
        if state.result is None:
            async with state.lock:
                if state.result is None:
                    result = await asyncio.get_running_loop().run_in_executor(
                        None, load_roster, self.course_files
                    )
                    state.install(result)
                    self._log_loaded(result)
            return state.roster
        now = time.monotonic()
        if now - state.checked_at < self.check_interval or state.lock.locked():
            return state.roster
        async with state.lock:
            if time.monotonic() - state.checked_at >= self.check_interval:
                await self._reload_if_changed(state)
        return state.roster

    def set_extra_members(
        self, source: str, members: Mapping[str, Mapping[str, Role]]
    ) -> None:
        """Members from a source that is not a file (``source``: e.g. ``"lms"``),
        ``{course_id: {username: Role}}``, added to the files' roster from now on
        (replacing what ``source`` gave before). Only courses of the files count."""
        state = self._state
        state.extra[source] = {c: dict(m) for c, m in members.items()}
        state.merge()

    @property
    def extra_members(self) -> Mapping[str, Mapping[str, Mapping[str, Role]]]:
        """What :meth:`set_extra_members` gave, by source."""
        return self._state.extra

    async def _reload_if_changed(self, state: _SharedState) -> None:
        loop = asyncio.get_running_loop()
        changed = await loop.run_in_executor(None, files_changed, state.watched)
        state.checked_at = time.monotonic()
        if not changed:
            return
        before = await loop.run_in_executor(None, fingerprints, list(state.watched))
        try:
            result = await loop.run_in_executor(None, load_roster, self.course_files)
        except RosterError as e:
            if state.error is None or state.error.problems != e.problems:
                self.log.error(
                    "Roster files changed but cannot be read; the last good roster"
                    " (%s) stays in force until they are fixed.\n%s",
                    state.result.roster,
                    e,
                )
            state.error = e
            # watch the broken files as they are now: re-read when they change
            # again (the fix), not on every check
            state.watched = dict(e.files)
            return
        except Exception:
            self.log.exception(
                "Unexpected error re-reading the roster; keeping the last good one"
            )
            # as for a broken file: try again when the files change, not at every check
            state.watched = before
            return
        state.install(result)
        self._log_loaded(result, reloaded=True)

    def _log_loaded(self, result: LoadResult, reloaded: bool = False) -> None:
        roster = result.roster
        self.log.info(
            "%s roster: %d courses, %d people, %d enrolments from %d files",
            "Reloaded" if reloaded else "Loaded",
            len(roster.courses),
            roster.people,
            roster.enrolment_count,
            len(result.files),
        )
        state = self._state
        if result.warnings and state.warned_for != result.files:
            # once per change of the files, however often they are loaded
            state.warned_for = dict(result.files)
            self._log_warnings(result.warnings)

    def _log_warnings(self, warnings: tuple[RosterProblem, ...]) -> None:
        n = len(warnings)
        lines = [f"  {w}" for w in warnings[:MAX_LOGGED_WARNINGS]]
        if n > MAX_LOGGED_WARNINGS:
            lines.append(f"  ... and {n - MAX_LOGGED_WARNINGS} more")
        self.log.warning(
            "The roster is in force, with %d warning%s (classroom-spawner check lists them):\n%s",
            n,
            "s" if n != 1 else "",
            "\n".join(lines),
        )


# a Canvas export can hold many people without a login: the log gets the first few
MAX_LOGGED_WARNINGS = 20


class _SharedState:
    def __init__(self):
        self.result: LoadResult | None = None
        self.error: RosterError | None = None
        # the files (with their fingerprints) whose warnings were last logged
        self.warned_for: dict | None = None
        self.watched: dict = {}
        self.checked_at = time.monotonic()
        self.lock = asyncio.Lock()
        # members from other sources than the files (the LMS), by source
        self.extra: dict[str, dict[str, dict[str, Role]]] = {}
        self.roster: Roster | None = None

    def install(self, result: LoadResult) -> None:
        self.result = result
        self.error = None
        self.watched = dict(result.files)
        self.checked_at = time.monotonic()
        self.merge()

    def merge(self) -> None:
        """The roster in force: the files' one, plus the other sources' members."""
        if self.result is None:
            return
        roster = self.result.roster
        for members in self.extra.values():
            roster = roster.with_members(members)
        self.roster = roster
