"""``GET /hub/api/classroom/spawn-queue``: who waits for a server, and for how long.

The queues live in the hub process, so their state is served by the hub. The
endpoint needs the ``read:servers`` scope and shows each caller only the users
whose servers they may read: an admin sees everyone, an instructor with
``read:servers!group=ds101`` sees the students of ds101, and a student sees
themself.

The queues are the spawner's, but only an authenticator can add API handlers
to the hub (``Authenticator.get_handlers``): every classroom authenticator
serves it, and :class:`SpawnQueueAPIMixin` adds it to any other, e.g.::

    from jupyterhub.auth import DummyAuthenticator
    from classroom_spawner.queue_api import SpawnQueueAPIMixin

    class Authenticator(SpawnQueueAPIMixin, DummyAuthenticator):
        pass

    c.JupyterHub.authenticator_class = Authenticator

Without it the queue works the same; only this admin view is missing.
"""

from __future__ import annotations

import inspect

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import Scope, needs_scope
from sqlalchemy.orm import selectinload

from .spawnqueue import shared_queues

SPAWN_QUEUE_API_PATH = r"/api/classroom/spawn-queue"

# The handler filters what it returns itself. JupyterHub >= 5.1 wants list-like
# endpoints to say so (post_filter); 5.0's needs_scope has no such argument.
if "post_filter" in inspect.signature(needs_scope).parameters:
    _needs_read_servers = needs_scope("read:servers", post_filter=True)
else:  # pragma: no cover - JupyterHub 5.0
    _needs_read_servers = needs_scope("read:servers")


class SpawnQueueAPIHandler(APIHandler):
    """The spawn queues' state, filtered to the users the caller may see."""

    @_needs_read_servers
    def get(self):
        visible = self.get_scope_filter("read:servers")
        states = {
            name: queue.snapshot() for name, queue in sorted(shared_queues().items())
        }
        names = {
            entry["key"]
            for state in states.values()
            for entry in state["waiters"] + state["holders"]
        }
        if self.parsed_scopes.get("read:servers") is Scope.ALL:
            shown = names  # an admin: no lookups at all
        elif names:
            # one query (with the groups that instructors' filters look at) for
            # every listed user, not one per name: this runs on the hub's event
            # loop while hundreds may be waiting
            users = (
                self.db.query(orm.User)
                .options(selectinload(orm.User.groups))
                .filter(orm.User.name.in_(names))
                .all()
            )
            shown = {user.name for user in users if visible(user, kind="user")}
        else:
            shown = set()

        def may_see(name: str) -> bool:
            return name in shown

        queues = {}
        for name, state in states.items():
            state["waiters"] = [w for w in state["waiters"] if may_see(w["key"])]
            state["holders"] = [h for h in state["holders"] if may_see(h["key"])]
            for entry in state["waiters"] + state["holders"]:
                entry["user"] = entry.pop("key")
            queues[name] = state
        self.write({"queues": queues})


def queue_handlers() -> list[tuple[str, type]]:
    """Handlers to register in the hub (paths are relative to the hub prefix)."""
    return [(SPAWN_QUEUE_API_PATH, SpawnQueueAPIHandler)]


class SpawnQueueAPIMixin:
    """Serve ``GET /hub/api/classroom/spawn-queue`` from any authenticator: put it
    first among the bases of an Authenticator class."""

    def get_handlers(self, app):
        return list(super().get_handlers(app)) + queue_handlers()
