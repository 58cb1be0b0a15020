"""Real mounts for a container's processes: read-only and nested volume mounts.

A container whose mounts need more than path rewriting (a ``readOnly`` mount,
or a mount inside another mount's path, such as ``/home/jovyan/shared/data``
inside the home volume) runs in its own mount namespace (util-linux
``unshare --mount --propagation private``). A small ``sh`` script there
bind-mounts each such volume's host directory onto its place, remounts the
read-only ones ``ro``, changes to the working directory, switches user if
asked (``setpriv``) and ``exec``\\ s the container's command, so the
container's pid is the command's.

- a read-only mount that is not inside another mount is bound onto a
  directory of its own container (``<pod>/containers/<c>/mnt/<n>``), which the
  rewritten paths then name: another mount of the same directory by the same
  container stays writable;
- a mount inside another mount is bound onto its mount point inside the
  parent's host directory (created there if missing, as a runtime creates
  mount points in volumes), so that a program that lists or walks the parent
  (Jupyter's file browser and contents API) sees the volume there.

Mounts in a private namespace exist only for the processes in it: the host's
mount table never shows them, and they vanish with the container's last
process, also after SIGKILL. Writes to a read-only mount fail with EROFS
("Read-only file system").

This needs CAP_SYS_ADMIN (root). :func:`probe` says once per kubelet whether it
works here; when it does not, the kubelet runs the container with rewritten
paths only and records a ``ReadOnlyNotEnforced`` Warning event.
"""

import asyncio
import os
import shlex
import shutil
import tempfile

# $1: working directory; then SOURCE TARGET rw|ro triples; then --; then the command
SCRIPT = r"""cwd=$1; shift
while [ "$1" != -- ]; do
  MOUNT --bind "$1" "$2" || { echo "stand-in kubelet: cannot bind $1 at $2" >&2; exit 128; }
  if [ "$3" = ro ]; then
    MOUNT -o remount,bind,ro "$2" || { echo "stand-in kubelet: cannot make $2 read-only" >&2; exit 128; }
  fi
  shift 3
done
shift
cd "$cwd" || exit 128
exec "$@"
"""


class MountPlanError(Exception):
    """A mount point cannot be made (a CreateContainerConfigError)."""


def _norm(mount_path):
    return mount_path.rstrip("/") or "/"


def plan(mounts, mnt_dir, namespaced):
    """Where each mount appears on the host, and the binds that put it there.

    ``mounts`` are ``(mount_path, source, read_only)``; ``mnt_dir`` is the
    container's directory for mount points of its own. Returns
    ``(views, binds)``: ``views`` are ``(mount_path, host_path)`` for
    :class:`~.volumes.PathMap`, ``binds`` ``(source, target, read_only)`` in
    mount order (parents first). With ``namespaced`` false nothing is bound and
    every mount path maps to its source, as before mounts existed.
    """
    if not namespaced:
        return [(path, source) for path, source, _ in mounts], []
    done = []  # (norm path, view, source), parents before children
    binds = []
    views = []
    order = sorted(range(len(mounts)), key=lambda i: len(_norm(mounts[i][0])))
    for i in order:
        path, source, read_only = mounts[i]
        norm = _norm(path)
        parent = None
        for p_norm, p_view, p_source in done:
            if p_norm != "/" and norm.startswith(p_norm + "/"):
                if parent is None or len(p_norm) > len(parent[0]):
                    parent = (p_norm, p_view, p_source)
        if parent is not None:
            rel = norm[len(parent[0]) + 1 :]
            point = os.path.join(parent[2], rel)
            _make_mount_point(parent[2], point, path)
            view = os.path.join(parent[1], rel)
            binds.append((source, view, read_only))
        elif read_only:
            view = os.path.join(mnt_dir, str(i))
            os.makedirs(view, exist_ok=True)
            binds.append((source, view, True))
        else:
            view = source
        done.append((norm, view, source))
        views.append((path, view))
    return views, binds


def _make_mount_point(parent_source, point, mount_path):
    """Create ``point`` inside ``parent_source``, refusing symlinks that leave it."""
    try:
        os.makedirs(point, exist_ok=True)
    except OSError as e:
        raise MountPlanError(
            f"cannot create the mount point of {mount_path!r} in its parent volume: {e.strerror}"
        )
    real_parent = os.path.realpath(parent_source)
    real = os.path.realpath(point)
    if not (real == real_parent or real.startswith(real_parent + os.sep)):
        raise MountPlanError(
            f"the mount point of {mount_path!r} leads out of its parent volume (a symlink)"
        )


def wrapper(binds, cwd, user=None, group=None):
    """The argv prefix that runs a command in a private mount namespace with ``binds``."""
    argv = [shutil.which("unshare") or "unshare", "--mount", "--propagation"]
    script = SCRIPT.replace("MOUNT", shlex.quote(shutil.which("mount") or "mount"))
    argv += ["private", "/bin/sh", "-c", script, "sh", cwd]
    for source, target, read_only in binds:
        argv += [source, target, "ro" if read_only else "rw"]
    argv.append("--")
    if user is not None or group is not None:
        argv.append(shutil.which("setpriv") or "setpriv")
        if group is not None:
            argv += [f"--regid={group}", "--keep-groups"]
        if user is not None:
            argv.append(f"--reuid={user}")
        argv.append("--")
    return argv


async def probe(work_dir):
    """``(True, "")`` if read-only bind mounts in a private namespace work here,
    else ``(False, why)``."""
    if os.geteuid() != 0:
        return (
            False,
            "the kubelet does not run as root (bind mounts need CAP_SYS_ADMIN)",
        )
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return False, f"util-linux {tool!r} is not installed"
    os.makedirs(work_dir, exist_ok=True)
    target = tempfile.mkdtemp(prefix="mount-probe-", dir=work_dir)
    try:
        test = f'! ( : > "{target}/probe" ) 2>/dev/null'
        argv = wrapper([(target, target, True)], target) + ["/bin/sh", "-c", test]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await proc.communicate()
        except OSError as e:
            return False, f"cannot run unshare: {e.strerror}"
        if proc.returncode != 0:
            why = out.decode(errors="replace").strip().splitlines()
            return False, (
                "read-only bind mounts in a private mount namespace failed"
                f" (exit {proc.returncode}{': ' + why[-1] if why else ''})"
            )
        return True, ""
    finally:
        shutil.rmtree(target, ignore_errors=True)
