"""Idle culling as Zero to JupyterHub runs it (the chart's jupyterhub-idle-culler service
and role, from the z2jh_config fixture), in a real JupyterHub on the Kubernetes stand-in:
a culled server's volume stays, and its user is a returning user next time (no first
spawn, so never queued as one)."""

import asyncio
import sys
import time

import pytest
import pytest_asyncio

from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.kube import StandinProcess
from classroom_spawner.local.kube.testing import core_client

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

NS = "default"

COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    image: example.org/ds101:1
    students: [ada]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory, z2jh_config):
    workdir = tmp_path_factory.mktemp("z2jh-culling")
    courses = workdir / "courses.yaml"
    courses.write_text(COURSES)
    values = {
        "hub": {"concurrentSpawnLimit": 0},
        "singleuser": {
            # the stand-in runs containers as local processes: no iptables
            "cloudMetadata": {"blockWithIptables": False},
            "storage": {"capacity": "1Gi"},
            "startTimeout": 120,
        },
        # the chart's culler, culling after 5 idle seconds instead of an hour
        "cull": {"timeout": 5, "every": 2},
    }
    config = z2jh_config(
        values,
        namespace=NS,
        culler_command=[sys.executable, "-m", "jupyterhub_idle_culler"],
        extra=f"""
            # the admin's hub.extraConfig
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{str(courses)!r}]
            c.ClassroomSpawner.first_spawn_limit = 5
            c.KubeSpawner.http_timeout = 120
            """,
    )
    async with StandinProcess(workdir / "k8s") as k8s:
        async with HubProcess(
            config=config,
            workdir=workdir / "hub",
            env={"KUBECONFIG": k8s.kubeconfig_path},
            start_timeout=120,
        ) as hub:
            hub.k8s = k8s
            await hub.create_user("ada")
            yield hub


async def claims(hub):
    async with core_client(hub.k8s.kubeconfig_path) as v1:
        return [
            (p.metadata.name, p.status.phase)
            for p in (await v1.list_namespaced_persistent_volume_claim(NS)).items
        ]


async def wait_until_culled(hub, user, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = (await hub.api("GET", f"users/{user}")).json()
        if not model["servers"]:
            return
        await asyncio.sleep(1)
    raise AssertionError(
        f"{user}'s server was not culled within {timeout} s:\n{hub.read_log()[-4000:]}"
    )


async def test_the_culler_runs_as_the_chart_configures_it(hub):
    services = (await hub.api("GET", "services")).json()
    assert "jupyterhub-idle-culler" in services
    assert services["jupyterhub-idle-culler"]["roles"] == [
        "jupyterhub-idle-culler"
    ], services


async def test_a_culled_server_keeps_its_volume_and_comes_back_as_a_returning_user(hub):
    await hub.start_server("ada", timeout=180)
    assert await hub.queue_admitted() == 1  # the first start was a first spawn
    (claim,) = await claims(hub)
    assert claim[1] == "Bound"

    await wait_until_culled(hub, "ada")
    assert "jupyterhub-idle-culler" in hub.read_log()
    assert await claims(hub) == [claim]  # the volume stays

    await hub.start_server("ada", timeout=180)
    assert await hub.queue_admitted() == 1  # not a first spawn again: never queued
    assert await claims(hub) == [claim]
    await hub.stop_server("ada", timeout=120)
