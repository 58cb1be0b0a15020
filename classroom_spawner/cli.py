"""The ``classroom-spawner`` command: check a hub's classroom config without a cluster.

``check``, ``profiles``, ``render``, ``images`` and ``prepare`` read the hub's
``jupyterhub_config.py`` (``-f``, default ``./jupyterhub_config.py``) the same way
JupyterHub does; ``queue`` asks a running hub and ``demo`` brings its own config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import urllib.error
import urllib.request

import yaml
from tornado import web

from .hubconfig import ConfigFileError, load_hub_config
from .offline import build_spawner, configured_class, render_manifests
from .profiles import images_of
from .roster import ClassroomRoster, Role, RosterError, normalize_username


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--config",
        default="jupyterhub_config.py",
        metavar="FILE",
        help="the hub's config file (default: ./jupyterhub_config.py)",
    )


def _load_roster(args):
    config = load_hub_config(args.config)
    roster_config = ClassroomRoster.from_config(config)
    return config, roster_config, roster_config.load()


# the exit status of check when everything can be read, but with warnings
EXIT_WARNINGS = 3

# C0/C1 control characters, DEL, and the bidirectional overrides and isolates
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _printable(text) -> str:
    """Text from a file (a title, a path, a problem quoting a cell) made safe for
    a terminal: control characters are shown escaped (``\\x1b``), never sent."""
    return _UNPRINTABLE.sub(
        lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text)
    )


def cmd_check(args, out) -> int:
    """Load the config and every roster file; summarise, or list every problem."""
    config, roster_config, roster = _load_roster(args)
    problems = _authenticator_problems(config)
    if problems:
        for problem in problems:
            print(f"error: {_printable(problem)}", file=sys.stderr)
        return 1
    print(f"Config: {_printable(args.config)}", file=out)
    print(
        f"Roster: {len(roster.courses)} courses, {roster.people} people,"
        f" {roster.enrolment_count} enrolments, read from {len(roster.sources)} files",
        file=out,
    )
    counts = roster.role_counts()
    rows = [("COURSE", "TITLE", "STUDENTS", "TAS", "INSTRUCTORS", "LESSONS", "IMAGE")]
    for course in roster.courses.values():
        c = counts[course.id]
        rows.append(
            (
                _printable(course.id),
                _printable(course.title),
                str(c[Role.STUDENT]),
                str(c[Role.TA]),
                str(c[Role.INSTRUCTOR]),
                str(len(course.lessons)),
                _printable(course.image or "(spawner default)"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(w) if 2 <= i <= 5 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        print("  " + "  ".join(cells).rstrip(), file=out)
    for line in _volume_merges(config, roster):
        print(_printable(line), file=out)
    for line in _lms_lines(config, roster, args.config):
        print(_printable(line), file=out)
    for note in _config_notes(config):
        print(f"note: {note}", file=out)
    warnings = [*roster_config.warnings, *_config_warnings(config, roster)]
    for warning in warnings:
        print(f"warning: {_printable(warning)}", file=out)
    print(
        "OK"
        + (
            f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})"
            if warnings
            else ""
        ),
        file=out,
    )
    return EXIT_WARNINGS if warnings else 0


def _lms_lines(config, roster, config_file) -> list[str]:
    """The LMS rosters, when the hub logs in from an LMS (LTI 1.3)."""
    name = config.get("JupyterHub", {}).get("authenticator_class", "")
    if not isinstance(name, str):
        name = f"{getattr(name, '__module__', '')}.{getattr(name, '__name__', '')}"
    if name not in (
        "classroom-lti13",
        "classroom_spawner.lti.ClassroomLTI13Authenticator",
    ):
        return []
    from .lti import lms_roster_report

    return lms_roster_report(
        config, roster, os.path.dirname(os.path.abspath(config_file))
    )


def _authenticator_problems(config) -> list[str]:
    """Build the configured classroom authenticator as the hub would at start,
    so settings that would stop the hub (a claim mapped to an unknown course,
    colliding group names, ...) are reported here first."""
    from .authz.mixin import RosterAuthenticatorMixin

    cls = configured_class(config, "authenticator_class")
    if not (isinstance(cls, type) and issubclass(cls, RosterAuthenticatorMixin)):
        return []
    import logging

    from traitlets import TraitError

    quiet = logging.getLogger("classroom-spawner.check")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    try:
        cls(config=config, log=quiet)
    except RosterError:
        raise
    except (ValueError, TraitError) as e:
        return [line for line in str(e).splitlines() if line.strip()]
    return []


def _config_warnings(config, roster) -> list[str]:
    """Settings that work but will hurt a classroom (printed by check)."""
    from .spawner import (
        ClassroomSpawner,
        configured_hub_spawn_limit,
        hub_spawn_limit_warning,
    )

    spawner_class = configured_class(config, "spawner_class")
    if not (
        isinstance(spawner_class, type) and issubclass(spawner_class, ClassroomSpawner)
    ):
        return []
    spawner = asyncio.run(build_spawner(config, "classroom-check"))
    warnings = []
    warning = hub_spawn_limit_warning(
        configured_hub_spawn_limit(config), spawner.first_spawn_limit
    )
    if warning:
        warnings.append(warning)
    from .coursestorage import storage_problems

    storage = spawner.course_storage()
    people = set().union(*(roster.members(cid) for cid in roster.courses))
    for course in roster.courses.values():
        warnings.extend(storage_problems(course, storage, people))
    return warnings


def _config_notes(config) -> list[str]:
    """What works, but may surprise (printed by check; not warnings)."""
    from .queue_api import SpawnQueueAPIMixin
    from .spawner import ClassroomSpawner

    spawner_class = configured_class(config, "spawner_class")
    if not (
        isinstance(spawner_class, type) and issubclass(spawner_class, ClassroomSpawner)
    ):
        return []
    authenticator = configured_class(config, "authenticator_class")
    if isinstance(authenticator, type) and issubclass(
        authenticator, SpawnQueueAPIMixin
    ):
        return []
    return [
        "the authenticator does not serve the spawn-queue API (classroom-spawner queue,"
        " GET /hub/api/classroom/spawn-queue); the queue works without it. To serve it, put"
        " classroom_spawner.queue_api.SpawnQueueAPIMixin first among the authenticator's bases"
        " (docs/queue.md)"
    ]


def _volume_merges(config, roster) -> list[str]:
    """What a course's volumes override will give its servers (printed by check)."""
    from .mounts import describe, merged_override
    from .spawner import ClassroomSpawner

    spawner_class = configured_class(config, "spawner_class")
    if not (
        isinstance(spawner_class, type) and issubclass(spawner_class, ClassroomSpawner)
    ):
        return []
    courses = [
        c
        for c in roster.courses.values()
        if {"volumes", "volume_mounts"} & set(c.kubespawner_override)
    ]
    if not courses:
        return []
    spawner = asyncio.run(build_spawner(config, "classroom-check"))
    current = {"volumes": spawner.volumes, "volume_mounts": spawner.volume_mounts}
    lines = []
    for course in courses:
        merged = merged_override(course.kubespawner_override, current)
        volumes = merged.get("volumes", spawner.volumes)
        mounts = merged.get("volume_mounts", spawner.volume_mounts)
        if isinstance(volumes, dict) and isinstance(
            course.kubespawner_override.get("volumes"), dict
        ):
            volumes = {**spawner.volumes, **volumes}
        if isinstance(mounts, dict) and isinstance(
            course.kubespawner_override.get("volume_mounts"), dict
        ):
            mounts = {**spawner.volume_mounts, **mounts}
        lines.append(f"{course.id}: volumes " + "; ".join(describe(volumes, mounts)))
    return lines


def cmd_profiles(args, out) -> int:
    """The courses (and roles) a user has, and the profiles they may pick."""
    config, _, roster = _load_roster(args)
    username = normalize_username(args.user)
    memberships = roster.memberships(username)
    courses = [
        {"id": cid, "title": roster.courses[cid].title, "role": role.value}
        for cid, role in memberships.items()
    ]
    try:
        profiles = asyncio.run(_profiles_of(config, username, args.admin))
        refused = None
    except web.HTTPError as e:
        profiles, refused = [], getattr(e, "message", None) or e.log_message
    if args.json:
        json.dump(
            {"user": username, "courses": courses, "profiles": profiles}, out, indent=2
        )
        print(file=out)
    elif not profiles:
        print(
            f"{_printable(username)}: no profiles. The spawn page says: {_printable(refused)}",
            file=out,
        )
    else:
        print(f"{_printable(username)} may start:", file=out)
        slugs = [_printable(p["slug"]) for p in profiles]
        width = max(len(slug) for slug in slugs)
        for slug, p in zip(slugs, profiles):
            info = p.get("classroom") or {}
            role = info.get("role") or (
                "admin only" if info.get("admin_only") else "admin"
            )
            mark = "*" if p.get("default") else " "
            print(
                f" {mark}{slug.ljust(width)}  {role:<10}  {_printable(p['display_name'])}",
                file=out,
            )
            details = [info.get("image"), info.get("resources")]
            if info.get("lessons"):
                details.append("lessons: " + ", ".join(info["lessons"]))
            if info.get("shared_folders"):
                details.append("folders: " + ", ".join(info["shared_folders"]))
            if info.get("student_homes"):
                details.append(f"{info['student_homes']} students' homes (read-only)")
            details = [_printable(d) for d in details if d]
            if details:
                print(f"  {' ' * width}  {'':<10}  {'; '.join(details)}", file=out)
        print("(* = preselected)", file=out)
    return 0 if profiles else 1


async def _profiles_of(config, username, admin):
    spawner = await build_spawner(config, username, admin=admin)
    return await spawner.classroom_profiles()


def cmd_render(args, out) -> int:
    """The exact PVC and pod manifests a user would get."""
    config = load_hub_config(args.config)
    ClassroomRoster.from_config(config).load()
    try:
        manifests = asyncio.run(
            render_manifests(config, args.user, profile=args.profile, admin=args.admin)
        )
    except web.HTTPError as e:
        print(f"error: {getattr(e, 'message', None) or e.log_message}", file=sys.stderr)
        return 1
    docs = [manifests[k] for k in ("pvc", "pod") if k in manifests]
    if args.json:
        json.dump({"apiVersion": "v1", "kind": "List", "items": docs}, out, indent=2)
        print(file=out)
    else:
        print(
            f"# {normalize_username(args.user)}, profile {manifests['profile']}",
            file=out,
        )
        yaml.safe_dump_all(docs, out, sort_keys=False, default_flow_style=False)
    return 0


def cmd_images(args, out) -> int:
    """Every image the config can start, for Z2JH's prePuller.extraImages."""
    config = load_hub_config(args.config)
    roster = ClassroomRoster.from_config(config).load()
    images = asyncio.run(_all_images(config, roster))
    if args.z2jh:
        yaml.safe_dump(_z2jh_pre_puller(images), out, sort_keys=False)
    else:
        for image in images:
            print(image, file=out)
    return 0


def _z2jh_pre_puller(images: dict[str, str]) -> dict:
    """Z2JH ``prePuller.extraImages`` values for image -> where it is used."""
    extra = {}
    for image, where in images.items():
        name, _, tag = (
            image.rpartition(":")
            if ":" in image.rsplit("/", 1)[-1]
            else (image, "", "latest")
        )
        key = re.sub(r"[^a-z0-9-]+", "-", where.lower()).strip("-")[:50] or "image"
        while key in extra:
            key += "-x"
        extra[key] = {"name": name, "tag": tag}
    return {"prePuller": {"extraImages": extra}}


async def _all_images(config, roster) -> dict[str, str]:
    """image -> where it is first used (a course id, 'default', 'admin-<slug>')."""
    spawner = await build_spawner(config, "classroom-images", admin=True)
    found: dict[str, str] = {}
    if spawner.image:
        found[spawner.image] = "default"
    for profile in await spawner.classroom_profiles():
        where = (profile.get("classroom") or {}).get(
            "course"
        ) or f"admin-{profile['slug']}"
        for image in sorted(images_of(profile)):
            found.setdefault(image, where)
    # an admin sees each course as its students do: add what its staff may start
    from .profiles import course_profile

    for course in roster.courses.values():
        for image in sorted(images_of(course_profile(course, Role.INSTRUCTOR))):
            found.setdefault(image, f"{course.id} (staff)")
    return found


def cmd_queue(args, out) -> int:
    """Who waits for a server right now, read from a running hub."""
    api = args.hub_api_url.rstrip("/")
    if not args.token:
        print(
            "error: a hub API token is needed (--token or $JUPYTERHUB_API_TOKEN;"
            " create one at /hub/token)",
            file=sys.stderr,
        )
        return 1
    request = urllib.request.Request(
        f"{api}/classroom/spawn-queue", headers={"Authorization": f"token {args.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            data = json.load(response)
        if not isinstance(data, dict) or not isinstance(data.get("queues"), dict):
            raise ValueError("not a spawn-queue answer")
    except urllib.error.HTTPError as e:
        print(f"error: {api}: HTTP {e.code} {e.reason}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"error: cannot reach {api}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    except ValueError:
        print(
            f"error: {api}/classroom/spawn-queue did not answer with the spawn queue; is"
            " --hub-api-url the hub's API (e.g. http://127.0.0.1:8081/hub/api), and does the hub"
            " serve the queue API (ClassroomOAuthenticator does; see docs/queue.md otherwise)?",
            file=sys.stderr,
        )
        return 1
    if args.json:
        json.dump(data, out, indent=2)
        print(file=out)
        return 0
    queues = data["queues"]
    if not queues:
        print("No spawn queue has been used since the hub started.", file=out)
    for name, q in queues.items():
        rate = q.get("release_rate_per_minute")
        print(
            f"{name}: {q['in_flight']}/{q['limit']} running, {q['waiting']} waiting"
            + (f", about {rate:g} finishing per minute" if rate else ""),
            file=out,
        )
        for w in q["waiters"]:
            eta = w.get("estimated_wait_seconds")
            eta_text = f", about {eta / 60:.0f} min to go" if eta is not None else ""
            print(
                f"  {w['position']:>4}. {w['user']}  waiting {w['waiting_seconds']:.0f}s{eta_text}",
                file=out,
            )
        for h in q["holders"]:
            print(
                f"     > {h['user']}  starting for {h['running_seconds']:.0f}s",
                file=out,
            )
    return 0


def cmd_prepare(args, out) -> int:
    """Create the courses' home volumes (and lessons) before the first lecture."""
    from . import prepare

    config = load_hub_config(args.config)
    ClassroomRoster.from_config(config).load()
    run = {}
    try:
        return asyncio.run(_prepare(prepare, config, args, out, run))
    except prepare.PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        preparer = run.get("preparer")
        if "progress" in run:
            run["progress"].finish()
        done = preparer.results if preparer is not None else []
        summary = prepare.Summary(done, interrupted=True)
        print(
            f"interrupted after {len(done)} of {len(run.get('targets', []))};"
            " run the same command again to do the rest",
            file=out,
        )
        for line in prepare.summary_lines(summary, lessons=args.lessons):
            print(_printable(line), file=out)
        return 130


async def _prepare(prepare, config, args, out, run) -> int:
    kubeconfig = prepare.admin_kubeconfig(args.kubeconfig)
    targets = await prepare.plan(config, args.courses, staff=args.staff)
    run["targets"] = targets
    who = "people" if args.staff else "students"
    print(f"{len(targets)} {who} in {', '.join(args.courses)}", file=out)
    if args.images:
        images = {}
        for t in targets:
            if t.spawner is not None and t.spawner.image:
                images.setdefault(t.spawner.image, t.course)
        print(
            "# images: add to the Z2JH chart's values and `helm upgrade` (docs/prepare.md)",
            file=out,
        )
        yaml.safe_dump(_z2jh_pre_puller(images), out, sort_keys=False)
    shared = [t for t in targets if t.spawner is not None and t.pvc is None]
    if shared and len(shared) == len(targets):
        print(
            "no volumes to create: the spawner gives no one a volume of their own (a shared"
            " home, or no storage)"
            + ("" if args.lessons else "; nothing else to do without --lessons"),
            file=out,
        )
        if not args.lessons:
            return 0
    async with prepare.admin_client(kubeconfig, args.context) as api:
        preparer = prepare.Preparer(
            api,
            targets,
            lessons=args.lessons,
            concurrency=args.concurrency,
            bind_timeout=args.bind_timeout,
            pod_timeout=args.pod_timeout,
        )
        existing = await preparer.scan()
        print(prepare.cost_line(targets, set(existing)), file=out)
        if args.lessons:
            print(
                f"will run a lesson-sync pod per person, {args.concurrency} at a time",
                file=out,
            )
        if args.dry_run:
            for t in targets:
                if t.error:
                    line = f"{t.username} ({t.course}): cannot prepare: {t.error}"
                elif t.pvc is None:
                    line = f"{t.username} ({t.course}): no volume of their own"
                else:
                    there = (t.namespace, t.pvc_name) in existing
                    line = (
                        f"{t.username} ({t.course}): {t.namespace}/{t.pvc_name} {t.size}"
                        f" {'already there' if there else 'would be created'}"
                    )
                print(_printable(line), file=out)
            print("dry run: nothing was created", file=out)
            return 0
        progress = prepare.Progress(out, len(targets), printable=_printable)
        preparer.on_result = progress
        run["preparer"], run["progress"] = preparer, progress
        summary = await preparer.run()
        progress.finish()
    for line in prepare.summary_lines(summary, lessons=args.lessons):
        print(_printable(line), file=out)
    return 1 if summary.failed else 0


def cmd_demo(args, out) -> int:
    """Run the local demo (a test/demo tool: imported only here, never by the hub)."""
    from .local import demo

    return demo.main(
        port=args.port,
        workdir=args.workdir,
        push_update=args.push_update,
        out=out,
        kube=args.kube,
        lms=args.lms,
    )


def cmd_volumes(args, out) -> int:
    """End of term: list the home volumes; archive and delete those of people on no roster."""
    from . import endofterm

    return endofterm.run(args, out, sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="classroom-spawner",
        description="Check and inspect a classroom JupyterHub's configuration.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate the config and every roster file")
    _add_config_arg(check)
    check.set_defaults(func=cmd_check)

    profiles = sub.add_parser("profiles", help="the courses and roles of one user")
    _add_config_arg(profiles)
    profiles.add_argument(
        "user", help="a hub username (normalised like JupyterHub: lower case)"
    )
    profiles.add_argument("--json", action="store_true", help="print JSON")
    profiles.add_argument(
        "--admin", action="store_true", help="as a hub admin would see it"
    )
    profiles.set_defaults(func=cmd_profiles)

    render = sub.add_parser("render", help="the PVC and pod manifests a user would get")
    _add_config_arg(render)
    render.add_argument("user", help="a hub username")
    render.add_argument(
        "--profile",
        metavar="SLUG",
        help="the profile to render (default: the user's first)",
    )
    render.add_argument(
        "--admin", action="store_true", help="render as if the user were a hub admin"
    )
    render.add_argument(
        "--json",
        action="store_true",
        help="print a JSON List instead of YAML documents",
    )
    render.set_defaults(func=cmd_render)

    images = sub.add_parser(
        "images", help="every image the config can start (for image pre-pulling)"
    )
    _add_config_arg(images)
    images.add_argument(
        "--z2jh", action="store_true", help="print Z2JH prePuller.extraImages values"
    )
    images.set_defaults(func=cmd_images)

    prep = sub.add_parser(
        "prepare",
        help="create the courses' home volumes (and lessons) before the first lecture",
        description="Create each enrolled student's home volume exactly as the spawner would,"
        " optionally fill it with the course's lessons, with your kubeconfig. Idempotent: a"
        " second run creates nothing; an interrupted run, started again, does the rest."
        " See docs/prepare.md.",
    )
    _add_config_arg(prep)
    prep.add_argument(
        "courses",
        nargs="+",
        metavar="COURSE",
        help="course ids (from the course files)",
    )
    prep.add_argument("--staff", action="store_true", help="also TAs and instructors")
    prep.add_argument(
        "--lessons",
        action="store_true",
        help="fill each volume with the course's lessons (a pod per person)",
    )
    prep.add_argument(
        "--images",
        action="store_true",
        help="print the Z2JH prePuller values for the courses' images",
    )
    prep.add_argument(
        "--dry-run",
        action="store_true",
        help="create nothing; print the plan and the cost",
    )
    prep.add_argument(
        "--concurrency",
        type=int,
        default=5,
        metavar="N",
        help="people prepared at once (1-50, default: 5)",
    )
    prep.add_argument(
        "--bind-timeout",
        type=float,
        default=300,
        metavar="SECONDS",
        help="how long a volume may take to be Bound (default: 300)",
    )
    prep.add_argument(
        "--pod-timeout",
        type=float,
        default=600,
        metavar="SECONDS",
        help="how long a lesson-sync pod may take, image pull included (default: 600)",
    )
    prep.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="the cluster's kubeconfig (default: $KUBECONFIG or ~/.kube/config)",
    )
    prep.add_argument(
        "--context", help="the kubeconfig context (default: its current one)"
    )
    prep.set_defaults(func=cmd_prepare)

    queue = sub.add_parser(
        "queue", help="who waits for a server now (asks the running hub)"
    )
    queue.add_argument(
        "--hub-api-url",
        default=os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
        help="the hub's API URL (default: $JUPYTERHUB_API_URL or http://127.0.0.1:8081/hub/api)",
    )
    queue.add_argument(
        "--token",
        default=os.environ.get("JUPYTERHUB_API_TOKEN", ""),
        help="an API token with read:servers (default: $JUPYTERHUB_API_TOKEN)",
    )
    queue.add_argument("--json", action="store_true", help="print JSON")
    queue.set_defaults(func=cmd_queue)

    demo = sub.add_parser(
        "demo",
        help="run a demo hub on this machine (Kubernetes stand-in, local login, sample courses)",
        description="Start the Kubernetes stand-in, a local OpenID Connect provider with sample"
        " accounts, and JupyterHub with this package and three sample courses; print the URL"
        " and the logins; stop everything on Ctrl-C. See docs/demo.md.",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=8000,
        help="the hub's port on 127.0.0.1 (default: 8000)",
    )
    demo.add_argument(
        "--kube",
        choices=["standin", "real"],
        default=None,
        help="standin: the package's Kubernetes stand-in (default, or $CLASSROOM_KUBE); real: etcd,"
        " kube-apiserver, kube-scheduler and kube-controller-manager built by `make k8s-binaries`,"
        " with the same process kubelet as node (docs/realkube.md)",
    )
    demo.add_argument(
        "--workdir",
        default=".demo",
        metavar="DIR",
        help="lesson repos, course file, students' homes and logs; recreated at every start (default: ./.demo)",
    )
    demo.add_argument(
        "--push-update",
        action="store_true",
        help="push a sample lesson update to the running demo's ds101 lessons, then exit",
    )
    demo.add_argument(
        "--lms",
        action="store_true",
        help="log in from a local LMS (LTI 1.3) on the next port, with a course whose roster comes"
        " only from it, instead of the OpenID Connect provider (docs/lti.md)",
    )
    demo.set_defaults(func=cmd_demo)

    volumes = sub.add_parser(
        "volumes",
        help="end of term: list home volumes; archive and delete those of people on no roster",
        description="List the home volumes (owner, courses and role, size, last activity)."
        " With --archive-dir, archive each volume of someone on no roster (or of each --user)"
        " to DIR/<claim>.tar.gz through short-lived pods, then delete it; a volume whose"
        " archive failed is kept. Asks for confirmation unless --yes. See docs/spawner.md.",
    )
    _add_config_arg(volumes)
    volumes.add_argument(
        "--archive-dir",
        metavar="DIR",
        help="archive the chosen volumes here, then delete them (without it: only list)",
    )
    volumes.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME",
        help="only this person's volume, even if they are on a roster (repeatable)",
    )
    volumes.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be archived and deleted; change nothing",
    )
    volumes.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation"
    )
    volumes.add_argument("--json", action="store_true", help="print the list as JSON")
    volumes.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="the cluster's kubeconfig (default: $KUBECONFIG or ~/.kube/config)",
    )
    volumes.add_argument(
        "--context", help="the kubeconfig context (default: its current one)"
    )
    volumes.add_argument(
        "--namespace", help="the users' namespace (default: the spawner's)"
    )
    volumes.add_argument(
        "--archive-image",
        metavar="IMAGE",
        help="the image of the archive pod, with sh, tar, base64 and sha256sum (default: the spawner's image)",
    )
    volumes.add_argument(
        "--start-timeout",
        type=float,
        default=300,
        metavar="SECONDS",
        help="how long an archive pod may take to start, image pull included (default: 300)",
    )
    volumes.add_argument(
        "--chunk-size",
        type=float,
        default=4,
        metavar="MIB",
        help="archive chunk per pod log, in MiB; keep its base64 (4/3 of it) under the kubelet's"
        " containerLogMaxSize (default: 4)",
    )
    volumes.add_argument(
        "--hub-api-url",
        default=os.environ.get("JUPYTERHUB_API_URL", ""),
        help="the hub's API URL, for each user's last activity (default: $JUPYTERHUB_API_URL)",
    )
    volumes.add_argument(
        "--token",
        default=os.environ.get("JUPYTERHUB_API_TOKEN", ""),
        help="an API token with read:users:activity (default: $JUPYTERHUB_API_TOKEN)",
    )
    volumes.set_defaults(func=cmd_volumes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, sys.stdout)
    except ConfigFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RosterError as e:
        for warning in e.warnings:
            print(f"warning: {_printable(warning)}", file=sys.stderr)
        for problem in e.problems:
            print(_printable(problem), file=sys.stderr)
        n = len(e.problems)
        print(f"{n} problem{'s' if n != 1 else ''} found.", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
