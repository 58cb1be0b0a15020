"""ClassroomSpawner in the hub Zero to JupyterHub configures (the z2jh_config fixture:
the chart's hub config for the given values, then the admin's hub.extraConfig), in a
real JupyterHub on the Kubernetes stand-in: profiles, volumes, lessons, the queue and
refused spawns, with one shared NFS home (storage.type static) and with a disk per
student (dynamic)."""

import asyncio
import os

import pytest
import pytest_asyncio

from classroom_spawner.local.gitrepo import lesson_repo
from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.kube import Faults, KubeletConfig, kube_process
from classroom_spawner.local.kube.testing import core_client, user_pod

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

NS = "default"
SHARED_CLAIM = "home-nfs"
STUDENTS = ["ada", "bo", "cy", "di"]
REFUSED = ["eve", "fay"]  # ask for courses that are not theirs


COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    image: example.org/ds101:1
    lessons:
      - url: {lessons}
        target: ds101-lessons
    students: [{students}, eve]
  - id: phys210
    title: Computational Physics
    image: example.org/phys210:1
    kubespawner_override:
      # a list, while the chart writes volumes as dicts: the home must stay
      volumes: [{{name: datasets, emptyDir: {{}}}}]
      volume_mounts: [{{name: datasets, mountPath: /srv/datasets}}]
    students: [{students}, fay]
  - id: slow
    title: A course whose image is slow to pull
    image: example.org/slow:1
    students: [holder]
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("z2jh-hub")


@pytest.fixture(scope="module")
def course_file(workdir):
    path = workdir / "courses.yaml"
    path.write_text(
        COURSES.format(lessons=lesson_repo(workdir), students=", ".join(STUDENTS))
    )
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def k8s(workdir):
    # every image is on the node but the slow course's
    present = ["example.org/ds101:1", "example.org/phys210:1", "example.org/tools:1"]
    faults = Faults(provision_delay=0.5, image_pull_delay=30)
    async with kube_process(
        workdir / "k8s",
        faults=faults,
        kubelet=KubeletConfig(singleuser="light", present_images=present),
    ) as cluster:
        async with core_client(cluster.kubeconfig_path) as v1:
            # the admin's NFS claim for storage.type static, bound before the hub starts
            await v1.create_namespaced_persistent_volume_claim(
                NS,
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": SHARED_CLAIM},
                    "spec": {
                        "accessModes": ["ReadWriteMany"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                },
            )
            for _ in range(200):
                claim = await v1.read_namespaced_persistent_volume_claim(
                    SHARED_CLAIM, NS
                )
                if claim.status.phase == "Bound":
                    break
                await asyncio.sleep(0.05)
            cluster.shared_volume = claim.spec.volume_name
        yield cluster


def values(storage):
    """What an admin's config.yaml gives the chart (on top of its defaults)."""
    storage_values = {"type": storage, "capacity": "1Gi"}
    home_mount = {"name": "volume-{user_server}", "mountPath": "/home/jovyan"}
    if storage == "static":
        storage_values["static"] = {
            "pvcName": SHARED_CLAIM
        }  # subPath: "{username}" by default
        home_mount = {
            "name": "home",
            "mountPath": "/home/jovyan",
            "subPath": "{username}",
        }
    return {
        # hub.concurrentSpawnLimit stays the chart's 64, hub.consecutiveFailureLimit its 5
        "singleuser": {
            # the stand-in runs containers as local processes: no iptables there
            "cloudMetadata": {"blockWithIptables": False},
            "storage": storage_values,
            # an admin's init container that prepares the home, before the lessons
            "initContainers": [
                {
                    "name": "prepare-home",
                    "image": "example.org/tools:1",
                    "command": ["touch", "/home/jovyan/PREPARED"],
                    "volumeMounts": [home_mount],
                }
            ],
            "startTimeout": 120,
        },
    }


async def start_hub(k8s, workdir, course_file, z2jh_config, storage, extra=""):
    config = z2jh_config(
        values(storage),
        namespace=NS,
        culler_command=["true"],
        extra=f"""
            from jupyterhub.auth import DummyAuthenticator
            from classroom_spawner.queue_api import SpawnQueueAPIMixin

            class Authenticator(SpawnQueueAPIMixin, DummyAuthenticator):
                pass

            c.JupyterHub.authenticator_class = Authenticator
            c.Authenticator.allow_all = True
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{str(course_file)!r}]
            c.ClassroomRoster.check_interval = 0
            c.KubeSpawner.http_timeout = 60
            """ + extra,
    )
    hub = HubProcess(
        config=config,
        workdir=workdir / f"hub-{storage}",
        env={"KUBECONFIG": k8s.kubeconfig_path},
        start_timeout=120,
    )
    await hub.start()
    users = STUDENTS + REFUSED + ["holder", "nobody"]
    for name in users:
        await hub.create_user(name)
    hub.tokens = {name: await hub.user_token(name) for name in users}
    return hub


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nfs_hub(k8s, workdir, course_file, z2jh_config):
    hub = await start_hub(
        k8s, workdir, course_file, z2jh_config, "static",
        # every spawn takes a place in one line, whose wait is short
        extra="""
            c.ClassroomSpawner.spawn_limit = 1
            c.ClassroomSpawner.spawn_queue_max_wait = 1
            """,
    )  # fmt: skip
    yield hub
    await hub.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def disk_hub(k8s, workdir, course_file, z2jh_config):
    hub = await start_hub(k8s, workdir, course_file, z2jh_config, "dynamic")
    yield hub
    await hub.stop()


async def claims(k8s):
    async with core_client(k8s.kubeconfig_path) as v1:
        return {
            c.metadata.name: c
            for c in (await v1.list_namespaced_persistent_volume_claim(NS)).items
        }


async def refusal(hub, name, body):
    """The message of a refused start: in the answer, or (the chart's hub answers at once,
    slow_spawn_timeout 0) as the spawn's last progress event."""
    r = await hub.api(
        "POST",
        f"users/{name}/server",
        json=body,
        token=hub.tokens[name],
        raise_error=False,
    )
    if r.code >= 400:
        return r.text
    assert r.code in (201, 202), r.text  # 201: the spawn has already failed
    events = await hub.progress(name, token=hub.tokens[name], timeout=60)
    assert events[-1].get("failed") is True, events[-3:]
    return events[-1]["message"]


async def test_shared_home_no_claim_of_ones_own_lessons_in_the_students_folder(
    nfs_hub, k8s
):
    await nfs_hub.start_server("ada", options={"profile": "ds101"}, timeout=120)
    pod = await user_pod(k8s, "ada")
    assert [c.name for c in pod.spec.init_containers] == ["prepare-home", "lesson-sync"]
    (home,) = (
        m
        for m in pod.spec.containers[0].volume_mounts
        if m.mount_path == "/home/jovyan"
    )
    assert home.sub_path == "ada"
    # no claim-ada: the shared claim is the only one
    assert set(await claims(k8s)) == {SHARED_CLAIM}
    # and the lessons are in ada's folder of the shared volume, after the admin's container
    folder = os.path.join(k8s.state_dir, "volumes", k8s.shared_volume, "ada")
    assert os.path.isfile(os.path.join(folder, "ds101-lessons", "01-intro.ipynb"))
    assert os.path.isfile(os.path.join(folder, "PREPARED"))
    # nothing was a first spawn
    assert await nfs_hub.queue_admitted("first-spawn") == 0
    await nfs_hub.stop_server("ada")


async def test_twenty_refusals_in_a_row_leave_the_hub_and_the_queue_as_they_were(
    nfs_hub, k8s
):
    # the holder's start (a slow image pull) holds the only spawn slot meanwhile
    r = await nfs_hub.api(
        "POST",
        "users/holder/server",
        json={"profile": "slow"},
        token=nfs_hub.tokens["holder"],
    )
    assert r.code == 202, r.text
    for _ in range(100):
        state = (
            (await nfs_hub.api("GET", "classroom/spawn-queue"))
            .json()["queues"]
            .get("spawn", {})
        )
        if state.get("in_flight"):
            break
        await asyncio.sleep(0.1)
    refusals = []
    for i in range(20):
        kind = ("profile", "no-course", "queue")[i % 3]
        if kind == "profile":  # another course's profile
            name = REFUSED[i % 2]
            body = {"profile": "phys210" if name == "eve" else "ds101"}
        elif kind == "no-course":
            name, body = "nobody", {}
        else:  # a wait in line that runs out while the holder starts
            name, body = STUDENTS[1 + i % 3], {"profile": "ds101"}
        refusals.append((kind, await refusal(nfs_hub, name, body)))
    for kind, message in refusals:
        expected = {
            "profile": "is not available to you",
            "no-course": "You are not enrolled in any course",
            "queue": "you waited 1 second in line without getting a server",
        }[kind]
        assert expected in message, (kind, message)
    # the hub did not give up (Z2JH's consecutiveFailureLimit is 5) ...
    log = nfs_hub.read_log()
    assert (
        "consecutive spawn failures" not in log
        and "consecutive spawns failed" not in log
    )
    assert nfs_hub.running
    # ... and the line it holds is the same: the holder still has its slot and gets its server
    state = (await nfs_hub.api("GET", "classroom/spawn-queue")).json()["queues"][
        "spawn"
    ]
    assert [h["user"] for h in state["holders"]] == ["holder"], state
    await nfs_hub.wait_for_server("holder", timeout=120)
    await nfs_hub.stop_server("holder")


async def test_a_disk_per_student_first_spawn_in_line_and_course_volumes_kept_with_the_home(
    disk_hub, k8s
):
    await disk_hub.start_server("bo", options={"profile": "phys210"}, timeout=120)
    pod = await user_pod(k8s, "bo")
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes["volume-bo"].persistent_volume_claim.claim_name == "claim-bo"
    assert "datasets" in volumes
    mounts = {m.mount_path: m.name for m in pod.spec.containers[0].volume_mounts}
    assert (
        mounts["/home/jovyan"] == "volume-bo" and mounts["/srv/datasets"] == "datasets"
    )
    assert "claim-bo" in await claims(k8s)
    assert await disk_hub.queue_admitted("first-spawn") == 1
    await disk_hub.stop_server("bo")
    # the second start is a returning user's: not in line again
    await disk_hub.start_server("bo", options={"profile": "phys210"}, timeout=120)
    assert await disk_hub.queue_admitted("first-spawn") == 1
    await disk_hub.stop_server("bo")
