"""Course profiles: what a user may pick on the spawn page, and checking what they picked.

Pure functions over the roster; no hub, no cluster. The spawner calls them for
the options form, for form submissions, and again at start for options that
arrived through the REST API, so one set of rules serves every path.

Profiles are KubeSpawner ``profile_list`` entries (``display_name``, ``slug``,
``description``, ``kubespawner_override``, ``profile_options``) plus a
``classroom`` key that KubeSpawner ignores and our form template shows.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .coursestorage import HubStorage, storage_override
from .mounts import merge
from .roster.errors import shown
from .roster.model import Course, Role

# the value KubeSpawner's form (and ours) submits when "Other..." is picked
UNLISTED = "unlisted-choice"
UNLISTED_SUFFIX = "--unlisted-choice"


class InvalidOptions(ValueError):
    """What a user submitted is not one of their choices. The message says what."""


class NoProfiles(Exception):
    """The user has no course, and is not an admin: there is nothing to start."""


def _format_cpu(value: float) -> str:
    return f"{value:g} CPU" if value == 1 else f"{value:g} CPUs"


def resources_summary(course: Any) -> str:
    """'0.5–2 CPUs, 1G–2G memory' style summary of a course's (or its staff's) resources."""
    parts = []
    g, lim = course.cpu_guarantee, course.cpu_limit
    if g and lim:
        parts.append(f"{g:g}–{lim:g} CPUs" if g != lim else _format_cpu(lim))
    elif lim:
        parts.append(f"up to {_format_cpu(lim)}")
    elif g:
        parts.append(f"at least {_format_cpu(g)}")
    g, lim = course.mem_guarantee, course.mem_limit
    if g and lim:
        parts.append(f"{g}–{lim} memory" if g != lim else f"{lim} memory")
    elif lim:
        parts.append(f"up to {lim} memory")
    elif g:
        parts.append(f"at least {g} memory")
    return ", ".join(parts)


_SETTINGS = ("image", "cpu_guarantee", "cpu_limit", "mem_guarantee", "mem_limit")


def _settings_of(course: Course, staff: bool):
    """The course's settings, with its staff settings over them for staff."""
    values = {key: getattr(course, key) for key in _SETTINGS}
    override = copy.deepcopy(dict(course.kubespawner_override))
    if staff and course.staff is not None:
        for key in _SETTINGS:
            if getattr(course.staff, key) is not None:
                values[key] = getattr(course.staff, key)
        for key, value in copy.deepcopy(
            dict(course.staff.kubespawner_override)
        ).items():
            if key in ("volumes", "volume_mounts") and key in override:
                identity = "name" if key == "volumes" else "mountPath"
                override[key] = merge(override[key], value, identity)
            else:
                override[key] = value
    return values, override


def _role_options(course: Course, staff: bool) -> dict[str, Any]:
    """The course's profile_options as ``staff`` or a student may choose them:
    staff-only choices are absent for students, and one choice is the default."""
    options = {}
    for name, option in course.options.items():
        option = copy.deepcopy(dict(option))
        choices = {
            key: choice
            for key, choice in option["choices"].items()
            if staff or not choice.get("staff_only")
        }
        if not any(c.get("default") for c in choices.values()):
            first = next(iter(choices.values()))
            first["default"] = True
        for choice in choices.values():
            choice.pop("staff_only", None)
        option["choices"] = choices
        options[name] = option
    return options


def course_profile(
    course: Course,
    role: Role | None = None,
    *,
    storage: HubStorage | None = None,
    students: Iterable[str] = (),
) -> dict[str, Any]:
    """The KubeSpawner profile of one course, for one role in it.

    Staff (TAs, instructors) get the course's ``staff`` settings over its own,
    its shared folders read-write, its staff-only choices, and (with
    ``staff_see_student_homes`` on a shared-home hub) ``students``' homes
    read-only. Students, and ``role`` None (an admin not in the course), get the
    folders read-only and no staff-only choice, so a forged one is refused like
    any unknown choice. ``storage`` describes the hub's homes
    (:func:`classroom_spawner.coursestorage.hub_storage`).
    """
    staff = role is not None and role.is_staff
    values, course_override = _settings_of(course, staff)
    override: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    # the course's own KubeSpawner settings come last: the admin's word wins
    override.update(course_override)
    extra = storage_override(course, role, storage, students)
    for key, identity in (("volumes", "name"), ("volume_mounts", "mountPath")):
        if extra[key]:
            override[key] = merge(override.get(key) or [], extra[key], identity)
    profile = {
        "display_name": course.title,
        "slug": course.id,
        "description": course.description,
        "kubespawner_override": override,
        "classroom": {
            "course": course.id,
            "role": role.value if role else None,
            "image": override.get("image"),
            "resources": resources_summary(_Resources(values)),
            "lessons": [lesson.target for lesson in course.lessons],
            "shared_folders": [
                f"{m['mountPath']} ({'read-only' if m['readOnly'] else 'read-write'})"
                for m in extra["volume_mounts"][
                    : len(extra["volume_mounts"]) - extra["student_homes"]
                ]
            ],
            "student_homes": extra["student_homes"],
        },
    }
    options = _role_options(course, staff)
    if options:
        profile["profile_options"] = options
    return profile


class _Resources:
    def __init__(self, values: Mapping[str, Any]):
        self.__dict__.update(values)


def _slug_of(display_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", display_name.lower()).strip("-")


def check_admin_profiles(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """Admin-only profiles as given in the config, checked, each with a ``slug``.

    A missing slug is made from the display name (``Admin: large server`` ->
    ``admin-large-server``). ValueError naming the entry for anything the
    spawner could not use: not a dict, no display name, an empty or duplicate
    slug, options or overrides that are not dicts.
    """
    checked, seen = [], set()
    for index, entry in enumerate(entries):
        where = f"entry {index + 1}"
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"{where} must be a dict like a profile_list entry, not {entry!r}"
            )
        profile = copy.deepcopy(dict(entry))
        name = profile.get("display_name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where} needs a display_name")
        where = f"{where} ({name!r})"
        slug = profile.setdefault("slug", _slug_of(name))
        if not isinstance(slug, str) or not slug.strip():
            raise ValueError(f"{where} needs a slug (letters, digits and dashes)")
        if slug in seen:
            raise ValueError(f"{where}: slug {slug!r} is used twice")
        seen.add(slug)
        for key in ("kubespawner_override", "profile_options"):
            if not isinstance(profile.get(key, {}), Mapping):
                raise ValueError(f"{where}: {key} must be a dict")
        checked.append(profile)
    return checked


def profiles_for(
    memberships: Mapping[str, Role],
    courses: Mapping[str, Course],
    *,
    admin: bool = False,
    admin_profiles: Iterable[Mapping[str, Any]] = (),
    storage: HubStorage | None = None,
    students_of: Callable[[str], Iterable[str]] | None = None,
) -> list[dict[str, Any]]:
    """The profiles a user may pick: their own courses' (in roster order), and
    for an admin every course's plus the admin-only profiles.

    ``storage`` describes the hub's homes; ``students_of(course_id)`` gives a
    course's students, asked only for a course whose staff see their students'
    homes, and only when the user is staff there. The first profile is the
    default. Raises NoProfiles if there is none.
    """

    def students(course: Course, role: Role) -> Iterable[str]:
        if students_of is None or not (
            role.is_staff and course.staff_see_student_homes
        ):
            return ()
        return students_of(course.id)

    profiles = [
        course_profile(
            course,
            memberships[cid],
            storage=storage,
            students=students(course, memberships[cid]),
        )
        for cid, course in courses.items()
        if cid in memberships
    ]
    if admin:
        profiles += [
            course_profile(course, storage=storage)
            for cid, course in courses.items()
            if cid not in memberships
        ]
        for extra in admin_profiles:
            profile = copy.deepcopy(dict(extra))
            profile.setdefault("classroom", {"course": None, "admin_only": True})
            profiles.append(profile)
    if not profiles:
        raise NoProfiles()
    for i, profile in enumerate(profiles):
        profile["default"] = i == 0
    return profiles


def _options_of(profile: Mapping[str, Any]) -> dict[str, Any]:
    return dict(profile.get("profile_options") or {})


def _choice_names(option: Mapping[str, Any]) -> list[str]:
    return list((option.get("choices") or {}).keys())


def resolve_user_options(
    user_options: Any, profiles: list[dict[str, Any]]
) -> dict[str, Any]:
    """Check submitted options against the user's own profiles.

    Returns the options in KubeSpawner's form, always naming the profile
    (``{"profile": slug, option: choice, "<option>--unlisted-choice": text}``),
    so KubeSpawner applies exactly what was checked here. Raises InvalidOptions
    with a message naming what was wrong.

    Stricter than KubeSpawner alone: unknown keys are refused, a choice must be
    one of the option's choices, a free-text choice must match its regex in
    full, and options without a ``profile`` key are checked against the
    default profile instead of slipping past validation.
    """
    if user_options is None:
        user_options = {}
    if not isinstance(user_options, dict):
        raise InvalidOptions(
            "server options must be a JSON object like {\"profile\": \"ds101\"}"
        )
    slugs = [p["slug"] for p in profiles]
    requested = user_options.get("profile")
    if requested in (None, ""):
        profile = profiles[0]
    elif not isinstance(requested, str) or requested not in slugs:
        raise InvalidOptions(
            f"profile {shown(requested)} is not available to you; choose one of: {', '.join(slugs)}"
        )
    else:
        profile = profiles[slugs.index(requested)]

    options = _options_of(profile)
    allowed_keys = (
        {"profile"} | set(options) | {name + UNLISTED_SUFFIX for name in options}
    )
    unknown = sorted(str(k) for k in user_options if k not in allowed_keys)
    if unknown:
        offered = ", ".join(sorted(allowed_keys))
        named = ", ".join(shown(k, 40) for k in unknown[:5])
        if len(unknown) > 5:
            named += f" and {len(unknown) - 5} more"
        raise InvalidOptions(
            f"unknown server option{'s' if len(unknown) > 1 else ''} {named}"
            f" for profile {profile['slug']!r}; accepted: {offered}"
        )

    resolved: dict[str, Any] = {"profile": profile["slug"]}
    for name, option in options.items():
        choice = user_options.get(name)
        free_text = user_options.get(name + UNLISTED_SUFFIX)
        unlisted = option.get("unlisted_choice") or {}
        if free_text not in (None, "") and choice not in (None, "", UNLISTED):
            raise InvalidOptions(
                f"option {name!r}: give either a listed choice or a custom value, not both"
            )
        if free_text not in (None, "") or choice == UNLISTED:
            if not unlisted.get("enabled"):
                raise InvalidOptions(f"option {name!r} does not accept a custom value")
            if not isinstance(free_text, str) or not free_text.strip():
                raise InvalidOptions(f"option {name!r}: the custom value is empty")
            regex = unlisted.get("validation_regex")
            if regex and not re.fullmatch(regex, free_text):
                hint = unlisted.get("validation_message") or f"it must match {regex}"
                raise InvalidOptions(
                    f"option {name!r}: {shown(free_text)} is not accepted ({hint})"
                )
            resolved[name + UNLISTED_SUFFIX] = free_text
        elif choice not in (None, ""):
            names = _choice_names(option)
            if not isinstance(choice, str) or choice not in names:
                raise InvalidOptions(
                    f"option {name!r}: {shown(choice)} is not one of the choices ({', '.join(names)})"
                )
            resolved[name] = choice
    return resolved


@dataclass(frozen=True)
class Selection:
    """One spawn's checked choice: made once, read by everything that needs it.

    ``options`` is what KubeSpawner applies (always naming the profile),
    ``profile`` the chosen profile, ``course`` its course (None for an
    admin-only profile), ``notice`` what the spawn page should say when saved
    options had to fall back, and ``profiles`` every profile the user had to
    choose from.
    """

    options: dict[str, Any]
    profile: dict[str, Any]
    course: Course | None
    notice: str | None
    profiles: tuple[dict[str, Any], ...]


def select(
    user_options: Any,
    profiles: list[dict[str, Any]],
    courses: Mapping[str, Course],
    *,
    submitted: bool,
) -> Selection:
    """Check ``user_options`` against the user's ``profiles`` and settle the spawn's choice.

    Options the user ``submitted`` (a form, a REST body, a query) must be valid:
    InvalidOptions otherwise. Options JupyterHub saved from an earlier start
    may have become invalid (the user left that course, an option was
    removed): they fall back, with a notice that says truthfully what changed.
    A saved profile still on offer is kept and only its options are reset;
    otherwise the first profile is used.
    """
    notice = None
    try:
        resolved = resolve_user_options(user_options, profiles)
    except InvalidOptions as e:
        if submitted:
            raise
        resolved, notice = _fall_back(user_options, profiles, e)
    profile = next(p for p in profiles if p["slug"] == resolved["profile"])
    course_id = (profile.get("classroom") or {}).get("course")
    return Selection(
        options=resolved,
        profile=profile,
        course=courses.get(course_id) if course_id else None,
        notice=notice,
        profiles=tuple(profiles),
    )


def _fall_back(saved: Any, profiles: list[dict[str, Any]], why: InvalidOptions):
    previous = saved.get("profile") if isinstance(saved, dict) else None
    by_slug = {p["slug"]: p for p in profiles}
    if isinstance(previous, str) and previous in by_slug:
        # the course is still theirs: only its options changed
        profile = by_slug[previous]
        return {"profile": previous}, (
            f"Your last options for {profile['display_name']} are not available any more"
            f" ({why}); starting it with its default options."
        )
    first = profiles[0]
    if previous not in (None, ""):
        return {"profile": first["slug"]}, (
            f"Your last choice ({shown(previous)}) is not available to you any more;"
            f" starting {first['display_name']} instead."
        )
    return {"profile": first["slug"]}, (
        f"Your last server options are not available any more; starting {first['display_name']}."
    )


def options_from_form(formdata: Mapping[str, list]) -> dict[str, Any]:
    """Turn the spawn form's fields into user_options (not yet checked).

    Fields: ``profile``, and ``profile-option-<slug>--<option>`` (a select) and
    ``profile-option-<slug>--<option>--unlisted-choice`` (its free-text box)
    for the chosen profile only. The free text counts only when the select
    says "Other...", so the form needs no JavaScript to be unambiguous.
    """
    first = lambda key: (formdata.get(key) or [None])[0]  # noqa: E731
    slug = first("profile")
    if not slug:
        return {}
    options: dict[str, Any] = {"profile": slug}
    prefix = f"profile-option-{slug}--"
    selects = {
        key[len(prefix) :]: values[0]
        for key, values in formdata.items()
        if key.startswith(prefix) and not key.endswith(UNLISTED_SUFFIX) and values
    }
    for name, value in selects.items():
        if value == UNLISTED:
            options[name + UNLISTED_SUFFIX] = (
                first(prefix + name + UNLISTED_SUFFIX) or ""
            )
        else:
            options[name] = value
    return options


def images_of(profile: Mapping[str, Any]) -> set[str]:
    """Every image a profile can start: its own and each listed choice's."""
    images = set()
    image = (profile.get("kubespawner_override") or {}).get("image")
    if isinstance(image, str) and image:
        images.add(image)
    for option in _options_of(profile).values():
        for choice in (option.get("choices") or {}).values():
            image = (choice.get("kubespawner_override") or {}).get("image")
            if isinstance(image, str) and image:
                images.add(image)
    return images
