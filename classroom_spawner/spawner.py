"""ClassroomSpawner: KubeSpawner with course profiles, per-user volumes and lessons.

The class holds the configuration and wires KubeSpawner's public hooks to
small modules that do the work and can be tested without a hub or a cluster:
:mod:`classroom_spawner.profiles` (what a user may pick, and checking it),
:mod:`classroom_spawner.lessons` (the lesson sync init container), and
:mod:`classroom_spawner.roster` (who is in which course).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from jupyterhub.utils import maybe_future
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Dict, Float, Integer, List, TraitError, Unicode, default, validate

from kubernetes_asyncio.client.models import V1Container
from kubespawner.utils import get_k8s_model

from . import profiles as profiles_mod
from .authz.state import claimed_courses
from .lessons.initcontainer import CONTAINER_NAME as LESSON_CONTAINER
from .lessons.initcontainer import build_init_container, parse_termination_message
from .metrics import SPAWN_QUEUE_WAIT_SECONDS, observe_queue
from .spawnqueue import describe_wait, shared_queue, update_interval
from .roster import ClassroomRoster, Role

try:  # JupyterHub >= 6: policy rejections that don't count as spawn failures
    from jupyterhub.spawner import SpawnException
except ImportError:  # pragma: no cover - JupyterHub 5.x
    SpawnException = None

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")

# query arguments JupyterHub itself uses on /hub/spawn; anything else is a spawn option
_RESERVED_QUERY_ARGS = {"next", "display_name", "_xsrf"}


def user_error(message: str, *, status: int = 400, reason: str = "invalid-options") -> web.HTTPError:
    """An error caused by what a user asked for, shown to them as is.

    On JupyterHub 6 a SpawnException, which does not count towards
    ``consecutive_failure_limit``; on 5.x an HTTPError with the message
    JupyterHub shows on the spawn page.
    """
    if SpawnException is not None:
        return SpawnException(message, reason=reason, status_code=status)
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message
    return error


def hub_spawn_limit_warning(config, first_spawn_limit: int) -> str | None:
    """Why JupyterHub's own ``concurrent_spawn_limit`` would defeat the first-spawn
    queue, or None. JupyterHub counts spawns waiting in our line as pending and
    answers "429 Too many users" beyond its limit, so a burst larger than that
    limit gets errors instead of places in line."""
    from jupyterhub.app import JupyterHub

    if JupyterHub.initialized():  # in the hub: the value it runs with, however it was set
        hub_limit = JupyterHub.instance().concurrent_spawn_limit
    else:
        hub_config = config.get("JupyterHub", {}) if config else {}
        default = JupyterHub.class_traits()["concurrent_spawn_limit"].default_value
        hub_limit = hub_config.get("concurrent_spawn_limit", default)
    if not first_spawn_limit or not hub_limit:
        return None
    return (
        f"c.JupyterHub.concurrent_spawn_limit is {hub_limit}: JupyterHub counts spawns waiting in the"
        f" first-spawn queue as pending, so beyond {hub_limit} students starting at once the rest get"
        " '429 Too many users' instead of a place in line. Set c.JupyterHub.concurrent_spawn_limit = 0"
        " (Z2JH: hub.concurrentSpawnLimit: 0) and let c.ClassroomSpawner.first_spawn_limit"
        f" ({first_spawn_limit}) limit the expensive spawns."
    )


def _brace_safe(value):
    """Escape a value for HTML, and its braces too: JupyterHub renders the form
    through Jinja a second time, so a course title must not read as a template."""
    text = escape(value if value is not None else "")
    return Markup(str(text).replace("{", "&#123;").replace("}", "&#125;"))


_FORM_TEMPLATE = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
    finalize=_brace_safe,
).get_template("classroom_form.html")


def _options_applied_at_start(spawner, user_options):
    """JupyterHub's apply_user_options hook: nothing to do before start()."""


async def _classroom_profile_list(spawner: ClassroomSpawner) -> list[dict[str, Any]]:
    """KubeSpawner's ``profile_list`` for ClassroomSpawner: the user's course profiles."""
    return await spawner.classroom_profiles()


class ClassroomSpawner(KubeSpawner):
    """A KubeSpawner that offers each user the profiles of their own courses.

    - **Profiles** are built from the course files (``c.ClassroomRoster``): a
      student sees their courses, an admin sees every course plus
      :attr:`admin_profiles`. Whatever is submitted, through the form or the
      REST API, is checked on the server against the user's own profiles.
    - **Storage**: one persistent volume per user (10Gi by default) mounted as
      the home directory, never deleted when the user is deleted unless
      ``delete_pvc`` is turned on.

    Every KubeSpawner option still applies; ``c.KubeSpawner.*`` settings (as
    written by the Zero to JupyterHub chart) are inherited.
    """

    # configuration warnings: once per hub process, not once per user
    _hub_limit_checked = False
    _sync_cap_warned = False
    _profile_list_warned = False

    admin_profiles = List(
        Dict(),
        config=True,
        help="""
        Extra KubeSpawner profiles offered only to hub admins, after every
        course's profile. Same format as KubeSpawner's ``profile_list``
        entries (``display_name``, ``slug``, ``description``,
        ``kubespawner_override``, ``profile_options``).

        Example::

            c.ClassroomSpawner.admin_profiles = [
                {
                    "display_name": "Admin: large server",
                    "slug": "admin-large",
                    "kubespawner_override": {"cpu_limit": 8, "mem_limit": "32G"},
                },
            ]

        A missing ``slug`` is made from ``display_name``. A slug equal to a
        course id is hidden behind that course's profile; choose another.
        Course profiles come from the course files; ``profile_list`` itself is
        managed by ClassroomSpawner and should not be set.
        """,
    )

    @validate("admin_profiles")
    def _validate_admin_profiles(self, proposal):
        try:
            return profiles_mod.check_admin_profiles(proposal["value"])
        except ValueError as e:
            raise TraitError(f"c.ClassroomSpawner.admin_profiles: {e}") from None

    no_course_message = Unicode(
        "You are not enrolled in any course on this hub, so there is no server to start."
        " If you think you should be, please contact your instructor.",
        config=True,
        help="""
        What a user who is in no course (and is not an admin) sees instead of a
        server. Name whom to contact.
        """,
    )

    home_mount_path = Unicode(
        "/home/jovyan",
        config=True,
        help="""
        Where each user's volume is mounted in their server: their home
        directory. Lesson repos are cloned below it.

        The default matches the Jupyter Docker Stacks images.
        """,
    )

    first_spawn_limit = Integer(
        20,
        config=True,
        help="""
        How many first spawns may run at once; the rest wait in line (first
        come, first served) and see their place and an estimated wait on the
        spawn page. 0 turns the queue off.

        A first spawn is one whose user has no home volume yet: it provisions
        a disk, may pull the image onto a fresh node and clones the lessons in
        full, so a lecture hall of them at once is what overwhelms a cluster.
        Returning users (their volume exists) are not queued.

        Choose N from what your storage can provision in parallel: start at
        about twice the number of volumes your provisioner creates at once
        (often 10-40), and raise it while spawns stay fast. Waiting in line does
        not count against ``start_timeout``.

        JupyterHub's own ``c.JupyterHub.concurrent_spawn_limit`` counts waiting
        spawns too and answers "429 Too many users" beyond it; set it to 0 (or
        well above the number of students who may start at once) so the queue,
        not a 429, absorbs a burst.
        """,
    )

    spawn_limit = Integer(
        0,
        config=True,
        help="""
        An optional second limit, on all spawns at once (first and returning).
        Spawns over it wait in their own line, like first spawns. 0 means no
        limit. First spawns take a place in both lines.
        """,
    )

    spawn_queue_max_wait = Float(
        1800,
        config=True,
        help="""
        Longest time, in seconds, a spawn may wait in line. Beyond it the spawn
        ends with a message asking the user to try again later (the cluster is
        far slower than expected), instead of waiting on without end.
        """,
    )

    lesson_sync_image = Unicode(
        "",
        config=True,
        help="""
        Image for the init container that brings each course's lesson repos into
        the student's home. Empty (the default): the course's own image, so
        there is nothing extra to pull; it needs ``python3`` (3.6 or later) and
        ``git``, as the Jupyter Docker Stacks images have.
        """,
    )

    lesson_sync_timeout = Float(
        120,
        config=True,
        help="""
        Seconds the lesson sync may take in all, on every start. When it runs
        out, git is stopped, the student's files are left as they were, and the
        server starts anyway with a warning; the next start tries again.

        The sync is part of the pod's start, so it gets at most half of
        ``start_timeout`` (the rest is for the volume, the image and the
        notebook server): with JupyterHub's default ``start_timeout`` of 60 s,
        30 s. A slow git host must never make a start time out.
        """,
    )

    lesson_token_secret = Unicode(
        "",
        config=True,
        help="""
        Name of a Kubernetes Secret (in the users' namespace) holding a git
        token for private lesson repos. The pod spec names the Secret; the
        token itself is never written into it. Empty: public repos only.

        Example::

            kubectl create secret generic lesson-git-token --from-literal=token=ghp_...
            c.ClassroomSpawner.lesson_token_secret = "lesson-git-token"
        """,
    )

    lesson_token_secret_key = Unicode(
        "token",
        config=True,
        help="The key in :attr:`lesson_token_secret` that holds the token.",
    )

    lesson_token_hosts = List(
        Unicode(),
        config=True,
        help="""
        Hosts the lesson token may be sent to (e.g. ``["github.com"]``). Empty:
        every https host of a course's lesson repos.
        """,
    )

    # -- storage and identity defaults: a persistent home, files owned by the student ----

    @default("uid")
    def _uid_default(self):
        # the notebook user of the Jupyter Docker Stacks images (as in Z2JH); the
        # lesson sync runs with the same UID/GID so the files belong to the student
        return 1000

    @default("gid")
    def _gid_default(self):
        return 100

    @default("fs_gid")
    def _fs_gid_default(self):
        return 100

    @default("storage_pvc_ensure")
    def _storage_pvc_ensure_default(self):
        return True

    @default("storage_capacity")
    def _storage_capacity_default(self):
        return "10Gi"

    @default("delete_pvc")
    def _delete_pvc_default(self):
        # KubeSpawner deletes a user's volume when the user is deleted. In a
        # classroom, deleting a user (end of term, a typo in the admin page) must
        # not delete their work; removing volumes is a deliberate, separate step.
        return False

    @default("volumes")
    def _volumes_default(self):
        return [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]

    @default("volume_mounts")
    def _volume_mounts_default(self):
        return [{"name": "home", "mountPath": self.home_mount_path}]

    # -- profiles ---------------------------------------------------------------------

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if (
            self.profile_list
            and self.profile_list is not _classroom_profile_list
            and not ClassroomSpawner._profile_list_warned
        ):
            ClassroomSpawner._profile_list_warned = True
            self.log.warning(
                "%s: profile_list is set in the config (Z2JH: singleuser.profileList?) but"
                " ClassroomSpawner builds profiles from the course files; it is ignored."
                " Put admin-only profiles in c.ClassroomSpawner.admin_profiles.",
                self._log_name,
            )
        self.profile_list = _classroom_profile_list
        self.roster = ClassroomRoster.from_config(self.config, self.log)
        if not ClassroomSpawner._hub_limit_checked:
            ClassroomSpawner._hub_limit_checked = True
            warning = hub_spawn_limit_warning(self.config, self.first_spawn_limit)
            if warning:
                self.log.warning(warning)
        self.classroom_course = None
        self._fallback_notice = None
        self._auth_state = None
        self._tickets: list = []
        # _queue_decided: this spawn has its place in line, or needs none.
        # _queueing_done: it got every slot it needs (or gave up).
        # Both are cleared when the spawn ends, for the next one.
        self._queue_decided = asyncio.Event()
        self._queueing_done = asyncio.Event()

    async def run_auth_state_hook(self, auth_state):
        # keep what the authenticator learned (courses the identity provider asserts)
        self._auth_state = auth_state
        return await super().run_auth_state_hook(auth_state)

    def _requester_is_admin(self) -> bool:
        """Is the person asking for this server (maybe not its owner) a hub admin?"""
        handler = getattr(self, "handler", None)
        requester = getattr(handler, "current_user", None) if handler else None
        return bool(
            requester is not None
            and getattr(requester, "kind", "user") == "user"
            and getattr(requester, "admin", False)
        )

    async def memberships(self) -> dict[str, Role]:
        """The user's courses and roles: the roster's, plus any the identity
        provider asserted at login (kept in auth state by the authenticator)."""
        roster = await self.roster.current()
        found = dict(roster.memberships(self.user.name))
        for course_id, role in claimed_courses(self._auth_state).items():
            if course_id in roster.courses and (
                course_id not in found or role.rank > found[course_id].rank
            ):
                found[course_id] = role
        return found

    async def classroom_profiles(self) -> list[dict[str, Any]]:
        """The profiles this user may start, first one the default.

        Raises the user-facing "no course" error when there are none.
        """
        roster = await self.roster.current()
        admin = bool(getattr(self.user, "admin", False)) or self._requester_is_admin()
        try:
            return profiles_mod.profiles_for(
                await self.memberships(),
                roster.courses,
                admin=admin,
                admin_profiles=self.admin_profiles,
            )
        except profiles_mod.NoProfiles:
            raise user_error(self.no_course_message, status=403, reason="no-course") from None

    @default("options_form")
    def _options_form_default(self):
        return self._render_classroom_form

    async def _render_classroom_form(self, spawner) -> str:
        """The spawn page's form; empty (no form at all) when there is only one choice."""
        profiles = await spawner.classroom_profiles()
        if len(profiles) == 1 and not profiles[0].get("profile_options"):
            return ""
        saved = spawner.user_options or {}
        try:
            saved = profiles_mod.resolve_user_options(saved, profiles)
        except profiles_mod.InvalidOptions:
            saved = {}
        return _FORM_TEMPLATE.render(
            profile_list=profiles, user_options=saved, unlisted=profiles_mod.UNLISTED
        )

    @default("apply_user_options")
    def _apply_user_options_default(self):
        # JupyterHub >= 5.3 warns about user_options no hook applies; here
        # check_user_options and KubeSpawner's load_user_options apply them at start
        return _options_applied_at_start

    @default("options_from_form")
    def _options_from_form_default(self):
        return self._classroom_options_from_form

    async def _classroom_options_from_form(self, formdata, spawner=None):
        """Parse and check the form. A bad choice re-shows the form with the error."""
        spawner = spawner or self
        options = profiles_mod.options_from_form(formdata)
        try:
            return profiles_mod.resolve_user_options(options, await spawner.classroom_profiles())
        except profiles_mod.InvalidOptions as e:
            raise user_error(str(e)) from None

    def _options_were_submitted(self) -> bool:
        """Did this spawn request carry options, or are they the ones JupyterHub saved
        from an earlier start? Only submitted options are refused with an error;
        saved ones that are no longer valid fall back to a valid profile."""
        handler = getattr(self, "handler", None)
        if handler is None:
            return False
        request = handler.request
        if request.method == "POST":
            return bool((request.body or b"").strip())
        return any(key not in _RESERVED_QUERY_ARGS for key in request.query_arguments)

    async def check_user_options(self):
        """Check the requested profile and options against the user's own.

        Submitted options that are not the user's to choose are refused with a
        400-class error naming what was wrong. Options JupyterHub saved from an
        earlier start that are no longer valid (the user left that course) fall
        back to the user's first profile, with a note on the spawn page.
        """
        profiles = await self.classroom_profiles()
        try:
            resolved = profiles_mod.resolve_user_options(self.user_options, profiles)
        except profiles_mod.InvalidOptions as e:
            if self._options_were_submitted():
                self.log.warning("Refusing server options for %s: %s", self._log_name, e)
                raise user_error(f"Cannot start your server: {e}") from None
            resolved = {"profile": profiles[0]["slug"]}
            previous = (self.user_options or {}).get("profile")
            self._fallback_notice = (
                f"Your last choice ({previous}) is not available to you any more;"
                f" starting {profiles[0]['display_name']} instead."
                if previous
                else f"Your last server options are not available any more; starting {profiles[0]['display_name']}."
            )
            self.log.warning(
                "Saved server options for %s are no longer valid (%s); using profile %s",
                self._log_name,
                e,
                resolved["profile"],
            )
        self.user_options = resolved
        profile = next(p for p in profiles if p["slug"] == resolved["profile"])
        course_id = (profile.get("classroom") or {}).get("course")
        roster = await self.roster.current()
        self.classroom_course = roster.courses.get(course_id) if course_id else None

    async def load_user_options(self):
        """Check the options again, then let KubeSpawner apply them.

        They were checked before the spawn queued; minutes in line later the
        roster may have dropped the user from that course (or from every one).
        Checked again, that is the same clear 400/403 (or, for saved options,
        the same fallback), not KubeSpawner's "no such profile" 500.
        """
        await self.check_user_options()
        await super().load_user_options()

    # -- lessons ------------------------------------------------------------------------

    async def get_pod_manifest(self):
        """KubeSpawner's pod, plus the lesson sync init container of the user's course.

        The container is added here rather than through ``init_containers``,
        because KubeSpawner formats those as templates and the script is code.
        """
        pod = await super().get_pod_manifest()
        course = self.classroom_course
        if course is not None and course.lessons:
            container = self._lesson_sync_container(pod, course)
            if container is not None:
                pod.spec.init_containers = [container] + list(pod.spec.init_containers or [])
        return pod

    def _lesson_sync_container(self, pod, course):
        notebook = pod.spec.containers[0]
        mount = next(
            (m for m in notebook.volume_mounts or [] if m.mount_path == self.home_mount_path),
            None,
        )
        if mount is None:
            self.log.warning(
                "%s: no volume is mounted at %s (c.ClassroomSpawner.home_mount_path);"
                " lessons of %s are not synced",
                self._log_name,
                self.home_mount_path,
                course.id,
            )
            return None
        uid, gid = _run_as(notebook, pod)
        spec = build_init_container(
            course.lessons,
            image=self.lesson_sync_image or notebook.image,
            uid=uid,
            gid=gid,
            home_mount_path=self.home_mount_path,
            home_volume_name=mount.name,
            home_sub_path=mount.sub_path,
            token_secret_name=self.lesson_token_secret or None,
            token_secret_key=self.lesson_token_secret_key,
            token_hosts=self.lesson_token_hosts or None,
            timeout=self._lesson_sync_seconds(),
            image_pull_policy=notebook.image_pull_policy,
        )
        return get_k8s_model(V1Container, spec)

    def _lesson_sync_seconds(self) -> float:
        """lesson_sync_timeout, but at most half of start_timeout."""
        cap = self.start_timeout / 2 if self.start_timeout > 0 else self.lesson_sync_timeout
        if self.lesson_sync_timeout <= cap:
            return self.lesson_sync_timeout
        if not ClassroomSpawner._sync_cap_warned:
            ClassroomSpawner._sync_cap_warned = True
            self.log.warning(
                "c.ClassroomSpawner.lesson_sync_timeout (%g s) is more than half of"
                " start_timeout (%g s): the lesson sync gets %g s, so that a slow git host"
                " cannot make starts time out. Raise start_timeout (Z2JH:"
                " singleuser.startTimeout) to give it more.",
                self.lesson_sync_timeout,
                self.start_timeout,
                max(cap, 1.0),
            )
        return max(cap, 1.0)

    def lesson_sync_warnings(self):
        """Warnings from this start's lesson sync, once it finished (else None)."""
        pod = self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}") if self.pod_reflector else None
        for status in ((pod or {}).get("status") or {}).get("initContainerStatuses") or []:
            if status.get("name") != LESSON_CONTAINER:
                continue
            terminated = (status.get("state") or {}).get("terminated")
            if terminated is None:
                return None
            return parse_termination_message(terminated.get("message"))
        return None

    # -- the spawn queues ---------------------------------------------------------------

    async def run_pre_spawn_hook(self):
        # a new spawn: nothing of an earlier, cancelled one's queue state carries over
        self._queue_decided.clear()
        self._queueing_done.clear()
        # refuse bad options before anyone waits in line for nothing
        self._fallback_notice = None
        await self.check_user_options()
        await self._take_spawn_slots()
        return await maybe_future(super().run_pre_spawn_hook())

    async def is_first_spawn(self) -> bool:
        """Does this user have no home volume yet?

        Cheap: if the spawner's saved state says the volume exists (KubeSpawner
        records the PVC name once it has created or found it), it is a
        returning user, with no API call. Otherwise one GET of the PVC: missing,
        or not yet bound, means a first spawn.
        """
        if not self.storage_pvc_ensure:
            return False
        if "pvc_name" in self.get_state():
            return False
        try:
            pvc = await asyncio.wait_for(
                self.api.read_namespaced_persistent_volume_claim(self.pvc_name, self.namespace),
                self.k8s_api_request_timeout,
            )
        except Exception as e:
            if getattr(e, "status", None) == 404:
                return True
            why = (
                f"no answer in {self.k8s_api_request_timeout} s"
                if isinstance(e, asyncio.TimeoutError)
                else (str(e) or type(e).__name__)
            )
            self.log.warning(
                "Could not check for %s's volume (%s); treating the spawn as a first spawn",
                self._log_name,
                why,
            )
            return True
        return getattr(pvc.status, "phase", None) != "Bound"

    async def _take_spawn_slots(self):
        """Wait for a slot in each queue this spawn needs (first spawns, all spawns)."""
        self._release_spawn_slots()
        needed = []
        try:
            if self.first_spawn_limit > 0 and await self.is_first_spawn():
                needed.append(("first-spawn", self.first_spawn_limit, "a new server"))
            if self.spawn_limit > 0:
                needed.append(("spawn", self.spawn_limit, "a server"))
            deadline = time.monotonic() + self.spawn_queue_max_wait
            for name, limit, what in needed:
                queue = shared_queue(name, limit, on_change=observe_queue(name))
                ticket = queue.enter(self.user.name)
                self._tickets.append((name, queue, ticket, what))
                self._queue_decided.set()
                if ticket.waiting:
                    self.log.info(
                        "%s waits for a %s slot: number %d in line", self._log_name, name, ticket.position
                    )
                try:
                    await ticket.wait(timeout=max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    minutes = round(self.spawn_queue_max_wait / 60)
                    raise user_error(
                        f"The hub is very busy: you waited {minutes} minutes in line without getting"
                        " a server. Please try again in a few minutes.",
                        status=503,
                        reason="queue-timeout",
                    ) from None
                SPAWN_QUEUE_WAIT_SECONDS.labels(queue=name).observe(ticket.waited)
                # a slot is never held longer than a start may take, whatever happens
                asyncio.get_running_loop().call_later(
                    self.start_timeout + self.http_timeout + 60, ticket.release
                )
        except BaseException:
            self._release_spawn_slots()
            raise
        finally:
            self._queue_decided.set()
            self._queueing_done.set()

    def _release_spawn_slots(self):
        tickets, self._tickets = self._tickets, []
        for _name, _queue, ticket, _what in tickets:
            ticket.release()

    def _spawn_ended(self, _future=None):
        self._release_spawn_slots()
        self._queue_decided.clear()
        self._queueing_done.clear()

    def start(self):
        future = super().start()
        # the slots cover the expensive part: free them when start() ends, however it ends
        future.add_done_callback(self._spawn_ended)
        return future

    def run_post_stop_hook(self):
        # JupyterHub runs this for every server it stops, also for a spawn that
        # failed before start() (a pre_spawn_hook error) and for a cancelled one.
        # Not stop(): KubeSpawner calls that itself in the middle of a start (to
        # replace a leftover pod), while the slot is still needed.
        self._spawn_ended()
        return super().run_post_stop_hook()

    async def progress(self):
        """Queue position while waiting, then KubeSpawner's own events."""
        await self._queue_decided.wait()
        if self._fallback_notice:
            yield {"progress": 1, "message": self._fallback_notice}
        async for event in self._queue_progress():
            yield event
        lessons = None if self.classroom_course and self.classroom_course.lessons else []
        async for event in super().progress():
            yield event
            if lessons is None:
                lessons = self._lesson_events()
                for lesson_event in lessons or ():
                    yield lesson_event
        # KubeSpawner's events are off (events_enabled), or the start ended
        # before the sync's result arrived: look for it until the start is over
        while lessons is None:
            lessons = self._lesson_events()
            if lessons is not None:
                for lesson_event in lessons:
                    yield lesson_event
            elif self._start_future is not None and self._start_future.done():
                break
            else:
                await asyncio.sleep(1)

    def _lesson_events(self) -> list[dict] | None:
        """This start's lesson-sync warnings as progress events, or None until it finished."""
        warnings = self.lesson_sync_warnings()
        if warnings is None:
            return None
        return [{"message": f"Lessons ({level}): {message}"} for level, message in warnings]

    async def _queue_progress(self):
        """The place in line, when it changed, until every slot is granted.

        Each page looks at its own ticket every :func:`update_interval` seconds
        (sooner when the slot comes), so a long line costs the hub a bounded
        number of updates, not one per page per move.
        """
        last = None
        waited = False
        while True:
            waiting = [(q, t, what) for _n, q, t, what in self._tickets if t.waiting]
            if waiting:
                queue, ticket, what = waiting[0]
                position = ticket.position
                message = describe_wait(position, queue.limit, queue.estimate_wait(position), what=what)
                if message != last:
                    yield {"progress": 2, "message": message}
                    last, waited = message, True
                await ticket.wait_granted(update_interval(queue.waiting))
            elif self._queueing_done.is_set():
                break
            else:  # between two queues
                await asyncio.sleep(0.1)
        if waited and self._tickets:
            yield {"progress": 3, "message": describe_wait(0, 1, 0)}


_SNAKE = {"runAsUser": "run_as_user", "runAsGroup": "run_as_group"}


def _run_as(container, pod) -> tuple[int, int]:
    """The UID/GID the notebook container runs as (container, then pod settings)."""
    uid = gid = None
    for context in (container.security_context, pod.spec.security_context):
        if context is None:
            continue
        # KubeSpawner leaves some nested parts as plain dicts with camelCase keys
        get = context.get if isinstance(context, dict) else lambda key: getattr(context, _SNAKE[key])
        uid = uid if uid is not None else get("runAsUser")
        gid = gid if gid is not None else get("runAsGroup")
    return (1000 if uid is None else uid), (100 if gid is None else gid)



