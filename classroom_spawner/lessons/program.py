"""The lesson sync program's Secret in the users' namespace: made once per hub.

The program (see :func:`.initcontainer.script_secret`) is mounted into every init
container from a Secret named by its version. The hub creates it at the first
start with lessons; every other start of the namespace waits for that one
attempt. If it fails (no RBAC to create Secrets, the API down), this hub puts the
program in the command instead, and tries to create the Secret again at the next
start with lessons.
"""

from __future__ import annotations

import asyncio

from kubernetes_asyncio.client.exceptions import ApiException

from .initcontainer import script_secret, script_secret_name

# namespace -> the task creating the Secret (its result: True if it is there)
_ATTEMPTS: dict[str, asyncio.Task] = {}


def program_secret(namespace: str) -> str | None:
    """The name of the Secret the init containers of ``namespace`` get the program from,
    or None if this hub could not create it (then the program rides in the command)."""
    task = _ATTEMPTS.get(namespace)
    if task is not None and task.done() and (task.cancelled() or not task.result()):
        return None
    return script_secret_name()


async def ensure_program_secret(api, namespace: str, *, timeout: float, log) -> bool:
    """Create the program's Secret in ``namespace`` unless this hub already did; True if it is there."""
    task = _ATTEMPTS.get(namespace)
    if task is None or (task.done() and (task.cancelled() or not task.result())):
        task = asyncio.ensure_future(_create(api, namespace, timeout, log))
        _ATTEMPTS[namespace] = task
    return await asyncio.shield(task)


async def _create(api, namespace: str, timeout: float, log) -> bool:
    name = script_secret_name()
    try:
        await asyncio.wait_for(
            api.create_namespaced_secret(namespace, script_secret()), timeout
        )
        log.info("Created Secret %s/%s (the lesson sync program)", namespace, name)
    except ApiException as e:
        if e.status == 409:  # there already
            return True
        why = f"HTTP {e.status} {e.reason}"
    except Exception as e:
        why = str(e) or type(e).__name__
    else:
        return True
    log.warning(
        "Could not create the Secret %s/%s for the lesson sync program (%s): the program"
        " rides in the pod spec instead. Give the hub's service account 'create' on"
        " secrets, or set c.ClassroomSpawner.lesson_sync_program_secret = False.",
        namespace,
        name,
        why,
    )
    return False
