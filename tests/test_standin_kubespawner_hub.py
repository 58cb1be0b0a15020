"""Must-show for the stand-in: plain KubeSpawner in a real JupyterHub process
starts and stops servers against it, with the real jupyterhub-singleuser
answering behind configurable-http-proxy."""

import asyncio
import os

import jupyter_server
import pytest

from classroom_spawner.local.hub import DUMMY_AUTH_CONFIG, HubProcess
from classroom_spawner.local.kube import Faults, kube_process
from classroom_spawner.local.kube.testing import core_client, marked_processes, wait_for

pytestmark = pytest.mark.hub

NS = "default"

KUBESPAWNER_CONFIG = DUMMY_AUTH_CONFIG + """
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = "default"
c.KubeSpawner.image = "quay.io/jupyterhub/k8s-singleuser-sample:4.2.0"
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
c.KubeSpawner.start_timeout = 120
c.KubeSpawner.http_timeout = 120
# answer spawn requests at once (202), so the progress stream can be followed
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
"""


@pytest.fixture
async def k8s(tmp_path):
    faults = Faults(provision_delay=2.0, image_pull_delay=0.5)
    async with kube_process(tmp_path / "k8s", faults=faults) as standin:
        yield standin
    # SIGTERM to the stand-in killed whatever was left; nothing may survive it
    assert marked_processes(standin.info["standin_id"]) == []


@pytest.fixture
async def hub(k8s, tmp_path):
    async with HubProcess(
        config=KUBESPAWNER_CONFIG,
        workdir=tmp_path / "hub",
        env={"KUBECONFIG": k8s.kubeconfig_path},
        start_timeout=120,
    ) as hub:
        yield hub


async def test_kubespawner_starts_and_stops_real_singleuser(k8s, hub, tmp_path):
    for name in ("alice", "bob"):
        await hub.create_user(name)

    # request both servers; follow alice's progress as the spawn page does
    r = await hub.api("POST", "users/alice/server", json={})
    assert r.code == 202
    progress = asyncio.ensure_future(hub.progress("alice"))
    r = await hub.api("POST", "users/bob/server", json={})
    assert r.code in (201, 202)
    events = await asyncio.wait_for(progress, 180)
    for name in ("alice", "bob"):
        await hub.wait_for_server(name, timeout=180)

    # KubeSpawner's progress showed the stand-in's events: scheduling (after the
    # claim was provisioned), the image pull, the container start
    messages = [e["message"] for e in events]
    assert events[-1]["ready"] is True
    assert any(
        "Successfully assigned default/jupyter-alice to standin-node" in m
        for m in messages
    )
    reasons = [e["raw_event"]["reason"] for e in events if "raw_event" in e]
    # a real scheduler retries at each change of the claim and may say so more than once
    reasons = [r for i, r in enumerate(reasons) if i == 0 or r != reasons[i - 1]]
    assert reasons == [
        "FailedScheduling",  # the claim was still being provisioned
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
    ], messages

    # the real jupyter server answers through the proxy, for alice's token only
    token = await hub.user_token("alice")
    r = await hub.fetch("user/alice/api", token=token)
    assert r.code == 200
    assert r.json() == {"version": jupyter_server.__version__}
    r = await hub.fetch("user/alice/api/status", token=token)
    assert r.code == 200
    assert set(r.json()) >= {"started", "last_activity", "connections", "kernels"}
    assert r.headers.get("X-JupyterHub-Version")
    r = await hub.fetch("user/bob/api/status", token=token)
    assert r.code in (403, 302)

    async with core_client(k8s.kubeconfig_path) as v1:
        pods = await v1.list_namespaced_pod(
            NS, label_selector="component=singleuser-server"
        )
        by_name = {p.metadata.name: p for p in pods.items}
        assert set(by_name) == {"jupyter-alice", "jupyter-bob"}
        # both listen on 8888, each on its own pod IP
        ips = {p.status.pod_ip for p in pods.items}
        assert len(ips) == 2
        user = (await hub.api("GET", "users/alice")).json()
        assert user["servers"][""]["url"] == "/user/alice/"
        pvc = await v1.read_namespaced_persistent_volume_claim("claim-alice", NS)
        assert pvc.status.phase == "Bound"
        home = os.path.join(k8s.state_dir, "volumes", pvc.spec.volume_name)
        # the server really ran with the claim as its home
        assert os.path.isdir(os.path.join(home, ".local", "share", "jupyter"))
        stats = await k8s.astats()
        assert stats["processes"] == 2 and stats["light_servers"] == 0

        for name in ("alice", "bob"):
            await hub.stop_server(name, timeout=120)
        pods = await v1.list_namespaced_pod(NS)
        assert pods.items == []
        # the claims stay (KubeSpawner deletes them only when a user is deleted)
        claims = await v1.list_namespaced_persistent_volume_claim(NS)
        assert sorted(c.metadata.name for c in claims.items) == [
            "claim-alice",
            "claim-bob",
        ]

    stats = await wait_for(
        lambda: _settled(k8s),
        30,
        interval=0.2,
        message="processes or pod dirs left behind",
    )
    assert stats["pod_ips_in_use"] == 0
    assert marked_processes(k8s.info["standin_id"]) == []
    r = await hub.fetch("user/alice/api/status", token=token)
    assert r.code != 200

    # once the Hub is gone, so are its reflectors' watches (the stand-in counts the
    # watches it serves; a real apiserver's also serve its scheduler and controllers)
    await hub.stop()
    if k8s.backend == "standin":
        await wait_for(lambda: _no_watches(k8s), 30, interval=0.2)


async def _no_watches(k8s):
    return (await k8s.astats())["watches"] == 0


async def _settled(k8s):
    stats = await k8s.astats()
    if (
        stats["processes"] == 0
        and stats["pod_dirs"] == 0
        and stats["marked_processes"] == 0
    ):
        return stats
    return None
