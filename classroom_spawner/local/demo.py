"""The one-command demo: a classroom hub on this machine, and the same set-up
the end-to-end browser tests drive.

``classroom-spawner demo`` (and ``make demo``) runs :class:`Demo`:

- three real git repositories of lesson notebooks (bare repos served over
  ``file://``, each with an "instructor's" working copy next to it), and a
  course file with three sample courses;
- the Kubernetes stand-in (:mod:`classroom_spawner.local.kube`) as a
  subprocess, running each user's pod -- the lesson-sync init container and
  the real ``jupyterhub-singleuser`` with JupyterLab -- as local processes;
- the local OpenID Connect provider (:mod:`classroom_spawner.local.oidc`)
  with the sample accounts of :data:`ACCOUNTS`;
- JupyterHub with configurable-http-proxy (:mod:`classroom_spawner.local.hub`),
  configured with ``ClassroomOAuthenticator`` and ``ClassroomSpawner``,
  serving http://127.0.0.1:8000.

The tests start the same class (on a free port), so what a newcomer sees
and what the tests check cannot drift apart::

    async with Demo(workdir, port=None) as demo:
        demo.hub_url                # http://127.0.0.1:PORT/
        demo.account("ada")         # Account(username, password, role, courses)
        demo.push_lesson_update()   # a new commit in the ds101 lesson repo

Test and demo tool only: nothing on the production code path imports it.
See docs/demo.md.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from .hub import HubProcess
from .kube import Faults, StandinProcess, kube_process
from .kube.procutil import processes_with_env
from .oidc import DEFAULT_TITLE, OIDCProvider
from .prereqs import demo_problems

DEFAULT_PORT = 8000
DEFAULT_WORKDIR = ".demo"
NAMESPACE = "default"
ROSTER_CONTACT = "demo-support@uni.example.edu"
# written into a work directory the demo made, so that recreating it never
# removes a directory that is somebody else's
MARKER = ".classroom-demo"
IMAGE = "quay.io/jupyter/scipy-notebook:2025-06-02"


@dataclass(frozen=True)
class Account:
    """A sample login at the demo's identity provider."""

    username: str
    password: str
    name: str
    role: str  # what the logins table says: student, TA, instructor, hub admin, ...
    courses: tuple[str, ...] = ()

    @property
    def email(self) -> str:
        return f"{self.username}@uni.example.edu"


ACCOUNTS: tuple[Account, ...] = (
    Account("ada", "ada-pw", "Ada Lovelace", "student", ("ds101",)),
    Account("emmy", "emmy-pw", "Emmy Noether", "student", ("ds101", "phys210")),
    Account("marie", "marie-pw", "Marie Curie", "student", ("phys210",)),
    Account("vera", "vera-pw", "Vera Rubin", "student", ("astro120",)),
    Account("alan", "alan-pw", "Alan Turing", "TA", ("ds101",)),
    Account("grace", "grace-pw", "Grace Hopper", "instructor", ("ds101",)),
    Account("richard", "richard-pw", "Richard Feynman", "instructor", ("phys210",)),
    Account("admin", "admin-pw", "Hub Admin", "hub admin", ()),
    Account("mallory", "mallory-pw", "Mallory Intruder", "on no roster", ()),
)

ADMINS = ("admin",)


@dataclass
class LessonRepo:
    """A lesson repository: ``bare`` is what the course file points at, ``work``
    is the instructor's working copy that updates are pushed from."""

    name: str
    bare: Path
    work: Path
    updates: int = 0
    notebooks: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.bare.as_uri()


class DemoError(RuntimeError):
    """The demo cannot start (a port is taken, a tool is missing, ...)."""


# ---------------------------------------------------------------- content


def notebook(*cells) -> str:
    """A small nbformat 4 notebook; ``cells`` are ``("markdown"|"code", source)``."""
    nb_cells = []
    for i, (kind, source) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"cell-{i}", "metadata": {}, "source": source}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        nb_cells.append(cell)
    return (
        json.dumps(
            {
                "cells": nb_cells,
                "metadata": {
                    "kernelspec": {
                        "display_name": "Python 3 (ipykernel)",
                        "language": "python",
                        "name": "python3",
                    },
                    "language_info": {"name": "python"},
                },
                "nbformat": 4,
                "nbformat_minor": 5,
            },
            indent=1,
        )
        + "\n"
    )


LESSONS = {
    "ds101-lessons": {
        "README.md": "# Data Science 101: lessons\n\nOpen `01-welcome.ipynb` to begin.\n",
        "01-welcome.ipynb": notebook(
            (
                "markdown",
                "# Welcome to Data Science 101\n\nThis notebook came from the course's lesson repository.",
            ),
            ("code", "print('Hello, Data Science 101!')"),
            (
                "markdown",
                "## Exercise 1\n\nWrite your answer in the cell below, then save (Ctrl+S).",
            ),
            ("code", ""),
        ),
        "data/temperatures.csv": "city,jan,jul\nOslo,-4.3,16.4\nLisbon,11.6,23.1\nCairo,14.0,28.0\n",
    },
    "phys210-notebooks": {
        "README.md": "# Computational Physics: notebooks\n",
        "01-numerical-integration.ipynb": notebook(
            ("markdown", "# Numerical integration\n\nThe trapezoidal rule, by hand."),
            (
                "code",
                "def trapezoid(f, a, b, n=100):\n    h = (b - a) / n\n    return h * (f(a) / 2 + sum(f(a + i * h) for i in range(1, n)) + f(b) / 2)",
            ),
        ),
    },
    "astro120-notebooks": {
        "README.md": "# Observational Astronomy: notebooks\n",
        "01-magnitudes.ipynb": notebook(
            ("markdown", "# Apparent magnitudes\n\nm = -2.5 log10(F / F0)"),
            ("code", "import math\nprint(-2.5 * math.log10(0.01))"),
        ),
    },
}

# what push_lesson_update() adds, one per call (then "Extra N")
UPDATES = ["DataFrames", "Plotting", "Grouping and aggregation"]


def course_file_text(repos: dict[str, LessonRepo]) -> str:
    def people(course, role):
        return [a.username for a in ACCOUNTS if course in a.courses and a.role == role]

    return textwrap.dedent(f"""\
        # The demo's course file (see docs/roster.md). Edit it while the demo runs:
        # the hub re-reads it within a few seconds.
        courses:
          - id: ds101
            title: Data Science 101
            description: Python, pandas and plotting. Lectures Tuesday and Thursday.
            image: {IMAGE}
            cpu_guarantee: 0.5
            cpu_limit: 2
            mem_guarantee: 1G
            mem_limit: 2G
            lessons:
              - url: {repos['ds101-lessons'].url}
                ref: main
                target: ds101-lessons
            instructors: {people('ds101', 'instructor')}
            tas: {people('ds101', 'TA')}
            students: {people('ds101', 'student')}

          - id: phys210
            title: Computational Physics
            description: Numerical methods with NumPy and SciPy.
            image: {IMAGE}
            cpu_limit: 4
            mem_limit: 4G
            lessons:
              - url: {repos['phys210-notebooks'].url}
                target: phys210
            instructors: {people('phys210', 'instructor')}
            rosters:
              # a plain export from the registrar: username,role
              - file: phys210-roster.csv

          - id: astro120
            title: Observational Astronomy
            description: Photometry and spectra with Python.
            image: {IMAGE}
            lessons:
              - url: {repos['astro120-notebooks'].url}
                target: astro120
            students: {people('astro120', 'student')}
        """)


def roster_csv() -> str:
    rows = ["username,role"]
    rows += [
        f"{a.username},student"
        for a in ACCOUNTS
        if "phys210" in a.courses and a.role == "student"
    ]
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- helpers

_GIT_IDENTITY = [
    "-c", "user.name=Demo Instructor",
    "-c", "user.email=instructor@uni.example.edu",
    "-c", "commit.gpgsign=false",
    "-c", "init.defaultBranch=main",
]  # fmt: skip


def git(*args, cwd) -> str:
    """Run git with a fixed identity, ignoring the user's global config."""
    env = dict(
        os.environ,
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
    )
    result = subprocess.run(
        ["git", *_GIT_IDENTITY, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise DemoError(
            f"git {' '.join(args)} failed in {cwd}:\n{result.stderr.strip()}"
        )
    return result.stdout.strip()


def port_is_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def prepare_workdir(workdir: Path) -> None:
    """Recreate ``workdir``: only if it is empty or a former demo's (it has the marker)."""
    if workdir.exists():
        if not workdir.is_dir():
            raise DemoError(f"{workdir} exists and is not a directory")
        if any(workdir.iterdir()) and not (workdir / MARKER).exists():
            raise DemoError(
                f"{workdir} is not empty and was not made by the demo; refusing to delete it."
                " Choose another --workdir."
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text(
        "made by `classroom-spawner demo`; recreated at every start\n"
    )


# ---------------------------------------------------------------- the demo


class Demo:
    """The stand-in, the identity provider and the hub, with the sample classroom.

    - ``workdir``: recreated at start (only an empty directory or a former
      demo's); holds the lesson repos, the course file, the stand-in's state
      (volumes = students' homes) and every log. Left in place after stop.
    - ``port``: the hub's public port (``None``: a free one).
    - ``provision_delay`` / ``image_pull_delay``: seconds the stand-in takes
      to provision a home volume / pull a course image the first time, so that
      the spawn page shows a realistic start.
    - ``kube``: ``"standin"`` (the default, or ``$CLASSROOM_KUBE``) or ``"real"``:
      a real control plane built by ``make k8s-binaries`` with the same process
      kubelet as its node (docs/realkube.md).
    - ``out``: where :meth:`run` prints (the banner, progress of start/stop).
    """

    def __init__(
        self,
        workdir=DEFAULT_WORKDIR,
        *,
        port: int | None = DEFAULT_PORT,
        ip: str = "127.0.0.1",
        idp_port: int = 0,
        provision_delay: float = 1.0,
        image_pull_delay: float = 2.0,
        log_level: str = "INFO",
        auth_refresh_age: int = 60,
        kube: str | None = None,
        out=None,
    ):
        self.workdir = Path(workdir).absolute()
        self.port = port
        self.ip = ip
        self.idp_port = idp_port
        self.provision_delay = provision_delay
        self.image_pull_delay = image_pull_delay
        self.log_level = log_level
        self.auth_refresh_age = auth_refresh_age
        self.kube = kube
        self.out = out if out is not None else sys.stdout
        self.accounts = {a.username: a for a in ACCOUNTS}
        self.repos: dict[str, LessonRepo] = {}
        self.course_file = self.workdir / "courses.yaml"
        self.k8s: StandinProcess | None = None
        self.idp: OIDCProvider | None = None
        self.hub: HubProcess | None = None
        self.standin_id: str | None = None

    # -- what the demo offers ---------------------------------------------------------

    @property
    def hub_url(self) -> str:
        """The hub's public URL, ending in ``/`` (known once started)."""
        return self.hub.hub_url if self.hub else f"http://{self.ip}:{self.port}/"

    def account(self, username: str) -> Account:
        return self.accounts[username]

    def students_of(self, course: str) -> list[str]:
        return [
            a.username for a in ACCOUNTS if course in a.courses and a.role == "student"
        ]

    def logins_table(self) -> str:
        rows = [("USERNAME", "PASSWORD", "ROLE", "COURSES")]
        for a in ACCOUNTS:
            if a.username in ADMINS:
                courses = "all courses (admin page, any server)"
            elif not a.courses:
                courses = "none: sees the 'not on a roster' page"
            else:
                courses = ", ".join(a.courses)
            rows.append((a.username, a.password, a.role, courses))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            "  "
            + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths))
            + "  "
            + row[3]
            for row in rows
        )

    def banner(self) -> str:
        rel = self._display_path
        lines = [
            "",
            f"The classroom demo is running: {self.hub_url}",
            "",
            f"Open it in a browser and sign in at the \"{DEFAULT_TITLE}\" with a sample account:",
            "",
            self.logins_table(),
            "",
            "Courses (course file: " + rel(self.course_file) + "):",
            "  ds101     Data Science 101         lessons: "
            + rel(self.repos["ds101-lessons"].work),
            "  phys210   Computational Physics    lessons: "
            + rel(self.repos["phys210-notebooks"].work),
            "  astro120  Observational Astronomy  lessons: "
            + rel(self.repos["astro120-notebooks"].work),
            "",
            "Students land in JupyterLab with their course's lessons. Instructors and TAs open",
            f"a student's server at {self.hub_url}user/<student>/lab (or from {self.hub_url}hub/admin).",
            "Push a lesson update, then stop and start a server to see it merged:",
            "  classroom-spawner demo --push-update" + self._workdir_arg(),
            "",
            "Logs: " + ", ".join(rel(p) for p in self.log_paths()),
            "Press Ctrl-C to stop.",
            "",
        ]
        return "\n".join(lines)

    def _display_path(self, path) -> str:
        try:
            rel = os.path.relpath(path)
        except ValueError:
            return str(path)
        return str(path) if rel.startswith("..") else rel

    def _workdir_arg(self) -> str:
        default = Path(DEFAULT_WORKDIR).absolute()
        return (
            ""
            if self.workdir == default
            else f" --workdir {self._display_path(self.workdir)}"
        )

    def log_paths(self) -> list[Path]:
        return [
            self.workdir / "hub" / "jupyterhub.log",
            self.workdir / "k8s" / "standin.log",
            self.workdir / "oidc-provider.log",
        ]

    # -- lesson repositories ----------------------------------------------------------

    def make_lesson_repos(self) -> dict[str, LessonRepo]:
        root = self.workdir / "lessons"
        root.mkdir(parents=True, exist_ok=True)
        for name, files in LESSONS.items():
            repo = LessonRepo(name, bare=root / f"{name}.git", work=root / name)
            git("init", "-q", "--bare", str(repo.bare), cwd=root)
            git("init", "-q", str(repo.work), cwd=root)
            for rel, content in files.items():
                path = repo.work / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            git("add", "-A", cwd=repo.work)
            git("commit", "-q", "-m", "First lessons", cwd=repo.work)
            git("remote", "add", "origin", repo.url, cwd=repo.work)
            git("push", "-q", "origin", "HEAD:main", cwd=repo.work)
            repo.notebooks = sorted(f for f in files if f.endswith(".ipynb"))
            self.repos[name] = repo
        return self.repos

    def push_lesson_update(self, repo: str = "ds101-lessons") -> dict:
        """Commit and push a lesson update, as an instructor would.

        Adds a new notebook and changes ``01-welcome.ipynb`` (a fix in a file
        students may have edited: they keep their version and get the new one
        as ``01-welcome.upstream-<commit>.ipynb``). Returns ``{"commit",
        "added", "changed"}``. Students get it at their server's next start.
        """
        return push_lesson_update(self.workdir, repo)

    # -- lifecycle ---------------------------------------------------------------------

    def _hub_config(self, oauth: dict) -> str:
        return textwrap.dedent(f"""
            # ---- the classroom demo (classroom_spawner.local.demo) ----
            import json

            # Login: the local OpenID Connect provider, gated by the course rosters.
            c.JupyterHub.authenticator_class = "classroom"
            c.ClassroomOAuthenticator.update(json.loads({json.dumps(json.dumps(oauth))}))
            c.ClassroomOAuthenticator.admin_users = {set(ADMINS)!r}
            c.ClassroomOAuthenticator.roster_contact = {ROSTER_CONTACT!r}
            # courses become groups, instructors and TAs get roles over their course's students
            c.ClassroomOAuthenticator.manage_groups = True
            c.ClassroomOAuthenticator.manage_roles = True
            # JUPYTERHUB_CRYPT_KEY is generated for each run
            c.ClassroomOAuthenticator.enable_auth_state = True
            # roster changes reach logged-in users within a minute
            c.Authenticator.auth_refresh_age = {int(self.auth_refresh_age)}
            c.ClassroomRoster.course_files = [{str(self.course_file)!r}]
            c.ClassroomRoster.check_interval = 2

            # Servers: ClassroomSpawner on the Kubernetes stand-in (KUBECONFIG is set
            # in the hub's environment); each pod runs jupyterhub-singleuser for real.
            c.JupyterHub.spawner_class = "classroom"
            c.KubeSpawner.namespace = {NAMESPACE!r}
            c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
            c.KubeSpawner.start_timeout = 180
            c.KubeSpawner.http_timeout = 120
            # the first-spawn queue, not a 429, absorbs a burst (docs/queue.md)
            c.JupyterHub.concurrent_spawn_limit = 0
            c.Spawner.default_url = "/lab"
            # no "get Jupyter news?" question: the demo makes no calls to the internet
            c.Spawner.args = ["--LabApp.news_url=None"]
            # after login: start the server (or show the course choice), then JupyterLab
            c.JupyterHub.redirect_to_server = True
            # always show the progress page while a server starts
            c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
            # the stand-in removes every pod when the demo stops
            c.JupyterHub.cleanup_servers = False
            """)

    async def start(self) -> Demo:
        if self.port and not port_is_free(self.ip, self.port):
            raise DemoError(
                f"port {self.port} on {self.ip} is in use (another demo, or a JupyterHub?)."
                f" Stop it, or choose another port: classroom-spawner demo --port {self.port + 1}"
            )
        prepare_workdir(self.workdir)
        try:
            self.make_lesson_repos()
            self.course_file.write_text(course_file_text(self.repos))
            (self.workdir / "phys210-roster.csv").write_text(roster_csv())

            self.k8s = kube_process(
                self.workdir / "k8s",
                backend=self.kube,
                faults=Faults(
                    provision_delay=self.provision_delay,
                    image_pull_delay=self.image_pull_delay,
                ),
            )
            self._say(
                "Starting the real Kubernetes control plane (docs/realkube.md) ..."
                if self.k8s.backend == "real"
                else "Starting the Kubernetes stand-in ..."
            )
            await self.k8s.__aenter__()
            self.standin_id = self.k8s.info.get("standin_id")

            self._say("Starting the OpenID Connect provider ...")
            self.idp = OIDCProvider(
                accounts=[
                    {
                        "username": a.username,
                        "password": a.password,
                        "claims": {
                            "name": a.name,
                            "email": a.email,
                            "email_verified": True,
                        },
                    }
                    for a in ACCOUNTS
                ],
                port=self.idp_port,
                hint="Demo: sign in as ada / ada-pw (student); every sample login is printed where the demo runs.",
                log_path=self.workdir / "oidc-provider.log",
            )
            await self.idp.__aenter__()

            self._say("Starting JupyterHub and configurable-http-proxy ...")
            self.hub = HubProcess(
                workdir=self.workdir / "hub",
                port=self.port,
                ip=self.ip,
                log_level=self.log_level,
                env={
                    "KUBECONFIG": self.k8s.kubeconfig_path,
                    "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
                },
                start_timeout=120,
            )
            self.hub.config = self._hub_config(
                self.idp.oauthenticator_config(hub_url=self.hub.hub_url)
            )
            await self.hub.__aenter__()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> list[int]:
        """Stop the hub (and its proxy), the provider and the stand-in (and its
        pods), in that order. Returns the pids of processes that had to be killed
        afterwards (should be none)."""
        hub, self.hub = self.hub, None
        idp, self.idp = self.idp, None
        k8s, self.k8s = self.k8s, None
        if hub is not None:
            try:
                await hub.stop()
            except Exception as e:  # keep stopping the rest
                self._say(f"stopping JupyterHub: {e}")
        if idp is not None:
            try:
                await asyncio.to_thread(idp.stop)
            except Exception as e:
                self._say(f"stopping the OpenID Connect provider: {e}")
        if k8s is not None:
            try:
                await asyncio.to_thread(k8s.stop)
            except Exception as e:
                self._say(f"stopping the Kubernetes stand-in: {e}")
        return self._kill_leftovers()

    def _kill_leftovers(self) -> list[int]:
        """Kill any process a pod left behind (the stand-in's marker is in their
        environment); a clean stop leaves none."""
        if not self.standin_id:
            return []
        pids = processes_with_env(f"CLASSROOM_STANDIN={self.standin_id}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    async def __aenter__(self) -> Demo:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- the command ------------------------------------------------------------------

    async def run(self) -> int:
        """Start, print the URL and the logins, wait for Ctrl-C or SIGTERM, stop."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            try:
                await self.start()
            except DemoError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            except Exception as e:
                print(f"error: the demo did not start: {e}", file=sys.stderr)
                return 1
            if not stop.is_set():
                self._say(self.banner())
                await stop.wait()
            self._say("Stopping the demo ...")
        finally:
            leftovers = await self.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        if leftovers:
            self._say(f"Stopped; killed {len(leftovers)} leftover pod processes.")
        else:
            self._say("Stopped. Nothing is left running.")
        return 0


def push_lesson_update(workdir, repo: str = "ds101-lessons") -> dict:
    """Push the next sample update to the lesson repo ``repo`` of the demo in ``workdir``
    (works while the demo runs, from another terminal)."""
    work = Path(workdir).absolute() / "lessons" / repo
    if not (work / ".git").is_dir():
        raise DemoError(
            f"no demo lesson repository at {work}; is the demo running with this --workdir?"
        )
    count = int(
        git("rev-list", "--count", "HEAD", cwd=work)
    )  # 1 before the first update
    title = UPDATES[count - 1] if count - 1 < len(UPDATES) else f"Extra {count}"
    slug = title.lower().replace(" ", "-")
    added = f"{count + 1:02d}-{slug}.ipynb"
    (work / added).write_text(
        notebook(
            (
                "markdown",
                f"# {title}\n\nNew in lesson update {count}: pushed by the instructor while the course runs.",
            ),
            ("code", f"print('{title}')"),
        )
    )
    changed = []
    welcome = work / "01-welcome.ipynb"
    if welcome.exists():
        nb = json.loads(welcome.read_text())
        nb["cells"].insert(
            1,
            {
                "cell_type": "markdown",
                "id": f"update-{count}",
                "metadata": {},
                "source": f"**Update {count}:** the instructor added `{added}`.",
            },
        )
        welcome.write_text(json.dumps(nb, indent=1) + "\n")
        changed.append(welcome.name)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", f"Lesson update {count}: {title}", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return {
        "commit": git("rev-parse", "HEAD", cwd=work),
        "added": [added],
        "changed": changed,
    }


def main(
    port=DEFAULT_PORT,
    workdir=DEFAULT_WORKDIR,
    push_update=False,
    out=None,
    kube=None,
    lms=False,
) -> int:
    """What ``classroom-spawner demo`` runs."""
    out = out if out is not None else sys.stdout
    if push_update:
        try:
            update = push_lesson_update(workdir)
        except DemoError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(
            f"Pushed lesson update {update['commit'][:7]} to ds101-lessons: added {', '.join(update['added'])},"
            f" changed {', '.join(update['changed']) or 'nothing'}.\n"
            "Students get it at their next server start (hub home: Stop My Server, then Start My Server).",
            file=out,
        )
        return 0
    # after a plain `pip install classroom-spawner`: say what to install, not a Node traceback
    problems = demo_problems()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    if lms:
        # the LTI 1.3 login needs the `lti` extra; imported here only (it imports this module)
        try:
            import ltiauthenticator  # noqa: F401

            from .lti.demo import LMSDemo
        except ImportError as e:
            print(
                f"error: --lms needs jupyterhub-ltiauthenticator (pip install 'classroom-spawner[lti]'): {e}",
                file=sys.stderr,
            )
            return 1
        return asyncio.run(
            LMSDemo(workdir, port=port, lms_port=port + 1, out=out, kube=kube).run()
        )
    return asyncio.run(Demo(workdir, port=port, out=out, kube=kube).run())
