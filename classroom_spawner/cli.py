"""The ``classroom-spawner`` command: check a hub's classroom config without a cluster.

Every subcommand reads the hub's ``jupyterhub_config.py`` (``-f``, default
``./jupyterhub_config.py``) the same way JupyterHub does.
"""

from __future__ import annotations

import argparse
import json
import sys

from .hubconfig import ConfigFileError, load_hub_config
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


def cmd_check(args, out) -> int:
    """Load the config and every roster file; summarise, or list every problem."""
    config, roster_config, roster = _load_roster(args)
    print(f"Config: {args.config}", file=out)
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
                course.id,
                course.title,
                str(c[Role.STUDENT]),
                str(c[Role.TA]),
                str(c[Role.INSTRUCTOR]),
                str(len(course.lessons)),
                course.image or "(spawner default)",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(w) if 2 <= i <= 5 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        print("  " + "  ".join(cells).rstrip(), file=out)
    print("OK", file=out)
    return 0


def cmd_profiles(args, out) -> int:
    """The courses (and roles) a user has."""
    _, _, roster = _load_roster(args)
    username = normalize_username(args.user)
    memberships = roster.memberships(username)
    courses = [
        {"id": cid, "title": roster.courses[cid].title, "role": role.value}
        for cid, role in memberships.items()
    ]
    if args.json:
        json.dump({"user": username, "courses": courses}, out, indent=2)
        print(file=out)
    elif not courses:
        print(f"{username} is not on any course roster.", file=out)
    else:
        print(f"{username}:", file=out)
        width = max(len(c["id"]) for c in courses)
        for c in courses:
            print(f"  {c['id'].ljust(width)}  {c['role']:<10}  {c['title']}", file=out)
    return 0 if courses else 1


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
    profiles.add_argument("user", help="a hub username (normalised like JupyterHub: lower case)")
    profiles.add_argument("--json", action="store_true", help="print JSON")
    profiles.set_defaults(func=cmd_profiles)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, sys.stdout)
    except ConfigFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RosterError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        n = len(e.problems)
        print(f"{n} problem{'s' if n != 1 else ''} found.", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
