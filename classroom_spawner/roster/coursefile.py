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
        shared_folders:                   # docs/course-storage.md
          - name: data
            pvc: ds101-data               # or nfs: {server, path}, or home_subpath
            students: read-only           # or none
        staff:                            # instructors and TAs get these instead
          image: quay.io/jupyter/scipy-notebook:2025-06-02
          mem_limit: 8G
        options:                          # KubeSpawner profile_options
          size:
            display_name: Server size
            choices:
              small: {display_name: Small, default: true}
              large: {display_name: Large, staff_only: true,
                      kubespawner_override: {mem_limit: 8G}}
        staff_see_student_homes: true     # shared-home hubs only

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
from .model import (
    Course,
    LessonRepo,
    Role,
    SharedFolder,
    StaffSettings,
    normalize_username,
    parse_role,
)
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
    "shared_folders",
    "staff",
    "options",
    "staff_see_student_homes",
    *MEMBER_KEYS,
}
FOLDER_KEYS = {"name", "pvc", "nfs", "home_subpath", "mount_path", "students"}
FOLDER_SOURCES = ("pvc", "nfs", "home_subpath")
FOLDER_STUDENT_ACCESS = ("read-only", "none")
NFS_KEYS = {"server", "path"}
STAFF_KEYS = {
    "image",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "kubespawner_override",
}
OPTION_KEYS = {"display_name", "choices"}
CHOICE_KEYS = {"display_name", "default", "staff_only", "kubespawner_override"}
# a folder's volume is named shared-<name>, and a volume name is a DNS label (63)
FOLDER_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$")
# an option or choice name is a form field and a KubeSpawner user_options key
OPTION_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
# a PersistentVolumeClaim name: a DNS subdomain
PVC_NAME_RE = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)
NFS_SERVER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:\[\]-]*[A-Za-z0-9\]])?$")
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
        folders = self.shared_folders(fields.get("shared_folders"))
        ok &= folders is not None
        staff = self.staff(fields.get("staff"), kwargs)
        ok &= staff is not False
        options = self.options(fields.get("options"))
        ok &= options is not None
        see_homes = False
        if "staff_see_student_homes" in fields:
            see_homes = _construct(fields["staff_see_student_homes"])
            if not isinstance(see_homes, bool):
                self.problem(
                    fields["staff_see_student_homes"],
                    "staff_see_student_homes must be true or false",
                )
                ok = False
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
            shared_folders=tuple(folders or ()),
            staff=staff or None,
            options=MappingProxyType(options or {}),
            staff_see_student_homes=see_homes is True,
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

    # -- course storage and role-aware servers (docs/course-storage.md) ------------

    def shared_folders(self, node: yaml.Node | None) -> list[SharedFolder] | None:
        if node is None:
            return []
        items = self.sequence(node, "'shared_folders'")
        if items is None:
            return None
        folders: list[SharedFolder] = []
        names: dict[str, int] = {}
        paths: dict[str, int] = {}
        ok = True
        for item in items:
            folder = self.shared_folder(item)
            if folder is None:
                ok = False
                continue
            if folder.name in names:
                self.problem(
                    item,
                    f"shared folder {folder.name!r} is already defined on line"
                    f" {names[folder.name]}",
                )
                ok = False
                continue
            names[folder.name] = _line(item)
            path = folder.mount_path or f"~/shared/{folder.name}"
            clash = _overlapping(path, paths)
            if clash is not None:
                other, other_line = clash
                how = "is" if other == path else f"overlaps {other!r},"
                self.problem(
                    item,
                    f"shared folder {folder.name!r}: mount path {path!r} {how} already"
                    f" used by the folder on line {other_line}",
                )
                ok = False
                continue
            paths[path] = _line(item)
            folders.append(folder)
        return folders if ok else None

    def shared_folder(self, node: yaml.Node) -> SharedFolder | None:
        fields = self.mapping(node, "a shared folder", FOLDER_KEYS)
        if fields is None:
            return None
        if "name" not in fields:
            self.problem(node, "shared folder has no 'name'")
            return None
        name = self.text(fields["name"], "shared folder name")
        if name is None:
            return None
        if not FOLDER_NAME_RE.match(name):
            self.problem(
                fields["name"],
                f"shared folder name {shown(name)} must be 1-50 lower-case letters,"
                " digits or '-', starting and ending with a letter or digit (a DNS label)",
            )
            return None
        given = [key for key in FOLDER_SOURCES if key in fields]
        if len(given) != 1:
            self.problem(
                node,
                f"shared folder {name!r} needs exactly one of pvc, nfs or home_subpath"
                + (f" (it has {' and '.join(given)})" if given else ""),
            )
            return None
        kwargs: dict[str, Any] = {}
        (source,) = given
        if source == "pvc":
            claim = self.text(fields["pvc"], "pvc")
            if claim is None:
                return None
            if not PVC_NAME_RE.match(claim):
                self.problem(
                    fields["pvc"],
                    f"pvc {shown(claim)} is not a PersistentVolumeClaim name (lower-case"
                    " letters, digits, '-' and '.')",
                )
                return None
            kwargs["pvc"] = claim
        elif source == "nfs":
            nfs = self.mapping(fields["nfs"], "nfs", NFS_KEYS)
            if nfs is None:
                return None
            if set(nfs) != NFS_KEYS:
                self.problem(fields["nfs"], "nfs needs both 'server' and 'path'")
                return None
            server = self.text(nfs["server"], "nfs server")
            path = self.text(nfs["path"], "nfs path")
            if server is None or path is None:
                return None
            if not NFS_SERVER_RE.match(server):
                self.problem(
                    nfs["server"], f"nfs server {shown(server)} is not a host name"
                )
                return None
            if not self.absolute_path(nfs["path"], "nfs path", path):
                return None
            kwargs["nfs_server"], kwargs["nfs_path"] = server, path
        else:
            sub = self.text(fields["home_subpath"], "home_subpath")
            if sub is None:
                return None
            parts = sub.split("/")
            if sub.startswith("/") or ".." in parts or "." in parts or "" in parts:
                self.problem(
                    fields["home_subpath"],
                    f"home_subpath {shown(sub)} must be a relative folder of the shared"
                    " home volume, like _courses/ds101/data (no leading '/', no '..',"
                    " no empty parts)",
                )
                return None
            if not self.no_control_characters(
                fields["home_subpath"], "home_subpath", sub
            ):
                return None
            kwargs["home_subpath"] = sub
        if "mount_path" in fields:
            path = self.text(fields["mount_path"], "mount_path")
            if path is None or not self.absolute_path(
                fields["mount_path"], "mount_path", path
            ):
                return None
            kwargs["mount_path"] = path
        if "students" in fields:
            access = self.text(fields["students"], "students")
            if access not in FOLDER_STUDENT_ACCESS:
                if access is not None:
                    self.problem(
                        fields["students"],
                        f"students: {shown(access)} must be read-only or none (staff"
                        " always get the folder read-write; students never do)",
                    )
                return None
            kwargs["students"] = access
        return SharedFolder(name=name, origin=f"{self.path}:{_line(node)}", **kwargs)

    def absolute_path(self, node: yaml.Node, what: str, path: str) -> bool:
        parts = path.split("/")[1:]
        if not path.startswith("/") or ".." in parts or "." in parts or path == "/":
            self.problem(
                node,
                f"{what} {shown(path)} must be an absolute path like /srv/data,"
                " without '.' or '..'",
            )
            return False
        if "{" in path or "}" in path:
            self.problem(node, f"{what} {shown(path)} must not contain '{{' or '}}'")
            return False
        return self.no_control_characters(node, what, path)

    def staff(self, node: yaml.Node | None, course: dict[str, Any]):
        """The staff settings: None if there are none, False if they are wrong."""
        if node is None:
            return None
        fields = self.mapping(node, "staff", STAFF_KEYS)
        if fields is None:
            return False
        ok = True
        kwargs: dict[str, Any] = {}
        if "image" in fields:
            kwargs["image"] = self.text(fields["image"], "staff image")
            ok &= kwargs["image"] is not None and self.no_control_characters(
                fields["image"], "image", kwargs["image"]
            )
        for key in ("cpu_guarantee", "cpu_limit"):
            if key in fields:
                kwargs[key] = self.number(fields[key], f"staff {key}")
                ok &= kwargs[key] is not None
        for key in ("mem_guarantee", "mem_limit"):
            if key in fields:
                kwargs[key] = self.memory(fields[key], f"staff {key}")
                ok &= kwargs[key] is not None
        if not ok:
            return False
        # what staff get: their own settings, else the course's
        effective = {**course, **{k: v for k, v in kwargs.items() if v is not None}}
        at = {key: fields.get(key) for key in STAFF_KEYS}
        cpu_g, cpu_l = effective.get("cpu_guarantee"), effective.get("cpu_limit")
        if cpu_g and cpu_l and cpu_g > cpu_l:
            where = at["cpu_guarantee"] or at["cpu_limit"]
            self.problem(
                where, f"staff get cpu_guarantee {cpu_g:g} above cpu_limit {cpu_l:g}"
            )
            return False
        mem_g, mem_l = effective.get("mem_guarantee"), effective.get("mem_limit")
        if mem_g and mem_l and memory_bytes(mem_g) > memory_bytes(mem_l):
            where = at["mem_guarantee"] or at["mem_limit"]
            self.problem(
                where, f"staff get mem_guarantee {mem_g} above mem_limit {mem_l}"
            )
            return False
        override = self.override(fields.get("kubespawner_override"))
        if override is None:
            return False
        return StaffSettings(kubespawner_override=MappingProxyType(override), **kwargs)

    def options(self, node: yaml.Node | None) -> dict[str, Any] | None:
        """KubeSpawner ``profile_options``, each choice checked like an override."""
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, "options must be a mapping of option names to options")
            return None
        options: dict[str, Any] = {}
        ok = True
        for key_node, value_node in node.value:
            name = self.option_name(key_node, "option")
            if name is None:
                ok = False
                continue
            if name in options:
                self.problem(key_node, f"option {name!r} is defined twice")
                ok = False
                continue
            option = self.option(name, value_node)
            if option is None:
                ok = False
                continue
            options[name] = option
        return options if ok else None

    def option_name(self, node: yaml.Node, what: str) -> str | None:
        name = _construct(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(name, str) or not OPTION_NAME_RE.match(name):
            self.problem(
                node,
                f"{what} name {shown(name)} must be 1-63 lower-case letters, digits,"
                " '_' or '-', starting and ending with a letter or digit",
            )
            return None
        return name

    def option(self, name: str, node: yaml.Node) -> dict[str, Any] | None:
        fields = self.mapping(node, f"option {name!r}", OPTION_KEYS)
        if fields is None:
            return None
        option: dict[str, Any] = {"display_name": name}
        if "display_name" in fields:
            text = self.text(fields["display_name"], "display_name")
            if text is None or not self.no_control_characters(
                fields["display_name"], "display_name", text
            ):
                return None
            option["display_name"] = text
        if "choices" not in fields:
            self.problem(node, f"option {name!r} has no 'choices'")
            return None
        choices_node = fields["choices"]
        if not isinstance(choices_node, yaml.MappingNode) or not choices_node.value:
            self.problem(
                choices_node,
                f"option {name!r}: choices must be a mapping of choice names to choices",
            )
            return None
        choices: dict[str, Any] = {}
        ok = True
        defaults = []
        for key_node, value_node in choices_node.value:
            choice_name = self.option_name(key_node, "choice")
            if choice_name is None:
                ok = False
                continue
            if choice_name in choices:
                self.problem(key_node, f"choice {choice_name!r} is defined twice")
                ok = False
                continue
            choice = self.choice(choice_name, value_node)
            if choice is None:
                ok = False
                continue
            if choice.get("default"):
                defaults.append(key_node)
            choices[choice_name] = choice
        if not ok:
            return None
        if len(defaults) > 1:
            self.problem(
                defaults[1], f"option {name!r} has more than one default choice"
            )
            return None
        if all(c.get("staff_only") for c in choices.values()):
            self.problem(
                choices_node,
                f"option {name!r}: every choice is staff_only, so students would have"
                " none; leave one choice open to students, or give the option to staff"
                " through 'staff'",
            )
            return None
        option["choices"] = choices
        return option

    def choice(self, name: str, node: yaml.Node) -> dict[str, Any] | None:
        fields = self.mapping(node, f"choice {name!r}", CHOICE_KEYS)
        if fields is None:
            return None
        choice: dict[str, Any] = {"display_name": name}
        if "display_name" in fields:
            text = self.text(fields["display_name"], "display_name")
            if text is None or not self.no_control_characters(
                fields["display_name"], "display_name", text
            ):
                return None
            choice["display_name"] = text
        for key in ("default", "staff_only"):
            if key in fields:
                value = _construct(fields[key])
                if not isinstance(value, bool):
                    self.problem(fields[key], f"{key} must be true or false")
                    return None
                if value:
                    choice[key] = True
        if "kubespawner_override" in fields:
            override = self.override(fields["kubespawner_override"])
            if override is None:
                return None
            choice["kubespawner_override"] = override
        return choice

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
