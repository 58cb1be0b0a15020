"""Linux process helpers: process trees from /proc, waiting on a pid without a
thread (pidfd), and listening sockets.

A container's processes run in their own session and process group, but a
program may start children in a new session of their own (jupyter_client does
that for kernels). So before signalling a container the whole tree of
descendants is collected from ``/proc`` and every member is signalled, as a
container runtime would kill everything in the container's cgroup.
"""

import asyncio
import logging
import os
import socket
import struct

log = logging.getLogger(__name__)


def _stat(pid):
    """(ppid, pgid, sid, starttime) of ``pid`` or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces
    rest = data[data.rfind(")") + 2 :].split()
    try:
        return int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19])
    except (IndexError, ValueError):
        return None


def _all_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def process_tree(pid):
    """``{pid: starttime}`` for ``pid`` and all its live descendants."""
    children = {}
    starts = {}
    for p in _all_pids():
        st = _stat(p)
        if st is None:
            continue
        children.setdefault(st[0], []).append(p)
        starts[p] = st[3]
    tree = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in starts and p not in tree:
            tree[p] = starts[p]
            todo.extend(children.get(p, ()))
    return tree


def signal_tree(tree, sig):
    """Send ``sig`` to every process of ``tree`` that is still the same process."""
    sent = 0
    for pid, start in tree.items():
        st = _stat(pid)
        if st is None or st[3] != start:
            continue  # gone, or the pid was reused
        try:
            os.kill(pid, sig)
            sent += 1
        except ProcessLookupError:
            pass
        except PermissionError:
            log.warning("not allowed to signal pid %s", pid)
    return sent


def signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def alive(tree):
    """The members of ``tree`` still running (zombies count as gone)."""
    out = {}
    for pid, start in tree.items():
        st = _stat(pid)
        if st is None or st[3] != start:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read().decode(errors="replace")
            state = data[data.rfind(")") + 2 :].split()[0]
        except OSError:
            continue
        if state != "Z":
            out[pid] = start
    return out


async def wait_pid(popen, poll_interval=0.2):
    """Wait for a ``subprocess.Popen`` to exit without a thread; returns its code."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        fd = None
    if fd is None:
        while popen.poll() is None:
            await asyncio.sleep(poll_interval)
        return popen.returncode
    fut = loop.create_future()

    def ready():
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        if popen.poll() is None:
            await fut
        return popen.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def listening_ipv4():
    """IPv4 addresses that have at least one listening TCP socket."""
    ips = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) < 4 or parts[3] != "0A":
                    continue
                addr_hex = parts[1].split(":")[0]
                packed = struct.pack("<I", int(addr_hex, 16))
                ips.add(socket.inet_ntoa(packed))
    except OSError:
        pass
    return ips


def processes_with_env(marker):
    """Pids of processes whose environment contains the ``KEY=value`` marker."""
    needle = marker.encode() + b"\0"
    pids = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if (b"\0" + needle) in (b"\0" + env + b"\0"):
            st = _stat(pid)
            if st is None:
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    data = f.read().decode(errors="replace")
                if data[data.rfind(")") + 2 :].split()[0] == "Z":
                    continue
            except OSError:
                continue
            pids.append(pid)
    return pids


def open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1
