"""Roster-based authorization for OAuthenticator: who gets in, groups, roles.

- :mod:`.mixin` -- :class:`RosterAuthenticatorMixin`, the OAuthenticator hooks;
- :mod:`.groups` -- course memberships to JupyterHub group names;
- :mod:`.rbac` -- course staff roles and their scopes;
- :mod:`.claims` -- course memberships asserted by the identity provider;
- :mod:`.state` -- what is stored in auth_state (read by the spawner).
"""

from .groups import GroupNaming
from .mixin import RosterAuthenticatorMixin
from .rbac import DEFAULT_STAFF_SCOPES
from .state import AUTH_STATE_KEY, claimed_courses, stored_courses

__all__ = [
    "AUTH_STATE_KEY",
    "DEFAULT_STAFF_SCOPES",
    "GroupNaming",
    "RosterAuthenticatorMixin",
    "claimed_courses",
    "stored_courses",
]
