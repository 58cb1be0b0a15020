"""Rosters from the LMS decide who gets in: ClassroomLTI13Authenticator with
``trust_launch_roles = False``, ClassroomSpawner on the Kubernetes stand-in, the
local LTI platform's membership lists (NRPS) as the only roster of the course.

The course file lists no one. The tests share the hub, the stand-in and the
platform, and run in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import textwrap
import time

import pytest
import pytest_asyncio

from classroom_spawner.local.gitrepo import NOTEBOOK, lesson_repo
from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.kube import Faults, kube_process
from classroom_spawner.local.kube.testing import core_client
from classroom_spawner.local.lti import LTIPlatform, new_key, private_pem
from classroom_spawner.local.lti.browserless import launch

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

NS = "default"
CONTEXT = "canvas-ds101"


def make_lesson_repo(root):
    return lesson_repo(root, {"intro.ipynb": NOTEBOOK}, name="ds101-lessons.git")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("lti-roster-hub")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def k8s(workdir):
    async with kube_process(
        workdir / "k8s", faults=Faults(provision_delay=0.2)
    ) as standin:
        yield standin


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub_and_lms(workdir, k8s):
    course_file = workdir / "courses.yaml"
    course_file.write_text(textwrap.dedent(f"""\
            courses:
              - id: ds101
                title: Data Science 101
                image: example.org/ds101:1
                lms_contexts: [{CONTEXT}]
                lessons:
                  - url: {make_lesson_repo(workdir)}
                    target: week1
            """))
    key = new_key()
    key_file = workdir / "tool-key.pem"
    key_file.write_text(private_pem(key))
    hub = HubProcess(
        workdir=workdir / "hub",
        env={
            "KUBECONFIG": k8s.kubeconfig_path,
            "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        },
        start_timeout=120,
    )
    async with LTIPlatform(
        tool_url=hub.hub_url, tool_public_key=key.public_key()
    ) as lms:
        lms.add_course(CONTEXT, "Data Science 101")
        lms.add_member(CONTEXT, "grace", ["Instructor"])
        lms.add_member(CONTEXT, "alice", ["Learner"])
        lms.add_member(CONTEXT, "bob", ["Learner"])
        hub.config = textwrap.dedent(f"""
            c.JupyterHub.authenticator_class = "classroom-lti13"
            c.ClassroomLTI13Authenticator.update({lms.authenticator_config()!r})
            c.ClassroomLTI13Authenticator.username_key = "sub"
            c.ClassroomLTI13Authenticator.tool_private_key_file = {str(key_file)!r}
            c.ClassroomLTI13Authenticator.trust_launch_roles = False
            c.ClassroomLTI13Authenticator.nrps_sync_interval = 1
            c.ClassroomLTI13Authenticator.enable_auth_state = True
            c.ClassroomLTI13Authenticator.manage_groups = True
            c.ClassroomLTI13Authenticator.manage_roles = True
            c.ClassroomLTI13Authenticator.auth_refresh_age = 1
            c.JupyterHub.spawner_class = "classroom"
            c.JupyterHub.redirect_to_server = False
            c.ClassroomRoster.course_files = [{str(course_file)!r}]
            c.KubeSpawner.namespace = {NS!r}
            c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
            c.KubeSpawner.storage_capacity = "1Gi"
            c.KubeSpawner.start_timeout = 120
            c.KubeSpawner.http_timeout = 120
            """)
        async with hub:
            yield hub, lms
        print(hub.read_log()[-8000:])


@pytest.fixture
def hub(hub_and_lms):
    return hub_and_lms[0]


@pytest.fixture
def lms(hub_and_lms):
    lms = hub_and_lms[1]
    yield lms
    lms.tamper.clear()


async def do_launch(hub, lms, user):
    return await asyncio.to_thread(launch, lms.launch_url(CONTEXT, user), hub.hub_url)


def lms_roster(hub):
    try:
        with open(os.path.join(hub.workdir, "classroom-lms-rosters.json")) as f:
            return json.load(f)["courses"].get("ds101")
    except FileNotFoundError:
        return None


async def synced(hub, check, timeout=20):
    """Wait until the hub's saved list from the LMS passes ``check``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = lms_roster(hub)
        if entry and check(entry):
            return entry
        await asyncio.sleep(0.2)
    raise AssertionError(f"the LMS roster never got there: {lms_roster(hub)}")


async def test_first_launch_fetches_the_roster_and_admits_the_instructor(hub, lms):
    grace = await do_launch(hub, lms, "grace")
    assert grace.ok, grace.describe()
    me = grace.api("GET", "user").json()
    assert me["groups"] == ["ds101-instructors"]
    entry = lms_roster(hub)
    assert entry["members"] == {
        "alice": "student",
        "bob": "student",
        "grace": "instructor",
    }


async def test_student_added_in_the_lms_logs_in_and_starts_in_the_course(hub, lms, k8s):
    lms.add_member(CONTEXT, "dave", ["Learner"])
    await synced(
        hub, lambda e: "dave" in e["members"]
    )  # the next scheduled sync; no file changed
    dave = await do_launch(hub, lms, "dave")
    assert dave.ok, dave.describe()
    assert dave.api("GET", "user").json()["groups"] == ["ds101"]
    r = dave.api("POST", "users/dave/server", json={"profile": "ds101"})
    assert r.status_code in (201, 202), r.text
    await hub.wait_for_server("dave", timeout=180)
    async with core_client(k8s.kubeconfig_path) as v1:
        pods = await v1.list_namespaced_pod(
            NS, label_selector="hub.jupyter.org/username=dave"
        )
    assert pods.items[0].spec.containers[0].image == "example.org/ds101:1"
    await hub.stop_server("dave", timeout=120)


async def test_student_removed_in_the_lms_loses_access_at_the_next_refresh(hub, lms):
    alice = await do_launch(hub, lms, "alice")
    assert alice.ok, alice.describe()
    lms.remove_member(CONTEXT, "alice")
    try:
        await synced(hub, lambda e: "alice" not in e["members"])
        await asyncio.sleep(1.2)  # older than auth_refresh_age
        spawn = alice.api("POST", "users/alice/server", json={"profile": "ds101"})
        assert spawn.status_code == 403, spawn.text
        assert (await hub.api("GET", "users/alice")).json()["groups"] == []
        # and the next launch is refused: the LMS's list decides
        again = await do_launch(hub, lms, "alice")
        assert again.status == 403, again.describe()
    finally:
        lms.add_member(CONTEXT, "alice", ["Learner"])
    await synced(hub, lambda e: "alice" in e["members"])


async def test_platform_down_keeps_the_last_roster_and_admits_no_one_new(hub, lms):
    bob = await do_launch(hub, lms, "bob")
    assert bob.ok, bob.describe()
    lms.tamper.add("nrps_down")
    lms.remove_member(CONTEXT, "bob")
    lms.add_member(CONTEXT, "frank", ["Learner"])
    try:
        entry = await synced(hub, lambda e: e["error"])
        assert "HTTP 503" in entry["error"]
        assert "bob" in entry["members"] and "frank" not in entry["members"]
        await asyncio.sleep(1.2)
        me = bob.api("GET", "user")
        assert me.status_code == 200, me.text  # the last good list still has him
        assert me.json()["groups"] == ["ds101"]
        frank = await do_launch(hub, lms, "frank")
        assert frank.status == 403, frank.describe()  # on no list the hub could read
        assert (await hub.api("GET", "users/frank", raise_error=False)).code == 404
    finally:
        lms.tamper.discard("nrps_down")
        lms.remove_member(CONTEXT, "frank")
        lms.add_member(CONTEXT, "bob", ["Learner"])


async def test_the_hub_log_is_clean(hub):
    log = hub.read_log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
