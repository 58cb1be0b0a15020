"""``GET /hub/api/classroom/spawn-queue``: who waits for a server, and for how long.

The queues live in the hub process, so their state is served by the hub. The
endpoint needs the ``read:servers`` scope and shows each caller only the users
whose servers they may read: an admin sees everyone, an instructor with
``read:servers!group=ds101`` sees the students of ds101, and a student sees
themself.

ClassroomOAuthenticator registers it; with another authenticator add it with
``c.JupyterHub.extra_handlers = [(r"/api/classroom/spawn-queue", SpawnQueueAPIHandler)]``.
"""

from __future__ import annotations

import inspect

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope

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
        cache: dict[str, bool] = {}

        def may_see(name: str) -> bool:
            if name not in cache:
                user = orm.User.find(self.db, name)
                cache[name] = bool(user is not None and visible(user, kind="user"))
            return cache[name]

        queues = {}
        for name, queue in sorted(shared_queues().items()):
            state = queue.snapshot()
            state["waiters"] = [w for w in state["waiters"] if may_see(w["key"])]
            state["holders"] = [h for h in state["holders"] if may_see(h["key"])]
            for entry in state["waiters"] + state["holders"]:
                entry["user"] = entry.pop("key")
            queues[name] = state
        self.write({"queues": queues})


def queue_handlers() -> list[tuple[str, type]]:
    """Handlers to register in the hub (paths are relative to the hub prefix)."""
    return [(SPAWN_QUEUE_API_PATH, SpawnQueueAPIHandler)]
