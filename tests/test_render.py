"""The manifests a user would get: built by the spawner's own code, valid for Kubernetes."""

import base64
import json
import logging
import os
import subprocess
import sys
import textwrap

import kubernetes_validate
import pytest
from traitlets import TraitError
from traitlets.config import Config

from classroom_spawner.lessons.initcontainer import (
    script_secret,
    script_secret_name,
    sync_script,
)
from classroom_spawner.offline import render_manifests

K8S_VERSION = kubernetes_validate.latest_version()

USERS = [
    "ada@uni.example.edu",
    "Grace.Hopper@Uni.Example.edu",
    "o'brien+lab@uni.example.edu",
    "élodie.dupré",
    "x",
    "user_with.many--dashes--and-a-very-long-name-that-goes-on-and-on@sub.dept.uni.example.edu",
]


@pytest.fixture
def classroom_config(write_file):
    course_file = write_file(
        "courses.yaml",
        textwrap.dedent("""\
            courses:
              - id: ds101
                title: Data Science 101
                image: quay.io/jupyter/scipy-notebook:2025-06-02
                cpu_guarantee: 0.5
                cpu_limit: 2
                mem_guarantee: 1G
                mem_limit: 2G
                lessons:
                  - url: https://github.com/example/ds101-lessons.git
                    ref: main
                  - url: git@github.com:example/ds101-private.git
                    target: private/notes
                    depth: 1
                students: [{users}]
              - id: phys210
                title: Computational Physics
                image: quay.io/jupyter/minimal-notebook:2025-06-02
                mem_limit: 4G
                kubespawner_override:
                  node_selector: {{pool: physics}}
                  extra_labels: {{course: phys210}}
                students: [{users}]
            """).format(users=", ".join(json.dumps(u) for u in USERS)),
    )
    c = Config()
    c.ClassroomRoster.course_files = [course_file]
    c.KubeSpawner.namespace = "classroom"
    return c


def validate(manifest):
    # strict: unknown fields are errors too, as a real API server would reject them
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", ["ds101", "phys210"])
async def test_rendered_manifests_are_valid_kubernetes(classroom_config, user, profile):
    manifests = await render_manifests(classroom_config, user, profile=profile)
    assert manifests["profile"] == profile
    validate(manifests["pvc"])
    validate(manifests["pod"])


async def test_pvc_is_10gi_and_mounted_as_home(classroom_config):
    manifests = await render_manifests(classroom_config, "ada@uni.example.edu")
    pvc, pod = manifests["pvc"], manifests["pod"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    claim = pvc["metadata"]["name"]
    (volume,) = (v for v in pod["spec"]["volumes"] if v.get("persistentVolumeClaim"))
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    (mount,) = pod["spec"]["containers"][0]["volumeMounts"]
    assert (mount["name"], mount["mountPath"]) == (volume["name"], "/home/jovyan")


async def test_course_settings_reach_the_pod(classroom_config):
    pod = (await render_manifests(classroom_config, "x", profile="phys210"))["pod"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "quay.io/jupyter/minimal-notebook:2025-06-02"
    assert container["resources"]["limits"]["memory"] == 4 * 1024**3
    assert pod["spec"]["nodeSelector"] == {"pool": "physics"}
    assert pod["metadata"]["labels"]["course"] == "phys210"
    pod = (await render_manifests(classroom_config, "x", profile="ds101"))["pod"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "quay.io/jupyter/scipy-notebook:2025-06-02"
    assert container["resources"]["requests"]["cpu"] == 0.5


async def test_storage_settings_are_configurable(classroom_config):
    classroom_config.KubeSpawner.storage_capacity = "20Gi"
    classroom_config.KubeSpawner.storage_class = "fast-ssd"
    classroom_config.KubeSpawner.storage_access_modes = ["ReadWriteMany"]
    pvc = (await render_manifests(classroom_config, "x"))["pvc"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    validate(pvc)


async def test_volumes_are_not_deleted_with_users(classroom_config):
    from classroom_spawner.offline import build_spawner

    spawner = await build_spawner(classroom_config, "x")
    assert spawner.delete_pvc is False


def test_render_cli_prints_valid_json_and_yaml(classroom_config, tmp_path):
    config_file = tmp_path / "jupyterhub_config.py"
    config_file.write_text(
        f"c.ClassroomRoster.course_files = {classroom_config.ClassroomRoster.course_files!r}\n"
        "c.KubeSpawner.namespace = 'classroom'\n"
    )
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config: render must not need a cluster
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    result = subprocess.run(
        [
            exe,
            "render",
            "élodie.dupré",
            "--profile",
            "phys210",
            "--json",
            "-f",
            str(config_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    assert [i["kind"] for i in items] == ["PersistentVolumeClaim", "Pod"]
    for item in items:
        validate(item)
    result = subprocess.run(
        [exe, "render", "x", "-f", str(config_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    import yaml

    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "Pod"]
    assert list(scratch.iterdir()) == []  # the stand-in kubeconfig is gone again


def test_render_cli_refuses_another_courses_profile(classroom_config, tmp_path):
    config_file = tmp_path / "jupyterhub_config.py"
    other = tmp_path / "other.yaml"
    other.write_text("courses:\n  - id: secret\n    students: [someone]\n")
    files = classroom_config.ClassroomRoster.course_files + [str(other)]
    config_file.write_text(f"c.ClassroomRoster.course_files = {files!r}\n")
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    result = subprocess.run(
        [exe, "render", "x", "--profile", "secret", "-f", str(config_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "profile 'secret' is not available to you" in result.stderr


async def test_lesson_sync_runs_as_the_notebook_user_on_the_home_volume(
    classroom_config,
):
    pod = (
        await render_manifests(classroom_config, "ada@uni.example.edu", profile="ds101")
    )["pod"]
    (sync,) = pod["spec"]["initContainers"]
    notebook = pod["spec"]["containers"][0]
    assert sync["name"] == "lesson-sync"
    assert sync["image"] == notebook["image"]  # nothing extra to pull
    for key in ("runAsUser", "runAsGroup"):
        assert sync["securityContext"][key] == notebook["securityContext"][key]
    home, program = sync["volumeMounts"]
    assert [home] == notebook["volumeMounts"]
    # the program comes read-only from its Secret, not in the pod spec; no shell anywhere
    assert program == {
        "name": "lesson-sync-program",
        "mountPath": "/opt/classroom-lesson-sync",
        "readOnly": True,
    }
    assert sync["command"] == ["python3", "-I", "/opt/classroom-lesson-sync/sync.py"]
    (volume,) = (
        v for v in pod["spec"]["volumes"] if v["name"] == "lesson-sync-program"
    )
    assert volume["secret"]["secretName"] == script_secret_name()
    job = json.loads(
        next(e["value"] for e in sync["env"] if e["name"] == "CLASSROOM_LESSONS")
    )
    assert [(j["target"], j["ref"], j["depth"]) for j in job] == [
        ("ds101-lessons", "main", None),
        ("private/notes", "", 1),  # "": the remote's default branch
    ]
    # a course without lessons gets no init container
    pod = (
        await render_manifests(
            classroom_config, "ada@uni.example.edu", profile="phys210"
        )
    )["pod"]
    assert not pod["spec"].get("initContainers")


async def test_lesson_token_comes_from_a_secret_never_the_spec(classroom_config):
    classroom_config.ClassroomSpawner.lesson_token_secret = "lesson-git-token"
    pod = (await render_manifests(classroom_config, "x", profile="ds101"))["pod"]
    validate(pod)
    (sync,) = pod["spec"]["initContainers"]
    (token,) = (e for e in sync["env"] if e.get("valueFrom"))
    assert token["valueFrom"]["secretKeyRef"]["name"] == "lesson-git-token"
    assert "value" not in token


async def test_a_pod_with_lessons_is_a_few_kilobytes(classroom_config):
    pod = (
        await render_manifests(classroom_config, "ada@uni.example.edu", profile="ds101")
    )["pod"]
    size = len(json.dumps(pod, separators=(",", ":")))
    print(f"pod with lessons: {size} bytes of JSON")
    assert size <= 8 * 1024
    # and with the program in the command, as before: about 50 KB more
    classroom_config.ClassroomSpawner.lesson_sync_program_secret = False
    pod = (
        await render_manifests(classroom_config, "ada@uni.example.edu", profile="ds101")
    )["pod"]
    validate(pod)
    (sync,) = pod["spec"]["initContainers"]
    assert (
        sync["command"][:3] == ["python3", "-I", "-c"]
        and len(sync["command"][3]) > 30_000
    )
    assert not [v for v in pod["spec"]["volumes"] if v["name"] == "lesson-sync-program"]


def test_the_program_secret_is_a_valid_secret_named_by_the_programs_version():
    secret = script_secret()
    validate(secret)
    assert secret["metadata"]["name"] == script_secret_name()
    assert base64.b64decode(secret["data"]["sync.py"]).decode() == sync_script()


async def test_lesson_sync_runs_after_the_hubs_own_init_containers(classroom_config):
    # the chart's block-cloud-metadata, then an admin's container that prepares the home
    classroom_config.KubeSpawner.init_containers = [
        {"name": "block-cloud-metadata", "image": "busybox:1", "command": ["true"]},
        {"name": "prepare-home", "image": "busybox:1", "command": ["true"]},
    ]
    pod = (await render_manifests(classroom_config, "x", profile="ds101"))["pod"]
    validate(pod)
    names = [c["name"] for c in pod["spec"]["initContainers"]]
    assert names == ["block-cloud-metadata", "prepare-home", "lesson-sync"]


async def test_lesson_sync_resources_and_token_user_name_are_settings(classroom_config):
    classroom_config.ClassroomSpawner.lesson_sync_resources = {
        "limits": {"cpu": "2", "memory": "2Gi"}
    }
    classroom_config.ClassroomSpawner.lesson_token_secret = "lesson-git-token"
    classroom_config.ClassroomSpawner.lesson_token_username = "gitlab+deploy-token-42"
    pod = (await render_manifests(classroom_config, "x", profile="ds101"))["pod"]
    validate(pod)
    (sync,) = pod["spec"]["initContainers"]
    assert sync["resources"] == {"limits": {"cpu": "2", "memory": "2Gi"}}
    env = {e["name"]: e.get("value") for e in sync["env"]}
    assert env["CLASSROOM_GIT_USERNAME"] == "gitlab+deploy-token-42"
    classroom_config.ClassroomSpawner.lesson_sync_resources = {"limit": {"cpu": "2"}}
    with pytest.raises(TraitError, match="lesson_sync_resources"):
        await render_manifests(classroom_config, "x", profile="ds101")


@pytest.mark.parametrize(
    "start_timeout, expected", [(300, "120"), (60, "30"), (1, "1")]
)
async def test_lesson_sync_gets_at_most_half_of_the_start_timeout(
    classroom_config, start_timeout, expected
):
    classroom_config.KubeSpawner.start_timeout = start_timeout
    pod = (await render_manifests(classroom_config, "x", profile="ds101"))["pod"]
    (sync,) = pod["spec"]["initContainers"]
    env = {e["name"]: e.get("value") for e in sync["env"]}
    assert env["CLASSROOM_SYNC_TIMEOUT"] == expected


async def test_an_admin_profile_without_a_slug_can_be_started(classroom_config):
    classroom_config.ClassroomSpawner.admin_profiles = [
        {
            "display_name": "Admin: large server",
            "kubespawner_override": {"mem_limit": "32G"},
        }
    ]
    manifests = await render_manifests(
        classroom_config, "root", profile="admin-large-server", admin=True
    )
    validate(manifests["pod"])
    assert (
        manifests["pod"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        == 32 * 1024**3
    )


async def test_unusable_admin_profiles_are_a_config_error(classroom_config):
    classroom_config.ClassroomSpawner.admin_profiles = [{"slug": "big"}]
    with pytest.raises(
        TraitError, match=r"admin_profiles: entry 1 needs a display_name"
    ):
        await render_manifests(classroom_config, "root", admin=True)


async def test_a_profile_list_in_the_config_is_ignored_with_one_warning(
    classroom_config, monkeypatch, caplog
):
    from classroom_spawner.offline import build_spawner
    from classroom_spawner.spawner import ClassroomSpawner

    monkeypatch.setattr(ClassroomSpawner, "_profile_list_warned", False)
    classroom_config.KubeSpawner.profile_list = [
        {"display_name": "Z2JH default", "slug": "default"}
    ]
    with caplog.at_level(logging.WARNING):
        for user in ("ada@uni.example.edu", "x"):
            spawner = await build_spawner(classroom_config, user)
            profiles = await spawner.classroom_profiles()
            assert [p["slug"] for p in profiles] == ["ds101", "phys210"]
    assert caplog.text.count("profile_list is set in the config") == 1
