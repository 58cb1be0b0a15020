"""The Zero to JupyterHub hub-config fixture (classroom_spawner.local.z2jh), and what
``classroom-spawner render`` gives under it for each of the chart's storage types."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from classroom_spawner.hubconfig import load_hub_config
from classroom_spawner.local.z2jh import ChartValuesError, hub_config_text, merge_values


def load(write_file, text, name="jupyterhub_config.py"):
    """The config JupyterHub would get from ``text`` (executed as a config file)."""
    return load_hub_config(write_file(name, text))


def listed(value):
    """A list trait's config value: appends to an unset list stay lazy until a class loads them."""
    return value.get_value([]) if hasattr(value, "get_value") else value


# ---- the module: what the chart sets for given values ------------------------------


def test_defaults_are_the_charts_dynamic_storage_and_limits(write_file, z2jh_config):
    c = load(write_file, z2jh_config())
    assert c.JupyterHub.spawner_class == "kubespawner.KubeSpawner"
    assert c.JupyterHub.concurrent_spawn_limit == 64
    assert c.Spawner.consecutive_failure_limit == 5
    assert c.KubeSpawner.storage_pvc_ensure is True
    assert c.KubeSpawner.storage_capacity == "10Gi"
    assert c.KubeSpawner.storage_access_modes == ["ReadWriteOnce"]
    assert (
        "pvc_name_template" not in c.KubeSpawner
    )  # null in the chart: KubeSpawner's own
    assert c.KubeSpawner.volumes == {
        "home": {
            "name": "volume-{user_server}",
            "persistentVolumeClaim": {"claimName": "{pvc_name}"},
        }
    }
    assert c.KubeSpawner.volume_mounts == {
        "home": {"name": "volume-{user_server}", "mountPath": "/home/jovyan"}
    }
    assert c.KubeSpawner.uid == 1000 and c.KubeSpawner.fs_gid == 100
    assert c.KubeSpawner.start_timeout == 300


def test_dynamic_storage_settings(write_file, z2jh_config):
    c = load(
        write_file,
        z2jh_config(
            {
                "singleuser": {
                    "storage": {
                        "capacity": "2Gi",
                        "homeMountPath": "/home/{username}",
                        "dynamic": {
                            "storageClass": "fast",
                            "pvcNameTemplate": "home-{user_server}",
                            "volumeNameTemplate": "vol-{user_server}",
                        },
                    }
                }
            }
        ),
    )
    assert c.KubeSpawner.storage_class == "fast"
    assert c.KubeSpawner.storage_capacity == "2Gi"
    assert c.KubeSpawner.pvc_name_template == "home-{user_server}"
    assert c.KubeSpawner.volumes["home"]["name"] == "vol-{user_server}"
    assert c.KubeSpawner.volume_mounts["home"] == {
        "name": "vol-{user_server}",
        "mountPath": "/home/{username}",
    }


def test_static_storage_mounts_one_claim_with_a_subpath_and_ensures_no_pvc(
    write_file, z2jh_config
):
    values = {
        "singleuser": {"storage": {"type": "static", "static": {"pvcName": "home-nfs"}}}
    }
    c = load(write_file, z2jh_config(values))
    assert "storage_pvc_ensure" not in c.KubeSpawner
    assert "storage_capacity" not in c.KubeSpawner
    assert c.KubeSpawner.volumes == {
        "home": {"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}
    }
    assert c.KubeSpawner.volume_mounts == {
        "home": {"name": "home", "mountPath": "/home/jovyan", "subPath": "{username}"}
    }
    values["singleuser"]["storage"]["static"]["subPath"] = "homes/{username}"
    c = load(write_file, z2jh_config(values))
    assert c.KubeSpawner.volume_mounts["home"]["subPath"] == "homes/{username}"
    with pytest.raises(ChartValuesError, match="static.pvcName"):
        hub_config_text({"singleuser": {"storage": {"type": "static"}}})


def test_no_storage_and_extra_volumes_as_lists_or_dicts(write_file, z2jh_config):
    volume = {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}
    mount = {"name": "shared", "mountPath": "/srv/shared", "readOnly": True}
    as_lists = {
        "singleuser": {
            "storage": {
                "type": "none",
                "extraVolumes": [volume],
                "extraVolumeMounts": [mount],
            }
        }
    }
    c = load(write_file, z2jh_config(as_lists))
    assert "storage_pvc_ensure" not in c.KubeSpawner
    assert c.KubeSpawner.volumes == {"shared": volume}
    assert c.KubeSpawner.volume_mounts == {"0-shared": mount}
    as_dicts = {
        "singleuser": {
            "storage": {
                "type": "none",
                "extraVolumes": {"10-shared": volume},
                "extraVolumeMounts": {"10-shared": mount},
            }
        }
    }
    c = load(write_file, z2jh_config(as_dicts))
    assert c.KubeSpawner.volumes == {"10-shared": volume}
    assert c.KubeSpawner.volume_mounts == {"10-shared": mount}
    with pytest.raises(
        ChartValuesError, match=r"extraVolumes\[0\]: every entry needs a name"
    ):
        hub_config_text(
            {"singleuser": {"storage": {"extraVolumes": [{"emptyDir": {}}]}}}
        )
    with pytest.raises(
        ChartValuesError, match="'nfs' is not one of dynamic, static, none"
    ):
        hub_config_text({"singleuser": {"storage": {"type": "nfs"}}})


def test_cloud_metadata_block_is_appended_after_the_admins_init_containers(
    write_file, z2jh_config
):
    prepare = {"name": "prepare-home", "image": "busybox:1", "command": ["true"]}
    values = {
        "singleuser": {
            "initContainers": [prepare],
            "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.1.1"},
        }
    }
    c = load(write_file, z2jh_config(values))
    first, block = listed(c.KubeSpawner.init_containers)
    assert first == prepare
    # a kubernetes_asyncio model, as the chart builds it
    assert type(block).__name__ == "V1Container"
    assert block.name == "block-cloud-metadata"
    assert block.command == [
        "iptables",
        "-A",
        "OUTPUT",
        "-d",
        "169.254.1.1",
        "-j",
        "DROP",
    ]
    assert block.security_context.privileged is True
    assert block.security_context.capabilities.add == ["NET_ADMIN"]
    values["singleuser"]["cloudMetadata"]["blockWithIptables"] = False
    c = load(write_file, z2jh_config(values))
    assert listed(c.KubeSpawner.init_containers) == [prepare]


def test_extra_files_are_one_secret_volume_with_subpath_mounts(write_file, z2jh_config):
    values = {
        "singleuser": {
            "extraFiles": {
                "motd": {"mountPath": "/etc/motd", "stringData": "hello"},
                "settings": {
                    "mountPath": "/etc/x/settings.json",
                    "data": {},
                    "mode": 0o400,
                },
            }
        }
    }
    c = load(write_file, z2jh_config(values))
    assert c.KubeSpawner.volumes["files"]["secret"]["items"] == [
        {"key": "motd", "path": "motd"},
        {"key": "settings", "path": "settings", "mode": 0o400},
    ]
    assert c.KubeSpawner.volume_mounts["files-settings"] == {
        "mountPath": "/etc/x/settings.json",
        "subPath": "settings",
        "name": "files",
    }
    assert "home" in c.KubeSpawner.volumes  # added to, not replacing, the home volume


def test_idle_culler_service_and_role(write_file, z2jh_config):
    # the launcher's own service is set before the chart's text; it must stay
    text = "c.JupyterHub.services = [{'name': 'launcher'}]\n" + z2jh_config()
    c = load(write_file, text)
    launcher, culler = listed(c.JupyterHub.services)
    assert launcher == {"name": "launcher"}
    assert culler["name"] == "jupyterhub-idle-culler"
    assert culler["command"] == [
        "python3",
        "-m",
        "jupyterhub_idle_culler",
        "--timeout=3600",
        "--cull-every=600",
        "--concurrency=10",
    ]
    (role,) = listed(c.JupyterHub.load_roles)
    assert role["services"] == ["jupyterhub-idle-culler"]
    assert "admin:users" not in role["scopes"]
    c = load(
        write_file,
        z2jh_config(
            {
                "cull": {
                    "users": True,
                    "adminUsers": False,
                    "timeout": 60,
                    "maxAge": 7200,
                }
            },
            culler_command=[sys.executable, "-m", "jupyterhub_idle_culler"],
        ),
    )
    (culler,) = listed(c.JupyterHub.services)
    assert culler["command"][0] == sys.executable
    assert {
        "--timeout=60",
        "--cull-users",
        "--cull-admin-users=false",
        "--max-age=7200",
    } <= set(culler["command"])
    assert "admin:users" in listed(c.JupyterHub.load_roles)[0]["scopes"]
    c = load(write_file, z2jh_config({"cull": {"enabled": False}}))
    assert "services" not in c.JupyterHub


def test_admin_config_comes_last_and_extra_config_in_key_order(write_file, z2jh_config):
    values = {
        "hub": {
            "config": {
                "KubeSpawner": {"start_timeout": 600},
                "JupyterHub": {"admin_access": True},
            },
            "extraConfig": {
                "20-later": "c.KubeSpawner.start_timeout = 900",
                "10-classroom": 'c.JupyterHub.spawner_class = "classroom"',
            },
        }
    }
    text = z2jh_config(values, extra="c.KubeSpawner.namespace = 'mine'\n")
    assert text.index("10-classroom") < text.index("20-later")
    c = load(write_file, text)
    assert c.JupyterHub.spawner_class == "classroom"
    assert c.JupyterHub.admin_access is True
    assert c.KubeSpawner.start_timeout == 900
    assert c.KubeSpawner.namespace == "mine"


def test_values_merge_like_helm(z2jh_config):
    merged = merge_values(
        {
            "singleuser": {
                "storage": {"dynamic": {"storageAccessModes": ["ReadWriteMany"]}}
            }
        }
    )
    # mappings merge key by key, lists are replaced
    assert merged["singleuser"]["storage"]["dynamic"] == {
        "storageClass": None,
        "pvcNameTemplate": None,
        "volumeNameTemplate": "volume-{user_server}",
        "storageAccessModes": ["ReadWriteMany"],
    }
    assert merged["singleuser"]["storage"]["type"] == "dynamic"
    with pytest.raises(
        ChartValuesError, match="singleuser.storage: expected a mapping"
    ):
        merge_values({"singleuser": {"storage": "static"}})


# ---- classroom-spawner render under the chart's config -----------------------------

COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    image: quay.io/jupyter/scipy-notebook:2025-06-02
    lessons:
      - url: https://github.com/example/ds101-lessons.git
    students: [ada]
  - id: phys210
    title: Computational Physics
    image: quay.io/jupyter/minimal-notebook:2025-06-02
    lessons:
      - url: https://github.com/example/phys210-lessons.git
    kubespawner_override:
      volumes:
        - name: datasets
          persistentVolumeClaim: {claimName: phys210-datasets}
      volume_mounts:
        - name: datasets
          mountPath: /srv/datasets
          readOnly: true
    students: [ada]
"""

PREPARE_HOME = {"name": "prepare-home", "image": "busybox:1", "command": ["true"]}

STORAGE = {
    "dynamic": {"type": "dynamic"},
    "static": {"type": "static", "static": {"pvcName": "home-nfs"}},
    "none": {"type": "none"},
}


def render(tmp_path, values, profile="ds101", user="ada"):
    """``classroom-spawner render --json`` under the chart's config for ``values``."""
    courses = tmp_path / "courses.yaml"
    courses.write_text(COURSES)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(hub_config_text(values) + textwrap.dedent(f"""
            # hub.extraConfig of a classroom-spawner admin
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{str(courses)!r}]
            """))
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    result = subprocess.run(
        [exe, "render", user, "--profile", profile, "--json", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    return {i["kind"]: i for i in items}


def values_for(kind, **singleuser):
    return {
        "singleuser": {
            "storage": dict(STORAGE[kind]),
            "initContainers": [PREPARE_HOME],
            **singleuser,
        }
    }


def init_names(pod):
    return [c["name"] for c in pod["spec"].get("initContainers") or []]


def test_render_dynamic_storage_gives_the_pvc_the_chart_mounts(tmp_path):
    docs = render(tmp_path, values_for("dynamic"))
    pvc, pod = docs["PersistentVolumeClaim"], docs["Pod"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    (home,) = (v for v in pod["spec"]["volumes"] if v.get("persistentVolumeClaim"))
    assert home == {
        "name": "volume-ada",
        "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]},
    }
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "volume-ada", "mountPath": "/home/jovyan"} in mounts


@pytest.mark.parametrize("kind", ["static", "none"])
def test_render_shared_or_no_storage_gives_no_pvc(tmp_path, kind):
    docs = render(tmp_path, values_for(kind))
    assert "PersistentVolumeClaim" not in docs
    volumes = docs["Pod"]["spec"].get("volumes") or []
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in volumes
        if "persistentVolumeClaim" in v
    ]
    assert claims == (["home-nfs"] if kind == "static" else [])


def test_render_static_storage_mounts_the_users_subpath(tmp_path):
    pod = render(tmp_path, values_for("static"))["Pod"]
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "home", "mountPath": "/home/jovyan", "subPath": "ada"} in mounts


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_render_lesson_sync_runs_after_the_metadata_block_and_the_admins_init_containers(
    tmp_path, kind
):
    pod = render(tmp_path, values_for(kind))["Pod"]
    assert init_names(pod) == ["prepare-home", "block-cloud-metadata", "lesson-sync"]
    sync = pod["spec"]["initContainers"][-1]
    home = [
        m
        for m in pod["spec"]["containers"][0]["volumeMounts"]
        if m["mountPath"] == "/home/jovyan"
    ]
    assert (
        sync["volumeMounts"][:1] == home
    )  # then the sync program's own read-only mount


def test_render_no_storage_syncs_no_lessons_and_keeps_the_metadata_block(tmp_path):
    # nothing the sync could write to that the notebook would see
    pod = render(tmp_path, values_for("none"))["Pod"]
    assert init_names(pod) == ["prepare-home", "block-cloud-metadata"]


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_render_a_courses_volume_override_keeps_the_home_volume(tmp_path, kind):
    pod = render(tmp_path, values_for(kind), profile="phys210")["Pod"]
    names = {v["name"] for v in pod["spec"]["volumes"]}
    home = "volume-ada" if kind == "dynamic" else "home"
    assert {home, "datasets"} <= names
    mounts = {
        m["mountPath"]: m["name"] for m in pod["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts == {"/home/jovyan": home, "/srv/datasets": "datasets"}


def test_render_home_mount_path_given_as_a_template_still_gets_the_lessons(tmp_path):
    values = values_for("static")
    values["singleuser"]["storage"]["homeMountPath"] = "/home/{username}"
    pod = render(tmp_path, values)["Pod"]
    assert {"name": "home", "mountPath": "/home/ada", "subPath": "ada"} in (
        pod["spec"]["containers"][0]["volumeMounts"]
    )
    assert "lesson-sync" in init_names(pod)
