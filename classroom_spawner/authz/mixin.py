"""RosterAuthenticatorMixin: the roster logic, for any OAuthenticator class.

Put it first in the bases of an OAuthenticator class::

    class ClassroomGoogleOAuthenticator(RosterAuthenticatorMixin, GoogleOAuthenticator):
        pass

and the roster admits people, their courses become JupyterHub groups, course
staff get roles scoped to their students, and a student dropped from the roster
loses access at the next refresh. It only uses OAuthenticator's documented
extension points (``update_auth_model``, ``get_user_groups``,
``check_allowed``, ``check_blocked_users``, ``refresh_user``,
``load_managed_roles``); the decisions themselves live in the pure modules
next to it (:mod:`.groups`, :mod:`.rbac`, :mod:`.claims`, :mod:`.state`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from inspect import isawaitable
from typing import Any

from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import (
    Bool,
    Callable,
    Dict,
    HasTraits,
    Instance,
    Unicode,
    Union,
    default,
    observe,
    validate,
)

from ..jhcompat import mark_not_token_authenticated
from ..queue_api import SpawnQueueAPIMixin
from ..roster import ClassroomRoster, Role, Roster, RosterError
from . import rbac
from .claims import (
    ClaimMap,
    claimed_memberships,
    compile_claim_pattern,
    merge_memberships,
    parse_claim_map,
    provider_group_names,
)
from .groups import GroupNaming
from .state import AUTH_STATE_KEY, build_payload, stored_courses


@dataclass(frozen=True)
class _Policy:
    """The parsed form of the mixin's configuration (rebuilt when it changes)."""

    naming: GroupNaming
    staff_scopes: Mapping[Role, tuple[str, ...]]
    role_template: str
    claim_map: ClaimMap
    claim_pattern: Any


class RosterAuthenticatorMixin(SpawnQueueAPIMixin, HasTraits):
    """Admit the people on a course roster; derive groups and roles from it.

    Mix into an OAuthenticator class, before it in the bases.
    """

    # -- who gets in ---------------------------------------------------------

    allow_rostered = Bool(
        True,
        config=True,
        help="""
        Allow everyone on a course roster to log in (in any role).

        Like every ``allow_*`` rule this is additive: ``admin_users``,
        ``allowed_users``, ``allowed_groups`` and the provider-specific rules
        (e.g. GitHub's ``allowed_organizations``) still admit people who are on
        no roster. Memberships asserted by the identity provider
        (:attr:`course_claim_groups`, :attr:`course_claim_pattern`) count as
        being on the roster.

        Set to False to use the rosters only for groups and roles, and decide
        who gets in with the other allow rules.
        """,
    ).tag(allow_config=True)

    require_rostered = Bool(
        False,
        config=True,
        help="""
        Refuse everyone who is not on a course roster, even if another allow
        rule (``allowed_users``, ``allowed_groups``, ``allow_all``, GitHub's
        ``allowed_organizations``, ...) would admit them. Admins
        (``admin_users``, ``admin_groups``) are never refused by this rule.

        This is a restrictive rule: it is checked with ``blocked_users``, before
        any allow rule, at every login and every refresh.
        """,
    )

    roster_contact = Unicode(
        "your instructor or the hub administrator",
        config=True,
        help="""
        Whom people who are not on any roster should contact; used in the
        default :attr:`custom_403_message` and in the login error pages.

        Example::

            c.ClassroomOAuthenticator.roster_contact = "jupyter-support@uni.example.edu"
        """,
    )

    @default("custom_403_message")
    def _custom_403_message_default(self):
        return (
            "Sorry, you are not on the roster of any course that uses this hub. "
            f"If you think you should be, contact {self.roster_contact} and tell them"
            " which account you signed in with."
        )

    # -- groups --------------------------------------------------------------

    student_group_template = Unicode(
        "{course}",
        config=True,
        help="""
        Name of the JupyterHub group of a course's students (with
        ``manage_groups``). ``{course}`` is the course id.

        Course staff roles are scoped to this group. The default gives a
        course's students the group ``ds101``.
        """,
    )

    staff_group_template = Unicode(
        "{course}-{role}s",
        config=True,
        help="""
        Name of the JupyterHub groups of a course's staff (with
        ``manage_groups``). ``{course}`` is the course id, ``{role}`` is
        ``instructor`` or ``ta``: by default ``ds101-instructors`` and
        ``ds101-tas``. Leave out ``{role}`` for one staff group per course
        (e.g. ``"{course}-staff"``).
        """,
    )

    nbgrader_groups = Bool(
        False,
        config=True,
        help="""
        Also put people in nbgrader's conventional groups (with
        ``manage_groups``): ``nbgrader-<course>`` for students and
        ``formgrade-<course>`` for instructors and TAs, so that nbgrader's
        JupyterHub integration finds each course's students and graders with
        no extra glue.
        """,
    )

    keep_provider_groups = Bool(
        False,
        config=True,
        help="""
        Also make every group in the identity provider's groups claim a
        JupyterHub group, as GenericOAuthenticator does with ``manage_groups``.

        Off by default: only the course groups are managed, plus those provider
        groups named in ``admin_groups`` or ``allowed_groups`` (so that these
        keep working). The claim is read as described for
        :attr:`course_claim_key`.
        """,
    )

    # -- roles ---------------------------------------------------------------

    staff_role_template = Unicode(
        "{course}-{role}",
        config=True,
        help="""
        Name of the JupyterHub role of a course's instructors or TAs (with
        ``manage_roles``): ``{course}`` is the course id, ``{role}`` is
        ``instructor`` or ``ta``, so by default ``ds101-instructor`` and
        ``ds101-ta``. A name that does not start with a letter (course
        ``2025-ds101``) gets ``course-`` in front, as JupyterHub requires.
        """,
    )

    staff_scopes = Dict(
        config=True,
        help=f"""
        Scopes of the course staff roles (with ``manage_roles``), per staff role
        (``instructor``, ``ta``). ``{{group}}`` is the course's students' group,
        ``{{course}}`` the course id. A role left out keeps the default::

            {list(rbac.DEFAULT_STAFF_SCOPES)!r}

        that is: the admin page, listing and reading the course's students, and
        starting, stopping and opening their servers — nothing beyond the
        course, and not the servers of other staff. Example, TAs who may look
        but not start or stop::

            c.ClassroomOAuthenticator.staff_scopes = {{
                "ta": ["admin-ui", "list:users!group={{group}}",
                       "read:servers!group={{group}}", "access:servers!group={{group}}"],
            }}

        Do not give staff ``groups!group=...``: editing a group's members
        reaches everything the group's roles reach.
        """,
    )

    @validate("staff_scopes")
    def _validate_staff_scopes(self, proposal):
        rbac.parse_staff_scopes(proposal.value)
        return proposal.value

    @validate("staff_role_template")
    def _validate_staff_role_template(self, proposal):
        rbac.check_role_template(proposal.value)
        return proposal.value

    @validate("student_group_template", "staff_group_template")
    def _validate_group_templates(self, proposal):
        naming = GroupNaming(
            **{
                **self._naming_fields(),
                _NAMING_FIELD[proposal.trait.name]: proposal.value,
            }
        )
        naming.validate()
        return proposal.value

    @default("reset_managed_roles_on_startup")
    def _reset_managed_roles_default(self):
        # load_managed_roles() returns every course role, so at start-up the
        # roles of courses that left the roster are removed (user assignments
        # of the remaining ones are kept)
        return True

    # -- provider claims -----------------------------------------------------

    course_claim_groups = Dict(
        config=True,
        help="""
        Course memberships asserted by the identity provider: a map from a
        group name in the provider's groups claim to a course id (membership as
        student), a ``{"course": ..., "role": ...}`` dict, or a list of these.

        Example (Keycloak groups)::

            c.ClassroomOAuthenticator.course_claim_groups = {
                "/courses/ds101": "ds101",
                "/courses/ds101/tutors": {"course": "ds101", "role": "ta"},
            }

        Claimed memberships merge with the roster's (the higher role wins),
        count for :attr:`allow_rostered`, and are stored in auth_state for the
        spawner. Every course named here must be on the roster at start-up.
        Needs ``enable_auth_state``, so that refreshes can re-check the claim.
        """,
    )

    @validate("course_claim_groups")
    def _validate_course_claim_groups(self, proposal):
        parse_claim_map(proposal.value)
        return proposal.value

    course_claim_pattern = Unicode(
        "",
        config=True,
        help="""
        A regular expression mapping the identity provider's group names to
        courses, for providers that name a group per course. It must match a
        whole group name and have a named group ``course`` and optionally
        ``role`` (student, ta, instructor, or any spelling rosters accept).

        Example: groups ``course:ds101`` and ``course:ds101:ta``::

            c.ClassroomOAuthenticator.course_claim_pattern = (
                r"course:(?P<course>[a-z0-9._-]+)(:(?P<role>[a-z]+))?"
            )

        Groups of courses that are not on the roster are ignored. Needs
        ``enable_auth_state``, like :attr:`course_claim_groups`.
        """,
    )

    @validate("course_claim_pattern")
    def _validate_course_claim_pattern(self, proposal):
        compile_claim_pattern(proposal.value)
        return proposal.value

    course_claim_key = Union(
        [Unicode(), Callable()],
        default_value="",
        config=True,
        help="""
        Where the identity provider's groups are in auth_state: a dotted key
        such as ``"oauth_user.groups"``, or a callable taking auth_state and
        returning the group names (may be async).

        Default: ``auth_state_groups_key`` if set (GenericOAuthenticator:
        ``oauth_user.groups``, the ``groups`` claim), else the ``groups`` field
        of the provider's user info. Unlike ``auth_state_groups_key`` it can be
        set without ``manage_groups``.
        """,
    )

    # -- the roster ----------------------------------------------------------

    roster = Instance(
        ClassroomRoster,
        help="""
        The course roster (configured with ``c.ClassroomRoster``), shared with
        the spawner.
        """,
    )

    @default("roster")
    def _roster_default(self):
        return ClassroomRoster.from_config(self.config, self.log)

    @default("refresh_pre_spawn")
    def _refresh_pre_spawn_default(self):
        # re-check the roster before every spawn, with or without auth_state
        return True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._policy_cache = None
        self._init_roster()

    # -- start-up ------------------------------------------------------------

    def _naming_fields(self) -> dict:
        return {
            "student_template": self.student_group_template,
            "staff_template": self.staff_group_template,
            "nbgrader": self.nbgrader_groups,
        }

    @observe(
        "student_group_template",
        "staff_group_template",
        "nbgrader_groups",
        "staff_scopes",
        "staff_role_template",
        "course_claim_groups",
        "course_claim_pattern",
    )
    def _policy_changed(self, change):
        self._policy_cache = None

    @property
    def _policy(self) -> _Policy:
        policy = getattr(self, "_policy_cache", None)
        if policy is None:
            policy = self._policy_cache = _Policy(
                naming=GroupNaming(**self._naming_fields()),
                staff_scopes=rbac.parse_staff_scopes(self.staff_scopes),
                role_template=self.staff_role_template,
                claim_map=parse_claim_map(self.course_claim_groups),
                claim_pattern=compile_claim_pattern(self.course_claim_pattern),
            )
        return policy

    @property
    def _uses_claims(self) -> bool:
        return bool(self.course_claim_groups or self.course_claim_pattern)

    def _init_roster(self) -> None:
        """Read the roster and check the configuration against it, at hub start.

        A broken roster or configuration stops the hub with every problem
        logged, rather than locking people out later.
        """
        cls = type(self).__name__
        policy = self._policy
        try:
            roster = self.roster.load()
        except RosterError as e:
            self.log.error("%s cannot start: the course roster has problems.", cls)
            for problem in e.problems:
                self.log.error("  %s", problem)
            raise
        problems = []
        for group, entries in policy.claim_map.items():
            for course, _ in entries:
                if course not in roster.courses:
                    problems.append(
                        f"{cls}.course_claim_groups[{group!r}] names course {course!r},"
                        " which is not on the roster"
                    )
        if self.manage_groups or self.manage_roles:
            problems.extend(
                f"{cls}: {p}" for p in policy.naming.collisions(roster.courses)
            )
        if self._uses_claims and not self.enable_auth_state:
            problems.append(
                f"{cls}.course_claim_groups/course_claim_pattern need"
                " c.Authenticator.enable_auth_state = True (and JUPYTERHUB_CRYPT_KEY):"
                " without auth_state, a refresh cannot re-check what the provider asserted"
            )
        if problems:
            for problem in problems:
                self.log.error("%s", problem)
            raise ValueError("\n".join(problems))
        if self.manage_roles:
            # every course role name must be valid and its own (raises for a bad
            # template, or two courses that would share a role)
            rbac.all_staff_roles(
                roster.courses,
                naming=policy.naming,
                staff_scopes=policy.staff_scopes,
                role_template=policy.role_template,
            )
        risky = rbac.risky_scopes(policy.staff_scopes)
        if risky:
            self.log.warning(
                "%s.staff_scopes gives course staff %s: whoever may change a group's"
                " members can add themselves to any group and reach everything its"
                " roles reach. Remove these scopes unless you mean it.",
                cls,
                ", ".join(risky),
            )
        if self.manage_roles and not self.manage_groups:
            self.log.warning(
                "%s: manage_roles is on but manage_groups is off, so the course"
                " groups that staff roles are scoped to are not kept up to date by"
                " this authenticator. Set c.%s.manage_groups = True.",
                cls,
                cls,
            )
        self.log.info(
            "%s: %s; course groups %s, staff roles %s",
            cls,
            roster,
            "managed" if self.manage_groups else "off (manage_groups is False)",
            "managed" if self.manage_roles else "off (manage_roles is False)",
        )

    def check_allow_config(self):
        super().check_allow_config()
        roster = self.roster.ensure_loaded()
        if self.allow_rostered and roster.people == 0 and not self._uses_claims:
            self.log.warning(
                "No one is on a course roster (c.ClassroomRoster.course_files = %r):"
                " only admins and users admitted by other allow rules can log in.",
                list(self.roster.course_files),
            )

    # -- usernames -----------------------------------------------------------

    def normalize_username(self, username):
        """Strip surrounding whitespace, then JupyterHub's normalisation (lower case,
        ``username_map``): the same rule the roster applies to its logins."""
        return super().normalize_username(username.strip())

    def user_info_to_username(self, user_info):
        """The provider's username, or a clear error page if it sent none."""
        claim = self.username_claim
        claim_name = (
            getattr(claim, "__name__", "username_claim callable")
            if callable(claim)
            else claim
        )
        try:
            username = super().user_info_to_username(user_info)
        except web.HTTPError:
            raise
        except ValueError:
            # OAuthenticator's "No <claim> found in ..." (already logged by it)
            username = None
        except Exception:
            self.log.exception(
                "Login failed: the username_claim %s raised an error", claim_name
            )
            raise web.HTTPError(
                500,
                "The hub could not work out your username from your identity provider's"
                f" answer. Please contact {self.roster_contact}; the hub's log says why.",
            )
        if isinstance(username, int) and not isinstance(username, bool):
            username = str(username)
        if not isinstance(username, str) or not username.strip():
            present = (
                sorted(user_info)
                if isinstance(user_info, Mapping)
                else type(user_info).__name__
            )
            self.log.error(
                "Login refused: the identity provider sent no usable %r claim (got %r)."
                " Claims it sent: %s. Check username_claim and the requested scopes.",
                claim_name,
                username,
                present,
            )
            raise web.HTTPError(
                403,
                f"Your identity provider did not tell the hub who you are (no {claim_name!r}"
                " in your account details), so you cannot be logged in."
                f" Please contact {self.roster_contact}.",
            )
        return username

    # -- memberships ---------------------------------------------------------

    def _needs_provider_groups(self) -> bool:
        return bool(
            self._uses_claims
            or (
                self.manage_groups
                and (
                    self.keep_provider_groups
                    or self.admin_groups
                    or self.allowed_groups
                )
            )
        )

    async def get_provider_groups(
        self, auth_state: Mapping[str, Any] | None
    ) -> set[str]:
        """The group names the identity provider asserts, from auth_state.

        Read from :attr:`course_claim_key` (default: ``auth_state_groups_key``,
        else ``<user_auth_state_key>.groups``). A missing claim means no
        groups. Override to read groups from elsewhere (the GitHub variant adds
        ``org:team`` names).
        """
        if not isinstance(auth_state, Mapping):
            return set()
        key = (
            self.course_claim_key
            or self.auth_state_groups_key
            or f"{self.user_auth_state_key}.groups"
        )
        if callable(key):
            value = key(auth_state)
            if isawaitable(value):
                value = await value
        else:
            try:
                value = reduce(
                    lambda d, k: d.get(k) if isinstance(d, Mapping) else None,
                    key.split("."),
                    auth_state,
                )
            except (AttributeError, TypeError):
                value = None
        return set(provider_group_names(value))

    async def _memberships(
        self, username: str, auth_state
    ) -> tuple[Roster, dict, dict, set[str]]:
        """(roster, all memberships, claimed memberships, provider groups) for a user."""
        roster = await self.roster.current()
        rostered = roster.memberships(username)
        provider = (
            await self.get_provider_groups(auth_state)
            if self._needs_provider_groups()
            else set()
        )
        claimed: dict[str, Role] = {}
        if self._uses_claims:
            policy = self._policy
            claimed, notes = claimed_memberships(
                provider, policy.claim_map, policy.claim_pattern, roster.courses
            )
            for note in notes:
                self.log.debug("%s: %s", username, note)
        return roster, merge_memberships(rostered, claimed), claimed, provider

    def _groups(
        self,
        courses: Mapping[str, Role],
        provider: set[str],
        kept: set[str] = frozenset(),
    ) -> set[str]:
        groups = self._policy.naming.groups_for(courses) | set(kept)
        if self.keep_provider_groups:
            groups |= provider
        else:
            groups |= provider & (set(self.admin_groups) | set(self.allowed_groups))
        return groups

    def _roles(
        self, courses: Mapping[str, Role], admin: bool, roster: Roster
    ) -> list[dict]:
        # the hub's own definition of the user role: its app if we have it, else its config
        hub = self.parent
        hub_config = self.config.get("JupyterHub", {})
        load_roles = getattr(hub, "load_roles", None)
        if load_roles is None:
            load_roles = hub_config.get("load_roles", [])
        extra = getattr(hub, "extra_user_scopes", None)
        if extra is None:
            extra = hub_config.get("extra_user_scopes", [])
        roles = [rbac.default_role("user", load_roles, extra)]
        if admin:
            roles.append(rbac.default_role("admin", load_roles))
        policy = self._policy
        roles.extend(
            rbac.staff_roles(
                courses,
                naming=policy.naming,
                staff_scopes=policy.staff_scopes,
                role_template=policy.role_template,
                courses=roster.courses,
            )
        )
        return roles

    async def _apply_roster(
        self, auth_model: dict, kept_groups: set[str] | None = None
    ) -> dict:
        """Put the user's courses in auth_state and their roles in the model.

        ``kept_groups``: for a refresh without auth_state, the user's current
        groups that are no course's (the provider's groups cannot be re-read).
        """
        username = auth_model["name"]
        auth_state = auth_model.get("auth_state")
        if auth_state is None:
            auth_state = auth_model["auth_state"] = {}
        roster, courses, claimed, provider = await self._memberships(
            username, auth_state
        )
        auth_state[AUTH_STATE_KEY] = build_payload(courses, claimed)
        if courses:
            self.log.debug(
                "%s: %s",
                username,
                ", ".join(
                    f"{course} ({role})" for course, role in sorted(courses.items())
                ),
            )
        if self.manage_groups:
            groups = self._groups(courses, provider, kept_groups or set())
            auth_model["groups"] = sorted(groups)
            if self.admin_groups and not auth_model.get("admin"):
                # as OAuthenticator decides it (it does so again after this hook)
                auth_model["admin"] = bool(groups & set(self.admin_groups))
        if self.manage_roles:
            # with manage_roles the role list is authoritative: decide admin now
            admin = auth_model["admin"] = bool(auth_model.get("admin"))
            auth_model["roles"] = self._roles(courses, admin, roster)
        return auth_model

    async def _courses_of(self, username: str, auth_model) -> Mapping[str, Role]:
        auth_state = (
            auth_model.get("auth_state") if isinstance(auth_model, Mapping) else None
        )
        if isinstance(auth_state, Mapping) and AUTH_STATE_KEY in auth_state:
            return stored_courses(auth_state)
        return (await self.roster.current()).memberships(username)

    # -- OAuthenticator hooks ------------------------------------------------

    async def update_auth_model(self, auth_model):
        """Collect the user's courses (roster and provider claims) into auth_state,
        and with ``manage_roles`` their roles. Runs at every login and refresh."""
        auth_model = super().update_auth_model(auth_model)
        if isawaitable(auth_model):
            auth_model = await auth_model
        return await self._apply_roster(auth_model)

    async def get_user_groups(self, auth_state):
        """The user's JupyterHub groups (with ``manage_groups``): one per course
        and role, from the memberships :meth:`update_auth_model` stored."""
        courses = stored_courses(auth_state)
        provider = (
            await self.get_provider_groups(auth_state)
            if self._needs_provider_groups()
            else set()
        )
        return self._groups(courses, provider)

    async def check_blocked_users(self, username, auth_model):
        """``blocked_users`` and friends, then :attr:`require_rostered`."""
        allowed = super().check_blocked_users(username, auth_model)
        if isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            return False
        if self.require_rostered and auth_model is not None:
            if auth_model.get("admin") or username in self.admin_users:
                return True
            if not await self._courses_of(username, auth_model):
                self.log.warning(
                    "%s is not on any course roster (require_rostered)", username
                )
                return False
        return True

    async def check_allowed(self, username, auth_model):
        """OAuthenticator's allow rules, then: anyone on a course roster."""
        allowed = super().check_allowed(username, auth_model)
        if isawaitable(allowed):
            allowed = await allowed
        if allowed:
            return True
        if self.allow_rostered and await self._courses_of(username, auth_model):
            return True
        self.log.warning(
            "%s is not on any course roster%s and no other allow rule admits them",
            username,
            " (roster and provider claims)" if self._uses_claims else "",
        )
        return False

    async def refresh_user(self, user, handler=None, **kwargs):
        """Refresh as OAuthenticator does, then re-check who may stay.

        OAuthenticator refreshes tokens and groups but never re-checks the allow
        rules, so a student dropped from the roster would keep access. Here the
        roster (and provider claims), ``blocked_users`` and the allow rules are
        checked again at every refresh; False ends the user's session (they must
        log in again, which the roster then refuses). Works without auth_state
        too: then the roster alone is re-checked. If the identity provider
        cannot be reached, the roster is still re-checked against what was
        stored at login, rather than failing every request.
        """
        try:
            refreshed = await super().refresh_user(user, handler, **kwargs)
        except web.HTTPError as e:
            self.log.warning(
                "Cannot refresh auth for %s (%s): login required",
                user.name,
                e.log_message,
            )
            return False
        except (HTTPClientError, OSError, asyncio.TimeoutError) as e:
            self.log.warning(
                "Identity provider unreachable while refreshing %s (%s);"
                " re-checking the roster with what was stored at login",
                user.name,
                e,
            )
            refreshed = True
        if not refreshed:
            return False
        kept_groups = None
        if refreshed is True:
            # no fresh model: auth_state disabled, refresh_user_hook said "no
            # change", or the provider is down. Rebuild from what the hub has.
            auth_state = await user.get_auth_state() if self.enable_auth_state else None
            auth_model = {
                "name": user.name,
                "admin": True if user.name in self.admin_users else None,
                "auth_state": auth_state if isinstance(auth_state, dict) else {},
            }
            if self.user_auth_state_key not in auth_model["auth_state"]:
                # the provider's groups are unknown: keep the groups that are no course's
                roster = await self.roster.current()
                course_groups = self._policy.naming.all_groups(roster.courses)
                kept_groups = {g.name for g in user.groups} - course_groups
            await self._apply_roster(auth_model, kept_groups)
        else:
            auth_model = refreshed
            if auth_model.get("name") != user.name:
                self.log.warning(
                    "The identity provider now calls %s %r: a new login is required",
                    user.name,
                    auth_model.get("name"),
                )
                return False
            # OAuthenticator's own refresh put today's courses in the model
            # (update_auth_model); a refresh_user_hook may return one built from
            # what was stored at login. Read the roster again either way: it is
            # in memory, and what was stored must never outlive a roster change.
            await self._apply_roster(auth_model)
        if not await self._still_allowed(user.name, auth_model):
            self.log.warning(
                "Ending the session of %s: no longer allowed (refresh)", user.name
            )
            await self._withdraw(user, auth_model)
            mark_not_token_authenticated(handler)
            return False
        return auth_model

    async def _withdraw(self, user, auth_model: dict) -> None:
        """Take away every course group and staff role of a refused user.

        Returning False from a refresh ends a browser session, but JupyterHub
        keeps the user's groups and roles as they were, and API tokens (which
        cannot be sent to a login page) keep working with them. So a TA dropped
        from every roster, or put on ``blocked_users`` while still on one,
        would keep reaching the students' servers through a token. A refused
        user keeps no course's group or role, and of the rest only what the
        fresh model still gives them. Only removes: never adds anything.
        """
        try:
            roster = await self.roster.current()
            policy = self._policy
            if (
                self.manage_groups
                and "groups" in auth_model
                and hasattr(user, "sync_groups")
            ):
                current = {g.name for g in user.groups}
                keep = current & set(auth_model["groups"]) - policy.naming.all_groups(
                    roster.courses
                )
                if keep != current:
                    user.sync_groups(sorted(keep))
            if (
                self.manage_roles
                and "roles" in auth_model
                and hasattr(user, "sync_roles")
            ):
                current = {r.name for r in user.roles}
                staff = rbac.all_staff_role_names(roster.courses, policy.role_template)
                keep = [
                    r
                    for r in auth_model["roles"]
                    if r["name"] in current and r["name"] not in staff
                ]
                if {r["name"] for r in keep} != current:
                    user.sync_roles(keep)
        except Exception:
            self.log.exception(
                "Could not remove the course groups and roles of %s", user.name
            )

    async def _still_allowed(self, username: str, auth_model: dict) -> bool:
        not_blocked = self.check_blocked_users(username, auth_model)
        if isawaitable(not_blocked):
            not_blocked = await not_blocked
        if not not_blocked:
            return False
        if self.allow_all:
            return True
        allowed = self.check_allowed(username, auth_model)
        if isawaitable(allowed):
            allowed = await allowed
        return bool(allowed)

    async def load_managed_roles(self):
        """Every course's staff roles, so they exist from the start (``manage_roles``).

        The roles carry no ``users``: logins and refreshes assign them. With
        ``reset_managed_roles_on_startup`` (on by default here), roles of courses
        no longer on the roster are deleted at start-up.
        """
        if not self.manage_roles:
            return await super().load_managed_roles()
        roster = await self.roster.current()
        policy = self._policy
        return rbac.all_staff_roles(
            roster.courses,
            naming=policy.naming,
            staff_scopes=policy.staff_scopes,
            role_template=policy.role_template,
        )


_NAMING_FIELD = {
    "student_group_template": "student_template",
    "staff_group_template": "staff_template",
}
