"""Running one container as local processes: its environment, its command, and
stopping everything it started.

Environment, in Kubernetes order: ``envFrom`` (ConfigMaps and Secrets, with
``prefix``), then ``env`` (``value`` with ``$(VAR)`` expansion, ``valueFrom``
``fieldRef``/``secretKeyRef``/``configMapKeyRef``/``resourceFieldRef``). A
missing Secret or ConfigMap (or key) that is not ``optional`` is a
``CreateContainerConfigError``, as in Kubernetes. Then, because the container
runs on the host:

- ``0.0.0.0`` in env values and arguments becomes the pod IP (inside a real
  pod, 0.0.0.0 is the pod's own interface), so many pods can use one port;
- values and arguments that are (or end in ``--opt=``) paths under a volume
  mount get the host path (see :class:`~.volumes.PathMap`);
- ``PATH`` starts with the stand-in's bin directories (the venv), ``HOME`` is
  the host path of the image's home directory.

Every process of a container carries a marker variable, so that all of them,
including children that left the process group or were re-parented, are found
and killed when the container stops — as a runtime kills a container's cgroup.
"""

import asyncio
import logging
import os
import re
import shutil
import signal
import subprocess

from .procutil import (
    alive,
    process_tree,
    processes_with_env,
    signal_group,
    signal_tree,
    wait_pid,
)
from .resources import RESOURCES

log = logging.getLogger(__name__)

STANDIN_ENV = "CLASSROOM_STANDIN"
CONTAINER_ENV = "CLASSROOM_STANDIN_CONTAINER"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_VAR_RE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_ANY_ADDR_RE = re.compile(r"(?<![0-9.])0\.0\.0\.0(?![0-9])")


class ConfigError(Exception):
    """CreateContainerConfigError: the container cannot be configured (yet)."""


class StartError(Exception):
    """The runtime could not start the process (exit code 128, StartError)."""


def expand(text, env):
    """Kubernetes ``$(VAR)`` expansion: defined variables are replaced, ``$$`` is ``$``."""

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_RE.sub(sub, text)


def any_addr_to(value, ip):
    return _ANY_ADDR_RE.sub(ip, value) if isinstance(value, str) else value


def _field_ref(pod, path, node_name):
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName") or node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
    }
    if path in simple:
        return simple[path] or ""
    if path == "metadata.labels":
        return "\n".join(
            f'{k}="{v}"' for k, v in sorted((meta.get("labels") or {}).items())
        )
    if path == "metadata.annotations":
        return "\n".join(
            f'{k}="{v}"' for k, v in sorted((meta.get("annotations") or {}).items())
        )
    raise ConfigError(f'unsupported fieldRef "{path}"')


def _resource_field(container, ref):
    res = container.get("resources") or {}
    name = ref.get("resource", "")
    kind, _, what = name.partition(".")
    value = (res.get(kind) or {}).get(what)
    if value is None:
        # unset limits default to the node's allocatable
        value = {"cpu": str(os.cpu_count() or 1), "memory": str(8 * 2**30)}.get(
            what, "0"
        )
    return str(value)


def _lookup(registry, namespace, kind, name, key, optional):
    """(found, value) of ``key`` in a Secret/ConfigMap; raises ConfigError if required."""
    import base64

    resource = RESOURCES["secrets" if kind == "secret" else "configmaps"]
    obj = registry.store.peek(resource, namespace, name)
    if obj is None:
        if optional:
            return False, None
        raise ConfigError(f'{kind} "{name}" not found')
    data = obj.get("data") or {}
    if key is None:
        if kind == "secret":
            return True, {
                k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()
            }
        return True, dict(data)
    if key not in data:
        if optional:
            return False, None
        label = "Secret" if kind == "secret" else "ConfigMap"
        raise ConfigError(f"couldn't find key {key} in {label} {namespace}/{name}")
    value = data[key]
    if kind == "secret":
        value = base64.b64decode(value).decode(errors="replace")
    return True, value


def resolve_env(registry, pod, container, node_name):
    """The container's declared environment, as an ordered dict (no host rewriting)."""
    ns = pod["metadata"]["namespace"]
    env = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, field in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = src.get(field)
            if ref is None:
                continue
            found, values = _lookup(
                registry, ns, kind, ref.get("name"), None, ref.get("optional")
            )
            if found:
                for k, v in values.items():
                    env[prefix + k] = v
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" in item:
            src = item["valueFrom"]
            if "fieldRef" in src:
                env[name] = _field_ref(pod, src["fieldRef"]["fieldPath"], node_name)
            elif "secretKeyRef" in src or "configMapKeyRef" in src:
                kind = "secret" if "secretKeyRef" in src else "configmap"
                ref = src.get("secretKeyRef") or src.get("configMapKeyRef")
                found, value = _lookup(
                    registry,
                    ns,
                    kind,
                    ref.get("name"),
                    ref.get("key"),
                    ref.get("optional"),
                )
                if found:
                    env[name] = value
            elif "resourceFieldRef" in src:
                env[name] = _resource_field(container, src["resourceFieldRef"])
        else:
            env[name] = expand(item.get("value", "") or "", env)
    return env


class RealProcess:
    """A container's main process, in its own session, with its output in a log file.

    ``prefix`` is a wrapper that ends by exec'ing the command (the mount
    namespace of :mod:`.mountns`); it is put before the resolved executable.
    """

    def __init__(
        self, argv, env, cwd, log_path, marker, user=None, group=None, prefix=()
    ):
        self.argv = argv
        self.prefix = list(prefix)
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.marker = marker
        self.user = user
        self.group = group
        self.popen = None
        self.returncode = None
        self._wait_task = None

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def start(self):
        exe = self.argv[0]
        if "/" not in exe:
            found = shutil.which(exe, path=self.env.get("PATH", DEFAULT_PATH))
            if found is None:
                raise StartError(
                    f'failed to create containerd task: failed to create shim task: OCI runtime'
                    f' create failed: runc create failed: unable to start container process:'
                    f' exec: "{exe}": executable file not found in $PATH: unknown'
                )
            exe = found
        elif not os.access(exe, os.X_OK):
            raise StartError(
                f'failed to create containerd task: failed to create shim task: OCI runtime'
                f' create failed: runc create failed: unable to start container process:'
                f' exec: "{exe}": stat {exe}: no such file or directory: unknown'
            )
        kwargs = {}
        if self.user is not None:
            kwargs["user"] = self.user
        if self.group is not None:
            kwargs["group"] = self.group
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        full = self.prefix + [exe] + list(self.argv[1:])
        with open(self.log_path, "ab") as logf:
            try:
                self.popen = subprocess.Popen(
                    full,
                    executable=full[0],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=self.env,
                    start_new_session=True,
                    close_fds=True,
                    **kwargs,
                )
            except OSError as e:
                raise StartError(
                    f"failed to create containerd task: failed to create shim task: OCI runtime"
                    f" create failed: unable to start container process: exec: {exe!r}: {e.strerror}"
                )
        self._wait_task = asyncio.ensure_future(self._wait())

    async def _wait(self):
        self.returncode = await wait_pid(self.popen)
        return self.returncode

    async def wait(self):
        return await asyncio.shield(self._wait_task)

    @property
    def running(self):
        return self.popen is not None and self.returncode is None

    def _members(self):
        tree = {}
        if self.returncode is None and self.popen is not None:
            tree.update(process_tree(self.popen.pid))
        for pid in processes_with_env(self.marker):
            tree.update(process_tree(pid))
        return tree

    async def stop(self, grace):
        """SIGTERM everything of the container, SIGKILL what is left after ``grace``."""
        if self.popen is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, grace)
        tree = self._members()
        if grace > 0:
            if self.returncode is None:
                signal_group(self.popen.pid, signal.SIGTERM)
            signal_tree(tree, signal.SIGTERM)
            while loop.time() < deadline:
                if self.returncode is not None and not alive(tree):
                    break
                await asyncio.sleep(0.05)
        for attempt in range(100):
            if attempt % 10 == 0:
                # look again for processes that appeared or left the tree
                tree.update(self._members())
            left = alive(tree)
            if not left and self.returncode is not None:
                break
            if self.returncode is None:
                signal_group(self.popen.pid, signal.SIGKILL)
            signal_tree(left, signal.SIGKILL)
            await asyncio.sleep(0.05)
        else:
            log.error(
                "processes of %s survived SIGKILL: %s", self.marker, sorted(alive(tree))
            )
        return await self.wait()


class LightProcess:
    """Stands in for a singleuser server process (see :mod:`.lightserver`)."""

    pid = None

    def __init__(self, server):
        self.server = server
        self.returncode = None
        self._done = None

    def start(self):
        self._done = asyncio.get_running_loop().create_future()
        try:
            self.server.start()
        except OSError as e:
            raise StartError(
                f"light singleuser could not listen on {self.server.ip}:{self.server.port}: {e}"
            )

    async def wait(self):
        return await asyncio.shield(self._done)

    @property
    def running(self):
        return self.returncode is None and self._done is not None

    async def stop(self, grace):
        await self.server.stop()
        if not self._done.done():
            self.returncode = 143 if grace > 0 else 137
            self._done.set_result(self.returncode)
        return self.returncode
