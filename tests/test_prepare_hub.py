"""A prepared course in a real JupyterHub on the Kubernetes stand-in: a student whose
volume and lessons were prepared with `classroom-spawner prepare` is a returning user
at class time (no first-spawn slot) and the lesson sync clones nothing."""

import asyncio
import os
import sys
import textwrap

import pytest
import pytest_asyncio

from classroom_spawner.local.gitrepo import lesson_repo as make_lesson_repo
from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.kube import Faults, KubeletConfig, kube_process
from classroom_spawner.local.kube.testing import core_client

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

NS = "default"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("prepare-hub")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def k8s(workdir):
    faults = Faults(provision_delay=0.5)
    async with kube_process(
        workdir / "k8s", faults=faults, kubelet=KubeletConfig(singleuser="light")
    ) as standin:
        yield standin


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(k8s, workdir):
    lessons = make_lesson_repo(workdir)
    courses = workdir / "courses.yaml"
    courses.write_text(textwrap.dedent(f"""\
            courses:
              - id: lecture
                title: The Lecture
                image: example.org/lecture:1
                lessons: [{{url: {lessons}, target: lecture-lessons}}]
                students: [ann, ben]
              - id: walkin
                title: Not prepared
                image: example.org/lecture:1
                lessons: [{{url: {lessons}, target: lecture-lessons}}]
                students: [cal]
            """))
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.JupyterHub.spawner_class = "classroom"
        c.JupyterHub.concurrent_spawn_limit = 0
        c.ClassroomRoster.course_files = [{str(courses)!r}]
        c.ClassroomRoster.check_interval = 0
        c.ClassroomSpawner.first_spawn_limit = 2
        c.KubeSpawner.namespace = {NS!r}
        c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
        c.KubeSpawner.storage_capacity = "1Gi"
        c.KubeSpawner.start_timeout = 120
        c.KubeSpawner.http_timeout = 120
        """)
    async with HubProcess(
        config=config,
        workdir=workdir / "hub",
        env={"KUBECONFIG": k8s.kubeconfig_path},
        start_timeout=120,
    ) as hub:
        for name in ("ann", "ben", "cal"):
            await hub.create_user(name)
        yield hub


async def lesson_sync_message(k8s, user):
    """The termination message of the lesson sync in USER's notebook pod."""
    async with core_client(k8s.kubeconfig_path) as v1:
        pod = await v1.read_namespaced_pod(f"jupyter-{user}", NS)
    for status in pod.status.init_container_statuses or []:
        if status.name == "lesson-sync":
            return status.state.terminated.message
    raise AssertionError(f"no lesson-sync init container in jupyter-{user}")


async def test_a_prepared_student_is_a_returning_user_and_clones_nothing(hub, k8s):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "classroom_spawner.cli", "prepare", "-f", hub.config_path,
        "lecture", "--lessons",
        env={**os.environ, "KUBECONFIG": str(k8s.kubeconfig_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await asyncio.wait_for(proc.communicate(), 300))[0].decode()
    assert proc.returncode == 0, out
    assert "created: 2, already there: 0, failed: 0" in out, out
    assert "ann (lecture): volume created, lessons lecture-lessons: cloned" in out, out

    assert await hub.queue_admitted() == 0
    await hub.start_server("ann", options={"profile": "lecture"}, timeout=180)
    # no first-spawn slot: the volume was there and Bound
    assert await hub.queue_admitted() == 0
    message = await lesson_sync_message(k8s, "ann")
    assert "lecture-lessons\tup to date" in message, message
    assert "cloned" not in message
    await hub.stop_server("ann", timeout=120)

    # the same hub counts a first spawn of someone not prepared
    await hub.start_server("cal", options={"profile": "walkin"}, timeout=180)
    assert await hub.queue_admitted() == 1
    assert "cloned" in await lesson_sync_message(k8s, "cal")
    await hub.stop_server("cal", timeout=120)
