"""The process kubelet and the provisioner of the Kubernetes stand-in."""

import base64
import json
import os
import sys

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from tornado.httpclient import AsyncHTTPClient

from classroom_spawner.local.kube import KubeletConfig, KubeStandin
from classroom_spawner.local.kube.testing import (
    core_client,
    marked_processes,
    pod_manifest,
    pvc_manifest,
    wait_for,
)

NS = "default"
PY = sys.executable
HOME_MOUNT = [{"name": "home", "mountPath": "/home/jovyan"}]


def home_volume(claim):
    return [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}]


@pytest.fixture
async def k8s(tmp_path):
    kubelet = KubeletConfig(backoff_base=0.2, backoff_max=1.0, provision_retry_base=0.2)
    async with KubeStandin(tmp_path / "k8s", kubelet=kubelet) as standin:
        yield standin
        # whatever a test did, nothing it started may outlive the stand-in
    assert marked_processes(standin.id) == []


@pytest.fixture
async def v1(k8s):
    async with core_client(k8s.kubeconfig_path) as api:
        yield api


async def http_get(url):
    """The response, or None while nothing listens."""
    try:
        return await AsyncHTTPClient().fetch(url, raise_error=False)
    except OSError:
        return None


async def pod_phase(v1, name, phase, timeout=30):
    async def check():
        pod = await v1.read_namespaced_pod(name, NS)
        return pod if pod.status.phase == phase else None

    return await wait_for(check, timeout, message=f"pod {name} never reached {phase}")


async def running_and_ready(v1, name, timeout=30):
    async def check():
        pod = await v1.read_namespaced_pod(name, NS)
        statuses = pod.status.container_statuses or []
        if (
            pod.status.phase == "Running"
            and statuses
            and all(c.ready for c in statuses)
        ):
            return pod
        return None

    return await wait_for(check, timeout, message=f"pod {name} never became ready")


async def events_for(v1, name):
    evs = await v1.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={name}"
    )
    return [(e.reason, e.message) for e in evs.items]


async def gone(v1, name, timeout=30):
    async def check():
        try:
            await v1.read_namespaced_pod(name, NS)
        except ApiException as e:
            return e.status == 404
        return False

    await wait_for(check, timeout, message=f"pod {name} was not deleted")


async def test_pvc_is_provisioned_and_bound(k8s, v1):
    k8s.faults.update({"provision_delay": 0.3})
    pvc = await v1.create_namespaced_persistent_volume_claim(
        NS, pvc_manifest("claim-a", "2Gi")
    )
    assert pvc.status.phase == "Pending"

    async def bound():
        pvc = await v1.read_namespaced_persistent_volume_claim("claim-a", NS)
        return pvc if pvc.status.phase == "Bound" else None

    pvc = await wait_for(bound, 10)
    assert pvc.spec.volume_name == f"pvc-{pvc.metadata.uid}"
    assert pvc.spec.storage_class_name == "standard"
    assert pvc.status.capacity == {"storage": "2Gi"}
    assert os.path.isdir(os.path.join(k8s.state_dir, "volumes", pvc.spec.volume_name))
    reasons = [r for r, _ in await events_for(v1, "claim-a")]
    assert reasons == ["ExternalProvisioning", "Provisioning", "ProvisioningSucceeded"]
    # a claim without a storage class only binds statically: stays Pending
    await v1.create_namespaced_persistent_volume_claim(
        NS, pvc_manifest("static", storage_class="")
    )
    await wait_for(lambda: events_for(v1, "static"), 5)
    assert (
        await v1.read_namespaced_persistent_volume_claim("static", NS)
    ).status.phase == "Pending"


async def test_pod_lifecycle_with_volume_init_env_and_logs(k8s, v1):
    k8s.faults.update({"provision_delay": 0.3})
    await v1.create_namespaced_secret(
        NS, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}
    )
    await v1.create_namespaced_persistent_volume_claim(NS, pvc_manifest("claim-alice"))
    server = (
        "import http.server, os, sys\n"
        "os.makedirs('work', exist_ok=True)\n"
        "open('seen.txt', 'w').write(os.environ['TOKEN'] + ' ' + os.environ['POD_NAME'] + ' ' + os.getcwd())\n"
        "print('serving', os.environ['BIND'], flush=True)\n"
        "http.server.ThreadingHTTPServer((os.environ['BIND'].split(':')[0], 8888),"
        " http.server.SimpleHTTPRequestHandler).serve_forever()\n"
    )
    pod = pod_manifest(
        "alice",
        [PY, "-c", server],
        labels={"component": "singleuser-server"},
        init=[
            (
                "lessons",
                [
                    "sh",
                    "-c",
                    "mkdir -p /home/jovyan/lessons && echo hi > /home/jovyan/lessons/README && echo \"home is $HOME\"",
                ],
            )
        ],
        volumes=home_volume("claim-alice"),
        mounts=HOME_MOUNT,
        env=[
            {"name": "BIND", "value": "0.0.0.0:8888"},
            {
                "name": "TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
            },
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
        ],
    )
    await v1.create_namespaced_pod(NS, pod)
    # Pending while the claim is unbound
    pending = await v1.read_namespaced_pod("alice", NS)
    assert pending.status.phase == "Pending"

    pod = await running_and_ready(v1, "alice")
    ip = pod.status.pod_ip
    assert ip.startswith("127.") and not ip.startswith("127.0.0.")
    assert pod.spec.node_name == "standin-node"
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 0
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }

    # 0.0.0.0 became the pod's own address: the server answers on the pod IP
    async def answers():
        r = await http_get(f"http://{ip}:8888/lessons/README")
        return r if r is not None and r.code == 200 else None

    r = await wait_for(answers, 20)
    assert r.body == b"hi\n"

    pvc = await v1.read_namespaced_persistent_volume_claim("claim-alice", NS)
    home = os.path.join(k8s.state_dir, "volumes", pvc.spec.volume_name)
    await wait_for(lambda: os.path.exists(os.path.join(home, "seen.txt")), 10)
    with open(os.path.join(home, "seen.txt")) as f:
        assert f.read() == f"s3cret alice {home}"

    init_log = await v1.read_namespaced_pod_log("alice", NS, container="lessons")
    assert init_log == f"home is {home}\n"
    main_log = await v1.read_namespaced_pod_log("alice", NS, container="main")
    assert main_log.startswith(f"serving {ip}:8888")

    reasons = [r for r, _ in await events_for(v1, "alice")]
    assert reasons[0] == "FailedScheduling"
    assert reasons[1] == "Scheduled"
    assert reasons[2:] == [
        "Pulling",
        "Pulled",
        "Created",
        "Started",  # init container
        "Pulled",
        "Created",
        "Started",  # main: the image is now present
    ]
    messages = dict(await events_for(v1, "alice"))
    assert (
        messages["Scheduled"] == "Successfully assigned default/alice to standin-node"
    )
    assert k8s.stats()["processes"] == 1

    await v1.delete_namespaced_pod("alice", NS, grace_period_seconds=2)
    # graceful: the pod is Terminating first...
    terminating = await v1.read_namespaced_pod("alice", NS)
    assert terminating.metadata.deletion_timestamp is not None
    await gone(v1, "alice")
    stats = k8s.stats()
    assert (
        stats["processes"] == 0
        and stats["pod_dirs"] == 0
        and stats["pod_ips_in_use"] == 0
    )
    assert marked_processes(k8s.id) == []
    assert "Killing" in [r for r, _ in await events_for(v1, "alice")]
    # the claim and its data stay
    assert os.path.exists(os.path.join(home, "lessons", "README"))


async def test_every_process_of_a_pod_is_killed(k8s, v1):
    # the main process starts a child in a new session (as jupyter does for
    # kernels) and ignores SIGTERM
    script = (
        "import signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    await v1.create_namespaced_pod(
        NS, pod_manifest("stubborn", [PY, "-c", script], grace=1)
    )
    await running_and_ready(v1, "stubborn")
    await wait_for(lambda: len(marked_processes(k8s.id)) == 2, 10)
    await v1.delete_namespaced_pod("stubborn", NS)
    await gone(v1, "stubborn")
    assert marked_processes(k8s.id) == []


async def test_force_delete_kills_at_once(k8s, v1):
    await v1.create_namespaced_pod(
        NS, pod_manifest("quick", ["sleep", "600"], grace=30)
    )
    await running_and_ready(v1, "quick")
    await v1.delete_namespaced_pod("quick", NS, grace_period_seconds=0)
    # removed from the API immediately, processes killed right after
    with pytest.raises(ApiException):
        await v1.read_namespaced_pod("quick", NS)
    await wait_for(lambda: marked_processes(k8s.id) == [], 10)
    await wait_for(lambda: k8s.stats()["pod_workers"] == 0, 10)


async def test_pods_share_a_port_on_their_own_ips(k8s, v1):
    serve = [PY, "-m", "http.server", "--bind", "0.0.0.0", "9999"]
    for name in ("one", "two"):
        await v1.create_namespaced_pod(NS, pod_manifest(name, serve))
    ips = [(await running_and_ready(v1, n)).status.pod_ip for n in ("one", "two")]
    assert len(set(ips)) == 2
    for ip in ips:
        r = await wait_for(lambda: http_get(f"http://{ip}:9999/"), 20)
        assert r.code == 200
    for name in ("one", "two"):
        await v1.delete_namespaced_pod(name, NS, grace_period_seconds=0)


async def test_phases_restarts_and_termination_message(k8s, v1):
    # Never + exit 3 -> Failed, with the termination message from the file
    script = "import sys; open('/dev/termination-log', 'w').write('bye'); sys.exit(3)"
    await v1.create_namespaced_pod(
        NS, pod_manifest("fails", [PY, "-c", script], restart_policy="Never")
    )
    pod = await pod_phase(v1, "fails", "Failed")
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 3 and term.reason == "Error" and term.message == "bye"

    # OnFailure + exit 0 -> Succeeded
    await v1.create_namespaced_pod(NS, pod_manifest("done", ["true"]))
    pod = await pod_phase(v1, "done", "Succeeded")
    assert pod.status.container_statuses[0].state.terminated.reason == "Completed"

    # OnFailure + crashing -> restarted with back-off (CrashLoopBackOff, BackOff events)
    await v1.create_namespaced_pod(NS, pod_manifest("crashy", ["false"]))

    async def restarted():
        pod = await v1.read_namespaced_pod("crashy", NS)
        statuses = pod.status.container_statuses or []
        return pod if statuses and statuses[0].restart_count >= 2 else None

    pod = await wait_for(restarted, 20)
    assert pod.status.container_statuses[0].last_state.terminated.exit_code == 1
    assert "BackOff" in [r for r, _ in await events_for(v1, "crashy")]

    # a command that does not exist: StartError, exit code 128
    await v1.create_namespaced_pod(
        NS, pod_manifest("nocmd", ["no-such-command"], restart_policy="Never")
    )
    pod = await pod_phase(v1, "nocmd", "Failed")
    term = pod.status.container_statuses[0].state.terminated
    assert term.reason == "StartError" and term.exit_code == 128
    assert 'exec: "no-such-command": executable file not found in $PATH' in term.message

    for name in ("fails", "done", "crashy", "nocmd"):
        await v1.delete_namespaced_pod(name, NS, grace_period_seconds=0)


async def test_init_container_failure_blocks_the_pod(k8s, v1):
    await v1.create_namespaced_pod(
        NS,
        pod_manifest(
            "blocked", ["sleep", "600"], init=[("clone", ["sh", "-c", "exit 2"])]
        ),
    )

    async def backing_off():
        pod = await v1.read_namespaced_pod("blocked", NS)
        st = (pod.status.init_container_statuses or [None])[0]
        return pod if st and st.restart_count >= 1 else None

    pod = await wait_for(backing_off, 20)
    assert pod.status.phase == "Pending"
    init_cond = next(c for c in pod.status.conditions if c.type == "Initialized")
    assert (
        init_cond.status == "False" and init_cond.reason == "ContainersNotInitialized"
    )
    assert pod.status.container_statuses[0].state.waiting.reason == "PodInitializing"
    await v1.delete_namespaced_pod("blocked", NS, grace_period_seconds=0)

    await v1.create_namespaced_pod(
        NS,
        pod_manifest(
            "blocked-never",
            ["sleep", "600"],
            init=[("clone", ["false"])],
            restart_policy="Never",
        ),
    )
    pod = await pod_phase(v1, "blocked-never", "Failed")
    assert pod.status.container_statuses[0].state.waiting.reason == "PodInitializing"
    assert k8s.stats()["processes"] == 0


async def test_missing_secret_is_a_config_error_until_created(k8s, v1):
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "x"}}}]
    await v1.create_namespaced_pod(
        NS,
        pod_manifest(
            "waits",
            [PY, "-c", "import os; print(os.environ['X'])"],
            env=env,
            restart_policy="Never",
        ),
    )

    async def config_error():
        pod = await v1.read_namespaced_pod("waits", NS)
        st = (pod.status.container_statuses or [None])[0]
        waiting = st and st.state.waiting
        return (
            waiting
            if waiting and waiting.reason == "CreateContainerConfigError"
            else None
        )

    waiting = await wait_for(config_error, 10)
    assert waiting.message == 'secret "later" not found'
    assert ("Failed", 'Error: secret "later" not found') in await events_for(
        v1, "waits"
    )
    await v1.create_namespaced_secret(
        NS,
        {
            "metadata": {"name": "later"},
            "data": {"x": base64.b64encode(b"now").decode()},
        },
    )
    await pod_phase(v1, "waits", "Succeeded")
    assert await v1.read_namespaced_pod_log("waits", NS) == "now\n"


async def test_pvc_protection_keeps_data_while_in_use(k8s, v1):
    await v1.create_namespaced_persistent_volume_claim(NS, pvc_manifest("claim-bob"))
    await v1.create_namespaced_pod(
        NS,
        pod_manifest(
            "bob",
            ["sh", "-c", "echo keep > /home/jovyan/file && sleep 600"],
            volumes=home_volume("claim-bob"),
            mounts=HOME_MOUNT,
        ),
    )
    await running_and_ready(v1, "bob")
    pvc = await v1.read_namespaced_persistent_volume_claim("claim-bob", NS)
    path = os.path.join(k8s.state_dir, "volumes", pvc.spec.volume_name)
    await wait_for(lambda: os.path.exists(os.path.join(path, "file")), 10)

    await v1.delete_namespaced_persistent_volume_claim("claim-bob", NS)
    pvc = await v1.read_namespaced_persistent_volume_claim("claim-bob", NS)
    assert pvc.metadata.deletion_timestamp is not None
    assert os.path.exists(os.path.join(path, "file"))
    # a new pod can't use a claim that is being deleted
    await v1.create_namespaced_pod(
        NS,
        pod_manifest(
            "late", ["true"], volumes=home_volume("claim-bob"), mounts=HOME_MOUNT
        ),
    )
    await wait_for(lambda: events_for(v1, "late"), 5)
    assert "is being deleted" in (await events_for(v1, "late"))[0][1]
    await v1.delete_namespaced_pod("late", NS)

    await v1.delete_namespaced_pod("bob", NS, grace_period_seconds=1)
    await gone(v1, "bob")

    async def pvc_gone():
        try:
            await v1.read_namespaced_persistent_volume_claim("claim-bob", NS)
        except ApiException as e:
            return e.status == 404
        return False

    await wait_for(pvc_gone, 10)
    await wait_for(lambda: not os.path.exists(path), 10)
    assert k8s.stats()["volume_dirs"] == 0


async def test_image_pulls(k8s, v1):
    k8s.faults.update({"image_pull_delay": 0.2})
    await v1.create_namespaced_pod(
        NS, pod_manifest("first", ["true"], image="example/lab:1")
    )
    await pod_phase(v1, "first", "Succeeded")
    msgs = dict(await events_for(v1, "first"))
    assert msgs["Pulling"] == 'Pulling image "example/lab:1"'
    assert msgs["Pulled"].startswith('Successfully pulled image "example/lab:1" in ')
    await v1.create_namespaced_pod(
        NS, pod_manifest("second", ["true"], image="example/lab:1")
    )
    await pod_phase(v1, "second", "Succeeded")
    msgs = dict(await events_for(v1, "second"))
    assert "Pulling" not in msgs
    assert (
        msgs["Pulled"] == 'Container image "example/lab:1" already present on machine'
    )


async def test_light_singleuser(tmp_path):
    kubelet = KubeletConfig(singleuser="light")
    async with KubeStandin(tmp_path / "k8s", kubelet=kubelet) as k8s:
        async with core_client(k8s.kubeconfig_path) as v1:
            env = [
                {
                    "name": "JUPYTERHUB_SERVICE_URL",
                    "value": "http://0.0.0.0:8888/user/carol/",
                },
                {"name": "JUPYTERHUB_SERVICE_PREFIX", "value": "/user/carol/"},
            ]
            await v1.create_namespaced_pod(
                NS,
                pod_manifest(
                    "carol",
                    ["jupyterhub-singleuser"],
                    env=env,
                    init=[("init", ["true"])],
                ),
            )
            pod = await running_and_ready(v1, "carol")
            ip = pod.status.pod_ip
            r = await AsyncHTTPClient().fetch(f"http://{ip}:8888/user/carol/api/status")
            assert set(json.loads(r.body)) == {
                "started",
                "last_activity",
                "connections",
                "kernels",
            }
            r = await AsyncHTTPClient().fetch(
                f"http://{ip}:8888/elsewhere", raise_error=False
            )
            assert r.code == 404
            stats = k8s.stats()
            assert stats["light_servers"] == 1 and stats["processes"] == 0
            await v1.delete_namespaced_pod("carol", NS, grace_period_seconds=1)
            await gone(v1, "carol")
            assert k8s.stats()["light_servers"] == 0
            assert (
                await http_get(f"http://{ip}:8888/user/carol/api") is None
            )  # nothing listens


async def test_owner_references_are_garbage_collected(k8s, v1):
    pod = await v1.create_namespaced_pod(NS, pod_manifest("owner", ["sleep", "600"]))
    owner = [
        {"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": pod.metadata.uid}
    ]
    await v1.create_namespaced_secret(
        NS, {"metadata": {"name": "owned", "ownerReferences": owner}}
    )
    await v1.delete_namespaced_pod("owner", NS, grace_period_seconds=0)

    async def secret_gone():
        try:
            await v1.read_namespaced_secret("owned", NS)
        except ApiException as e:
            return e.status == 404
        return False

    await wait_for(secret_gone, 10)
