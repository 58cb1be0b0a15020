"""Every latency and fault the Kubernetes stand-in can inject."""

import asyncio
import json

import aiohttp
import pytest
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from classroom_spawner.local.kube import Faults, KubeletConfig, KubeStandin
from classroom_spawner.local.kube.testing import (
    core_client,
    pod_manifest,
    pvc_manifest,
    wait_for,
)

NS = "default"
HOME = [{"name": "home", "mountPath": "/home/jovyan"}]


def kubelet_config():
    return KubeletConfig(
        backoff_base=0.2,
        backoff_max=1.0,
        provision_retry_base=0.1,
        provision_retry_max=0.5,
    )


@pytest.fixture
async def k8s(tmp_path):
    async with KubeStandin(tmp_path / "k8s", kubelet=kubelet_config()) as standin:
        yield standin


@pytest.fixture
async def v1(k8s):
    async with core_client(k8s.kubeconfig_path) as api:
        yield api


async def raw(k8s, method, path, body=None):
    req = HTTPRequest(
        k8s.url + path,
        method=method,
        headers={"Authorization": f"Bearer {k8s.token}"},
        body=json.dumps(body) if body is not None else None,
        request_timeout=30,
    )
    return await AsyncHTTPClient().fetch(req, raise_error=False)


async def set_faults(k8s, **changes):
    """Change faults at runtime through the admin endpoint, as a test against a subprocess would."""
    r = await raw(k8s, "PUT", "/_standin/faults", changes)
    assert r.code == 200, r.body
    return json.loads(r.body)


async def events_for(v1, name):
    evs = await v1.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={name}"
    )
    return [(e.type, e.reason, e.message) for e in evs.items]


async def phase_of(v1, name):
    return (await v1.read_namespaced_pod(name, NS)).status.phase


async def test_provisioning_delay_and_limit_in_flight(k8s, v1):
    await set_faults(k8s, provision_delay=0.2, provision_max_in_flight=1)
    bound_order = []
    in_flight = set()

    async def watch_claims():
        w = watch.Watch()
        async with w.stream(
            v1.list_namespaced_persistent_volume_claim, NS, timeout_seconds=30
        ) as s:
            async for event in s:
                pvc = event["object"]
                if pvc.status.phase == "Bound" and pvc.metadata.name not in bound_order:
                    bound_order.append(pvc.metadata.name)
                    if len(bound_order) == 4:
                        return

    async def sample():
        while True:
            in_flight.add(k8s.stats()["provisions_in_flight"])
            await asyncio.sleep(0.02)

    watcher = asyncio.ensure_future(watch_claims())
    sampler = asyncio.ensure_future(sample())
    await asyncio.sleep(0.1)
    for i in range(4):
        await v1.create_namespaced_persistent_volume_claim(NS, pvc_manifest(f"c{i}"))
    await asyncio.wait_for(watcher, 60)
    sampler.cancel()
    # first in, first bound; never more than one provision at a time
    assert bound_order == ["c0", "c1", "c2", "c3"]
    assert max(in_flight) == 1


async def test_failing_provisioner(k8s, v1):
    await set_faults(k8s, provision_fail_rate=1.0)
    await v1.create_namespaced_persistent_volume_claim(NS, pvc_manifest("claim-x"))
    await v1.create_namespaced_pod(
        NS,
        pod_manifest(
            "x",
            ["sleep", "600"],
            volumes=[
                {"name": "home", "persistentVolumeClaim": {"claimName": "claim-x"}}
            ],
            mounts=HOME,
        ),
    )

    async def failed_twice():
        # repeated failures are folded into one event with a count
        ev = (
            await v1.list_namespaced_event(
                NS, field_selector="reason=ProvisioningFailed"
            )
        ).items
        return ev if ev and ev[0].count >= 2 else None

    ev = (await wait_for(failed_twice, 20))[0]
    assert ev.type == "Warning"
    assert (
        ev.message
        == 'failed to provision volume with StorageClass "standard": injected provisioner failure'
    )
    assert (
        await v1.read_namespaced_persistent_volume_claim("claim-x", NS)
    ).status.phase == "Pending"
    assert await phase_of(v1, "x") == "Pending"
    assert ("Warning", "FailedScheduling") in [e[:2] for e in await events_for(v1, "x")]

    # the provisioner recovers: the claim binds and the pod starts
    await set_faults(k8s, provision_fail_rate=0.0)
    await wait_for(lambda: _is(phase_of(v1, "x"), "Running"), 30)


async def _is(awaitable, value):
    return (await awaitable) == value


async def test_image_pull_failure(k8s, v1):
    await set_faults(k8s, fail_images=["example/missing:1"])
    await v1.create_namespaced_pod(
        NS, pod_manifest("img", ["sleep", "600"], image="example/missing:1")
    )

    async def backing_off():
        pod = await v1.read_namespaced_pod("img", NS)
        st = (pod.status.container_statuses or [None])[0]
        waiting = st and st.state.waiting
        return waiting if waiting and waiting.reason == "ImagePullBackOff" else None

    await wait_for(backing_off, 20)
    reasons = [e[1:] for e in await events_for(v1, "img")]
    assert ("Failed", "Error: ErrImagePull") in reasons
    assert ("BackOff", 'Back-off pulling image "example/missing:1"') in reasons
    await set_faults(k8s, fail_images=[], image_pull_delay=0.1)
    await wait_for(lambda: _is(phase_of(v1, "img"), "Running"), 30)


async def test_api_error_rate_is_seeded(tmp_path):
    async def codes(path):
        faults = Faults(api_error_rate=0.5, seed=42, api_error_codes=[500, 503, 429])
        async with KubeStandin(path, faults=faults) as k8s:
            seen = []
            for _ in range(40):
                r = await raw(k8s, "GET", "/api/v1/namespaces/default/pods")
                seen.append(r.code)
                if r.code != 200:
                    status = json.loads(r.body)
                    assert status["kind"] == "Status" and status["code"] == r.code
                    assert (
                        status["reason"]
                        == {
                            500: "InternalError",
                            503: "ServiceUnavailable",
                            429: "TooManyRequests",
                        }[r.code]
                    )
                if r.code == 429:
                    assert r.headers["Retry-After"] == "1"
            return seen

    first = await codes(tmp_path / "a")
    second = await codes(tmp_path / "b")
    assert first == second
    assert {200, 500, 503, 429} == set(first)


async def test_api_errors_reach_the_client_and_spare_watches(k8s, v1):
    await set_faults(k8s, api_error_rate=1.0, api_error_codes=[503])
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod(NS)
    assert e.value.status == 503
    # watches are exempt unless asked for
    w = watch.Watch()
    async with w.stream(v1.list_namespaced_pod, NS, timeout_seconds=1) as s:
        async for _ in s:
            pass
    await set_faults(k8s, api_error_watch=True)
    with pytest.raises(ApiException):
        w = watch.Watch()
        async with w.stream(v1.list_namespaced_pod, NS, timeout_seconds=1) as s:
            async for _ in s:
                pass
    await set_faults(k8s, api_error_rate=0.0)
    await v1.list_namespaced_pod(NS)
    assert k8s.faults.injected["api_errors"] >= 2


async def test_outage_503_cuts_watches(k8s, v1):
    events = []
    ended = asyncio.Event()

    async def watch_pods():
        w = watch.Watch()
        async with w.stream(v1.list_namespaced_pod, NS, timeout_seconds=60) as s:
            async for event in s:
                events.append(event["type"])
        ended.set()

    task = asyncio.ensure_future(watch_pods())
    await wait_for(lambda: k8s.stats()["watches"] == 1, 10)
    status = await set_faults(k8s, outage=2.0)
    assert status["outage_remaining"] > 0
    # the open watch is cut at once (not after its 60 s timeout)
    await asyncio.wait_for(ended.wait(), 10)
    await task
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod(NS)
    assert e.value.status == 503
    # the admin endpoint stays reachable during an outage
    assert (await raw(k8s, "GET", "/_standin/stats")).code == 200

    async def back():
        try:
            await v1.list_namespaced_pod(NS)
            return True
        except ApiException:
            return False

    await wait_for(back, 20, interval=0.2)


async def test_outage_refusing_connections(tmp_path):
    async with KubeStandin(
        tmp_path / "k8s", faults=Faults(outage_mode="refuse")
    ) as k8s:
        async with core_client(k8s.kubeconfig_path) as v1:
            await v1.list_namespaced_pod(NS)
            k8s.faults.open_outage(1.5)

            async def refused():
                try:
                    await v1.list_namespaced_pod(NS)
                except aiohttp.ClientConnectorError:
                    return True
                except aiohttp.ClientError:
                    pass  # a connection dropped as the outage began
                return False

            await wait_for(refused, 10)

            async def back():
                try:
                    await v1.list_namespaced_pod(NS)
                    return True
                except aiohttp.ClientError:
                    return False

            # same URL and port again after the window
            await wait_for(back, 20, interval=0.2)


async def test_scheduled_outage_window(tmp_path):
    faults = Faults(outages=[(0.0, 2.0)])
    async with KubeStandin(tmp_path / "k8s", faults=faults) as k8s:
        first = await raw(k8s, "GET", "/api/v1/namespaces")
        assert first.code == 503
        assert json.loads(first.body)["reason"] == "ServiceUnavailable"

        async def up():
            return (await raw(k8s, "GET", "/api/v1/namespaces")).code == 200

        await wait_for(up, 20, interval=0.2)


async def test_failing_init_container_and_slow_start(k8s, v1):
    await set_faults(k8s, fail_init_containers=["lessons"], container_start_delay=0.2)
    await v1.create_namespaced_pod(
        NS, pod_manifest("lesson", ["sleep", "600"], init=[("lessons", ["true"])])
    )

    async def restarted():
        pod = await v1.read_namespaced_pod("lesson", NS)
        st = (pod.status.init_container_statuses or [None])[0]
        return st if st and st.restart_count >= 1 else None

    st = await wait_for(restarted, 20)
    assert st.last_state.terminated.exit_code == 1
    assert await phase_of(v1, "lesson") == "Pending"
    assert "BackOff" in [e[1] for e in await events_for(v1, "lesson")]
    log = await v1.read_namespaced_pod_log("lesson", NS, container="lessons")
    assert log == "injected failure\n"
    # fixed: the next retry succeeds and the pod starts
    await set_faults(k8s, fail_init_containers=[])
    await wait_for(lambda: _is(phase_of(v1, "lesson"), "Running"), 30)


async def test_bad_fault_settings_are_rejected(k8s):
    r = await raw(k8s, "PUT", "/_standin/faults", {"api_error_rate": 2})
    assert r.code == 400
    r = await raw(k8s, "PUT", "/_standin/faults", {"no_such_fault": 1})
    assert r.code == 400
    with pytest.raises(ValueError):
        Faults(outage_mode="sometimes")


async def test_kubespawner_reflector_recovers_from_outage_and_compaction(k8s, v1):
    """KubeSpawner's own PodReflector against the stand-in: its watch is cut by
    an outage, it backs off and re-lists; and because it re-lists on every
    reconnect, history compacted meanwhile does not hurt it."""
    from kubespawner.reflector import NamespacedResourceReflector

    class PodReflector(NamespacedResourceReflector):
        kind = "pods"

    reflector = PodReflector(namespace=NS, labels={"component": "singleuser-server"})
    reflector.api = v1  # our client, configured from the stand-in's kubeconfig
    reflector.timeout_seconds = 2
    labels = {"component": "singleuser-server"}
    try:
        await reflector.start()
        await v1.create_namespaced_pod(
            NS, pod_manifest("r1", ["sleep", "600"], labels=labels)
        )
        await wait_for(lambda: "default/r1" in reflector.resources, 10)

        # outage: the watch is cut, requests fail for a while, the reflector backs off and re-lists
        k8s.faults.open_outage(1.0)
        await asyncio.sleep(0.3)
        k8s.faults.end_outage()
        await v1.create_namespaced_pod(
            NS, pod_manifest("r2", ["sleep", "600"], labels=labels)
        )
        await wait_for(lambda: "default/r2" in reflector.resources, 30)

        # history compacted while the watch is down: the re-list picks up the change
        k8s.faults.open_outage(0.5)
        await asyncio.sleep(0.1)
        await v1_direct_create(k8s, "r3", labels)
        k8s.store.compact()
        k8s.faults.end_outage()
        await wait_for(lambda: "default/r3" in reflector.resources, 30)
        assert reflector.watch_task is not None and not reflector.watch_task.done()
    finally:
        await reflector.stop()
        for name in ("r1", "r2", "r3"):
            try:
                await v1.delete_namespaced_pod(name, NS, grace_period_seconds=0)
            except ApiException:
                pass


async def v1_direct_create(k8s, name, labels):
    """Create a pod through the registry (the API is down for clients)."""
    from classroom_spawner.local.kube.resources import RESOURCES

    k8s.registry.create(
        RESOURCES["pods"], NS, pod_manifest(name, ["sleep", "600"], labels=labels)
    )
