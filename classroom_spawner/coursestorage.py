"""Course storage: the volumes and mounts a course gives each of its roles.

- **Shared folders** (``shared_folders`` in the course file): one volume and mount
  each, read-write for the course's instructors and TAs, read-only for students
  (or left out for them: ``students: none``). A folder is an existing claim
  (``pvc``), an NFS export (``nfs``) or a directory of the hub's shared home
  volume (``home_subpath``).
- **Staff see their students' homes** (``staff_see_student_homes``): on a hub whose
  homes are one shared volume with a ``subPath`` per user (Zero to JupyterHub's
  ``storage.type: static``), each staff member gets the homes of *their course's*
  students (the roster's, at spawn time) read-only at ``<home>/students/<name>``.

Pure functions over a course, a role and :class:`HubStorage` (what the hub's own
``volumes``/``volume_mounts`` say about its homes); no spawner, no cluster.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .mounts import _entries
from .roster.model import Course, Role, SharedFolder

#: where a staff member's view of the students' homes goes, below their home
STUDENTS_DIR = "students"
#: where shared folders go by default, below the home
SHARED_DIR = "shared"
#: the placeholders of a shared home's subPath that name the user
_USER_FIELDS = ("{username}", "{unescaped_username}")


@dataclass(frozen=True)
class SharedHome:
    """The hub's shared home volume: one volume, a ``subPath`` per user."""

    volume: str  # the volume's name in the pod
    sub_path: str  # the home mount's subPath template, e.g. "{username}"

    def sub_path_of(self, username: str, slug_scheme: str = "safe") -> str | None:
        """The subPath KubeSpawner gives ``username``'s home, as literal text (None
        when the template uses anything but the username)."""
        rest = self.sub_path
        for field in _USER_FIELDS:
            rest = rest.replace(field, "")
        if "{" in rest or "}" in rest:
            return None
        return self.sub_path.replace(
            "{username}", user_slug(username, slug_scheme)
        ).replace("{unescaped_username}", username)


@dataclass(frozen=True)
class HubStorage:
    """What the hub's configuration says about homes, for course storage."""

    home_mount_path: str = "/home/jovyan"
    shared_home: SharedHome | None = None
    #: why there is no shared home (for check), when there is none
    no_shared_home: str = "the hub has no home volume"
    slug_scheme: str = "safe"
    #: where the hub's own configuration mounts something (a folder there replaces it)
    mount_paths: tuple[str, ...] = ()


def user_slug(username: str, scheme: str = "safe") -> str:
    """``{username}`` as KubeSpawner expands it for ``username`` (its slug scheme)."""
    from kubespawner.slugs import escape_slug, safe_slug

    if scheme == "escape":
        return escape_slug(username)
    return safe_slug(username, max_length=48)


def hub_storage(
    volumes: Any,
    volume_mounts: Any,
    home_mount_path: str,
    *,
    slug_scheme: str = "safe",
) -> HubStorage:
    """Find the shared home in the hub's (list- or dict-shaped) volumes and mounts:
    the mount at the home path whose ``subPath`` names the user, of a volume
    that is one claim (no ``{pvc_name}``, no per-user template) or an NFS export."""
    found = _find_shared_home(volumes, volume_mounts, home_mount_path, slug_scheme)
    paths = tuple(
        str(m.get("mountPath"))
        for _k, m in _entries(volume_mounts)
        if isinstance(m, Mapping) and m.get("mountPath")
    )
    return dataclasses.replace(found, mount_paths=paths)


def _find_shared_home(volumes, volume_mounts, home_mount_path, slug_scheme):
    home = next(
        (
            m
            for _k, m in _entries(volume_mounts)
            if isinstance(m, Mapping) and m.get("mountPath") == home_mount_path
        ),
        None,
    )
    if home is None:
        return HubStorage(
            home_mount_path,
            None,
            f"nothing is mounted at the home ({home_mount_path})",
            slug_scheme,
        )
    volume = next(
        (
            v
            for _k, v in _entries(volumes)
            if isinstance(v, Mapping) and v.get("name") == home.get("name")
        ),
        None,
    )
    sub_path = str(home.get("subPath") or "")
    claim = ((volume or {}).get("persistentVolumeClaim") or {}).get("claimName", "")
    shared_kind = (bool(claim) and "{" not in str(claim)) or "nfs" in (volume or {})
    if volume is None or not shared_kind:
        why = (
            "homes are a disk per user (the home volume is the user's own claim,"
            f" {claim})"
            if claim
            else "the home volume is not one shared claim or NFS export"
        )
        return HubStorage(home_mount_path, None, why, slug_scheme)
    if not any(field in sub_path for field in _USER_FIELDS):
        return HubStorage(
            home_mount_path,
            None,
            f"the home mount's subPath ({sub_path or 'none'}) does not name the user",
            slug_scheme,
        )
    return HubStorage(
        home_mount_path, SharedHome(str(volume["name"]), sub_path), "", slug_scheme
    )


def _literal(text: str) -> str:
    """Text KubeSpawner formats as a template, kept as written."""
    return text.replace("{", "{{").replace("}", "}}")


def folder_mount_path(folder: SharedFolder, home: str) -> str:
    return folder.mount_path or f"{home.rstrip('/')}/{SHARED_DIR}/{folder.name}"


def folder_volume_name(folder: SharedFolder) -> str:
    return f"shared-{folder.name}"


def storage_override(
    course: Course,
    role: Role | None,
    storage: HubStorage | None,
    students: Iterable[str] = (),
) -> dict[str, Any]:
    """The ``volumes`` and ``volume_mounts`` (lists) ``role`` gets in ``course``,
    the folders' mounts first, then ``student_homes`` mounts of students' homes.

    ``role`` None (an admin's view of a course they are not in) is a student's.
    ``students`` are the course's students, for a staff member of a course with
    ``staff_see_student_homes``. A folder or view that needs a shared home is
    left out on a hub without one (``check`` says so).
    """
    storage = storage or HubStorage()
    staff = role is not None and role.is_staff
    home = storage.home_mount_path
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for folder in course.shared_folders:
        if not staff and folder.students == "none":
            continue
        mount: dict[str, Any] = {"mountPath": folder_mount_path(folder, home)}
        if folder.home_subpath is not None:
            if storage.shared_home is None:
                continue
            mount["name"] = storage.shared_home.volume
            mount["subPath"] = _literal(folder.home_subpath)
        else:
            name = folder_volume_name(folder)
            if folder.pvc is not None:
                volume = {
                    "name": name,
                    "persistentVolumeClaim": {"claimName": _literal(folder.pvc)},
                }
            else:
                volume = {
                    "name": name,
                    "nfs": {
                        "server": _literal(folder.nfs_server or ""),
                        "path": _literal(folder.nfs_path or ""),
                    },
                }
            volumes.append(volume)
            mount["name"] = name
        mount["readOnly"] = not staff
        mounts.append(mount)
    folders = len(mounts)
    if staff and course.staff_see_student_homes and storage.shared_home is not None:
        shared = storage.shared_home
        base = f"{home.rstrip('/')}/{STUDENTS_DIR}"
        for username in sorted(set(students)):
            sub_path = shared.sub_path_of(username, storage.slug_scheme)
            if sub_path is None:
                continue
            mounts.append(
                {
                    "name": shared.volume,
                    "mountPath": f"{base}/{_literal(username)}",
                    "subPath": _literal(sub_path),
                    "readOnly": True,
                }
            )
    return {
        "volumes": volumes,
        "volume_mounts": mounts,
        "student_homes": len(mounts) - folders,
    }


def course_students(members: Mapping[str, Role]) -> list[str]:
    """The students of one course (never its staff), from ``Roster.members``."""
    return sorted(u for u, role in members.items() if role is Role.STUDENT)


def storage_problems(
    course: Course, storage: HubStorage, usernames: Iterable[str] = ()
) -> list[str]:
    """What will not work as written on this hub (printed by ``check``).

    ``usernames`` (everyone on the roster) are checked for a ``home_subpath``
    inside one of their homes."""
    problems = []
    home = storage.home_mount_path
    homes = {}
    if storage.shared_home is not None and any(
        f.home_subpath for f in course.shared_folders
    ):
        for username in usernames:
            sub_path = storage.shared_home.sub_path_of(username, storage.slug_scheme)
            if sub_path:
                homes[sub_path] = username
    for folder in course.shared_folders:
        where = f"{folder.origin}: course {course.id}, shared folder {folder.name!r}"
        sub = folder.home_subpath
        owner = next(
            (
                user
                for sub_path, user in homes.items()
                if sub is not None
                and (sub == sub_path or sub.startswith(sub_path + "/"))
            ),
            None,
        )
        if owner is not None:
            problems.append(
                f"{where}: home_subpath {sub} is inside the home of {owner}, who could"
                " change what the course's students read; put course folders beside the"
                " homes, e.g. _courses/..."
            )
        if folder.home_subpath is not None and storage.shared_home is None:
            problems.append(
                f"{where}: home_subpath needs a shared home volume, but {storage.no_shared_home};"
                " the folder is left out of every server. Use a pvc (ReadWriteMany) or"
                " nfs folder instead (docs/course-storage.md)"
            )
        path = folder_mount_path(folder, home)
        if path == home or home.startswith(path.rstrip("/") + "/"):
            problems.append(f"{where}: mount path {path} would hide the home ({home})")
        elif path in storage.mount_paths:
            problems.append(
                f"{where}: mount path {path} is where the hub's own configuration mounts"
                " a volume; the folder replaces that mount in this course's servers"
            )
        if course.staff_see_student_homes and (
            path == f"{home.rstrip('/')}/{STUDENTS_DIR}"
            or path.startswith(f"{home.rstrip('/')}/{STUDENTS_DIR}/")
        ):
            problems.append(
                f"{where}: mount path {path} is where staff see their students' homes"
            )
    if course.staff_see_student_homes:
        if storage.shared_home is None:
            problems.append(
                f"{course.origin}: course {course.id}: staff_see_student_homes needs a shared"
                f" home volume, but {storage.no_shared_home}; staff get no students' homes."
                " One pod cannot mount many students' disks (each is ReadWriteOnce, on"
                " its own node): see docs/course-storage.md for what an admin can do"
            )
        elif re.search(
            r"\{(?!username\}|unescaped_username\})", storage.shared_home.sub_path
        ):
            problems.append(
                f"{course.origin}: course {course.id}: staff_see_student_homes: the home"
                f" subPath {storage.shared_home.sub_path} uses more than the username;"
                " staff get no students' homes"
            )
    return problems
