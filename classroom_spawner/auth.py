"""ClassroomOAuthenticator: log in with the university's identity provider, gated by course rosters.

The classes here are thin: :class:`~classroom_spawner.authz.RosterAuthenticatorMixin`
(the roster logic) in front of an OAuthenticator class. The same one line
gives any other OAuthenticator class the same behaviour::

    from oauthenticator.google import GoogleOAuthenticator
    from classroom_spawner.authz import RosterAuthenticatorMixin

    class ClassroomGoogleOAuthenticator(RosterAuthenticatorMixin, GoogleOAuthenticator):
        pass
"""

from __future__ import annotations

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator

from .authz import RosterAuthenticatorMixin
from .authz.errors import RosterCallbackHandler

__all__ = [
    "ClassroomGitHubOAuthenticator",
    "ClassroomOAuthenticator",
    "RosterAuthenticatorMixin",
]


class ClassroomOAuthenticator(RosterAuthenticatorMixin, GenericOAuthenticator):
    """An OpenID Connect / OAuth2 authenticator that admits the people on a course roster.

    Works with any OpenID Connect provider (Keycloak, Azure AD / Entra ID,
    Google, Globus, CILogon, ...) through its authorization, token and userinfo
    endpoints. Configure it as ``c.ClassroomOAuthenticator`` (all of
    GenericOAuthenticator's settings apply) and the roster as
    ``c.ClassroomRoster``.
    """

    # its 403 pages show their message once, under a short title
    callback_handler = RosterCallbackHandler


class ClassroomGitHubOAuthenticator(RosterAuthenticatorMixin, GitHubOAuthenticator):
    """GitHub login, admitting the people on a course roster (rosters list GitHub logins).

    With ``populate_teams_in_auth_state`` (and the ``read:org`` scope), the
    user's teams count as provider groups named ``org:team-slug``, so
    :attr:`course_claim_groups` can map a GitHub team to a course.
    """

    callback_handler = RosterCallbackHandler

    async def get_provider_groups(self, auth_state):
        groups = await super().get_provider_groups(auth_state)
        for team in (auth_state or {}).get("teams") or ():
            try:
                groups.add(f"{team['organization']['login']}:{team['slug']}")
            except (KeyError, TypeError):
                continue
        return groups
