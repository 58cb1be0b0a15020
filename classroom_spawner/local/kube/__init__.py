"""A local stand-in for the parts of Kubernetes that KubeSpawner uses.

An API server (pods, persistent volume claims, services, secrets, configmaps,
events, namespaces; list/watch with selectors and resourceVersions; real
status codes and ``Status`` bodies; schema validation) and a "process
kubelet" that runs pods as local processes, each with its own loopback IP,
with PVCs as local directories. Latency and faults can be injected.

For tests, the demo and the benchmarks only; never imported by the
production code path. See ``docs/standin.md``; the same kubelet and
provisioner also serve a real control plane (``docs/realkube.md``).
"""

from .config import KubeletConfig
from .faults import Faults
from .kubeconfig import write_kubeconfig
from .runners import (
    RealKubeProcess,
    StandinProcess,
    StandinThread,
    kube_backend,
    kube_process,
)
from .standin import KubeStandin

__all__ = [
    "Faults",
    "KubeStandin",
    "KubeletConfig",
    "RealKubeProcess",
    "StandinProcess",
    "StandinThread",
    "kube_backend",
    "kube_process",
    "write_kubeconfig",
]
