"""ClassroomSpawner in a real JupyterHub on the Kubernetes stand-in: what each user may
start through the REST API, and what they get (course image, home volume, lessons)."""

import asyncio
import contextlib
import os
import textwrap

import jupyterhub
import pytest
import pytest_asyncio
import requests

from classroom_spawner.lessons.initcontainer import script_secret_name
from classroom_spawner.local.gitrepo import NOTEBOOK, lesson_repo
from classroom_spawner.local.hub import HubProcess
from classroom_spawner.local.kube import Faults, kube_process
from classroom_spawner.local.kube.testing import core_client, user_pod
from classroom_spawner.local.oidc.browserless import parse_login_form

pytestmark = [pytest.mark.hub, pytest.mark.asyncio(loop_scope="module")]

NS = "default"


def make_lesson_repo(root):
    return lesson_repo(
        root,
        {"01-intro.ipynb": NOTEBOOK, "README.md": "# DS101 lessons\n"},
        name="ds101-lessons.git",
    )


COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    image: example.org/ds101:1
    lessons:
      - url: {lesson_url}
        target: ds101-lessons
      - url: {lesson_url}
        ref: no-such-branch
        target: extra
    students: [alice, bob, dora, erin, fred]
  - id: phys210
    title: "Computational Physics {{{{ 7 * 7 }}}} <b>bold</b>"
    image: example.org/phys210:1
    students: [{phys_students}]
  - id: secret101
    title: Somebody else's course
    image: example.org/secret:1
    students: [someone-else]
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("spawner-hub")


PHYS210 = ["bob", "dora"]


class CourseFile:
    def __init__(self, path, lesson_url):
        self.path, self.lesson_url = path, lesson_url

    def write(self, phys_students=PHYS210):
        before = os.stat(self.path).st_mtime_ns if self.path.exists() else 0
        self.path.write_text(
            COURSES.format(
                lesson_url=self.lesson_url, phys_students=", ".join(phys_students)
            )
        )
        # a second later, so that even a coarse clock shows the change
        os.utime(self.path, ns=(before + 2_000_000_000,) * 2)

    @contextlib.contextmanager
    def without_in_phys210(self, name):
        """The course file with ``name`` dropped from phys210, put back afterwards."""
        self.write([n for n in PHYS210 if n != name])
        try:
            yield
        finally:
            self.write()


@pytest.fixture(scope="module")
def course_file(workdir):
    courses = CourseFile(workdir / "courses.yaml", make_lesson_repo(workdir))
    courses.write()
    return courses


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def k8s(workdir):
    async with kube_process(
        workdir / "k8s", faults=Faults(provision_delay=0.5)
    ) as standin:
        yield standin


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(k8s, workdir, course_file):
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.Authenticator.admin_users = {{"carol"}}
        c.JupyterHub.spawner_class = "classroom"
        c.ClassroomRoster.course_files = [{str(course_file.path)!r}]
        c.ClassroomRoster.check_interval = 0
        c.KubeSpawner.namespace = {NS!r}
        c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
        c.KubeSpawner.storage_capacity = "1Gi"
        c.KubeSpawner.start_timeout = 120
        c.KubeSpawner.http_timeout = 120
        c.ClassroomSpawner.admin_profiles = [
            {{
                "display_name": "Admin: pick an image",
                "slug": "admin-any",
                "profile_options": {{
                    "image": {{
                        "display_name": "Image",
                        "choices": {{
                            "base": {{"display_name": "Base", "kubespawner_override": {{"image": "example.org/base:1"}}}},
                            "gpu": {{"display_name": "GPU", "kubespawner_override": {{"image": "example.org/gpu:1"}}}},
                        }},
                        "unlisted_choice": {{
                            "enabled": True,
                            "validation_regex": "example[.]org/[a-z0-9-]+:[0-9]+",
                            "kubespawner_override": {{"image": "{{value}}"}},
                        }},
                    }}
                }},
            }}
        ]
        """)
    async with HubProcess(
        config=config,
        workdir=workdir / "hub",
        env={"KUBECONFIG": k8s.kubeconfig_path},
        start_timeout=120,
    ) as hub:
        for name in USERS:
            await hub.create_user(name)
        hub.tokens = {name: await hub.user_token(name) for name in USERS}
        yield hub


USERS = ("alice", "bob", "carol", "nobody", "dora", "erin", "fred")


def log_in(hub_url, username):
    """A browser-like session of USERNAME, logged in through the hub's login form."""
    session = requests.Session()
    page = session.get(hub_url + "hub/login?next=/hub/home", timeout=30)
    form = parse_login_form(page.text, page.url)
    home = session.post(form.action, data=form.fill(username, "any"), timeout=30)
    assert home.status_code == 200 and home.url.endswith("/hub/home"), (
        home.status_code,
        home.url,
    )
    return session


async def spawn(hub, user, options, *, as_user=None):
    """POST /users/USER/server with OPTIONS as AS_USER (default: USER themself)."""
    token = hub.tokens[as_user or user]
    return await hub.api(
        "POST", f"users/{user}/server", json=options, token=token, raise_error=False
    )


async def spawn_and_follow(hub, user, options):
    """Start USER's server and follow its progress while pending, as the spawn
    page does; return the spawn request's response and the progress events."""
    request = asyncio.ensure_future(spawn(hub, user, options))
    while not (await hub.api("GET", f"users/{user}")).json().get("pending"):
        assert not request.done(), (await request).text
        await asyncio.sleep(0.05)
    progress = asyncio.ensure_future(hub.progress(user, token=hub.tokens[user]))
    response = await request
    assert response.code in (201, 202), response.text
    await hub.wait_for_server(user, timeout=180)
    return response, await asyncio.wait_for(progress, 60)


async def stop(hub, user):
    await hub.stop_server(user, timeout=120)


LESSON_WARNING = (
    "Lessons (error): extra: not synced: there is no branch or tag 'no-such-branch'"
)


async def test_own_course_starts_with_its_image_volume_and_lessons(hub, k8s):
    _, events = await spawn_and_follow(hub, "alice", {"profile": "ds101"})
    # a lesson that cannot be synced is a warning on the spawn page, not a failed start
    assert any(LESSON_WARNING in e.get("message", "") for e in events), events
    # the pod's own Kubernetes events reach the spawn page too
    assert any(
        "Successfully assigned default/jupyter-alice" in e.get("message", "")
        for e in events
    ), events
    pod = await user_pod(k8s, "alice")
    assert pod.spec.containers[0].image == "example.org/ds101:1"
    assert [c.name for c in pod.spec.init_containers] == ["lesson-sync"]
    # the sync program came from the Secret the hub made, not from the pod spec
    assert pod.spec.init_containers[0].command == [
        "python3",
        "-I",
        "/opt/classroom-lesson-sync/sync.py",
    ]
    async with core_client(k8s.kubeconfig_path) as v1:
        secret = await v1.read_namespaced_secret(script_secret_name(), NS)
    assert secret.metadata.labels["app.kubernetes.io/component"] == "lesson-sync"
    async with core_client(k8s.kubeconfig_path) as v1:
        pvc = await v1.read_namespaced_persistent_volume_claim("claim-alice", NS)
    assert pvc.spec.resources.requests["storage"] == "1Gi"
    home = os.path.join(k8s.state_dir, "volumes", pvc.spec.volume_name)
    # the lesson repo was cloned into the home before the server started
    assert os.path.isfile(os.path.join(home, "ds101-lessons", "01-intro.ipynb"))
    # and the real server serves it
    r = await hub.fetch(
        "user/alice/api/contents/ds101-lessons", token=hub.tokens["alice"]
    )
    assert r.code == 200
    assert "01-intro.ipynb" in {item["name"] for item in r.json()["content"]}
    await stop(hub, "alice")


async def test_another_courses_profile_is_refused_with_a_clear_400(hub, k8s):
    r = await spawn(hub, "alice", {"profile": "phys210"})
    assert r.code == 400
    assert "profile 'phys210' is not available to you; choose one of: ds101" in r.text
    assert await user_pod(k8s, "alice") is None
    user = (await hub.api("GET", "users/alice")).json()
    assert not user["servers"]


async def test_unlisted_choice_without_a_profile_key_is_refused(hub, k8s):
    r = await spawn(hub, "alice", {"image--unlisted-choice": "evil.org/miner:1"})
    assert r.code == 400
    assert "unknown server option 'image--unlisted-choice'" in r.text
    assert await user_pod(k8s, "alice") is None


async def test_admin_may_pick_any_course_for_a_student_and_any_profile_for_themself(
    hub, k8s
):
    # carol (admin) starts alice's server with a course alice is not in
    r = await spawn(hub, "alice", {"profile": "phys210"}, as_user="carol")
    assert r.code in (201, 202), r.text
    await hub.wait_for_server("alice", timeout=180)
    assert (await user_pod(k8s, "alice")).spec.containers[
        0
    ].image == "example.org/phys210:1"
    await stop(hub, "alice")
    # and her own server from an admin-only profile, with a listed choice
    r = await spawn(hub, "carol", {"profile": "admin-any", "image": "gpu"})
    assert r.code in (201, 202), r.text
    await hub.wait_for_server("carol", timeout=180)
    assert (await user_pod(k8s, "carol")).spec.containers[
        0
    ].image == "example.org/gpu:1"
    await stop(hub, "carol")


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"profile": "admin-any", "image": "tpu"},
            "'tpu' is not one of the choices (base, gpu)",
        ),
        (
            {
                "profile": "admin-any",
                "image--unlisted-choice": "example.org/ok:1;rm -rf /",
            },
            "is not accepted",
        ),
        (
            {"profile": "admin-any", "cpu_limit": 64},
            "unknown server option 'cpu_limit'",
        ),
    ],
)
async def test_bad_choices_are_refused_even_for_admins(hub, k8s, options, message):
    r = await spawn(hub, "carol", options)
    assert r.code == 400
    assert message in r.text
    assert await user_pod(k8s, "carol") is None


async def test_someone_in_no_course_gets_a_message_not_a_server(hub, k8s):
    r = await spawn(hub, "nobody", {})
    assert r.code == 403
    assert "You are not enrolled in any course" in r.text
    assert await user_pod(k8s, "nobody") is None


async def test_stale_saved_profile_falls_back_instead_of_failing(hub, k8s, course_file):
    r = await spawn(hub, "bob", {"profile": "phys210"})
    assert r.code in (201, 202), r.text
    await hub.wait_for_server("bob", timeout=180)
    await stop(hub, "bob")
    # bob leaves phys210; JupyterHub still remembers {"profile": "phys210"}
    with course_file.without_in_phys210("bob"):
        # a start without options (the "Start My Server" button) reuses the saved choice
        _, events = await spawn_and_follow(hub, "bob", None)
        assert (await user_pod(k8s, "bob")).spec.containers[
            0
        ].image == "example.org/ds101:1"
        assert any(STALE_PHYS210 in e.get("message", "") for e in events), events
        await stop(hub, "bob")
        # but naming phys210 explicitly is refused
        r = await spawn(hub, "bob", {"profile": "phys210"})
        assert r.code == 400


STALE_PHYS210 = "Your last choice ('phys210') is not available to you any more; starting Data Science 101 instead."
JUPYTERHUB_6 = int(jupyterhub.__version__.split(".")[0]) >= 6


@pytest.mark.parametrize(
    "body", [{}, {"display_name": "my server"}], ids=["empty", "display-name-only"]
)
async def test_a_body_without_options_is_treated_the_way_jupyterhub_treats_it(
    hub, k8s, course_file, body
):
    # dora's saved choice is phys210, which she has left
    r = await spawn(hub, "dora", {"profile": "phys210"})
    assert r.code in (201, 202), r.text
    await hub.wait_for_server("dora", timeout=180)
    await stop(hub, "dora")
    with course_file.without_in_phys210("dora"):
        if JUPYTERHUB_6 or body == {}:
            # JupyterHub 6: neither body carries options, so the saved ones are used
            # and fall back; 5.x: {} is an explicit empty choice, the default profile
            _, events = await spawn_and_follow(hub, "dora", body)
            assert (await user_pod(k8s, "dora")).spec.containers[
                0
            ].image == "example.org/ds101:1"
            notices = [e for e in events if STALE_PHYS210 in e.get("message", "")]
            assert len(notices) == (1 if JUPYTERHUB_6 else 0), events
            await stop(hub, "dora")
        else:
            # JupyterHub 5.x reads any JSON body as the options themselves
            r = await spawn(hub, "dora", body)
            assert (
                r.code == 400 and "unknown server option 'display_name'" in r.text
            ), r.text


async def test_the_spawn_form_and_query_submit_options_and_a_plain_visit_uses_the_saved_ones(
    hub, k8s, course_file
):
    r = await spawn(hub, "fred", {"profile": "ds101"})
    assert r.code in (201, 202), r.text
    await hub.wait_for_server("fred", timeout=180)
    await stop(hub, "fred")
    # a form post choosing another course's profile (fred logged in, in a browser session)
    session = await asyncio.to_thread(log_in, hub.hub_url, "fred")
    r = await asyncio.to_thread(
        session.post, hub.hub_url + "hub/spawn/fred",
        data={"_xsrf": session.cookies["_xsrf"], "profile": "phys210"}, allow_redirects=False, timeout=30,
    )  # fmt: skip
    # the form again, with the error (JupyterHub 5.1 shows it with status 200)
    assert (
        r.status_code in (200, 400)
        and "profile &#39;phys210&#39; is not available to you" in r.text
    ), r.text[:3000]
    # so does a query string
    assert await user_pod(k8s, "fred") is None
    # so does a query string (for dora, who has a form: JupyterHub starts a user without
    # one with the saved options when the query is refused)
    dora = await asyncio.to_thread(log_in, hub.hub_url, "dora")
    r = await asyncio.to_thread(
        dora.get,
        hub.hub_url + "hub/spawn/dora?profile=secret101",
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code in (200, 400) and "profile &#39;secret101&#39; is not available to you" in r.text, (
        r.status_code, r.text[:2000],
    )  # fmt: skip
    assert await user_pod(k8s, "dora") is None
    # a plain visit of the spawn page starts the saved choice (only one course: no form)
    r = await asyncio.to_thread(
        session.get, hub.hub_url + "hub/spawn/fred", allow_redirects=False, timeout=30
    )
    assert r.status_code == 302, (r.status_code, r.text[:2000])
    await hub.wait_for_server("fred", timeout=180)
    assert (await user_pod(k8s, "fred")).spec.containers[
        0
    ].image == "example.org/ds101:1"
    await stop(hub, "fred")


async def test_the_form_shows_course_text_as_text(hub):
    dora = await asyncio.to_thread(log_in, hub.hub_url, "dora")
    page = await asyncio.to_thread(dora.get, hub.hub_url + "hub/spawn/dora", timeout=30)
    assert page.status_code == 200
    # not a template, not markup: exactly what the course file says
    assert "Computational Physics {{ 7 * 7 }} &lt;b&gt;bold&lt;/b&gt;" in page.text
    assert "Physics 49" not in page.text and "<b>bold</b>" not in page.text


async def test_refused_options_leave_nothing_behind_that_changes_later_starts(hub, k8s):
    r = await spawn(hub, "erin", {"profile": "ds101"})
    assert r.code in (201, 202), r.text
    await hub.wait_for_server("erin", timeout=180)
    await stop(hub, "erin")
    # refused: erin herself, then an admin who may start her server, plant bad options
    for as_user in ("erin", "carol"):
        r = await spawn(
            hub,
            "erin",
            {"profile": "ds101", "image": "evil.org/miner:1"},
            as_user=as_user,
        )
        assert r.code == 400 and "unknown server option 'image'" in r.text, r.text
    # a plain start is the saved, good choice, with no notice of anything lost
    _, events = await spawn_and_follow(hub, "erin", None)
    assert (await user_pod(k8s, "erin")).spec.containers[
        0
    ].image == "example.org/ds101:1"
    assert not [e for e in events if "not available" in e.get("message", "")], events
    await stop(hub, "erin")


async def test_a_huge_option_is_cut_in_the_answer_and_the_log(hub, k8s):
    huge = "x" * 200_000
    r = await spawn(hub, "alice", {"profile": huge})
    assert r.code == 400
    assert "(cut, 200000 characters)" in r.text and len(r.text) < 2000, len(r.text)
    r = await spawn(hub, "alice", {"profile": "ds101", huge: 1})
    assert r.code == 400 and len(r.text) < 2000, len(r.text)
    longest = max(len(line) for line in hub.read_log().splitlines())
    assert longest < 5000, longest


async def test_no_tracebacks_for_refused_spawns(hub):
    r = await spawn(hub, "alice", {"profile": "secret101"})
    assert r.code == 400
    r = await spawn(hub, "nobody", {})
    assert r.code == 403
    log = hub.read_log()
    if JUPYTERHUB_6:
        # JupyterHub 5.x logs a traceback for any error from a spawn, even an
        # HTTPError it relays to the user; 6.x knows policy rejections
        assert "Unhandled error starting" not in log
    assert "KeyError" not in log
    assert (
        "Refusing server options for alice: profile 'secret101' is not available" in log
    )


async def test_lesson_warnings_reach_the_spawn_page_without_kubernetes_events(
    k8s, workdir, course_file
):
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.JupyterHub.spawner_class = "classroom"
        c.ClassroomRoster.course_files = [{str(course_file.path)!r}]
        c.KubeSpawner.namespace = {NS!r}
        c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
        c.KubeSpawner.storage_capacity = "1Gi"
        c.KubeSpawner.start_timeout = 120
        c.KubeSpawner.http_timeout = 120
        c.KubeSpawner.events_enabled = False
        c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
        """)
    async with HubProcess(
        config=config,
        workdir=workdir / "hub-no-events",
        env={"KUBECONFIG": k8s.kubeconfig_path},
        start_timeout=120,
    ) as quiet_hub:
        await quiet_hub.create_user("bob")
        token = await quiet_hub.user_token("bob")
        r = await quiet_hub.api(
            "POST", "users/bob/server", json={"profile": "ds101"}, token=token
        )
        assert r.code == 202, r.text
        events = await quiet_hub.progress("bob", token=token, timeout=180)
        assert events[-1].get("ready") is True, events[-3:]
        assert any(LESSON_WARNING in e.get("message", "") for e in events), events
        await quiet_hub.stop_server("bob", timeout=120)
