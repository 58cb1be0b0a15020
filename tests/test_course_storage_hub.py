"""Course storage and role-aware servers in a real JupyterHub on the Kubernetes
stand-in, with real single-user servers, on the hubs Zero to JupyterHub configures for
one shared NFS home (storage.type static) and for a disk per student (dynamic): a
shared course folder that students read and staff write, staff settings, a staff-only
choice a student cannot forge, and (shared home only) a TA's read-only view of their
own course's students' homes."""

import asyncio
import base64
import os

import pytest
import pytest_asyncio

from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.kube import Faults, kube_process
from classroom_spawner.local.kube.testing import core_client, user_pod

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

NS = "default"
HOME_CLAIM = "home-nfs"
DATA_CLAIM = "ds101-data"
USERS = ["alice", "bob", "tina", "zed"]

COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    image: example.org/ds101:1
    cpu_limit: 1
    mem_limit: 1G
    students: [alice, bob]
    tas: [tina]
    shared_folders:
      - name: data
        pvc: ds101-data
    staff:
      image: example.org/ds101-staff:1
      cpu_limit: 2
      mem_limit: 3G
    options:
      size:
        display_name: Server size
        choices:
          small: {display_name: Small, default: true}
          large:
            display_name: Large
            staff_only: true
            kubespawner_override: {mem_limit: 4G}
    staff_see_student_homes: true
  - id: phys210
    title: Computational Physics
    students: [zed]
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("course-storage-hub")


async def make_claim(v1, name):
    await v1.create_namespaced_persistent_volume_claim(
        NS,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    for _ in range(200):
        claim = await v1.read_namespaced_persistent_volume_claim(name, NS)
        if claim.status.phase == "Bound":
            return claim.spec.volume_name
        await asyncio.sleep(0.05)
    raise AssertionError(f"claim {name} not bound")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def k8s(workdir):
    async with kube_process(
        workdir / "k8s", faults=Faults(provision_delay=0.2)
    ) as cluster:
        async with core_client(cluster.kubeconfig_path) as v1:
            # the admin's claims: the shared home, and the course's data folder
            cluster.home_volume = await make_claim(v1, HOME_CLAIM)
            cluster.data_volume = await make_claim(v1, DATA_CLAIM)
        yield cluster


def volume_dir(k8s, volume, *parts):
    return os.path.join(k8s.state_dir, "volumes", volume, *parts)


@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=["static", "dynamic"]
)
async def hub(k8s, workdir, z2jh_config, request):
    storage = request.param
    course_file = workdir / "courses.yaml"
    course_file.write_text(COURSES)
    storage_values = {"type": storage, "capacity": "1Gi"}
    if storage == "static":
        storage_values["static"] = {"pvcName": HOME_CLAIM}  # subPath {username}
    values = {
        "singleuser": {
            "cloudMetadata": {"blockWithIptables": False},
            "storage": storage_values,
            "startTimeout": 120,
        }
    }
    config = z2jh_config(
        values,
        namespace=NS,
        culler_command=["true"],
        extra=f"""
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{str(course_file)!r}]
            c.ClassroomRoster.check_interval = 0
            c.KubeSpawner.http_timeout = 120
            # the chart's slow_spawn_timeout 0 answers every start with 202 and tells a
            # refusal as the spawn's last event (tests/test_z2jh_hub.py); here a refused
            # start is answered with its own status, as on a hub with the default
            c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 10}}
            """,
    )
    async with HubProcess(
        config=config,
        workdir=workdir / f"hub-{storage}",
        env={"KUBECONFIG": k8s.kubeconfig_path},
        start_timeout=120,
    ) as hub:
        for name in USERS:
            await hub.create_user(name)
        hub.tokens = {name: await hub.user_token(name) for name in USERS}
        hub.storage = storage
        yield hub


async def start(hub, user, options):
    r = await hub.api(
        "POST",
        f"users/{user}/server",
        json=options,
        token=hub.tokens[user],
        raise_error=False,
    )
    assert r.code in (201, 202), r.text
    await hub.wait_for_server(user, timeout=180)


async def put_file(hub, user, path, text):
    """Save a text file through USER's own server (the Jupyter contents API)."""
    return await hub.fetch(
        f"user/{user}/api/contents/{path}",
        method="PUT",
        json_body={"type": "file", "format": "text", "content": text},
        token=hub.tokens[user],
    )


async def get_file(hub, user, path):
    r = await hub.fetch(f"user/{user}/api/contents/{path}", token=hub.tokens[user])
    if r.code != 200:
        return r.code, None
    model = r.json()
    if model["type"] == "directory":
        return r.code, sorted(item["name"] for item in model["content"])
    content = model["content"]
    if model.get("format") == "base64":
        content = base64.b64decode(content).decode()
    return r.code, content


async def test_a_forged_staff_only_choice_is_refused_with_400_and_leaves_nothing(
    hub, k8s
):
    await start(hub, "alice", {"profile": "ds101", "size": "small"})
    await hub.stop_server("alice")
    r = await hub.api(
        "POST",
        "users/alice/server",
        json={"profile": "ds101", "size": "large"},
        token=hub.tokens["alice"],
        raise_error=False,
    )
    assert r.code == 400, r.text
    assert "option 'size': 'large' is not one of the choices (small)" in r.text
    assert await user_pod(k8s, "alice") is None
    user = (await hub.api("GET", "users/alice")).json()
    assert not user["servers"] and not user["pending"]
    # a plain start (no body: the saved options) is the last good choice, as it was
    await start(hub, "alice", None)
    pod = await user_pod(k8s, "alice")
    assert pod.spec.containers[0].resources.limits["memory"] == str(1024**3)
    assert "Saved server options for alice are no longer valid" not in hub.read_log()
    await hub.stop_server("alice")


async def test_staff_get_their_image_and_limits_and_students_the_courses(hub, k8s):
    await start(hub, "tina", {"profile": "ds101", "size": "large"})
    await start(hub, "alice", {"profile": "ds101"})
    ta, student = await user_pod(k8s, "tina"), await user_pod(k8s, "alice")
    assert ta.spec.containers[0].image == "example.org/ds101-staff:1"
    # the staff-only choice is tina's to make: its 4G over the staff's 3G
    assert ta.spec.containers[0].resources.limits == {
        "cpu": "2.0",
        "memory": str(4 * 1024**3),
    }
    assert student.spec.containers[0].image == "example.org/ds101:1"
    assert student.spec.containers[0].resources.limits == {
        "cpu": "1.0",
        "memory": str(1024**3),
    }


async def test_a_tas_file_in_the_shared_folder_is_read_by_students_who_write_nothing(
    hub, k8s
):
    # tina's and alice's servers are those of the test before
    r = await put_file(hub, "tina", "shared/data/week1.csv", "x,y\n1,2\n")
    assert r.code in (200, 201), r.text
    folder = volume_dir(k8s, k8s.data_volume)
    assert open(os.path.join(folder, "week1.csv")).read() == "x,y\n1,2\n"
    # alice's server shows it ...
    assert await get_file(hub, "alice", "shared/data/week1.csv") == (200, "x,y\n1,2\n")
    # ... and alice can neither add a file nor change that one
    before = sorted(os.listdir(folder))
    r = await put_file(hub, "alice", "shared/data/mine.csv", "a\n")
    assert r.code >= 400, r.text
    r = await put_file(hub, "alice", "shared/data/week1.csv", "overwritten\n")
    assert r.code >= 400, r.text
    assert sorted(os.listdir(folder)) == before
    assert open(os.path.join(folder, "week1.csv")).read() == "x,y\n1,2\n"
    mounts = {
        m.mount_path: m
        for m in (await user_pod(k8s, "alice")).spec.containers[0].volume_mounts
    }
    assert mounts["/home/jovyan/shared/data"].read_only is True


async def test_a_ta_reads_their_own_students_homes_and_no_one_elses(hub, k8s):
    if hub.storage == "dynamic":
        # a disk per student: one pod cannot mount the class's disks, so no view
        pod = await user_pod(k8s, "tina")
        paths = [m.mount_path for m in pod.spec.containers[0].volume_mounts]
        assert "/home/jovyan/shared/data" in paths
        assert not [p for p in paths if "/students" in p], paths
        assert (await get_file(hub, "tina", "students"))[0] == 404
        await hub.stop_server("alice")
        await hub.stop_server("tina")
        return
    r = await put_file(hub, "alice", "homework.txt", "alice's answer\n")
    assert r.code in (200, 201), r.text
    assert os.path.isfile(volume_dir(k8s, k8s.home_volume, "alice", "homework.txt"))
    # zed (another course's student) has a home on the same volume
    os.makedirs(volume_dir(k8s, k8s.home_volume, "zed"), exist_ok=True)
    with open(volume_dir(k8s, k8s.home_volume, "zed", "secret.txt"), "w") as f:
        f.write("zed's\n")
    # tina's server was started before alice wrote: the mount shows the file now
    assert await get_file(hub, "tina", "students") == (200, ["alice", "bob"])
    assert await get_file(hub, "tina", "students/alice/homework.txt") == (
        200,
        "alice's answer\n",
    )
    assert (await get_file(hub, "tina", "students/zed/secret.txt"))[0] == 404
    # read-only: tina cannot change alice's work
    r = await put_file(hub, "tina", "students/alice/homework.txt", "graded\n")
    assert r.code >= 400, r.text
    path = volume_dir(k8s, k8s.home_volume, "alice", "homework.txt")
    assert open(path).read() == "alice's answer\n"
    # and alice, a student, sees no one's home
    assert (await get_file(hub, "alice", "students"))[0] == 404
    pod = await user_pod(k8s, "tina")
    homes = {
        m.mount_path: (m.sub_path, m.read_only)
        for m in pod.spec.containers[0].volume_mounts
        if m.mount_path.startswith("/home/jovyan/students/")
    }
    assert homes == {
        "/home/jovyan/students/alice": ("alice", True),
        "/home/jovyan/students/bob": ("bob", True),
    }
    await hub.stop_server("alice")
    await hub.stop_server("tina")
