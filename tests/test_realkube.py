"""The process kubelet and the provisioner as the node of a real Kubernetes control
plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager built by
`make k8s-binaries`). Runs in `make test-k8s` (CLASSROOM_KUBE=real)."""

import os
import signal
import sys

import pytest

from classroom_spawner.local.kube import (
    Faults,
    KubeletConfig,
    RealKubeProcess,
    kube_backend,
)
from classroom_spawner.local.kube.binaries import K8S_VERSION
from classroom_spawner.local.kube.realkube import RealKube
from classroom_spawner.local.kube.testing import (
    core_client,
    marked_processes,
    pod_manifest,
    pvc_manifest,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    kube_backend() != "real",
    reason="the real control plane runs in `make test-k8s` (CLASSROOM_KUBE=real)",
)

NS = "default"
PY = sys.executable


@pytest.fixture
async def k8s(tmp_path):
    kubelet = KubeletConfig(backoff_base=0.2, backoff_max=1.0)
    async with RealKube(
        tmp_path / "k8s", faults=Faults(provision_delay=0.5), kubelet=kubelet
    ) as k8s:
        yield k8s
        pids = dict(k8s.cp.procs)
    # no pod process and no control-plane process outlives stop()
    assert marked_processes(k8s.id) == []
    for name, proc in pids.items():
        assert proc.returncode is not None, name
        assert not os.path.exists(f"/proc/{proc.pid}/status"), name


@pytest.fixture
async def v1(k8s):
    async with core_client(k8s.kubeconfig_path) as v1:
        yield v1


async def events_of(v1, name):
    evs = await v1.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={name}"
    )
    # the scheduler writes events.k8s.io/v1 Events: reportingComponent, no source
    return [
        (e.reporting_component or e.source.component, e.reason, e.message)
        for e in evs.items
    ]


async def test_version_node_and_lease(k8s, v1):
    assert k8s.version["gitVersion"] == K8S_VERSION
    node = await v1.read_node("standin-node")
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert node.status.node_info.kubelet_version == K8S_VERSION
    # the apiserver stores quantities in canonical form
    assert node.status.allocatable["pods"] == "1k"
    renewals = k8s.node.renewals
    assert renewals >= 1
    # the controller manager made the default ServiceAccount the pods need
    sa = await v1.read_namespaced_service_account("default", NS)
    assert sa.metadata.name == "default"


async def test_claim_provisioned_bound_and_pod_runs_to_completion(k8s, v1):
    await v1.create_namespaced_persistent_volume_claim(NS, pvc_manifest("home"))
    mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
    pod = pod_manifest(
        "job",
        [PY, "-c", "print(open('/home/jovyan/x').read())"],
        init=[("fill", [PY, "-c", "open('/home/jovyan/x', 'w').write('from init')"])],
        volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": "home"}}],
        mounts=mounts,
        restart_policy="Never",
    )
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    await v1.create_namespaced_pod(NS, pod)

    async def done():
        p = await v1.read_namespaced_pod("job", NS)
        return p if p.status.phase in ("Succeeded", "Failed") else None

    p = await wait_for(done, 60, interval=0.2, message="the pod did not finish")
    assert p.status.phase == "Succeeded"
    assert p.spec.node_name == "standin-node"
    conditions = {c.type: c.status for c in p.status.conditions}
    assert conditions["PodScheduled"] == "True"
    assert conditions["Initialized"] == "True"
    main = p.status.container_statuses[0]
    assert main.state.terminated.exit_code == 0
    assert main.state.terminated.reason == "Completed"
    assert p.status.init_container_statuses[0].state.terminated.exit_code == 0

    # the real PV controller bound the claim to the provisioner's PV
    pvc = await v1.read_namespaced_persistent_volume_claim("home", NS)
    assert pvc.status.phase == "Bound"
    pv = await v1.read_persistent_volume(pvc.spec.volume_name)
    assert pv.spec.claim_ref.uid == pvc.metadata.uid
    assert pv.spec.storage_class_name == "standard"
    with open(os.path.join(pv.spec.host_path.path, "x")) as f:
        assert f.read() == "from init"

    events = await events_of(v1, "job")
    assert (
        "default-scheduler",
        "Scheduled",
        "Successfully assigned default/job to standin-node",
    ) in events
    reasons = [r for c, r, m in events if c == "kubelet"]
    for reason in ("Pulling", "Pulled", "Created", "Started"):
        assert reason in reasons, events
    pvc_events = [r for c, r, m in await events_of(v1, "home")]
    assert "ExternalProvisioning" in pvc_events
    assert "ProvisioningSucceeded" in pvc_events

    # deleting the claim deletes the volume (reclaim policy Delete)
    await v1.delete_namespaced_pod("job", NS)
    await v1.delete_namespaced_persistent_volume_claim("home", NS)

    async def volume_gone():
        pvs = await v1.list_persistent_volume()
        return not pvs.items and not os.path.exists(pv.spec.host_path.path)

    await wait_for(volume_gone, 60, interval=0.2, message="the volume stayed")


async def test_unbound_claim_blocks_scheduling(k8s, v1):
    pod = pod_manifest(
        "waits",
        [PY, "-c", "pass"],
        volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": "later"}}],
    )
    await v1.create_namespaced_pod(NS, pod)

    async def failed_scheduling():
        return [
            m for c, r, m in await events_of(v1, "waits") if r == "FailedScheduling"
        ]

    messages = await wait_for(failed_scheduling, 30, interval=0.2)
    assert 'persistentvolumeclaim "later" not found' in messages[0]
    await v1.create_namespaced_persistent_volume_claim(NS, pvc_manifest("later"))

    async def succeeded():
        p = await v1.read_namespaced_pod("waits", NS)
        return p.status.phase == "Succeeded"

    await wait_for(succeeded, 60, interval=0.2, message="the pod never ran")


async def test_graceful_delete_stops_the_processes(k8s, v1):
    pod = pod_manifest("sleeper", [PY, "-c", "import time; time.sleep(600)"], grace=5)
    await v1.create_namespaced_pod(NS, pod)

    async def running():
        p = await v1.read_namespaced_pod("sleeper", NS)
        statuses = p.status.container_statuses or []
        return p.status.phase == "Running" and statuses and statuses[0].ready

    try:
        await wait_for(running, 60, interval=0.2)
    except TimeoutError:
        p = await v1.read_namespaced_pod("sleeper", NS)
        raise AssertionError(
            f"the pod never ran: {p.status}, {await events_of(v1, 'sleeper')}"
        )
    p = await v1.read_namespaced_pod("sleeper", NS)
    assert p.status.pod_ip.startswith("127.")
    assert k8s.kubelet.stats()["processes"] == 1

    await v1.delete_namespaced_pod("sleeper", NS)

    async def gone():
        pods = await v1.list_namespaced_pod(NS)
        return not pods.items

    await wait_for(gone, 30, interval=0.2, message="the pod was not deleted")
    assert marked_processes(k8s.id) == []
    killing = [r for c, r, m in await events_of(v1, "sleeper") if r == "Killing"]
    assert killing == ["Killing"]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_the_process_runner_leaves_no_process(tmp_path, how):
    """`python -m classroom_spawner.local.kube --backend real`: stopped with SIGTERM
    (what Ctrl-C in the terminal sends it too), or killed outright, nothing of the
    control plane and no pod outlives it."""
    k8s = RealKubeProcess(tmp_path / "k8s")
    async with k8s:
        assert k8s.version["gitVersion"] == K8S_VERSION
        stats = await k8s.astats()
        pids = list(stats["control_plane_pids"].values())
        assert len(pids) == 4 and all(_alive(p) for p in pids)
        async with core_client(k8s.kubeconfig_path) as v1:
            await v1.create_namespaced_pod(
                NS, pod_manifest("sleeper", [PY, "-c", "import time; time.sleep(600)"])
            )

            async def running():
                return (await k8s.astats())["processes"] == 1

            await wait_for(running, 60, interval=0.2, message="the pod never ran")
        if how == "SIGKILL":
            os.kill(k8s.pid, signal.SIGKILL)
            k8s.proc.wait()
    await wait_for(
        lambda: not any(_alive(p) for p in pids),
        30,
        interval=0.1,
        message="control-plane processes outlived the launcher",
    )
    if how == "SIGTERM":
        assert marked_processes(k8s.info["standin_id"]) == []
    else:
        # pod processes are the node agent's children, not the kernel's to reap: as
        # with the stand-in, a SIGKILLed agent leaves them (the demo kills them by marker)
        for pid in marked_processes(k8s.info["standin_id"]):
            os.kill(pid, signal.SIGKILL)
