"""ClassroomSpawner: KubeSpawner with course profiles, per-user volumes and lessons.

The class holds the configuration and wires KubeSpawner's and JupyterHub's
public hooks to small modules that do the work and can be tested without a hub
or a cluster: :mod:`classroom_spawner.profiles` (what a user may pick, and the
one checked selection a spawn uses), :mod:`classroom_spawner.spawnqueue` (the
admission through the spawn queues), :mod:`classroom_spawner.lessons` (the
lesson sync init container), :mod:`classroom_spawner.mounts` (course volumes
merged into the hub's), :mod:`classroom_spawner.jhcompat` (what differs
between JupyterHub versions) and :mod:`classroom_spawner.roster` (who is in
which course).
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from typing import Any, NamedTuple

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.models import V1Container, V1Volume
from kubespawner import KubeSpawner
from kubespawner.utils import get_k8s_model
from tornado import web
from traitlets import (
    Bool,
    Dict,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    default,
    validate,
)

from . import profiles as profiles_mod
from .authz.claims import merge_memberships
from .authz.state import claimed_courses
from .coursestorage import HubStorage, course_students, hub_storage
from .jhcompat import discount_refusal, options_submitted, user_error
from .lessons.initcontainer import CONTAINER_NAME as LESSON_CONTAINER
from .lessons.initcontainer import (
    DEFAULT_RESOURCES,
    build_init_container,
    parse_termination_message,
    script_volume,
    sync_seconds,
)
from .lessons.program import ensure_program_secret, program_secret
from .metrics import SPAWN_QUEUE_WAIT_SECONDS, observe_queue
from .mounts import merged_profile, uses_pvc_name
from .podevents import event_index
from .roster import ClassroomRoster, Role
from .spawnqueue import Admission, AdmissionTimeout, Need, shared_queue
from .volumecache import volume_cache

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")

__all__ = ["ClassroomSpawner", "hub_spawn_limit_warning", "user_error"]


def hub_spawn_limit_warning(hub_limit: int, first_spawn_limit: int) -> str | None:
    """Why JupyterHub's own ``concurrent_spawn_limit`` would defeat the first-spawn
    queue, or None. JupyterHub counts spawns waiting in our line as pending and
    answers "429 Too many users" beyond its limit, so a burst larger than that
    limit gets errors instead of places in line."""
    if not first_spawn_limit or not hub_limit:
        return None
    return (
        f"c.JupyterHub.concurrent_spawn_limit is {hub_limit}: JupyterHub counts spawns waiting in the"
        f" first-spawn queue as pending, so beyond {hub_limit} students starting at once the rest get"
        " '429 Too many users' instead of a place in line. Set c.JupyterHub.concurrent_spawn_limit = 0"
        " (Z2JH: hub.concurrentSpawnLimit: 0) and let c.ClassroomSpawner.first_spawn_limit"
        f" ({first_spawn_limit}) limit the expensive spawns."
    )


def configured_hub_spawn_limit(config) -> int:
    """``c.JupyterHub.concurrent_spawn_limit`` as a config sets it, else JupyterHub's default."""
    from jupyterhub.app import JupyterHub

    hub_config = config.get("JupyterHub", {}) if config else {}
    default_limit = JupyterHub.class_traits()["concurrent_spawn_limit"].default_value
    return hub_config.get("concurrent_spawn_limit", default_limit)


# JupyterHub puts the form into its spawn page as it is (``| safe``), never through
# Jinja a second time: autoescaping is all a course title or description needs
_FORM_TEMPLATE = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
).get_template("classroom_form.html")


def _options_applied_at_start(spawner, user_options):
    """JupyterHub's apply_user_options hook: nothing to do before start()."""


async def _classroom_profile_list(spawner: ClassroomSpawner) -> list[dict[str, Any]]:
    """KubeSpawner's ``profile_list``: the profiles of this spawn's selection (the
    user's courses), so KubeSpawner applies exactly what was checked."""
    return await spawner.kubespawner_profiles()


class _Entry(NamedTuple):
    """How a spawn got in: its selection, and its admission through the queues
    (None when it needed no queue). Resolved once per spawn, for progress()."""

    selection: profiles_mod.Selection | None
    admission: Admission | None


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
        config=True,
        help="""
        Where each user's home is mounted in their server. Lesson repos are
        cloned below it. May be a template like KubeSpawner's mount paths
        (``/home/{username}``).

        The default is the mount path of the hub's ``home`` mount when
        ``volume_mounts`` is configured (as Zero to JupyterHub configures it
        from ``singleuser.storage.homeMountPath``), else ``/home/jovyan``, which
        matches the Jupyter Docker Stacks images.
        """,
    )

    @default("home_mount_path")
    def _home_mount_path_default(self):
        if self.trait_has_value("volume_mounts"):
            mounts = self.volume_mounts
            entries = (
                mounts.items()
                if isinstance(mounts, dict)
                else [(None, m) for m in mounts]
            )
            for key, mount in entries:
                if isinstance(mount, dict) and "home" in (key, mount.get("name")):
                    if mount.get("mountPath"):
                        return mount["mountPath"]
        return "/home/jovyan"

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
        Returning users (their volume exists) are not queued. With a shared
        home (one NFS volume with a subPath per user, Z2JH's
        ``storage.type: static``) or no storage, no spawn provisions a disk, so
        none is a first spawn; use :attr:`spawn_limit` to pace those.

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
        64,
        config=True,
        help="""
        A second limit, on all spawns at once (first and returning): spawns over
        it wait in their own line, like first spawns, and see their place. First
        spawns take a place in both lines. 0 means no limit.

        It is what keeps the hub itself from being flooded. With the queue you
        set ``c.JupyterHub.concurrent_spawn_limit = 0`` (its 429s would defeat
        the line), which also removes the only other limit on returning users'
        starts; a lecture hall whose volumes exist already (a course prepared
        with ``classroom-spawner prepare``, a second lecture, a shared home)
        then starts all at once, and past what one hub process can take in,
        KubeSpawner's API requests time out and starts fail. 64 is Zero to
        JupyterHub's ``hub.concurrentSpawnLimit``: the same protection, as a
        line instead of a 429.
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

    lesson_sync_program_secret = Bool(
        True,
        config=True,
        help="""
        Deliver the lesson sync program (about 50 KB of Python) in a Secret mounted
        read-only into the init container, instead of in its command. The hub
        creates the Secret ``classroom-lesson-sync-<version>`` in the users'
        namespace when it is missing (Zero to JupyterHub's hub may create
        Secrets), so a pod with lessons stays a few KB, and so does every pod
        event the hub watches. If the hub cannot create it, the program rides in
        the command, with a warning in the log.

        Old versions' Secrets stay (a few KB each); remove them with
        ``kubectl delete secret -l app.kubernetes.io/component=lesson-sync``
        when no pod of an older version runs.
        """,
    )

    lesson_token_username = Unicode(
        "",
        config=True,
        help="""
        The user name sent with the lesson token. Empty (the default) suits
        GitHub tokens; GitLab deploy tokens need the token's user name, GitLab
        project and group access tokens any non-empty name (e.g. ``oauth2``).

        Example::

            c.ClassroomSpawner.lesson_token_username = "gitlab+deploy-token-42"
        """,
    )

    lesson_sync_resources = Dict(
        config=True,
        help="""
        CPU and memory of the lesson sync init container, as a Kubernetes
        ``resources`` dict. The default (50m CPU / 64Mi requested, 1 CPU / 512Mi
        limit) covers lesson-sized repos; git's index-pack is the hungry part of
        a clone, so a repo with large files or a long history needs more memory.

        Example::

            c.ClassroomSpawner.lesson_sync_resources = {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"cpu": "2", "memory": "2Gi"},
            }
        """,
    )

    @default("lesson_sync_resources")
    def _lesson_sync_resources_default(self):
        return copy.deepcopy(DEFAULT_RESOURCES)

    @validate("lesson_sync_resources")
    def _validate_lesson_sync_resources(self, proposal):
        value = proposal["value"]
        for key, amounts in value.items():
            if key not in ("requests", "limits") or not isinstance(amounts, dict):
                raise TraitError(
                    "c.ClassroomSpawner.lesson_sync_resources: expected"
                    ' {"requests": {...}, "limits": {...}}, got key %r' % (key,)
                )
        return value

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
        # a volume of one's own, but only where a volume uses it: with a shared
        # home (Z2JH storage.type static: one claim, a subPath per user) or no
        # storage, a claim-<user> PVC would be made that nothing mounts
        return uses_pvc_name(self.volumes)

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

    # -- set-up -----------------------------------------------------------------------

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
        self._auth_state = None
        # the options of the last start this spawner accepted, as JupyterHub had
        # saved them (kept in the spawner's state): what a refused request restores
        self._accepted_options: dict | None = None
        self._forget_spawn()

    def _forget_spawn(self) -> None:
        """Nothing of a spawn carries over to the next one."""
        self._selection: profiles_mod.Selection | None = None
        self._selection_roster = None
        self._entry: asyncio.Future | None = None

    def get_state(self):
        state = super().get_state()
        if self._accepted_options is not None:
            state["classroom_accepted_options"] = self._accepted_options
        return state

    def load_state(self, state):
        super().load_state(state)
        accepted = state.get("classroom_accepted_options")
        if isinstance(accepted, dict):
            self._accepted_options = accepted

    async def run_auth_state_hook(self, auth_state):
        # keep what the authenticator learned (courses the identity provider asserts)
        self._auth_state = auth_state
        return await super().run_auth_state_hook(auth_state)

    # -- profiles ---------------------------------------------------------------------

    def _requester_is_admin(self) -> bool:
        """Is the person asking for this server (maybe not its owner) a hub admin?"""
        handler = getattr(self, "handler", None)
        requester = getattr(handler, "current_user", None) if handler else None
        return bool(
            requester is not None
            and getattr(requester, "kind", "user") == "user"
            and getattr(requester, "admin", False)
        )

    def _memberships_in(self, roster) -> dict[str, Role]:
        claimed = {
            course: role
            for course, role in claimed_courses(self._auth_state).items()
            if course in roster.courses
        }
        return merge_memberships(roster.memberships(self.user.name), claimed)

    async def memberships(self) -> dict[str, Role]:
        """The user's courses and roles: the roster's, plus any the identity
        provider asserted at login (kept in auth state by the authenticator)."""
        return self._memberships_in(await self.roster.current())

    def course_storage(self) -> HubStorage:
        """What the hub's volumes say about homes, for course storage
        (:mod:`classroom_spawner.coursestorage`)."""
        return hub_storage(
            self.volumes,
            self.volume_mounts,
            self.home_mount_path,
            slug_scheme=self.slug_scheme,
        )

    def _profiles_in(self, roster) -> list[dict[str, Any]]:
        admin = bool(getattr(self.user, "admin", False)) or self._requester_is_admin()
        try:
            return profiles_mod.profiles_for(
                self._memberships_in(roster),
                roster.courses,
                admin=admin,
                admin_profiles=self.admin_profiles,
                storage=self.course_storage(),
                # the roster of this spawn: its course's students, never its staff
                students_of=lambda cid: course_students(roster.members(cid)),
            )
        except profiles_mod.NoProfiles:
            raise user_error(
                self.no_course_message, status=403, reason="no-course"
            ) from None

    async def classroom_profiles(self) -> list[dict[str, Any]]:
        """The profiles this user may start, first one the default.

        Raises the user-facing "no course" error when there are none.
        """
        return self._profiles_in(await self.roster.current())

    async def profile_selection(
        self, *, recheck: bool = True
    ) -> profiles_mod.Selection:
        """This spawn's checked choice of profile, course and options.

        Made at its first use in a spawn from ``user_options``; made again only
        when the roster changed since (``recheck``), so that a student dropped
        from a course while waiting in line is told so. Submitted options that
        are not the user's to choose are refused with a 400-class error; saved
        ones that are no longer valid fall back, with a notice (see
        :func:`classroom_spawner.profiles.select`).
        """
        if self._selection is not None and not recheck:
            return self._selection
        roster = await self.roster.current()
        if self._selection is None or self._selection_roster is not roster:
            profiles = self._profiles_in(roster)
            try:
                selection = profiles_mod.select(
                    self.user_options,
                    profiles,
                    roster.courses,
                    submitted=options_submitted(self.handler),
                )
            except profiles_mod.InvalidOptions as e:
                self.log.warning(
                    "Refusing server options for %s: %s", self._log_name, e
                )
                raise user_error(f"Cannot start your server: {e}") from None
            if selection.notice:
                self.log.warning(
                    "Saved server options for %s are no longer valid; using profile %s",
                    self._log_name,
                    selection.options["profile"],
                )
            self._selection, self._selection_roster = selection, roster
        return self._selection

    async def _spawn_selection(self) -> profiles_mod.Selection:
        """The selection, inside a spawn: a refusal here is not a spawn failure."""
        try:
            selection = await self.profile_selection()
        except web.HTTPError:
            self._refused()
            raise
        if self._accepted_options != self.user_options and isinstance(
            self.user_options, dict
        ):
            self._accepted_options = copy.deepcopy(self.user_options)
        return selection

    def _refused(self) -> None:
        """A spawn is refused: it must not count as a failure, nor change later starts.

        JupyterHub saved the refused request's options for the next start
        before the spawner saw them; put back what was saved before.
        """
        discount_refusal(self.handler)
        if not options_submitted(self.handler) or self.orm_spawner is None:
            return
        self.orm_spawner.user_options = copy.deepcopy(self._accepted_options or {})
        if self.db is not None:
            self.db.commit()

    async def kubespawner_profiles(self) -> list[dict[str, Any]]:
        """The profiles KubeSpawner applies: this spawn's selection's, with course
        volumes merged into the hub's (see :mod:`classroom_spawner.mounts`)."""
        if self._selection is None:
            return await self.classroom_profiles()
        current = {"volumes": self.volumes, "volume_mounts": self.volume_mounts}
        return [
            merged_profile(profile, current) for profile in self._selection.profiles
        ]

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
        # profile_selection and KubeSpawner's load_user_options apply them at start
        return _options_applied_at_start

    @default("options_from_form")
    def _options_from_form_default(self):
        return self._classroom_options_from_form

    async def _classroom_options_from_form(self, formdata, spawner=None):
        """Parse and check the form. A bad choice re-shows the form with the error
        (before any spawn: JupyterHub counts nothing)."""
        spawner = spawner or self
        options = profiles_mod.options_from_form(formdata)
        try:
            return profiles_mod.resolve_user_options(
                options, await spawner.classroom_profiles()
            )
        except profiles_mod.InvalidOptions as e:
            raise user_error(str(e)) from None

    async def load_user_options(self):
        """Apply this spawn's selection through KubeSpawner.

        It was checked before the spawn queued; minutes in line later the roster
        may have dropped the user from that course (or from every one), so it is
        checked again if the roster changed: the same clear 400/403 (or, for
        saved options, the same fallback), not KubeSpawner's "no such profile".
        """
        selection = await self._spawn_selection()
        self.user_options = dict(selection.options)
        await super().load_user_options()

    # -- storage ------------------------------------------------------------------------

    def has_own_volume(self) -> bool:
        """Does this spawner give the user a volume of their own (a PVC it ensures)?

        Not with a shared home (Z2JH ``storage.type: static``: one NFS claim with
        a subPath per user) or no storage at all: then there is no PVC to create,
        to check, or to wait for.
        """
        return bool(self.storage_pvc_ensure)

    async def is_first_spawn(self) -> bool:
        """Does this user have no volume of their own yet?

        Cheap: if the spawner's saved state says the volume exists (KubeSpawner
        records the PVC name once it has created or found it), it is a
        returning user. Otherwise the hub's cache of user volumes (one watch of
        the namespace, :mod:`classroom_spawner.volumecache`) answers: missing,
        or not yet bound, means a first spawn. Only while that cache cannot be
        started, one GET of the PVC. Always False without a volume of one's own
        (:meth:`has_own_volume`).
        """
        if not self.has_own_volume():
            return False
        if "pvc_name" in self.get_state():
            return False
        cache = await volume_cache(self, timeout=self.k8s_api_request_timeout)
        if cache is not None:
            phase = cache.phase(self.namespace, self.pvc_name)
            self.log.debug(
                "%s: volume %s is %s (volume cache)",
                self._log_name,
                self.pvc_name,
                phase or "missing",
            )
            return phase != "Bound"
        try:
            pvc = await asyncio.wait_for(
                self.api.read_namespaced_persistent_volume_claim(
                    self.pvc_name, self.namespace
                ),
                self.k8s_api_request_timeout,
            )
        except ApiException as e:
            if e.status == 404:
                return True
            why = f"HTTP {e.status} {e.reason}"
        except asyncio.TimeoutError:
            why = f"no answer in {self.k8s_api_request_timeout} s"
        except Exception as e:  # the API cannot be reached at all
            why = str(e) or type(e).__name__
        else:
            return getattr(pvc.status, "phase", None) != "Bound"
        self.log.warning(
            "Could not check for %s's volume (%s); treating the spawn as a first spawn",
            self._log_name,
            why,
        )
        return True

    # -- lessons ------------------------------------------------------------------------

    async def get_pod_manifest(self):
        """KubeSpawner's pod, plus the lesson sync init container of the spawn's course.

        The container goes *after* every other init container: the chart's
        ``block-cloud-metadata`` must be in place before any network call, and
        an admin's init containers may prepare the home the lessons go into. It
        is added here rather than through ``init_containers``, because
        KubeSpawner formats those as templates and the script is code.
        """
        pod = await super().get_pod_manifest()
        course = (await self.profile_selection(recheck=False)).course
        if course is not None and course.lessons:
            program = (
                program_secret(self.namespace)
                if self.lesson_sync_program_secret
                else None
            )
            container = self._lesson_sync_container(pod, course, program)
            if container is not None:
                pod.spec.init_containers = list(pod.spec.init_containers or []) + [
                    container
                ]
                if program:
                    pod.spec.volumes = list(pod.spec.volumes or []) + [
                        get_k8s_model(V1Volume, script_volume(program))
                    ]
        return pod

    def _lesson_sync_container(self, pod, course, program: str | None):
        notebook = pod.spec.containers[0]
        # expanded as KubeSpawner expands the mounts' own paths (no public API does it)
        home = self._expand_user_properties(self.home_mount_path)
        mount = next(
            (m for m in notebook.volume_mounts or [] if m.mount_path == home), None
        )
        if mount is None:
            self.log.warning(
                "%s: no volume is mounted at %s (c.ClassroomSpawner.home_mount_path);"
                " lessons of %s are not synced",
                self._log_name,
                home,
                course.id,
            )
            return None
        uid, gid = _run_as(notebook, pod)
        spec = build_init_container(
            course.lessons,
            image=self.lesson_sync_image or notebook.image,
            uid=uid,
            gid=gid,
            home_mount_path=home,
            home_volume_name=mount.name,
            home_sub_path=mount.sub_path,
            token_secret_name=self.lesson_token_secret or None,
            token_secret_key=self.lesson_token_secret_key,
            token_hosts=self.lesson_token_hosts or None,
            token_username=self.lesson_token_username or None,
            timeout=self._lesson_sync_seconds(),
            resources=self.lesson_sync_resources,
            image_pull_policy=notebook.image_pull_policy,
            program_secret=program,
        )
        return get_k8s_model(V1Container, spec)

    def _lesson_sync_seconds(self) -> float:
        seconds = sync_seconds(self.lesson_sync_timeout, self.start_timeout)
        if seconds < self.lesson_sync_timeout and not ClassroomSpawner._sync_cap_warned:
            ClassroomSpawner._sync_cap_warned = True
            self.log.warning(
                "c.ClassroomSpawner.lesson_sync_timeout (%g s) is more than half of"
                " start_timeout (%g s): the lesson sync gets %g s, so that a slow git host"
                " cannot make starts time out. Raise start_timeout (Z2JH:"
                " singleuser.startTimeout) to give it more.",
                self.lesson_sync_timeout,
                self.start_timeout,
                seconds,
            )
        return seconds

    def lesson_sync_warnings(self):
        """Warnings from this start's lesson sync, once it finished (else None)."""
        pod = (
            self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}")
            if self.pod_reflector
            else None
        )
        for status in ((pod or {}).get("status") or {}).get(
            "initContainerStatuses"
        ) or []:
            if status.get("name") != LESSON_CONTAINER:
                continue
            terminated = (status.get("state") or {}).get("terminated")
            if terminated is None:
                return None
            return parse_termination_message(terminated.get("message"))
        return None

    # -- the spawn queues ---------------------------------------------------------------

    def _entry_future(self) -> asyncio.Future:
        """This spawn's :class:`_Entry`, once the pre-spawn hook settled it."""
        if self._entry is None:
            self._entry = asyncio.get_running_loop().create_future()
        return self._entry

    async def run_pre_spawn_hook(self):
        self._warn_about_hub_limit()
        entry = self._entry_future()
        selection = admission = None
        try:
            # refuse bad options before anyone waits in line for nothing
            selection = await self._spawn_selection()
            if (
                selection.course is not None
                and selection.course.lessons
                and self.lesson_sync_program_secret
            ):
                await ensure_program_secret(
                    self.api,
                    self.namespace,
                    timeout=self.k8s_api_request_timeout,
                    log=self.log,
                )
            admission = await self._admission()
            if not entry.done():
                entry.set_result(_Entry(selection, admission))
            await self._wait_in_line(admission)
        finally:
            if not entry.done():
                entry.set_result(_Entry(selection, None))
        return await maybe_future(super().run_pre_spawn_hook())

    async def _admission(self) -> Admission | None:
        """The queues this spawn needs: first spawns, and all spawns if limited."""
        needs = []
        if self.first_spawn_limit > 0 and await self.is_first_spawn():
            queue = shared_queue(
                "first-spawn",
                self.first_spawn_limit,
                on_change=observe_queue("first-spawn"),
            )
            needs.append(Need("first-spawn", queue, "a new server"))
        if self.spawn_limit > 0:
            queue = shared_queue(
                "spawn", self.spawn_limit, on_change=observe_queue("spawn")
            )
            needs.append(Need("spawn", queue, "a server"))
        if not needs:
            return None
        return Admission(
            needs,
            self.user.name,
            deadline=time.monotonic() + self.spawn_queue_max_wait,
            # a slot is never held longer than a start may take, whatever happens
            hold_for=self.start_timeout + self.http_timeout + 60,
        )

    async def _wait_in_line(self, admission: Admission | None) -> None:
        if admission is None:
            return
        logged = False
        try:
            async for _event in admission.take():
                waiting = admission.waiting_in()
                if waiting is not None and not logged:
                    logged = True
                    need, place = waiting
                    self.log.info(
                        "%s waits for a %s slot: number %d in line",
                        self._log_name,
                        need.name,
                        place,
                    )
        except AdmissionTimeout:
            self._refused()
            wait = self.spawn_queue_max_wait
            seconds = round(wait)
            waited = (
                f"{seconds} second{'s' * (seconds != 1)}"
                if wait < 90
                else f"{round(wait / 60)} minutes"
            )
            raise user_error(
                f"The hub is very busy: you waited {waited} in line without getting"
                " a server. Please try again in a few minutes.",
                status=503,
                reason="queue-timeout",
            ) from None
        for name, seconds in admission.waited.items():
            SPAWN_QUEUE_WAIT_SECONDS.labels(queue=name).observe(seconds)
            if seconds >= 1:
                self.log.info(
                    "%s waited %.0f s for a %s slot", self._log_name, seconds, name
                )

    def _warn_about_hub_limit(self) -> None:
        """Once per hub: is JupyterHub's own spawn limit about to defeat the queue?"""
        if ClassroomSpawner._hub_limit_checked:
            return
        ClassroomSpawner._hub_limit_checked = True
        settings = getattr(self.handler, "settings", None) or {}
        hub_limit = settings.get("concurrent_spawn_limit")
        if hub_limit is None:
            hub_limit = configured_hub_spawn_limit(self.config)
        warning = hub_spawn_limit_warning(hub_limit, self.first_spawn_limit)
        if warning:
            self.log.warning(warning)

    def _spawn_ended(self, _future=None) -> None:
        entry = self._entry
        if entry is not None and entry.done() and entry.result().admission is not None:
            entry.result().admission.release()
        if entry is not None and not entry.done():
            entry.set_result(_Entry(None, None))
        self._forget_spawn()

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
        """The fallback notice and the place in line, then KubeSpawner's own events
        and the lesson sync's warnings."""
        entry_future = self._entry_future()
        entry = await entry_future
        if entry.selection is not None and entry.selection.notice:
            yield {"progress": 1, "message": entry.selection.notice}
        if entry.admission is not None:
            async for event in entry.admission.follow():
                yield event
        course = entry.selection.course if entry.selection is not None else None
        lessons = None if course is not None and course.lessons else []
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
            elif self._entry is not entry_future:  # the spawn is over
                break
            else:
                await asyncio.sleep(1)

    @property
    def events(self):
        """This pod's events since the start began, as KubeSpawner's ``events`` gives
        them, from a hub-wide index instead of a sort of the namespace's events on
        every call (:mod:`classroom_spawner.podevents`)."""
        if not self.event_reflector:
            return []
        # KubeSpawner's marker of the last event a previous pod of this name had
        # (set at the start of _start, from this same property)
        return event_index(self.event_reflector).events(
            self.pod_name, getattr(self, "_last_event", None)
        )

    def _lesson_events(self) -> list[dict] | None:
        """This start's lesson-sync warnings as progress events, or None until it finished."""
        warnings = self.lesson_sync_warnings()
        if warnings is None:
            return None
        return [
            {"message": f"Lessons ({level}): {message}"} for level, message in warnings
        ]


_SNAKE = {"runAsUser": "run_as_user", "runAsGroup": "run_as_group"}


def _run_as(container, pod) -> tuple[int, int]:
    """The UID/GID the notebook container runs as (container, then pod settings)."""
    uid = gid = None
    for context in (container.security_context, pod.spec.security_context):
        if context is None:
            continue
        # KubeSpawner leaves some nested parts as plain dicts with camelCase keys
        get = (
            context.get
            if isinstance(context, dict)
            else lambda key: getattr(context, _SNAKE[key])
        )
        uid = uid if uid is not None else get("runAsUser")
        gid = gid if gid is not None else get("runAsGroup")
    return (1000 if uid is None else uid), (100 if gid is None else gid)
