"""The lesson sync program's Secret, made by the hub once per namespace, on the stand-in."""

import base64
import logging

import pytest

from classroom_spawner.lessons import program
from classroom_spawner.lessons.initcontainer import script_secret_name, sync_script
from classroom_spawner.local.kube import Faults, KubeStandin
from classroom_spawner.local.kube.testing import core_client

log = logging.getLogger("test-program")


@pytest.fixture(autouse=True)
def fresh_hub(monkeypatch):
    # every test is a new hub process: nothing remembered from another one
    monkeypatch.setattr(program, "_ATTEMPTS", {})


async def test_the_secret_is_made_once_and_holds_the_program(tmp_path):
    async with (
        KubeStandin(tmp_path / "k8s") as k8s,
        core_client(k8s.kubeconfig_path) as api,
    ):
        assert await program.ensure_program_secret(api, "default", timeout=5, log=log)
        before = k8s.request_count
        # every later start of the namespace: no request at all
        assert await program.ensure_program_secret(api, "default", timeout=5, log=log)
        assert k8s.request_count == before
        assert program.program_secret("default") == script_secret_name()
        secret = await api.read_namespaced_secret(script_secret_name(), "default")
        assert base64.b64decode(secret.data["sync.py"]).decode() == sync_script()


async def test_a_secret_another_hub_made_is_used(tmp_path):
    async with (
        KubeStandin(tmp_path / "k8s") as k8s,
        core_client(k8s.kubeconfig_path) as api,
    ):
        assert await program.ensure_program_secret(api, "default", timeout=5, log=log)
        program._ATTEMPTS.clear()  # a second hub (or this one after a restart): 409, fine
        assert await program.ensure_program_secret(api, "default", timeout=5, log=log)
        assert program.program_secret("default") == script_secret_name()


async def test_when_it_cannot_be_made_the_program_rides_in_the_command(
    tmp_path, caplog
):
    faults = Faults(
        api_error_rate=1.0, api_error_codes=[500]
    )  # the API refuses every request
    async with (
        KubeStandin(tmp_path / "k8s", faults=faults) as k8s,
        core_client(k8s.kubeconfig_path) as api,
    ):
        with caplog.at_level(logging.WARNING):
            assert not await program.ensure_program_secret(
                api, "default", timeout=5, log=log
            )
        assert program.program_secret("default") is None
        assert (
            "Could not create the Secret default/classroom-lesson-sync-" in caplog.text
        )
        assert "HTTP 500" in caplog.text
        # the next start with lessons tries again, and succeeds once it may
        k8s.faults.update({"api_error_rate": 0.0})
        assert await program.ensure_program_secret(api, "default", timeout=5, log=log)
        assert program.program_secret("default") == script_secret_name()
