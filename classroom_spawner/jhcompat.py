"""Where JupyterHub 5.x and 6.x behave differently, in one place.

Each function states the JupyterHub behaviour it relies on, and for which
versions, so that a change upstream is a change here only.
"""

from __future__ import annotations

import jupyterhub
from tornado import web

try:  # JupyterHub >= 6: refusals that are not spawn failures
    from jupyterhub.spawner import SpawnException
except ImportError:  # pragma: no cover - JupyterHub 5.x
    SpawnException = None


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


JUPYTERHUB_VERSION = _version(jupyterhub.__version__)


def user_error(
    message: str, *, status: int = 400, reason: str = "invalid-options"
) -> web.HTTPError:
    """An error caused by what a user asked for, shown to them as it is.

    On JupyterHub 6 a ``SpawnException``: a refusal, which JupyterHub does not
    count toward ``consecutive_failure_limit`` and logs without a traceback.
    On 5.x an ``HTTPError`` with the message the spawn page shows; see
    :func:`discount_refusal` for the failure count there.
    """
    if SpawnException is not None:
        return SpawnException(message, reason=reason, status_code=status)
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message
    return error


def discount_refusal(handler) -> None:
    """Keep a refused spawn out of JupyterHub 5.x's consecutive failure count.

    JupyterHub 5.x counts every exception that ends a spawn toward
    ``c.Spawner.consecutive_failure_limit`` (Z2JH sets 5) and exits the hub at
    the limit: twenty students asking for a course that is not theirs would
    restart the hub, and with it empty the queue. JupyterHub 6 counts only
    errors, not refusals (``SpawnException``), so there is nothing to do.

    The count lives in the hub's tornado settings (``failure_count``), and the
    spawn's end adds one to it after this refusal has been raised. Taking one
    off in advance leaves the count as it was. Call it only for a refusal that
    is raised inside the spawn (a pre-spawn hook, ``load_user_options``), never
    for one from ``options_from_form``, which JupyterHub does not count.
    """
    if SpawnException is not None or handler is None:
        return
    settings = getattr(handler, "settings", None)
    if isinstance(settings, dict):
        settings["failure_count"] = settings.get("failure_count", 0) - 1


def options_submitted(handler) -> bool:
    """Did the spawn request carry options, by JupyterHub's own rule?

    JupyterHub either passes the options a request submitted (and saves them
    for later starts), or, when there are none, reuses the saved ones. The
    spawner sees only the result, so this asks the request the way JupyterHub
    read it:

    - the REST API (``POST /users/:name/server``): on JupyterHub 6, a body
      whose ``user_options`` is missing or null (an empty body, ``{}``, or one
      with only ``display_name``) means "use the saved options"; a body that
      is neither is the options themselves. On 5.x, any JSON body is the
      options (``{}`` included) and only an empty body means "saved".
    - the spawn page: a form post always submits options; a ``GET
      /hub/spawn`` with query arguments other than JupyterHub's own
      (``next``, ``display_name``, ``_xsrf``) submits them as well.

    No handler (the command line, a test) counts as saved options.
    """
    if handler is None:
        return False
    server_body = getattr(handler, "get_server_json_body", None)
    if callable(server_body):  # JupyterHub 6 REST API
        try:
            return server_body().get("user_options") is not None
        except web.HTTPError:
            return True
    request = handler.request
    if request.method == "POST":
        if hasattr(handler, "get_json_body"):  # JupyterHub 5.x REST API
            return bool((request.body or b"").strip())
        return True  # the spawn form
    return any(key not in _RESERVED_QUERY_ARGS for key in request.query_arguments)


# query arguments JupyterHub itself uses on /hub/spawn; anything else is an option
_RESERVED_QUERY_ARGS = {"next", "display_name", "_xsrf"}


def mark_not_token_authenticated(handler) -> None:
    """Work around a crash of JupyterHub 6.1's ``BaseHandler.refresh_auth``.

    Since jupyterhub/jupyterhub#5500 (``auth_refresh_strict``, JupyterHub 6.1),
    ``refresh_auth`` reads ``handler._token_authenticated`` when a refresh
    returns False, but only token-authenticated requests set it: a
    cookie-authenticated request (a refused student pressing "Start") then
    fails with a 500 and a traceback instead of the 403 or login redirect
    JupyterHub means to give. Unset means "not token-authenticated" everywhere
    else in JupyterHub, so setting the missing attribute to False changes
    nothing but that crash. Older versions never read it: nothing is set there.
    """
    if JUPYTERHUB_VERSION < (6, 1) or handler is None:
        return
    if not hasattr(handler, "_token_authenticated"):
        try:
            handler._token_authenticated = False
        except AttributeError:
            pass
