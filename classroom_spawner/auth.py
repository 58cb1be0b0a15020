"""ClassroomOAuthenticator: log in with the university's identity provider, gated by course rosters."""

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator


class ClassroomOAuthenticator(GenericOAuthenticator):
    """An OpenID Connect / OAuth2 authenticator that admits the people on a course roster."""


class ClassroomGitHubOAuthenticator(GitHubOAuthenticator):
    """GitHub login, admitting the people on a course roster."""
