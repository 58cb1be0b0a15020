"""Login error pages that show their message once, under a short title.

JupyterHub's ``error.html`` puts ``status_message`` in the big heading and
``message`` under it. For a plain ``HTTPError(403, text)`` JupyterHub 5.x makes the
heading "Forbidden", but 6.x makes it the whole text, so the page shows the
sentence twice, once as a giant heading. An error made by :func:`titled_error` has
a short ``reason`` (6.x's heading) and the text as ``jupyterhub_message`` (the
paragraph under the heading on both), so the page reads "403 : Not on a course
roster" (6.x) or "403 : Forbidden" (5.x) and then the text, once.
"""

from __future__ import annotations

from jupyterhub._version import version_info
from oauthenticator.oauth2 import OAuthCallbackHandler
from tornado import web

# JupyterHub 5.3 and later put an error's jupyterhub_message under the heading;
# before, a reason replaced the message, so the page showed the title alone
_SHOWS_JUPYTERHUB_MESSAGE = tuple(version_info[:2]) >= (5, 3)

#: The heading of the page for someone on no roster.
NOT_ON_A_ROSTER = "Not on a course roster"
#: The heading of any other refused login.
CANNOT_LOG_IN = "Cannot log in"


def titled_error(status: int, message: str, title: str) -> web.HTTPError:
    """An HTTPError whose page shows ``message`` once, under the heading ``title``."""
    # as an argument, so a '%' in the message cannot break the formatting
    if not _SHOWS_JUPYTERHUB_MESSAGE:
        return web.HTTPError(
            status, "%s", message
        )  # "403 : Forbidden", then the message
    error = web.HTTPError(status, "%s", message, reason=title)
    error.jupyterhub_message = message
    return error


class RosterCallbackHandler(OAuthCallbackHandler):
    """OAuthenticator's callback handler, with a short title on its 403 pages."""

    async def get(self):
        try:
            return await super().get()
        except web.HTTPError as e:
            if e.status_code != 403 or e.reason or hasattr(e, "jupyterhub_message"):
                raise
            message = e.log_message % e.args if e.args else e.log_message
            refused = message == self.authenticator.custom_403_message
            raise titled_error(
                403, message, NOT_ON_A_ROSTER if refused else CANNOT_LOG_IN
            ) from None
