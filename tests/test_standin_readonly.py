"""The kubelet's read-only and nested mounts, NFS volumes and ReadWriteMany claims,
on the stand-in and (``CLASSROOM_KUBE=real``) on the real control plane."""

import glob
import json
import os
import secrets
import sys

import pytest
from tornado.httpclient import AsyncHTTPClient

from classroom_spawner.local.kube import KubeletConfig, KubeStandin, kube_backend
from classroom_spawner.local.kube.containers import CONTAINER_ENV
from classroom_spawner.local.kube.procutil import processes_with_env
from classroom_spawner.local.kube.testing import (
    core_client,
    marked_processes,
    pod_manifest,
    pvc_manifest,
    wait_for,
)

NS = "default"
ROFS = "Read-only file system"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="bind mounts need root (CI runs as root)"
)


def _backend(state_dir, kubelet):
    if kube_backend() == "real":
        from classroom_spawner.local.kube.realkube import RealKube

        return RealKube(state_dir, kubelet=kubelet)
    return KubeStandin(state_dir, kubelet=kubelet)


def host_mounts_under(path):
    """Lines of the test process's (the host's) mount table that name ``path``."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(path) in line]


async def start(tmp_path, **kubelet):
    config = KubeletConfig(backoff_base=0.2, backoff_max=1.0, **kubelet)
    k8s = _backend(tmp_path / "k8s", config)
    await k8s.__aenter__()
    return k8s


@pytest.fixture
async def k8s(tmp_path):
    k8s = await start(tmp_path)
    try:
        yield k8s
    finally:
        await k8s.__aexit__(None, None, None)
    assert marked_processes(k8s.id) == []
    assert host_mounts_under(tmp_path) == []


@pytest.fixture
async def v1(k8s):
    async with core_client(k8s.kubeconfig_path) as api:
        yield api


def rwx_claim(name):
    pvc = pvc_manifest(name)
    pvc["spec"]["accessModes"] = ["ReadWriteMany"]
    return pvc


async def bound_volume_dir(k8s, v1, claim):
    async def bound():
        pvc = await v1.read_namespaced_persistent_volume_claim(claim, NS)
        return pvc if pvc.status.phase == "Bound" else None

    pvc = await wait_for(bound, 60, message=f"claim {claim} never bound")
    return os.path.join(k8s.state_dir, "volumes", pvc.spec.volume_name)


def pod(name, script, volumes, mounts, restart="Never"):
    manifest = pod_manifest(
        name,
        ["sh", "-c", script],
        volumes=volumes,
        mounts=mounts,
        restart_policy=restart,
        grace=0,
    )
    manifest["spec"]["containers"][0][
        "terminationMessagePolicy"
    ] = "FallbackToLogsOnError"
    return manifest


def logs(k8s, name):
    """The main container's first log, read from the node's disk (the real
    control plane's node agent serves no ``pods/log``)."""
    pattern = os.path.join(k8s.state_dir, "pods", f"{NS}_{name}_*", "containers")
    out = ""
    for path in glob.glob(os.path.join(pattern, "main", "0.log")):
        with open(path, errors="replace") as f:
            out += f.read()
    return out


async def log_has(k8s, name, *texts, timeout=60):
    def check():
        out = logs(k8s, name)
        return out if all(t in out for t in texts) else None

    return await wait_for(check, timeout, message=f"log of {name} never showed {texts}")


async def terminated(v1, name, timeout=60):
    async def check():
        p = await v1.read_namespaced_pod(name, NS)
        st = (p.status.container_statuses or [None])[0]
        return st.state.terminated if st and st.state.terminated else None

    return await wait_for(check, timeout, message=f"pod {name} never terminated")


async def delete_and_wait(v1, *names):
    for name in names:
        await v1.delete_namespaced_pod(name, NS, grace_period_seconds=0)

    async def gone():
        listed = await v1.list_namespaced_pod(NS)
        return not any(p.metadata.name in names for p in listed.items)

    await wait_for(gone, 60, message=f"pods {names} never went away")


async def container_pid(k8s, v1, name):
    p = await v1.read_namespaced_pod(name, NS)
    marker = f"{CONTAINER_ENV}={k8s.id}/{p.metadata.uid}/main/0"
    pids = await wait_for(lambda: processes_with_env(marker), 30)
    return min(pids)


# the student's script: try to write, wait for the TA's file, read it, wait for "go"
STUDENT = (
    "echo student > {dir}/f; rc=$?; "
    "until [ -e {dir}/from-ta ]; do sleep 0.1; done; cat {dir}/from-ta; "
    "until [ -e {dir}/go ]; do sleep 0.1; done; exit $rc"
)


@needs_root
async def test_read_only_claim_while_a_ta_writes_it(k8s, v1, tmp_path):
    await v1.create_namespaced_persistent_volume_claim(NS, rwx_claim("course"))
    vol_dir = await bound_volume_dir(k8s, v1, "course")
    volumes = [{"name": "shared", "persistentVolumeClaim": {"claimName": "course"}}]
    await v1.create_namespaced_pod(
        NS,
        pod(
            "student",
            STUDENT.format(dir="/shared"),
            volumes,
            [{"name": "shared", "mountPath": "/shared", "readOnly": True}],
        ),
    )
    await log_has(k8s, "student", ROFS)
    # a ReadWriteMany claim: a second running pod, read-write, same directory
    await v1.create_namespaced_pod(
        NS,
        pod(
            "ta",
            "echo hello-from-ta > /shared/from-ta && sleep 600",
            volumes,
            [{"name": "shared", "mountPath": "/shared"}],
        ),
    )
    await log_has(k8s, "student", ROFS, "hello-from-ta")
    # the read-only view is a mount of the student's namespace only
    pid = await container_pid(k8s, v1, "student")
    with open(f"/proc/{pid}/mountinfo") as f:
        # mountinfo: id parent dev root mount-point options ...
        fields = [line.split() for line in f]
    volume = "/" + os.path.basename(vol_dir)
    mine = [m for m in fields if m[3].endswith(volume) and str(tmp_path) in m[4]]
    assert len(mine) == 1 and mine[0][5].startswith("ro,"), mine
    assert host_mounts_under(tmp_path) == []

    open(os.path.join(vol_dir, "go"), "w").close()
    state = await terminated(v1, "student")
    assert state.exit_code != 0
    assert ROFS in state.message
    assert sorted(os.listdir(vol_dir)) == ["from-ta", "go"]
    await delete_and_wait(v1, "student", "ta")
    assert host_mounts_under(tmp_path) == []


@needs_root
async def test_read_only_subpath_inside_the_home(k8s, v1, tmp_path):
    """The course folder is a subPath of a claim, mounted inside the student's
    home: it shows up in the home (as Jupyter lists it), read-only, while the
    rest of the home stays writable."""
    await v1.create_namespaced_persistent_volume_claim(NS, rwx_claim("homes"))
    vol_dir = await bound_volume_dir(k8s, v1, "homes")
    volumes = [{"name": "homes", "persistentVolumeClaim": {"claimName": "homes"}}]
    student = pod(
        "student",
        "cd /home/jovyan && echo mine > notes.txt && ls; "
        + STUDENT.format(dir="shared/course"),
        volumes,
        [
            {"name": "homes", "mountPath": "/home/jovyan", "subPath": "alice"},
            {
                "name": "homes",
                "mountPath": "/home/jovyan/shared/course",
                "subPath": "courses/intro",
                "readOnly": True,
            },
        ],
    )
    await v1.create_namespaced_pod(NS, student)
    await v1.create_namespaced_pod(
        NS,
        pod(
            "ta",
            "echo hello-from-ta > /srv/intro/from-ta && sleep 600",
            volumes,
            [{"name": "homes", "mountPath": "/srv/intro", "subPath": "courses/intro"}],
        ),
    )
    out = await log_has(k8s, "student", ROFS, "hello-from-ta")
    assert "notes.txt" in out and "shared" in out
    open(os.path.join(vol_dir, "courses/intro/go"), "w").close()
    state = await terminated(v1, "student")
    assert ROFS in state.message
    with open(os.path.join(vol_dir, "alice/notes.txt")) as f:
        assert f.read() == "mine\n"
    assert sorted(os.listdir(os.path.join(vol_dir, "courses/intro"))) == [
        "from-ta",
        "go",
    ]
    # the mount point the runtime made in the home is an empty directory
    assert os.listdir(os.path.join(vol_dir, "alice/shared/course")) == []
    await delete_and_wait(v1, "student", "ta")
    assert host_mounts_under(tmp_path) == []


@needs_root
async def test_nfs_volume_shared_and_read_only(k8s, v1, tmp_path):
    nfs = {"server": "files.example.edu", "path": "/exports/intro"}
    ro_volumes = [{"name": "course", "nfs": {**nfs, "readOnly": True}}]
    rw_volumes = [{"name": "course", "nfs": nfs}]
    mounts = [{"name": "course", "mountPath": "/course"}]
    # nfs.readOnly makes the mount read-only though the mount does not say so
    await v1.create_namespaced_pod(
        NS, pod("student", STUDENT.format(dir="/course"), ro_volumes, mounts)
    )
    await v1.create_namespaced_pod(
        NS,
        pod(
            "ta",
            "echo hello-from-ta > /course/from-ta && sleep 600",
            rw_volumes,
            mounts,
        ),
    )
    await log_has(k8s, "student", ROFS, "hello-from-ta")
    export = os.path.join(k8s.state_dir, "nfs", "files.example.edu", "exports/intro")
    open(os.path.join(export, "go"), "w").close()
    state = await terminated(v1, "student")
    assert ROFS in state.message
    assert sorted(os.listdir(export)) == ["from-ta", "go"]
    await delete_and_wait(v1, "student", "ta")
    assert host_mounts_under(tmp_path) == []


async def test_nfs_path_that_escapes_is_a_failed_mount(k8s, v1):
    volumes = [{"name": "x", "nfs": {"server": "nfs", "path": "/../../../etc"}}]
    await v1.create_namespaced_pod(
        NS, pod("escape", "true", volumes, [{"name": "x", "mountPath": "/x"}])
    )

    async def failed_mount():
        evs = await v1.list_namespaced_event(
            NS, field_selector="involvedObject.name=escape"
        )
        return [e.message for e in evs.items if e.reason == "FailedMount"]

    messages = await wait_for(failed_mount, 30)
    assert "leaves the stand-in's export directory" in messages[0]
    p = await v1.read_namespaced_pod("escape", NS)
    assert p.status.phase == "Pending"
    assert not os.path.exists(os.path.join(os.path.dirname(k8s.state_dir), "etc"))


async def test_read_only_not_enforced_is_a_warning_event(tmp_path):
    k8s = await start(tmp_path, enforce_read_only=False)
    try:
        async with core_client(k8s.kubeconfig_path) as v1:
            volumes = [{"name": "data", "emptyDir": {}}]
            await v1.create_namespaced_pod(
                NS,
                pod(
                    "student",
                    "echo x > /data/f && cat /data/f",
                    volumes,
                    [{"name": "data", "mountPath": "/data", "readOnly": True}],
                ),
            )
            state = await terminated(v1, "student")
            assert state.exit_code == 0
            evs = await v1.list_namespaced_event(
                NS, field_selector="involvedObject.name=student"
            )
            warnings = [
                e.message for e in evs.items if e.reason == "ReadOnlyNotEnforced"
            ]
            assert len(warnings) == 1
            assert "container main: data" in warnings[0]
            assert "enforce_read_only=False" in warnings[0]
            if kube_backend() != "real":
                stats = k8s.stats()
                assert stats["read_only_mounts"] == "off"
    finally:
        await k8s.__aexit__(None, None, None)
    assert marked_processes(k8s.id) == []


@needs_root
async def test_jupyter_contents_api_in_a_read_only_folder(k8s, v1, tmp_path):
    """What a hub test sees: the real jupyter-server refuses a save into a
    read-only folder with 500 (EROFS is not one of the errors it turns into
    403) and lists the folder as not writable."""
    token = secrets.token_hex(8)
    volumes = [
        {"name": "home", "emptyDir": {}},
        {"name": "course", "nfs": {"server": "nfs", "path": "/intro"}},
    ]
    server = pod_manifest(
        "jupyter",
        [
            os.path.join(os.path.dirname(sys.executable), "jupyter-server"),
            "--ip=0.0.0.0",
            "--port=8888",
            f"--IdentityProvider.token={token}",
            "--ServerApp.root_dir=/home/jovyan",
            "--no-browser",
        ],
        volumes=volumes,
        mounts=[
            {"name": "home", "mountPath": "/home/jovyan"},
            {"name": "course", "mountPath": "/home/jovyan/shared", "readOnly": True},
        ],
        grace=0,
    )
    await v1.create_namespaced_pod(NS, server)

    async def ip():
        p = await v1.read_namespaced_pod("jupyter", NS)
        return p.status.pod_ip

    base = f"http://{await wait_for(ip, 60)}:8888/api/contents"
    headers = {"Authorization": f"token {token}"}
    http = AsyncHTTPClient()

    async def request(method, path, body=None):
        try:
            return await http.fetch(
                f"{base}/{path}",
                method=method,
                headers=headers,
                body=json.dumps(body) if body is not None else None,
                raise_error=False,
            )
        except OSError:
            return None

    listing = await wait_for(lambda: request("GET", ""), 90)
    assert listing.code == 200
    names = {m["name"]: m for m in json.loads(listing.body)["content"]}
    assert "shared" in names
    shared = json.loads((await request("GET", "shared")).body)
    assert shared["writable"] is False
    body = {"type": "file", "format": "text", "content": "x"}
    resp = await request("PUT", "shared/f.txt", body)
    assert resp.code == 500
    assert ROFS in json.loads(resp.body)["message"]
    assert (await request("PUT", "mine.txt", body)).code == 201
    assert os.listdir(os.path.join(k8s.state_dir, "nfs", "nfs", "intro")) == []
    await delete_and_wait(v1, "jupyter")
