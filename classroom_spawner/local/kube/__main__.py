"""``python -m classroom_spawner.local.kube``: run the Kubernetes stand-in.

Example::

    python -m classroom_spawner.local.kube --state-dir /tmp/k8s --port 0 \\
        --kubeconfig /tmp/k8s/kubeconfig --provision-delay 2 \\
        --provision-max-in-flight 4 --image-pull-delay 5

Prints the URL and the kubeconfig path, runs until SIGTERM/SIGINT, then kills
every pod's processes. ``--config FILE`` reads ``{"faults": {...}, "kubelet":
{...}}`` (the fields of :class:`~.faults.Faults` and
:class:`~.config.KubeletConfig`); flags given on the command line win.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from .config import KubeletConfig
from .faults import Faults
from .standin import KubeStandin


def _outage(text):
    try:
        start, duration = text.split(":")
        return (float(start), float(duration))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected START:DURATION in seconds, not {text!r}"
        )


def _entrypoint(text):
    image, sep, command = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected IMAGE=COMMAND, not {text!r}")
    command = command.strip()
    if command.startswith("["):
        return image, json.loads(command)
    return image, command.split()


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m classroom_spawner.local.kube",
        description="A local stand-in for the Kubernetes API and a process kubelet (tests and demos only).",
    )
    p.add_argument(
        "--state-dir", required=True, help="volumes, pod dirs and logs go here"
    )
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument(
        "--kubeconfig",
        help="where to write the kubeconfig (default STATE_DIR/kubeconfig)",
    )
    p.add_argument(
        "--namespace", default="default", help="the kubeconfig's default namespace"
    )
    p.add_argument(
        "--token",
        default="auto",
        help="bearer token clients must send (default: random)",
    )
    p.add_argument(
        "--no-auth", action="store_true", help="accept requests without a token"
    )
    p.add_argument(
        "--ready-file", help="write {url, token, kubeconfig, pid} here once listening"
    )
    p.add_argument("--config", help="JSON file with 'faults' and 'kubelet' settings")
    p.add_argument(
        "--backend",
        choices=["standin", "real"],
        default="standin",
        help="standin: this package's API server; real: etcd, kube-apiserver,"
        " kube-scheduler and kube-controller-manager built by `make k8s-binaries`"
        " (docs/realkube.md), with the same process kubelet and provisioner as node",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG logs every request")

    g = p.add_argument_group("API")
    g.add_argument(
        "--history-size",
        type=int,
        default=20000,
        help="changes kept for watch resumption",
    )
    g.add_argument(
        "--field-validation",
        choices=["Strict", "Warn", "Ignore"],
        default="Strict",
        help="unknown fields: reject (default here), drop with a warning"
        " (a real server's default), or drop",
    )
    g.add_argument(
        "--min-request-timeout",
        type=float,
        default=1800.0,
        help="watches without timeoutSeconds last between this and twice this",
    )
    g.add_argument(
        "--bookmark-interval",
        type=float,
        default=5.0,
        help="seconds of quiet before a BOOKMARK (for watches that allow them)",
    )

    g = p.add_argument_group("latency and faults")
    g.add_argument("--seed", type=int, help="makes random faults reproducible")
    g.add_argument(
        "--provision-delay", type=float, help="seconds each PVC takes to provision"
    )
    g.add_argument(
        "--provision-max-in-flight",
        type=int,
        help="provisions at once (0: no limit); the rest wait in FIFO order",
    )
    g.add_argument(
        "--provision-fail-rate",
        type=float,
        help="fraction of provision attempts that fail (1: always)",
    )
    g.add_argument(
        "--image-pull-delay",
        type=float,
        help="seconds to pull an image not yet on the node",
    )
    g.add_argument(
        "--container-start-delay",
        type=float,
        help="extra seconds between a container's Created and Started",
    )
    g.add_argument(
        "--api-error-rate",
        type=float,
        help="fraction of API requests answered with an error",
    )
    g.add_argument("--api-error-codes", help="comma-separated, e.g. 500,503,429")
    g.add_argument(
        "--api-error-watch",
        action="store_true",
        default=None,
        help="let API errors hit watch requests too",
    )
    g.add_argument(
        "--outage",
        type=_outage,
        action="append",
        help="START:DURATION seconds after start (repeatable)",
    )
    g.add_argument(
        "--outage-mode",
        choices=["503", "refuse"],
        help="during an outage answer 503 (default) or refuse connections",
    )
    g.add_argument(
        "--fail-init-container",
        action="append",
        help="init container name that fails (repeatable)",
    )
    g.add_argument(
        "--fail-image", action="append", help="image whose pull fails (repeatable)"
    )

    g = p.add_argument_group("kubelet")
    g.add_argument(
        "--singleuser",
        choices=["real", "light"],
        help="run jupyterhub-singleuser, or answer for it in-process (benchmarks)",
    )
    g.add_argument(
        "--light-all",
        action="store_true",
        default=None,
        help="make every main container light, whatever its command",
    )
    g.add_argument(
        "--pod-cidr", help="pod IPs, inside 127.0.0.0/8 (default: random /16)"
    )
    g.add_argument("--home", help="the image's home directory (default /home/jovyan)")
    g.add_argument(
        "--present-image",
        action="append",
        help="image already on the node (repeatable)",
    )
    g.add_argument(
        "--image-entrypoint",
        type=_entrypoint,
        action="append",
        help="IMAGE=COMMAND: the image's ENTRYPOINT, for containers without command",
    )
    g.add_argument(
        "--backoff-base", type=float, help="first CrashLoopBackOff delay (default 10)"
    )
    g.add_argument(
        "--backoff-max", type=float, help="longest back-off delay (default 300)"
    )
    g.add_argument(
        "--provision-retry-base",
        type=float,
        help="first retry delay after a failed provision (default 1)",
    )
    g.add_argument(
        "--event-ttl", type=float, help="seconds events are kept (default 3600)"
    )
    g.add_argument(
        "--run-as-user",
        action="store_true",
        default=None,
        help="switch to securityContext.runAsUser (only when running as root)",
    )
    g.add_argument(
        "--no-enforce-read-only",
        dest="enforce_read_only",
        action="store_false",
        default=None,
        help="no bind mounts: readOnly volume mounts stay writable (a Warning event says so)",
    )
    return p


_FAULT_FLAGS = {
    "seed": "seed",
    "provision_delay": "provision_delay",
    "provision_max_in_flight": "provision_max_in_flight",
    "provision_fail_rate": "provision_fail_rate",
    "image_pull_delay": "image_pull_delay",
    "container_start_delay": "container_start_delay",
    "api_error_rate": "api_error_rate",
    "api_error_watch": "api_error_watch",
    "outage": "outages",
    "outage_mode": "outage_mode",
    "fail_init_container": "fail_init_containers",
    "fail_image": "fail_images",
}
_KUBELET_FLAGS = {
    "singleuser": "singleuser",
    "light_all": "light_all",
    "pod_cidr": "pod_cidr",
    "home": "home",
    "present_image": "present_images",
    "backoff_base": "backoff_base",
    "backoff_max": "backoff_max",
    "provision_retry_base": "provision_retry_base",
    "event_ttl": "event_ttl",
    "run_as_user": "run_as_user",
    "enforce_read_only": "enforce_read_only",
}


def configs_from_args(args):
    config = {}
    if args.config:
        with open(args.config) as f:
            config = json.load(f)
    faults = dict(config.get("faults") or {})
    kubelet = dict(config.get("kubelet") or {})
    for flag, field in _FAULT_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            faults[field] = value
    if args.api_error_codes:
        faults["api_error_codes"] = [int(c) for c in args.api_error_codes.split(",")]
    for flag, field in _KUBELET_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            kubelet[field] = value
    if args.image_entrypoint:
        kubelet.setdefault("image_entrypoints", {}).update(dict(args.image_entrypoint))
    if "light_commands" in kubelet:
        kubelet["light_commands"] = tuple(kubelet["light_commands"])
    return Faults(**faults), KubeletConfig(**kubelet)


def _make(args):
    faults, kubelet = configs_from_args(args)
    if args.backend == "real":
        from .realkube import RealKube

        return RealKube(
            args.state_dir,
            faults=faults,
            kubelet=kubelet,
            token=args.token,
            kubeconfig_path=args.kubeconfig,
            namespace=args.namespace,
            host=args.host,
        )
    return KubeStandin(
        args.state_dir,
        port=args.port,
        host=args.host,
        faults=faults,
        kubelet=kubelet,
        token=None if args.no_auth else args.token,
        kubeconfig_path=args.kubeconfig,
        namespace=args.namespace,
        history_size=args.history_size,
        field_validation=args.field_validation,
        min_request_timeout=args.min_request_timeout,
        bookmark_interval=args.bookmark_interval,
    )


async def _run(args):
    standin = _make(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await standin.start()
    if args.backend == "real":
        print(f"Kubernetes {standin.version['gitVersion']}: {standin.url}", flush=True)
    else:
        print(f"Kubernetes stand-in: {standin.url}", flush=True)
    print(f"kubeconfig: {standin.kubeconfig_path}", flush=True)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "url": standin.url,
                    "token": standin.token,
                    "kubeconfig": standin.kubeconfig_path,
                    "pid": os.getpid(),
                    "standin_id": standin.id,
                    "backend": args.backend,
                    "admin_url": getattr(standin, "admin_url", standin.url),
                    "ca": (
                        getattr(standin.cp, "ca_path", None)
                        if args.backend == "real"
                        else None
                    ),
                    "version": getattr(standin, "version", None),
                },
                f,
            )
        os.replace(tmp, args.ready_file)
    try:
        await stop.wait()
    finally:
        await standin.stop()


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s",
    )
    try:
        configs_from_args(args)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
