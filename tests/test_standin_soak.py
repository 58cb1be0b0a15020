"""200 pods (each with a PVC and a real init container process, and a light
singleuser server) created and deleted against the stand-in: nothing may
leak -- processes, pod or volume directories, pod IPs, watches, tasks, fds."""

import asyncio

from kubernetes_asyncio import watch
from tornado.httpclient import AsyncHTTPClient

from classroom_spawner.local.kube import Faults, KubeletConfig, StandinThread
from classroom_spawner.local.kube.testing import (
    core_client,
    marked_processes,
    pod_manifest,
    pvc_manifest,
    wait_for,
)

NS = "default"
N = 200
CONCURRENCY = 25


def user_pod(i):
    name = f"jupyter-user{i}"
    env = [
        {
            "name": "JUPYTERHUB_SERVICE_URL",
            "value": f"http://0.0.0.0:8888/user/user{i}/",
        },
        {"name": "JUPYTERHUB_SERVICE_PREFIX", "value": f"/user/user{i}/"},
    ]
    return pod_manifest(
        name,
        ["jupyterhub-singleuser"],
        labels={"component": "singleuser-server"},
        init=[("lessons", ["sh", "-c", "echo synced > /home/jovyan/.synced"])],
        volumes=[
            {"name": "home", "persistentVolumeClaim": {"claimName": f"claim-user{i}"}}
        ],
        mounts=[{"name": "home", "mountPath": "/home/jovyan"}],
        env=env,
    )


async def test_200_pods_created_and_deleted_without_leaks(tmp_path):
    kubelet = KubeletConfig(singleuser="light")
    faults = Faults(provision_delay=0.05, provision_max_in_flight=10)
    with StandinThread(tmp_path / "k8s", kubelet=kubelet, faults=faults) as k8s:
        baseline = k8s.stats()
        ready = {f"jupyter-user{i}": asyncio.Event() for i in range(N)}
        deleted = {name: asyncio.Event() for name in ready}
        seen_events = []

        async with core_client(k8s.kubeconfig_path) as v1:
            # one long watch over the whole run, as KubeSpawner's pod reflector has
            async def follow():
                w = watch.Watch()
                async with w.stream(
                    v1.list_namespaced_pod,
                    NS,
                    label_selector="component=singleuser-server",
                    timeout_seconds=600,
                ) as stream:
                    async for event in stream:
                        pod = event["raw_object"]
                        name = pod["metadata"]["name"]
                        seen_events.append(event["type"])
                        statuses = pod["status"].get("containerStatuses") or []
                        if (
                            pod["status"].get("phase") == "Running"
                            and statuses
                            and all(c["ready"] for c in statuses)
                        ):
                            ready[name].set()
                        if event["type"] == "DELETED":
                            deleted[name].set()
                            if all(e.is_set() for e in deleted.values()):
                                return

            follower = asyncio.ensure_future(follow())
            await wait_for(lambda: k8s.stats()["watches"] == 1, 10)
            limit = asyncio.Semaphore(CONCURRENCY)
            answered = []

            async def one_user(i):
                name = f"jupyter-user{i}"
                async with limit:
                    await v1.create_namespaced_persistent_volume_claim(
                        NS, pvc_manifest(f"claim-user{i}")
                    )
                    pod = await v1.create_namespaced_pod(NS, user_pod(i))
                    await asyncio.wait_for(ready[name].wait(), 120)
                    if i % 20 == 0:
                        pod = await v1.read_namespaced_pod(name, NS)
                        r = await AsyncHTTPClient().fetch(
                            f"http://{pod.status.pod_ip}:8888/user/user{i}/api/status"
                        )
                        answered.append(r.code)
                    await v1.delete_namespaced_pod(name, NS, grace_period_seconds=1)
                    await asyncio.wait_for(deleted[name].wait(), 120)
                    await v1.delete_namespaced_persistent_volume_claim(
                        f"claim-user{i}", NS
                    )

            await asyncio.gather(*(one_user(i) for i in range(N)))
            await asyncio.wait_for(follower, 60)

        assert answered == [200] * (N // 20)
        assert seen_events.count("ADDED") == N and seen_events.count("DELETED") == N

        def settled():
            s = k8s.stats()
            done = (
                s["objects"]["pods"] == 0
                and s["objects"]["persistentvolumeclaims"] == 0
                and s["pod_workers"] == 0
                and s["volume_dirs"] == 0
                and s["watches"] == 0
                # no tasks or file descriptors piling up (a little slack for
                # the event GC and keep-alive sockets being closed)
                and s["asyncio_tasks"] <= baseline["asyncio_tasks"] + 2
                and s["open_fds"] <= baseline["open_fds"] + 10
            )
            return s if done else None

        stats = await wait_for(
            settled, 60, interval=0.2, message="the stand-in did not settle"
        )
        assert stats["processes"] == 0
        assert stats["light_servers"] == 0
        assert stats["pod_dirs"] == 0
        assert stats["pod_ips_in_use"] == 0
        assert stats["watch_streams"] == 0
        assert stats["provisions_in_flight"] == 0 and stats["provisions_queued"] == 0
        assert marked_processes(stats["standin_id"]) == []
