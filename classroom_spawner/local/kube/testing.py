"""Helpers for tests that use the stand-in (imported by ``tests/test_standin_*``
and reusable by the spawner, queue and demo tests)."""

import asyncio
import contextlib
import inspect
import json
import time

from kubernetes_asyncio import client, config

from . import procutil
from .containers import STANDIN_ENV


@contextlib.asynccontextmanager
async def core_client(kubeconfig_path):
    """A kubernetes_asyncio ``CoreV1Api`` configured from a kubeconfig file.

    Uses its own ``Configuration``, so the process-wide default (which
    KubeSpawner uses) is left alone.
    """
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=str(kubeconfig_path), client_configuration=cfg
    )
    async with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


async def user_pod(k8s, user, namespace="default"):
    """The pod KubeSpawner made for hub user ``user`` (its username label), or None."""
    async with core_client(k8s.kubeconfig_path) as v1:
        pods = await v1.list_namespaced_pod(
            namespace, label_selector=f"hub.jupyter.org/username={user}"
        )
        return pods.items[0] if pods.items else None


async def wait_for(predicate, timeout=30, interval=0.05, message=None):
    """Wait until ``predicate()`` (sync or async) is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(
                message or f"condition not met in {timeout}s: {predicate}"
            )
        await asyncio.sleep(interval)


def marked_processes(standin_id):
    """Pids of live processes started by the stand-in with this id."""
    return procutil.processes_with_env(f"{STANDIN_ENV}={standin_id}")


def api_exception_status(exc):
    """The ``Status`` body of a kubernetes_asyncio ``ApiException`` as a dict."""
    return json.loads(exc.body)


def pod_manifest(
    name,
    command,
    image="standin/test:1",
    labels=None,
    init=(),
    volumes=(),
    mounts=(),
    env=(),
    restart_policy="OnFailure",
    grace=1,
):
    """A small pod dict for tests: one main container ``main`` running ``command``.

    ``init`` is a list of ``(name, command)``; ``mounts`` apply to every container.
    """
    containers = [
        {
            "name": "main",
            "image": image,
            "command": list(command),
            "env": list(env),
            "volumeMounts": list(mounts),
        }
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": grace,
            "containers": containers,
            "volumes": list(volumes),
        },
    }
    if init:
        pod["spec"]["initContainers"] = [
            {
                "name": n,
                "image": image,
                "command": list(cmd),
                "volumeMounts": list(mounts),
            }
            for n, cmd in init
        ]
    return pod


def pvc_manifest(name, storage="1Gi", storage_class=None, labels=None):
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage}},
        },
    }
    if storage_class is not None:
        pvc["spec"]["storageClassName"] = storage_class
    return pvc


def standin_only(reason):
    """A pytest mark: skip the test on the real control plane (``$CLASSROOM_KUBE=real``),
    e.g. because it injects API errors or outages, which only the stand-in can."""
    import pytest

    from .runners import kube_backend

    return pytest.mark.skipif(
        kube_backend() == "real", reason=f"needs the Kubernetes stand-in: {reason}"
    )
