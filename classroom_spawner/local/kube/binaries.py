"""The real control plane's binaries: built from the Go module in ``k8s/``.

``k8s/`` (at the repository root, never in the wheel) is a small Go module that
requires one Kubernetes release and the etcd it is tested with; its ``cmd/*``
are the upstream main functions of ``kube-apiserver``, ``kube-scheduler``,
``kube-controller-manager`` and ``etcd``. :func:`build` compiles them into a
cache outside the checkout, keyed by the release and a hash of the module's
files, so a second build costs nothing::

    python -m classroom_spawner.local.kube.binaries          # build if needed
    python -m classroom_spawner.local.kube.binaries --print-dir

``$CLASSROOM_K8S_BIN`` points at a directory of ready binaries instead (then
nothing is built); ``$CLASSROOM_K8S_MODULE`` at another copy of the module.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

K8S_VERSION = "v1.36.3"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
BUILD_TAGS = "selinux,notest,grpcnotrace"


class BuildError(RuntimeError):
    pass


def ldflags(version=K8S_VERSION):
    """``-X`` flags so that ``/version`` reports the release, not ``v0.0.0-master``."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("buildDate", "1970-01-01T00:00:00Z"),
        ):
            flags.append(f"-X {pkg}.{key}={value}")
    return " ".join(flags)


def module_dir():
    """The Go module: ``$CLASSROOM_K8S_MODULE`` or ``k8s/`` of this checkout."""
    env = os.environ.get("CLASSROOM_K8S_MODULE")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "k8s"
    if not (path / "go.mod").is_file():
        raise BuildError(
            f"no Go module at {path} (the real control plane is built from a checkout"
            " of the repository; or set $CLASSROOM_K8S_BIN to ready binaries)"
        )
    return path


def _module_files(mod):
    files = [mod / "go.mod", mod / "go.sum"]
    files += sorted((mod / "cmd").glob("*/*.go"))
    return files


def module_hash(mod=None):
    mod = mod or module_dir()
    h = hashlib.sha256()
    for path in _module_files(mod):
        h.update(str(path.relative_to(mod)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    h.update(ldflags().encode() + BUILD_TAGS.encode())
    return h.hexdigest()[:12]


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return Path(base) / "classroom-spawner" / "k8s"


def bin_dir():
    """Where the binaries are (or will be after :func:`build`)."""
    env = os.environ.get("CLASSROOM_K8S_BIN")
    if env:
        return Path(env)
    return cache_root() / f"{K8S_VERSION}-{module_hash()}"


def missing(directory=None):
    directory = Path(directory or bin_dir())
    return [b for b in BINARIES if not os.access(directory / b, os.X_OK)]


def build(out=sys.stdout, go=None):
    """Build the binaries into :func:`bin_dir` unless they are there; return the dir."""
    target = bin_dir()
    if not missing(target):
        print(f"k8s binaries {K8S_VERSION}: cached in {target}", file=out, flush=True)
        return target
    if os.environ.get("CLASSROOM_K8S_BIN"):
        raise BuildError(f"$CLASSROOM_K8S_BIN={target} lacks {', '.join(missing())}")
    go = go or shutil.which("go")
    if not go:
        raise BuildError(
            "building the real control plane needs Go (1.26 or newer) on $PATH"
        )
    mod = module_dir()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = dict(os.environ, CGO_ENABLED="0")
    cmd = [
        go,
        "build",
        "-v",
        "-trimpath",
        "-tags",
        BUILD_TAGS,
        "-ldflags",
        ldflags(),
        "-o",
        str(tmp) + os.sep,
        *(f"./cmd/{b}" for b in BINARIES),
    ]
    print(
        f"k8s binaries {K8S_VERSION}: building {', '.join(BINARIES)} into {target}"
        " (cold: 10-25 min on 2 cores)",
        file=out,
        flush=True,
    )
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=mod,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    packages = 0
    tail = []
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail = (tail + [line])[-40:]
        if line and not line.startswith((" ", "\t", "#", "go: ")):
            packages += 1
            if packages % 100 == 0:
                print(
                    f"  {packages} packages compiled ({time.monotonic() - start:.0f} s)",
                    file=out,
                    flush=True,
                )
        elif line.startswith("go: downloading"):
            pass
    code = proc.wait()
    if code != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(
            f"go build failed with exit code {code}:\n" + "\n".join(tail[-30:])
        )
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    print(
        f"k8s binaries {K8S_VERSION}: built {packages} packages in"
        f" {time.monotonic() - start:.0f} s",
        file=out,
        flush=True,
    )
    return target


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m classroom_spawner.local.kube.binaries",
        description="Build (once) the real Kubernetes control plane's binaries.",
    )
    p.add_argument(
        "--print-dir",
        action="store_true",
        help="only print where the binaries are (or would be)",
    )
    args = p.parse_args(argv)
    try:
        if args.print_dir:
            print(bin_dir())
            return 0
        build()
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
