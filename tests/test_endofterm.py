"""End of term (classroom-spawner volumes) on the Kubernetes stand-in: home volumes made
as the spawner makes them, with files in them; the archive goes through a real pod's log.
"""

import asyncio
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap

import pytest
from kubernetes_asyncio.client import ApiClient

from classroom_spawner import endofterm
from classroom_spawner.hubconfig import load_hub_config
from classroom_spawner.local.kube import Faults, KubeletConfig, KubeStandin
from classroom_spawner.local.kube.testing import core_client, marked_processes, wait_for
from classroom_spawner.offline import build_spawner
from classroom_spawner.roster import Role

NS = "default"
ON_ROSTER = ["alice@uni.example.edu", "bob@uni.example.edu"]
GONE = ["carol@uni.example.edu", "Dave.O'Neil@uni.example.edu"]


@pytest.fixture
def hub_config(tmp_path):
    (tmp_path / "courses.yaml").write_text(textwrap.dedent("""\
            courses:
              - id: ds101
                title: Data Science 101
                tas: [bob@uni.example.edu]
                students: [alice@uni.example.edu]
            """))
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(textwrap.dedent(f"""\
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{str(tmp_path / "courses.yaml")!r}]
            c.KubeSpawner.namespace = "default"
            c.KubeSpawner.storage_capacity = "1Gi"
            """))
    return str(path)


@pytest.fixture
async def k8s(tmp_path, monkeypatch):
    async with KubeStandin(
        tmp_path / "k8s", faults=Faults(fail_images=["broken/image:1"])
    ) as standin:
        # the spawner is built offline with the admin's kubeconfig, as the command does
        monkeypatch.setenv("KUBECONFIG", standin.kubeconfig_path)
        yield standin
    assert marked_processes(standin.id) == []


@pytest.fixture
async def v1(k8s):
    async with core_client(k8s.kubeconfig_path) as api:
        yield api


async def make_home(v1, k8s, config_file, username, files):
    """The user's PVC exactly as the spawner would create it, Bound, with ``files``
    (relative path -> bytes) written into the stand-in's directory for it."""
    spawner = await build_spawner(load_hub_config(config_file), username)
    async with ApiClient() as client:
        manifest = client.sanitize_for_serialization(spawner.get_pvc_manifest())
    await v1.create_namespaced_persistent_volume_claim(NS, manifest)
    name = manifest["metadata"]["name"]

    async def bound():
        pvc = await v1.read_namespaced_persistent_volume_claim(name, NS)
        return pvc.spec.volume_name if pvc.status.phase == "Bound" else None

    volume = await wait_for(bound, message=f"{name} never bound")
    root = os.path.join(k8s.state_dir, "volumes", volume)
    for rel, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    return name, root


def files_of(user):
    return {
        "notes.md": f"# {user}'s notes\n".encode(),
        "ds101-lessons/week1.ipynb": b'{"cells": []}',
        "data/random.bin": os.urandom(200_000),  # binary and bigger than one log chunk
    }


@pytest.fixture
async def homes(v1, k8s, hub_config):
    """user -> (claim, host directory, files) for two people on the roster and two not."""
    made = {}
    for user in ON_ROSTER + GONE:
        files = files_of(user)
        claim, root = await make_home(v1, k8s, hub_config, user, files)
        made[user.lower()] = (claim, root, files)
    return made


def roster_of(config_file):
    roster, unsure = endofterm.hub_roster(load_hub_config(config_file), config_file)
    assert unsure == []
    return roster


async def claims(v1):
    items = (await v1.list_namespaced_persistent_volume_claim(NS)).items
    return {p.metadata.name for p in items if not p.metadata.deletion_timestamp}


async def test_lists_home_volumes_by_owner_course_and_role(v1, homes, hub_config):
    volumes = await endofterm.list_home_volumes(v1, NS, roster_of(hub_config))
    by_user = {v.username: v for v in volumes}
    assert set(by_user) == {u.lower() for u in ON_ROSTER + GONE}
    assert by_user["alice@uni.example.edu"].memberships == {"ds101": Role.STUDENT}
    assert by_user["bob@uni.example.edu"].memberships == {"ds101": Role.TA}
    assert {u for u, v in by_user.items() if v.orphaned} == {u.lower() for u in GONE}
    assert all(v.size == "1Gi" and v.phase == "Bound" for v in volumes)
    # nothing says when they were last active without the hub's API
    assert {v.last_activity for v in volumes} == {"unknown"}
    assert [v.claim for v in volumes] == [homes[v.username][0] for v in volumes]


async def test_a_volume_with_only_the_escaped_label_is_matched_to_the_roster(
    v1, k8s, homes, hub_config
):
    claim = homes["alice@uni.example.edu"][0]
    await v1.patch_namespaced_persistent_volume_claim(
        claim,
        NS,
        [{"op": "remove", "path": "/metadata/annotations/hub.jupyter.org~1username"}],
        _content_type="application/json-patch+json",
    )
    volumes = await endofterm.list_home_volumes(v1, NS, roster_of(hub_config))
    alice = next(v for v in volumes if v.claim == claim)
    assert alice.username == "alice@uni.example.edu"
    assert not alice.orphaned


async def test_dry_run_changes_nothing_and_the_real_run_archives_then_deletes_the_orphans(
    v1, k8s, homes, hub_config, tmp_path
):
    archive_dir = tmp_path / "archive"
    before = await claims(v1)
    result = await cli_run(
        k8s, hub_config, "--archive-dir", str(archive_dir), "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "Dry run: nothing changed (2 volumes)." in result.stdout
    for user in GONE:
        assert homes[user.lower()][0] in result.stdout
    assert await claims(v1) == before
    assert not archive_dir.exists()
    assert (await v1.list_namespaced_pod(NS)).items == []

    result = await cli_run(k8s, hub_config, "--archive-dir", str(archive_dir), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 archived and deleted, 0 failed." in result.stdout
    orphaned = {homes[u.lower()][0] for u in GONE}
    assert await claims(v1) == before - orphaned
    assert sorted(p.name for p in archive_dir.glob("*.tar.gz")) == sorted(
        f"{c}.tar.gz" for c in orphaned
    )
    for user in GONE:
        claim, root, files = homes[user.lower()]
        with tarfile.open(archive_dir / f"{claim}.tar.gz") as tar:
            for rel, data in files.items():
                assert tar.extractfile(f"./{rel}").read() == data
        assert f"deleted {claim}" in result.stdout
        # the stand-in removes a volume's directory once its claim is gone
        await wait_for(lambda: not os.path.exists(root), message=f"{root} still there")
    for user in ON_ROSTER:
        assert os.path.exists(os.path.join(homes[user][1], "notes.md"))
    report = next(archive_dir.glob("end-of-term-*.json")).read_text()
    assert all(homes[u.lower()][0] in report for u in GONE)
    # the archive pods are gone
    assert (await v1.list_namespaced_pod(NS)).items == []


async def test_without_confirmation_nothing_changes(
    v1, k8s, homes, hub_config, tmp_path
):
    before = await claims(v1)
    result = await cli_run(
        k8s, hub_config, "--archive-dir", str(tmp_path / "a"), stdin="1\n"
    )
    assert result.returncode == 1
    assert "Type 2 (the number of volumes) to go on:" in result.stdout
    assert "Not confirmed: nothing changed." in result.stdout
    assert await claims(v1) == before
    assert (await v1.list_namespaced_pod(NS)).items == []

    result = await cli_run(
        k8s, hub_config, "--archive-dir", str(tmp_path / "a"), stdin="2\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert await claims(v1) == before - {homes[u.lower()][0] for u in GONE}


async def test_a_rostered_users_volume_survives_unless_named(
    v1, k8s, homes, hub_config, tmp_path
):
    roster = roster_of(hub_config)
    volumes = await endofterm.list_home_volumes(v1, NS, roster)
    assert {v.username for v in endofterm.choose(volumes, [])} == {
        u.lower() for u in GONE
    }
    # named one by one: exactly those, on a roster or not
    chosen = endofterm.choose(
        volumes, ["Alice@uni.example.edu", "carol@uni.example.edu"]
    )
    assert {v.username for v in chosen} == {
        "alice@uni.example.edu",
        "carol@uni.example.edu",
    }
    with pytest.raises(
        endofterm.EndOfTermError, match="no home volume found for 'eve@x'"
    ):
        endofterm.choose(volumes, ["alice@uni.example.edu", "eve@x"])

    before = await claims(v1)
    result = await cli_run(
        k8s,
        hub_config,
        "--archive-dir",
        str(tmp_path / "a"),
        "--user",
        "ALICE@uni.example.edu",
        "--yes",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "named (ds101 student)" in result.stdout
    assert await claims(v1) == before - {homes["alice@uni.example.edu"][0]}
    assert (tmp_path / "a" / f"{homes['alice@uni.example.edu'][0]}.tar.gz").exists()


async def test_an_archive_failure_keeps_the_volume(
    v1, k8s, homes, hub_config, tmp_path
):
    roster = roster_of(hub_config)
    volumes = await endofterm.list_home_volumes(v1, NS, roster)
    orphans = endofterm.choose(volumes, [])
    outcomes = await endofterm.archive_and_delete(
        v1, NS, orphans, str(tmp_path), image="broken/image:1", start_timeout=3
    )
    assert [o.deleted for o in outcomes] == [False, False]
    for o in outcomes:
        assert o.error.startswith(
            "archive failed: the archive pod's measure did not run in 3s ("
        )
        assert "ErrImagePull" in o.error or "ImagePullBackOff" in o.error
    assert await claims(v1) >= {v.claim for v in orphans}
    assert list(tmp_path.glob("*.tar.gz*")) == []
    assert (await v1.list_namespaced_pod(NS)).items == []

    # an archive already there is never overwritten, and that volume stays too
    first, second = orphans
    (tmp_path / f"{first.claim}.tar.gz").write_bytes(b"older archive")
    outcomes = await endofterm.archive_and_delete(
        v1, NS, orphans, str(tmp_path), image="standin/archive:1"
    )
    assert "exists already" in outcomes[0].error and not outcomes[0].deleted
    assert outcomes[1].deleted and outcomes[1].error is None
    assert (tmp_path / f"{first.claim}.tar.gz").read_bytes() == b"older archive"
    assert await claims(v1) >= {first.claim}
    assert second.claim not in await claims(v1)


async def test_a_volume_in_use_is_not_archived_or_deleted(
    v1, k8s, homes, hub_config, tmp_path
):
    carol = homes["carol@uni.example.edu"][0]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "jupyter-carol"},
        "spec": {
            "containers": [
                {"name": "main", "image": "standin/test:1", "command": ["sleep", "60"]}
            ],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": carol}}
            ],
            "terminationGracePeriodSeconds": 1,
        },
    }
    await v1.create_namespaced_pod(NS, pod)
    volumes = await endofterm.list_home_volumes(v1, NS, roster_of(hub_config))
    vol = next(v for v in volumes if v.claim == carol)
    assert vol.used_by == ["jupyter-carol"]
    [outcome] = await endofterm.archive_and_delete(
        v1, NS, [vol], str(tmp_path), image="x:1"
    )
    assert outcome.error == "in use by pod jupyter-carol: stop the server first"
    assert carol in await claims(v1)
    await v1.delete_namespaced_pod("jupyter-carol", NS, grace_period_seconds=0)


async def test_hub_admins_and_allowed_users_are_not_orphans(
    v1, k8s, homes, hub_config, tmp_path
):
    with open(hub_config, "a") as f:
        f.write('c.Authenticator.admin_users = {"Carol@uni.example.edu"}\n')
    config = load_hub_config(hub_config)
    keep = endofterm.configured_keepers(config)
    assert keep == {"carol@uni.example.edu": "Authenticator.admin_users"}
    volumes = await endofterm.list_home_volumes(
        v1, NS, roster_of(hub_config), keep=keep
    )
    carol = next(v for v in volumes if v.username == "carol@uni.example.edu")
    assert carol.kept == "Authenticator.admin_users" and not carol.orphaned
    assert [v.username for v in endofterm.choose(volumes, [])] == [
        "dave.o'neil@uni.example.edu"
    ]

    result = await cli_run(
        k8s, hub_config, "--archive-dir", str(tmp_path / "a"), "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "no roster, kept: Authenticator.admin_users" in result.stdout
    assert "1 of them belong to no one on a roster (1 more are kept" in result.stdout
    assert "Dry run: nothing changed (1 volumes)." in result.stdout


async def test_last_activity_comes_from_the_hub_only(v1, homes, hub_config):
    activity = {
        "alice@uni.example.edu": "2026-11-30T10:00:00Z",
        "carol@uni.example.edu": None,
    }
    volumes = await endofterm.list_home_volumes(
        v1, NS, roster_of(hub_config), activity=activity
    )
    last = {v.username: v.last_activity for v in volumes}
    assert last["alice@uni.example.edu"] == "2026-11-30T10:00:00Z"
    assert last["carol@uni.example.edu"] == "never"
    assert last["bob@uni.example.edu"] == "unknown (not a hub user)"


async def test_last_activity_from_a_real_hub_page_by_page(v1, k8s, homes, hub_config):
    from classroom_spawner.local.hub import DUMMY_AUTH_CONFIG, HubProcess

    # carol is no longer on a roster, but a hub admin now (the hub's config says so,
    # the CLI's config does not: only the hub's API tells)
    config = (
        DUMMY_AUTH_CONFIG + 'c.Authenticator.admin_users = {"carol@uni.example.edu"}\n'
    )
    async with HubProcess(config=config) as hub:
        for user in ["alice@uni.example.edu", "carol@uni.example.edu", "zed"]:
            await hub.create_user(user)
        # alice uses a token: the hub records her activity
        token = await hub.user_token("alice@uni.example.edu")
        await hub.api("GET", "user", token=token)
        expected = {
            u["name"]: u["last_activity"]
            for u in (await hub.api("GET", "users")).json()
        }
        assert expected["alice@uni.example.edu"]
        admins = set()
        activity = await endofterm.hub_last_activity(
            hub.api_url, hub.admin_token, page_size=1, admins=admins
        )
        assert activity == expected
        assert admins == {"carol@uni.example.edu"}
        result = await cli_run(
            k8s, hub_config, "--hub-api-url", hub.api_url, "--token", hub.admin_token
        )
        with pytest.raises(endofterm.EndOfTermError, match="HTTP 403"):
            await endofterm.hub_last_activity(hub.api_url, "not-a-token")
    assert result.returncode == 0, result.stderr
    rows = {
        line.split()[1]: line
        for line in result.stdout.splitlines()
        if line.startswith("  claim-")
    }
    assert expected["alice@uni.example.edu"] in rows["alice@uni.example.edu"]
    assert (expected["carol@uni.example.edu"] or "never") in rows[
        "carol@uni.example.edu"
    ]
    assert "no roster, kept: hub admin" in rows["carol@uni.example.edu"]
    assert "unknown (not a hub user)" in rows["bob@uni.example.edu"]
    assert "Last activity is unknown" not in result.stdout


async def test_an_lms_course_without_its_saved_list_blocks_deletion_by_roster(
    v1, k8s, homes, hub_config, tmp_path
):
    courses = tmp_path / "courses.yaml"
    courses.write_text(courses.read_text() + "    lms_contexts: [ctx-1]\n")
    _, unsure = endofterm.hub_roster(load_hub_config(hub_config), hub_config)
    assert unsure == ["ds101"]
    before = await claims(v1)
    result = await cli_run(
        k8s, hub_config, "--archive-dir", str(tmp_path / "a"), "--yes"
    )
    assert result.returncode == 1
    assert (
        "not deleting by roster while an LMS course's members are unknown"
        in result.stderr
    )
    assert await claims(v1) == before


async def cli_run(k8s, config_file, *args, stdin=""):
    """``classroom-spawner volumes`` as an admin runs it, against the stand-in."""
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "volumes",
        "-f",
        config_file,
        "--kubeconfig",
        k8s.kubeconfig_path,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    return _Result(proc.returncode, out.decode(), err.decode())


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


async def test_a_big_volume_comes_through_in_chunks_over_several_pods(
    v1, k8s, homes, tmp_path
):
    claim, root, files = homes["carol@uni.example.edu"]
    # a disk's own lost+found (root's, mode 700 on a real ext4 disk) is left out
    os.makedirs(os.path.join(root, "lost+found"))
    path, size, sha, entries = await endofterm.archive_volume(
        v1,
        NS,
        claim,
        str(tmp_path),
        image="standin/archive:1",
        chunk_bytes=64 * 1024,
        chunks_per_pod=2,
    )
    # 200 kB of random data: four chunks, so two copying pods
    assert size > 3 * 64 * 1024
    assert entries == 6  # ., notes.md, ds101-lessons/, its notebook, data/, random.bin
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha
    with tarfile.open(path) as tar:
        assert tar.extractfile("./data/random.bin").read() == files["data/random.bin"]
        assert "./lost+found" not in tar.getnames()
    events = await v1.list_namespaced_event(NS)
    pods = {
        e.involved_object.name for e in events.items if e.involved_object.kind == "Pod"
    }
    assert len([p for p in pods if "-copy-" in p]) == 2
    assert (await v1.list_namespaced_pod(NS)).items == []
    assert claim in await claims(v1)  # archiving alone deletes nothing


def test_a_log_that_is_not_all_there_is_never_taken_for_the_archive():
    data = os.urandom(10_000)
    lines = base64.encodebytes(data).split(b"\n")
    whole = b"\n".join(lines) + f"{endofterm.END_MARK} 0\n".encode()
    assert endofterm._decode(whole) == (data, ["0"])
    # a line lost on the way: the length check of the caller sees it
    cut = b"\n".join(lines[:3] + lines[4:]) + f"{endofterm.END_MARK}\n".encode()
    got = endofterm._decode(cut)
    assert isinstance(got, tuple) and len(got[0]) < len(data)
    # the log ended before the end mark
    assert (
        endofterm._decode(b"\n".join(lines))
        == "the pod's log ended before the archive did"
    )
    # something else in the log
    noise = b"\n".join(
        lines[:2] + [b"tar: ./x: Cannot open: Permission denied"] + lines[2:]
    )
    assert endofterm._decode(noise + endofterm.END_MARK.encode()).startswith(
        "the pod's log is not the archive: "
    )


def test_without_a_kubeconfig_the_command_says_what_is_missing(hub_config, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    missing = str(tmp_path / "nope.kubeconfig")
    result = subprocess.run(
        [
            exe,
            "volumes",
            "-f",
            hub_config,
            "--kubeconfig",
            missing,
            "--archive-dir",
            str(tmp_path / "a"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"error: no kubeconfig at {missing}: pass --kubeconfig" in result.stderr
    assert not (tmp_path / "a").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the pod's UID needs root")
async def test_as_the_notebook_user_a_file_it_cannot_read_fails_the_archive(
    tmp_path, monkeypatch, hub_config, request
):
    """The stand-in really switches to the pod's runAsUser here, as a node would."""
    kubelet = KubeletConfig(run_as_user=True)
    # pytest's own tmp directory is root's alone (mode 700): UID 1000 could not reach
    # the pod's directories under it
    state = tempfile.mkdtemp(prefix="classroom-endofterm-")
    os.chmod(state, 0o755)
    request.addfinalizer(lambda: shutil.rmtree(state, ignore_errors=True))
    async with KubeStandin(state, kubelet=kubelet) as k8s:
        monkeypatch.setenv("KUBECONFIG", k8s.kubeconfig_path)
        async with core_client(k8s.kubeconfig_path) as v1:
            user = "carol@uni.example.edu"
            claim, root = await make_home(v1, k8s, hub_config, user, files_of(user))
            for dirpath, dirnames, filenames in os.walk(root):
                for name in [dirpath, *(os.path.join(dirpath, f) for f in filenames)]:
                    os.chown(name, 1000, 100)
            # a cloud disk's lost+found: root's, mode 700 (left out of the archive)
            os.mkdir(os.path.join(root, "lost+found"), 0o700)
            security = {"uid": 1000, "gid": 100, "supplemental_gids": [100]}
            path, *_ = await endofterm.archive_volume(
                v1, NS, claim, str(tmp_path), image="standin/archive:1", **security
            )
            os.unlink(path)

            secret = os.path.join(root, "root-only.txt")
            with open(secret, "w") as f:
                f.write("not for uid 1000\n")
            os.chmod(secret, 0o600)
            [volume] = await endofterm.list_home_volumes(v1, NS, roster_of(hub_config))
            [outcome] = await endofterm.archive_and_delete(
                v1, NS, [volume], str(tmp_path), image="standin/archive:1", **security
            )
            assert outcome.error.startswith(
                "archive failed: tar failed in the pod (exit code 2)"
            )
            assert (
                "root-only.txt" in outcome.error
                and "Permission denied" in outcome.error
            )
            assert not outcome.deleted and claim in await claims(v1)
            assert list(tmp_path.glob("*.tar.gz*")) == []
    assert marked_processes(k8s.id) == []
