"""A pod's volumes as host directories, and the container-path -> host-path map.

- ``persistentVolumeClaim``: the claim's provisioned directory
  (``<state>/volumes/<volumeName>``), whatever its access modes: every pod
  naming the claim (``ReadWriteMany`` or not; one node) shares that one
  directory; ``subPath`` is a directory inside it, created if missing, as the
  kubelet does. ``persistentVolumeClaim.readOnly`` makes every mount of it
  read-only.
- ``nfs``: ``<state>/nfs/<server>/<path>``, created if missing, shared by every
  pod naming the same server and path (no NFS client or server is involved);
  a ``server`` or ``path`` that leaves that directory (``..``) is a
  FailedMount. ``nfs.readOnly`` makes every mount of it read-only.
- ``emptyDir``: a directory of the pod, removed with the pod.
- ``secret`` / ``configMap``: files written from the object's data (keys or
  ``items``), with ``defaultMode``; a missing object is a FailedMount that
  the kubelet retries, unless ``optional``. They are writable (Kubernetes
  mounts them read-only) unless a mount says ``readOnly``.
- ``hostPath``: sandboxed under ``<state>/hostpath/`` (never the real host path).
- anything else (projected, downwardAPI, ...): an empty directory, with a
  warning in the stand-in's log.

Container paths are *rewritten*: where a mount path starts a path in an
argument or env value (the whole value, ``--x=/mount/path``, or inside a
``sh -c`` script) it is replaced by the host path; the container's
``terminationMessagePath`` is treated as a one-file mount.

Mounts that rewriting cannot model are real bind mounts in the container's own
mount namespace (:mod:`.mountns`, when the kubelet runs as root): a
``readOnly`` mount (writes fail with EROFS, "Read-only file system"), and a
mount inside another mount's path (it appears there, e.g. in the home
directory). Without them (not root, no ``unshare``, or
``KubeletConfig.enforce_read_only`` false) a read-only mount is writable and
the pod gets a ``ReadOnlyNotEnforced`` Warning event; a nested mount is then
only reachable through rewritten paths. The in-process light singleuser
servers mount nothing.
"""

import base64
import logging
import os
import re

from .resources import RESOURCES

log = logging.getLogger(__name__)


class MountError(Exception):
    """A volume cannot be set up yet (the kubelet retries)."""


def _safe_join(base, rel):
    path = os.path.normpath(os.path.join(base, rel.lstrip("/")))
    if not (path == base or path.startswith(base + os.sep)):
        raise MountError(f"path {rel!r} escapes the volume")
    return path


class PodVolumes:
    def __init__(self, registry, pod, pod_dir, volumes_dir, hostpath_dir, nfs_dir):
        self.registry = registry
        self.pod = pod
        self.pod_dir = pod_dir
        self.volumes_dir = volumes_dir
        self.hostpath_dir = hostpath_dir
        self.nfs_dir = nfs_dir
        self.host_paths = {}  # volume name -> host directory
        self.read_only = set()  # names of volumes whose source says readOnly

    @property
    def namespace(self):
        return self.pod["metadata"]["namespace"]

    def setup(self):
        """Create every volume; raises MountError for the first one that fails."""
        for vol in (self.pod.get("spec") or {}).get("volumes") or []:
            name = vol["name"]
            if name in self.host_paths:
                continue
            self.host_paths[name] = self._setup_one(vol)
            for source in ("persistentVolumeClaim", "nfs"):
                if (vol.get(source) or {}).get("readOnly"):
                    self.read_only.add(name)

    def _setup_one(self, vol):
        name = vol["name"]
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            pvc = self.registry.store.peek(
                RESOURCES["persistentvolumeclaims"], self.namespace, claim
            )
            if pvc is None:
                raise MountError(f'persistentvolumeclaim "{claim}" not found')
            volume_name = (pvc.get("spec") or {}).get("volumeName")
            path = os.path.join(self.volumes_dir, volume_name or "-")
            if not volume_name or not os.path.isdir(path):
                raise MountError(f'persistentvolumeclaim "{claim}" is not bound')
            return path
        if "secret" in vol or "configMap" in vol:
            return self._setup_data_volume(vol)
        path = os.path.join(self.pod_dir, "volumes", name)
        if "hostPath" in vol:
            path = _safe_join(self.hostpath_dir, vol["hostPath"].get("path", ""))
        elif "nfs" in vol:
            path = self._nfs_path(vol["nfs"])
        elif "emptyDir" not in vol:
            log.warning(
                "volume %s of pod %s/%s: only its directory is modelled",
                name,
                self.namespace,
                self.pod["metadata"]["name"],
            )
        os.makedirs(path, exist_ok=True)
        if "emptyDir" in vol:
            # as the kubelet makes it: writable whatever UID the containers run as
            os.chmod(path, 0o777)
        return path

    def _nfs_path(self, nfs):
        server = str(nfs.get("server") or "")
        export = str(nfs.get("path") or "")
        if not server or not export:
            raise MountError("an nfs volume needs a server and a path")
        if "/" in server or server in (".", ".."):
            raise MountError(f"nfs server {server!r} is not a host name or address")
        base = os.path.join(self.nfs_dir, server)
        try:
            return _safe_join(base, export)
        except MountError:
            raise MountError(
                f"nfs path {export!r} leaves the stand-in's export directory"
                f" of {server} ({base})"
            )

    def _setup_data_volume(self, vol):
        if "secret" in vol:
            src, resource = vol["secret"], RESOURCES["secrets"]
            obj_name, label = src.get("secretName"), "secret"
        else:
            src, resource = vol["configMap"], RESOURCES["configmaps"]
            obj_name, label = src.get("name"), "configmap"
        path = os.path.join(self.pod_dir, "volumes", vol["name"])
        os.makedirs(path, exist_ok=True)
        obj = self.registry.store.peek(resource, self.namespace, obj_name)
        if obj is None:
            if src.get("optional"):
                return path
            raise MountError(f'{label} "{obj_name}" not found')
        files = {}
        for key, value in (obj.get("data") or {}).items():
            files[key] = (
                base64.b64decode(value) if label == "secret" else value.encode()
            )
        for key, value in (obj.get("binaryData") or {}).items():
            files[key] = base64.b64decode(value)
        items = src.get("items")
        mode = src.get("defaultMode", 0o644)
        wanted = (
            [(i["key"], i["path"], i.get("mode", mode)) for i in items]
            if items
            else [(k, k, mode) for k in files]
        )
        for key, rel, file_mode in wanted:
            if key not in files:
                raise MountError(
                    f"couldn't find key {key} in {label.capitalize()} {self.namespace}/{obj_name}"
                )
            target = _safe_join(path, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(files[key])
            os.chmod(target, file_mode)
        return path


class PathMap:
    """Maps container paths to host paths for one container."""

    def __init__(self, mounts, rootfs):
        # longest mount path first so nested mounts win
        self.mounts = sorted(
            ((m.rstrip("/") or "/", h) for m, h in mounts), key=lambda mh: -len(mh[0])
        )
        self.rootfs = rootfs

    def lookup(self, path):
        """The host path for a container path under a mount, else None."""
        for mount, host in self.mounts:
            if path == mount:
                return host
            if mount == "/" or path.startswith(mount + "/"):
                rest = path[len(mount) :].lstrip("/")
                return os.path.join(host, rest) if rest else host
        return None

    def host_path(self, path):
        """Like :meth:`lookup`, but unmounted paths go into the container's scratch root."""
        found = self.lookup(path)
        if found is not None:
            return found
        return os.path.join(self.rootfs, path.lstrip("/"))

    def rewrite(self, value):
        """Replace mounted container paths inside ``value`` with host paths.

        A mount path is replaced where it starts a path: at the beginning of
        the value or after whitespace, a quote, ``=``, ``:`` or ``(``, and is
        followed by the end, ``/`` or a separator. So ``/home/jovyan``,
        ``--notebook-dir=/home/jovyan/work`` and ``sh -c "cd /home/jovyan && ..."``
        are all rewritten; ``https://host/home/jovyan`` is not.
        """
        if not isinstance(value, str) or "/" not in value:
            return value
        if self._pattern is None:
            return value
        return self._pattern.sub(lambda m: self._hosts[m.group(1)], value)

    @property
    def _pattern(self):
        mounts = [m for m, _ in self.mounts if m != "/"]
        if not mounts:
            return None
        if getattr(self, "_compiled", None) is None:
            alternatives = "|".join(re.escape(m) for m in mounts)
            self._compiled = re.compile(
                rf"(?:(?<=^)|(?<=[\s\"'=:(]))({alternatives})(?=$|[/\s\"';:,)&|])"
            )
            self._hosts = {m: h for m, h in self.mounts}
        return self._compiled
