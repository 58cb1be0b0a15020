"""The YAML course file: courses, their settings, their members and their roster files.

Example (every key but ``id`` is optional)::

    courses:
      - id: ds101
        title: Data Science 101
        description: Lectures Tuesday and Thursday
        image: quay.io/jupyter/scipy-notebook:2025-06-02
        cpu_guarantee: 0.5
        cpu_limit: 2
        mem_guarantee: 1G
        mem_limit: 2G
        lessons:
          - url: https://github.com/example/ds101-lessons.git
            ref: main
            target: ds101
        lms_contexts: [4cd3b1d0e8f36c8a]  # LTI context ids of the LMS course
        instructors: [prof.smith@uni.edu]
        tas: [ta.jones@uni.edu]
        students: [alice@uni.edu]
        rosters:
          - file: ds101-canvas.csv        # relative to this file
            format: canvas
            login_column: SIS Login ID

The file is read node by node (not with a plain ``yaml.safe_load``) so every
problem can name the line it is on.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from .csvsource import FORMATS, RosterSource, check_username
from .errors import ProblemCollector, shown
from .model import Course, LessonRepo, Role, normalize_username, parse_role
from .overrides import override_problem

try:  # libyaml is much faster on large member lists
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader

# C0/C1 control characters and DEL, plus the bidirectional overrides and isolates
# that reorder the text around them on a terminal or a web page
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# a description may run over several lines
_DESCRIPTION_ALLOWED = "\n\t"
COURSE_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
# KubeSpawner reads a plain number as bytes only when it is not a string, and we keep
# sizes as text: the unit is required
MEMORY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]$")

MEMBER_KEYS = {"students": Role.STUDENT, "tas": Role.TA, "instructors": Role.INSTRUCTOR}
COURSE_KEYS = {
    "id",
    "title",
    "description",
    "image",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "lessons",
    "rosters",
    "kubespawner_override",
    "lms_contexts",
    *MEMBER_KEYS,
}
LESSON_KEYS = {"url", "ref", "target", "depth"}
# roster entry keys that a format has no use for: an error, not silently ignored
KEYS_NOT_FOR = {
    "csv": ("sections",),  # only Canvas exports have a Section column
    "canvas": (
        "role_column",
        "header",
    ),  # a gradebook has no role column, always a header
}

SOURCE_KEYS = {
    "file",
    "format",
    "login_column",
    "role_column",
    "role",
    "strip_domain",
    "add_domain",
    "sections",
    "header",
}


@dataclass
class CourseEntry:
    """One course as read from a course file, before roster files are read."""

    course: Course
    line: int
    members: list[tuple[str, Role, int]] = field(default_factory=list)
    sources: list[RosterSource] = field(default_factory=list)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _construct(node: yaml.Node) -> Any:
    return yaml.SafeLoader.construct_object(_CONSTRUCTOR, node, deep=True)


class _Constructor(yaml.SafeLoader):
    def __init__(self):  # no stream: used only to build values from composed nodes
        yaml.constructor.SafeConstructor.__init__(self)


_CONSTRUCTOR = _Constructor()


class _CourseFileReader:
    def __init__(self, path: str, problems: ProblemCollector):
        self.path = path
        self.dir = os.path.dirname(path)
        self.problems = problems

    def problem(self, node_or_line, reason: str) -> None:
        line = node_or_line if isinstance(node_or_line, int) else _line(node_or_line)
        self.problems.add(self.path, line, reason)

    # -- generic node helpers -------------------------------------------------

    def mapping(
        self, node: yaml.Node, what: str, known: set[str]
    ) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping of keys to values")
            return None
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key not in known:
                hint = ", ".join(sorted(known))
                self.problem(
                    key_node, f"unknown key {key!r} in {what} (known keys: {hint})"
                )
                continue
            if key in out:
                self.problem(key_node, f"duplicate key {key!r} in {what}")
                continue
            out[key] = value_node
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"{what} must be a list")
            return None
        return list(node.value)

    def text(
        self, node: yaml.Node, what: str, *, allow_empty: bool = False
    ) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, f"{what} must be a single value, not a list or mapping")
            return None
        value = _construct(node)
        if value is None or isinstance(value, bool):
            if allow_empty and value is None:
                return None
            self.problem(node, f"{what} must be text")
            return None
        # as written: YAML would read an unquoted 0101 as 65 and 1.10 as 1.1
        text = (value if isinstance(value, str) else node.value).strip()
        if not text and not allow_empty:
            self.problem(node, f"{what} must not be empty")
            return None
        return text or None

    def number(self, node: yaml.Node, what: str) -> float | None:
        value = _construct(node) if isinstance(node, yaml.ScalarNode) else None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < math.inf
        ):
            self.problem(
                node, f"{what} must be a positive number of CPUs, e.g. 0.5 or 2"
            )
            return None
        return float(value)

    def memory(self, node: yaml.Node, what: str) -> str | None:
        value = _construct(node) if isinstance(node, yaml.ScalarNode) else None
        text = str(value).strip() if value is not None else ""
        if (
            isinstance(value, bool)
            or not MEMORY_RE.match(text)
            or not memory_bytes(text)
        ):
            self.problem(
                node,
                f"{what} {text or value!r} is not a memory size like 512M, 1.5G or 2G",
            )
            return None
        return text

    # -- the document ---------------------------------------------------------

    def read(self, data: bytes) -> list[CourseEntry]:
        try:
            root = yaml.compose(data, Loader=_Loader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark else None
            self.problems.add(self.path, line, f"not valid YAML: {e.problem or e}")
            return []
        except yaml.YAMLError as e:
            self.problems.add(self.path, None, f"not valid YAML: {e}")
            return []
        if root is None:
            self.problems.add(
                self.path, 1, "empty course file; expected a 'courses:' list"
            )
            return []
        top = self.mapping(root, "the course file", {"courses"})
        if top is None:
            return []
        if "courses" not in top:
            self.problem(root, "the course file has no 'courses:' list")
            return []
        nodes = self.sequence(top["courses"], "'courses'")
        entries = []
        for node in nodes or []:
            try:
                entry = self.course(node)
            except yaml.MarkedYAMLError as e:  # a tag or a key YAML cannot build
                mark = e.problem_mark or e.context_mark
                line = mark.line + 1 if mark else _line(node)
                self.problems.add(self.path, line, f"not valid here: {e.problem or e}")
                continue
            if entry:
                entries.append(entry)
        return entries

    def course(self, node: yaml.Node) -> CourseEntry | None:
        fields = self.mapping(node, "a course", COURSE_KEYS)
        if fields is None:
            return None
        if "id" not in fields:
            self.problem(node, "course has no 'id'")
            return None
        course_id = self.text(fields["id"], "course id")
        if course_id is None:
            return None
        course_id = course_id.lower()
        if not COURSE_ID_RE.match(course_id):
            self.problem(
                fields["id"],
                f"course id {course_id!r} must be 1-63 letters, digits, '.', '_' or '-',"
                " starting and ending with a letter or digit",
            )
            return None
        ok = True
        kwargs: dict[str, Any] = {}
        for key in ("title", "description", "image"):
            if key in fields:
                value = self.text(fields[key], key, allow_empty=key == "description")
                ok &= value is not None or key == "description"
                if value and not self.no_control_characters(fields[key], key, value):
                    ok = False
                kwargs[key] = value or ""
        for key in ("cpu_guarantee", "cpu_limit"):
            if key in fields:
                kwargs[key] = self.number(fields[key], key)
                ok &= kwargs[key] is not None
        for key in ("mem_guarantee", "mem_limit"):
            if key in fields:
                kwargs[key] = self.memory(fields[key], key)
                ok &= kwargs[key] is not None
        ok &= self.check_guarantees(fields, kwargs)
        lessons = self.lessons(fields.get("lessons"))
        ok &= lessons is not None
        override = self.override(fields.get("kubespawner_override"))
        ok &= override is not None
        contexts = self.lms_contexts(fields.get("lms_contexts"))
        ok &= contexts is not None
        members = []
        for key, role in MEMBER_KEYS.items():
            if key in fields:
                members.extend(self.members(fields[key], key, role))
        sources = []
        if "rosters" in fields:
            for source_node in self.sequence(fields["rosters"], "'rosters'") or []:
                source = self.source(source_node)
                ok &= source is not None
                if source is not None:
                    sources.append(source)
        if not ok:
            return None
        course = Course(
            id=course_id,
            title=kwargs.get("title") or course_id,
            description=kwargs.get("description", ""),
            image=kwargs.get("image") or None,
            cpu_guarantee=kwargs.get("cpu_guarantee"),
            cpu_limit=kwargs.get("cpu_limit"),
            mem_guarantee=kwargs.get("mem_guarantee"),
            mem_limit=kwargs.get("mem_limit"),
            lessons=tuple(lessons or ()),
            kubespawner_override=MappingProxyType(override or {}),
            origin=f"{self.path}:{_line(node)}",
            lms_contexts=tuple(contexts or ()),
        )
        return CourseEntry(course, _line(node), members, sources)

    def no_control_characters(self, node: yaml.Node, what: str, value: str) -> bool:
        """Titles and images are shown on the spawn page and printed by the CLI:
        a control character there could rewrite an admin's terminal."""
        allowed = _DESCRIPTION_ALLOWED if what == "description" else ""
        for match in _CONTROL_RE.finditer(value):
            if match.group() not in allowed:
                self.problem(
                    node,
                    f"{what} contains the control character {match.group()!r}"
                    f" (as character {match.start() + 1})"
                    + (
                        ""
                        if allowed
                        else " (a title or image is one line of plain text)"
                    ),
                )
                return False
        return True

    def check_guarantees(
        self, fields: dict[str, yaml.Node], kwargs: dict[str, Any]
    ) -> bool:
        ok = True
        cpu_g, cpu_l = kwargs.get("cpu_guarantee"), kwargs.get("cpu_limit")
        if cpu_g and cpu_l and cpu_g > cpu_l:
            self.problem(
                fields["cpu_guarantee"],
                f"cpu_guarantee {cpu_g:g} is above cpu_limit {cpu_l:g}",
            )
            ok = False
        mem_g, mem_l = kwargs.get("mem_guarantee"), kwargs.get("mem_limit")
        if mem_g and mem_l and memory_bytes(mem_g) > memory_bytes(mem_l):
            self.problem(
                fields["mem_guarantee"],
                f"mem_guarantee {mem_g} is above mem_limit {mem_l}",
            )
            ok = False
        return ok

    def lessons(self, node: yaml.Node | None) -> list[LessonRepo] | None:
        if node is None:
            return []
        items = self.sequence(node, "'lessons'")
        if items is None:
            return None
        from ..lessons.sync import (
            default_target,
            validate_depth,
            validate_ref,
            validate_repo_url,
            validate_target,
        )

        repos, targets, ok = [], {}, True
        for item in items:
            if isinstance(item, yaml.ScalarNode):
                fields = {"url": item}
            else:
                fields = self.mapping(item, "a lesson repo", LESSON_KEYS)
                if fields is None:
                    ok = False
                    continue
            if "url" not in fields:
                self.problem(item, "lesson repo has no 'url'")
                ok = False
                continue
            # each check reports at the line of the key it is about
            at = fields["url"]
            try:
                url = validate_repo_url(self.text(at, "lesson url") or "")
                ref = None
                if "ref" in fields:
                    at = fields["ref"]
                    ref_text = self.text(at, "lesson ref", allow_empty=True)
                    ref = validate_ref(ref_text) if ref_text else None
                if "target" in fields:
                    at = fields["target"]
                    target = validate_target(self.text(at, "lesson target") or "")
                else:  # named after the repo (the url's line)
                    at = fields["url"]
                    target = default_target(url)
                if "`" in target:
                    raise ValueError(
                        f"lesson target folder {shown(target)} contains a backtick (`), which a"
                        " student's shell reads as the start of a command; pick a folder"
                        " name without one"
                        + ("" if "target" in fields else " (set 'target')")
                    )
                if "depth" in fields:
                    at = fields["depth"]
                    depth = validate_depth(_construct(at))
                else:
                    depth = None
            except ValueError as e:
                self.problem(at, str(e))
                ok = False
                continue
            clash = _overlapping(target, targets)
            if clash is not None:
                other, other_line = clash
                how = (
                    "is already used"
                    if other == target
                    else f"overlaps {other!r}, used"
                )
                self.problem(
                    fields.get("target", fields["url"]),
                    f"lesson target folder {target!r} {how} by the repo on line {other_line}",
                )
                ok = False
                continue
            targets[target] = _line(item)
            repos.append(LessonRepo(url=url, ref=ref, target=target, depth=depth))
        return repos if ok else None

    def override(self, node: yaml.Node | None) -> dict[str, Any] | None:
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.problem(
                node,
                "kubespawner_override must be a mapping of KubeSpawner trait names to values",
            )
            return None
        override = _construct(node)
        ok = True
        for key_node, _value_node in node.value:
            key = _construct(key_node)
            why = override_problem(key, override.get(key))
            if why:
                self.problem(key_node, f"kubespawner_override: {why}")
                ok = False
        return override if ok else None

    def lms_contexts(self, node: yaml.Node | None) -> list[str] | None:
        """The LTI context ids (the LMS's course ids) that launch into the course."""
        if node is None:
            return []
        items = self.sequence(node, "'lms_contexts'")
        if items is None:
            return None
        contexts: list[str] = []
        for item in items:
            text = self.text(item, "an LMS context id")
            if text is None:
                return None
            if len(text) > 255:
                self.problem(
                    item, "an LMS context id is at most 255 characters (LTI 1.3)"
                )
                return None
            if text in contexts:
                self.problem(item, f"LMS context id {text!r} is listed twice")
                return None
            contexts.append(text)
        return contexts

    def members(self, node: yaml.Node, key: str, role: Role):
        for item in self.sequence(node, f"'{key}'") or []:
            login = self.text(item, f"a member of '{key}'")
            if login is None:
                continue
            username = normalize_username(login)
            why_not = check_username(username)
            if why_not:
                self.problem(item, why_not)
                continue
            yield username, role, _line(item)

    def source(self, node: yaml.Node) -> RosterSource | None:
        fields = self.mapping(node, "a roster entry", SOURCE_KEYS)
        if fields is None:
            return None
        if "file" not in fields:
            self.problem(node, "roster entry has no 'file'")
            return None
        file = self.text(fields["file"], "roster file")
        if file is None:
            return None
        kwargs: dict[str, Any] = {}
        ok = True
        fmt = (
            self.text(fields["format"], "roster format")
            if "format" in fields
            else "csv"
        )
        if fmt is not None:
            fmt = fmt.lower()
            if fmt not in FORMATS:
                self.problem(
                    fields["format"],
                    f"unknown roster format {fmt!r}; expected one of: {', '.join(FORMATS)}",
                )
                ok = False
            for key in KEYS_NOT_FOR.get(fmt, ()):
                if key in fields:
                    self.problem(
                        fields[key],
                        f"'{key}' does not apply to format {fmt} (it would be ignored)",
                    )
                    ok = False
        for key in ("login_column", "role_column", "add_domain"):
            if key in fields:
                kwargs[key] = self.text(fields[key], key)
                ok &= kwargs[key] is not None
        if "role" in fields:
            role_text = self.text(fields["role"], "role")
            try:
                kwargs["role"] = parse_role(role_text or "")
            except ValueError as e:
                self.problem(fields["role"], str(e))
                ok = False
        if "strip_domain" in fields:
            value = _construct(fields["strip_domain"])
            if value is True or (isinstance(value, str) and value.strip()):
                kwargs["strip_domain"] = value if value is True else value.strip()
            elif value not in (False, None):
                self.problem(
                    fields["strip_domain"],
                    "strip_domain must be true or a domain such as uni.edu",
                )
                ok = False
        if "header" in fields:
            value = _construct(fields["header"])
            if not isinstance(value, bool):
                self.problem(fields["header"], "header must be true or false")
                ok = False
            else:
                kwargs["header"] = value
        if "sections" in fields:
            section_nodes = self.sequence(fields["sections"], "'sections'") or []
            sections = [self.text(n, "a section") for n in section_nodes]
            if None in sections:
                ok = False
            kwargs["sections"] = tuple(s for s in sections if s)
            kwargs["section_origins"] = tuple(
                (self.path, _line(n)) for n, s in zip(section_nodes, sections) if s
            )
        if not ok:
            return None
        path = file if os.path.isabs(file) else os.path.join(self.dir, file)
        return RosterSource(
            path=os.path.normpath(path),
            format=fmt,
            origin=f"{self.path}:{_line(node)}",
            **kwargs,
        )


def _overlapping(target: str, taken: dict[str, int]) -> tuple[str, int] | None:
    """A folder already taken that is ``target``, inside it, or contains it."""
    for other, line in taken.items():
        if (
            target == other
            or target.startswith(other + "/")
            or other.startswith(target + "/")
        ):
            return other, line
    return None


def memory_bytes(text: str) -> float:
    """Bytes in a memory size written like KubeSpawner's mem_limit (``1G`` = 1024**3)."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    return float(text[:-1]) * units[text[-1]]


def read_course_file(
    path: str, data: bytes, problems: ProblemCollector
) -> list[CourseEntry]:
    """Parse a course file's bytes. Problems go to ``problems``; good courses are returned."""
    return _CourseFileReader(path, problems).read(data)
