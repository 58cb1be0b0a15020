"""Benchmark: load a large roster and look people up.

Builds a university-sized roster in a temporary directory (by default 200
courses x 500 students = 100,000 enrolments, spread over Canvas exports and
plain CSV files, plus staff listed in the YAML course file), then reports:

- how long a full load takes (what a hub does at start and after a change),
- how long a check for changed files takes (what a running hub does every
  check_interval),
- lookups per second (what every login and spawn does),
- the memory the snapshot holds.

Run: ``python benchmarks/roster_load.py [--courses N] [--students N]``
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import tracemalloc

from classroom_spawner.roster.loader import files_changed, load_roster


def build(
    directory: str, courses: int, students: int, seed: int = 1
) -> tuple[str, list[str]]:
    rng = random.Random(seed)
    population = [
        f"student{i:06d}@uni.example.edu" for i in range(courses * students // 3)
    ]
    lines = ["courses:"]
    for c in range(courses):
        cid = f"course{c:03d}"
        members = rng.sample(population, students)
        if c % 2:
            name = f"{cid}-canvas.csv"
            with open(os.path.join(directory, name), "w") as f:
                f.write(
                    "Student,ID,SIS User ID,SIS Login ID,Section,Lab 1 (1),Final Score\n"
                )
                f.write("    Points Possible,,,,,10,(read only)\n")
                for i, login in enumerate(members):
                    f.write(f'"Last{i}, First{i}",{i},U{i},{login},Lecture 001,9,90\n')
                f.write('"Student, Test",99999,,abcdef,Lecture 001,,\n')
            roster = f"      - {{file: {name}, format: canvas}}"
        else:
            name = f"{cid}.csv"
            with open(os.path.join(directory, name), "w") as f:
                f.write("username,role\n")
                f.writelines(f"{login},student\n" for login in members)
            roster = f"      - {{file: {name}}}"
        lines += [
            f"  - id: {cid}",
            f"    title: Course {c}",
            f"    instructors: [prof{c}@uni.example.edu]",
            f"    tas: [ta{c}a@uni.example.edu, ta{c}b@uni.example.edu]",
            "    rosters:",
            roster,
        ]
    path = os.path.join(directory, "courses.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=200)
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as d:
        path, population = build(d, args.courses, args.students)
        loads = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = load_roster([path])
            loads.append(time.perf_counter() - t0)
        roster = result.roster

        checks = []
        for _ in range(50):
            t0 = time.perf_counter()
            files_changed(result.files)
            checks.append(time.perf_counter() - t0)

        names = population[:10000] + [f"nobody{i}" for i in range(10000)]
        t0 = time.perf_counter()
        rounds = 20
        for _ in range(rounds):
            for name in names:
                roster.memberships(name)
        lookup_s = (time.perf_counter() - t0) / (rounds * len(names))

        tracemalloc.start()
        held = load_roster([path]).roster
        size, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del held

    print(
        f"roster: {len(roster.courses)} courses, {roster.people} people, "
        f"{roster.enrolment_count} enrolments, {len(result.files)} files"
    )
    print(
        f"full load:        median {statistics.median(loads) * 1000:8.1f} ms"
        f"   (min {min(loads) * 1000:.1f}, max {max(loads) * 1000:.1f}, n={len(loads)})"
    )
    print(
        f"change check:     median {statistics.median(checks) * 1e6:8.1f} us   ({len(result.files)} stat calls)"
    )
    print(
        f"lookup:           {lookup_s * 1e9:8.0f} ns   ({1 / lookup_s:,.0f} lookups/s, half of them misses)"
    )
    print(f"snapshot memory:  {size / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
