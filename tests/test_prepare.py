"""classroom-spawner prepare on the Kubernetes stand-in: the volumes the spawner would
create, made ahead of class, idempotent, resumable after Ctrl-C, lessons filled in."""

import asyncio
import os
import signal
import sys
import textwrap

import pytest
import pytest_asyncio

from classroom_spawner.hubconfig import load_hub_config
from classroom_spawner.local.gitrepo import lesson_repo as make_lesson_repo
from classroom_spawner.local.kube import Faults, kube_process
from classroom_spawner.local.kube.testing import core_client, pvc_manifest, wait_for
from classroom_spawner.offline import render_manifests

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "default"
SLOW = [f"slow{i}" for i in range(6)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("prepare")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def k8s(workdir):
    # one disk at a time, 0.4 s each: slow enough to interrupt a run in the middle
    faults = Faults(provision_delay=0.4, provision_max_in_flight=1)
    async with kube_process(workdir / "k8s", faults=faults) as standin:
        yield standin


@pytest.fixture(scope="module")
def config_file(workdir):
    courses = workdir / "courses.yaml"
    courses.write_text(textwrap.dedent(f"""\
            courses:
              - id: ds101
                title: Data Science 101
                image: example.org/ds101:1
                students: [alice, bob, Carla]
                tas: [tina]
              - id: big
                title: Big Data
                image: example.org/big:1
                kubespawner_override: {{storage_capacity: 2Gi}}
                students: [bob, dave]
              - id: slow
                title: Slow Storage
                students: [{", ".join(SLOW)}]
              - id: lessons
                title: With Lessons
                image: example.org/lessons:1
                lessons:
                  - url: {make_lesson_repo(workdir)}
                    target: course-lessons
                students: [lea, leo]
            """))
    path = workdir / "jupyterhub_config.py"
    path.write_text(textwrap.dedent(f"""\
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{str(courses)!r}]
            c.KubeSpawner.namespace = {NS!r}
            c.KubeSpawner.storage_capacity = "1Gi"
            c.KubeSpawner.storage_class = "standard"
            c.KubeSpawner.storage_extra_labels = {{"team": "classroom"}}
            """))
    return path


async def prepare(k8s, config_file, *args):
    """Run `classroom-spawner prepare` as the admin would; (exit status, output)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "classroom_spawner.cli", "prepare", "-f", str(config_file), *args,
        env={**os.environ, "KUBECONFIG": str(k8s.kubeconfig_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    return proc.returncode, out.decode()


async def claims(k8s):
    async with core_client(k8s.kubeconfig_path) as v1:
        items = (await v1.list_namespaced_persistent_volume_claim(NS)).items
        return {
            p.metadata.name: v1.api_client.sanitize_for_serialization(p) for p in items
        }


async def test_dry_run_states_the_cost_and_creates_nothing(k8s, config_file):
    code, out = await prepare(k8s, config_file, "ds101", "big", "--dry-run", "--staff")
    assert code == 0, out
    # bob is in both: prepared once, for the first course named
    assert "will create 4 volumes of 1Gi, 1 volume of 2Gi = 6Gi" in out, out
    assert "default/claim-carla 1Gi would be created" in out
    assert "dry run: nothing was created" in out
    assert not [
        n for n in await claims(k8s) if n in ("claim-alice", "claim-tina", "claim-dave")
    ]


async def test_volumes_are_the_spawners_and_a_second_run_creates_nothing(
    k8s, config_file
):
    code, out = await prepare(k8s, config_file, "ds101", "big")
    assert code == 0, out
    assert "will create 3 volumes of 1Gi, 1 volume of 2Gi = 5Gi" in out, out
    assert "created: 4, already there: 0, failed: 0" in out, out
    assert "tina" not in out  # staff only with --staff
    found = await claims(k8s)
    config = load_hub_config(str(config_file))
    for user, course in [
        ("alice", "ds101"),
        ("bob", "ds101"),
        ("carla", "ds101"),
        ("dave", "big"),
    ]:
        rendered = (await render_manifests(config, user, profile=course))["pvc"]
        pvc = found[rendered["metadata"]["name"]]
        assert pvc["metadata"]["labels"] == rendered["metadata"]["labels"]
        assert (
            rendered["metadata"].get("annotations", {}).items()
            <= pvc["metadata"].get("annotations", {}).items()
        )
        for key in ("accessModes", "resources", "storageClassName"):
            assert pvc["spec"][key] == rendered["spec"][key], key
        assert pvc["status"]["phase"] == "Bound"
    assert found["claim-dave"]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert found["claim-alice"]["metadata"]["labels"]["team"] == "classroom"

    code, out = await prepare(k8s, config_file, "ds101", "big", "--staff")
    assert code == 0, out
    assert "will create 1 volume of 1Gi = 1Gi" in out, out  # only the TA is new
    assert "created: 1, already there: 4, failed: 0" in out, out
    code, out = await prepare(k8s, config_file, "ds101", "big", "--staff")
    assert (
        "will create no volumes" in out and "created: 0, already there: 5" in out
    ), out


async def test_an_interrupted_run_finishes_the_rest_when_started_again(
    k8s, config_file
):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "classroom_spawner.cli", "prepare", "-f", str(config_file),
        "slow", "--concurrency", "1",
        env={**os.environ, "KUBECONFIG": str(k8s.kubeconfig_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Ctrl-C as in a terminal, also when the tests themselves run in the
        # background of a shell, which starts them with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip

    async def two_made():
        return len([n for n in await claims(k8s) if n.startswith("claim-slow")]) >= 2

    await wait_for(two_made, timeout=120, interval=0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert proc.returncode == 130, out
    assert "run the same command again to do the rest" in out, out
    made = [n for n in await claims(k8s) if n.startswith("claim-slow")]
    assert 2 <= len(made) < len(SLOW), made

    code, out = await prepare(k8s, config_file, "slow")
    assert code == 0, out
    assert (
        f"created: {len(SLOW) - len(made)}, already there: {len(made)}, failed: 0"
        in out
    ), out
    found = await claims(k8s)
    assert all(found[f"claim-{u}"]["status"]["phase"] == "Bound" for u in SLOW)


async def test_lessons_are_synced_by_a_short_lived_pod_and_then_up_to_date(
    k8s, config_file
):
    code, out = await prepare(
        k8s, config_file, "lessons", "--lessons", "--concurrency", "2"
    )
    assert code == 0, out
    assert (
        "lea (lessons): volume created, lessons course-lessons: cloned default branch"
        in out
    ), out
    assert "lessons: 2 synced (0 already up to date), 0 with warnings" in out, out
    async with core_client(k8s.kubeconfig_path) as v1:
        assert not (
            await v1.list_namespaced_pod(NS, label_selector="classroom-spawner/prepare")
        ).items
    volume = (await claims(k8s))["claim-lea"]["spec"]["volumeName"]
    home = os.path.join(k8s.state_dir, "volumes", volume)
    assert os.path.exists(os.path.join(home, "course-lessons", "01-intro.ipynb"))

    code, out = await prepare(k8s, config_file, "lessons", "--lessons")
    assert code == 0, out
    assert "created: 0, already there: 2, failed: 0" in out, out
    assert "lessons: 2 synced (2 already up to date)" in out, out


async def test_no_kubeconfig_is_a_clear_error(config_file, tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "classroom_spawner.cli", "prepare", "-f", str(config_file), "ds101",
        env={**os.environ, "KUBECONFIG": str(tmp_path / "missing")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert f"no kubeconfig at {tmp_path / 'missing'}" in err.decode()


async def test_an_unknown_course_is_named(k8s, config_file):
    code, out = await prepare(k8s, config_file, "nope")
    assert code == 1
    assert "no such course: nope (courses: ds101, big, slow, lessons)" in out


async def test_a_shared_home_gets_no_volume_but_its_lessons(k8s, workdir):
    """Z2JH storage.type static: one claim, a folder per user; nothing of one's own to create."""
    async with core_client(k8s.kubeconfig_path) as v1:
        await v1.create_namespaced_persistent_volume_claim(
            NS, pvc_manifest("shared-home")
        )
    courses = workdir / "shared-courses.yaml"
    courses.write_text(
        "courses:\n  - id: shared\n    title: Shared\n    image: example.org/shared:1\n"
        f"    lessons: [{{url: '{make_lesson_repo(workdir / 'shared')}', target: shared-lessons}}]\n"
        "    students: [sam]\n"
    )
    config = workdir / "shared_config.py"
    config.write_text(textwrap.dedent(f"""\
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{str(courses)!r}]
            c.KubeSpawner.namespace = {NS!r}
            c.KubeSpawner.storage_pvc_ensure = False
            c.KubeSpawner.volumes = [
                {{"name": "home", "persistentVolumeClaim": {{"claimName": "shared-home"}}}}
            ]
            c.KubeSpawner.volume_mounts = [
                {{"name": "home", "mountPath": "/home/jovyan", "subPath": "{{username}}"}}
            ]
            """))
    code, out = await prepare(k8s, config, "shared")
    assert code == 0, out
    assert (
        "no volumes to create" in out and "nothing else to do without --lessons" in out
    ), out

    code, out = await prepare(k8s, config, "shared", "--lessons")
    assert code == 0, out
    assert (
        "sam (shared): volume no own volume, lessons shared-lessons: cloned" in out
    ), out
    assert "claim-sam" not in await claims(k8s)
    volume = (await claims(k8s))["shared-home"]["spec"]["volumeName"]
    folder = os.path.join(k8s.state_dir, "volumes", volume, "sam", "shared-lessons")
    assert os.path.exists(os.path.join(folder, "01-intro.ipynb"))


async def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    import io

    from classroom_spawner.prepare import Progress, Result

    results = [
        Result("ann", "ds101", volume="created"),
        Result("ben", "ds101", volume="already there"),
        Result("cal", "ds101", error="HTTP 403 Forbidden: exceeded quota"),
    ]
    bar = io.StringIO()
    progress = Progress(bar, len(results), tty=True)
    for result in results:
        progress(result)
    assert bar.getvalue().count("\r") == 3
    assert bar.getvalue().endswith(
        "[" + "#" * 30 + "] 3/3  1 already there, 1 created, 1 failed\x1b[K\n"
    )
    lines = io.StringIO()
    progress = Progress(lines, len(results), tty=False)
    for result in results:
        progress(result)
    assert lines.getvalue().splitlines() == [
        "ann (ds101): volume created",
        "ben (ds101): volume already there",
        "cal (ds101): failed: HTTP 403 Forbidden: exceeded quota",
    ]
