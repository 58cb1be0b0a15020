"""Configuration of the stand-in's node: the kubelet, its images and its
local volume provisioner. Latency and faults live in :mod:`.faults`."""

import os
import sys
from dataclasses import dataclass, field

SINGLEUSER_COMMANDS = (
    "jupyterhub-singleuser",
    "jupyter-labhub",
    "jupyterhub-singleuser.py",
)


def default_bin_dirs():
    """The directory of the running Python's scripts (the venv's ``bin``)."""
    return [os.path.dirname(os.path.abspath(sys.executable))]


@dataclass
class KubeletConfig:
    """How pods are run on the single node ``node_name``.

    - ``pod_cidr``: where pod IPs come from (inside 127.0.0.0/8); default a
      random /16 so that two stand-ins on one machine do not collide.
    - ``home``: the image's home directory (``HOME`` and the default working
      directory). It maps to the volume mounted there, else to the pod's own
      scratch directory.
    - ``bin_dirs``: put first on every container's ``PATH`` (default: the bin
      directory of the Python running the stand-in, i.e. the venv), so
      ``jupyterhub-singleuser`` and ``python3`` resolve to it.
    - ``image_entrypoints``: image -> ENTRYPOINT, used when a container has
      ``args`` but no ``command`` (KubeSpawner puts its ``cmd`` in ``args``).
    - ``present_images``: images already on the node (no pull delay).
    - ``singleuser``: ``"real"`` runs ``jupyterhub-singleuser`` as a process;
      ``"light"`` answers for it from one shared in-process HTTP server per
      pod IP (for benchmarks with hundreds of users). ``light_all`` makes
      every main container light, whatever its command.
    - ``run_as_user``: really switch to ``securityContext.runAsUser`` /
      ``runAsGroup`` (only possible when the stand-in runs as root; off by
      default: the IDs are only recorded).
    - ``enforce_read_only``: give containers real bind mounts in a private
      mount namespace for their ``readOnly`` mounts and for mounts inside
      another mount (needs root and util-linux; see :mod:`.mountns`). False,
      or when that is impossible: paths are only rewritten, read-only mounts
      are writable, and each such pod gets a ``ReadOnlyNotEnforced`` event.
    - ``backoff_base`` / ``backoff_max``: CrashLoopBackOff and
      ImagePullBackOff delays (Kubernetes: 10 s doubling to 300 s).
    - ``provision_retry_base`` / ``provision_retry_max``: back-off of the
      provisioner after a failed provision.
    - ``event_ttl``: seconds events are kept (Kubernetes: one hour).
    """

    node_name: str = "standin-node"
    pod_cidr: str = None
    home: str = "/home/jovyan"
    bin_dirs: list = field(default_factory=default_bin_dirs)
    image_entrypoints: dict = field(default_factory=dict)
    present_images: list = field(default_factory=list)
    singleuser: str = "real"
    light_all: bool = False
    light_commands: tuple = SINGLEUSER_COMMANDS
    run_as_user: bool = False
    enforce_read_only: bool = True
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    provision_retry_base: float = 1.0
    provision_retry_max: float = 30.0
    event_ttl: float = 3600.0
    extra_env: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.singleuser not in ("real", "light"):
            raise ValueError(
                f"KubeletConfig.singleuser must be 'real' or 'light', not {self.singleuser!r}"
            )
        if not self.home.startswith("/"):
            raise ValueError(
                f"KubeletConfig.home must be an absolute path, not {self.home!r}"
            )
