"""End to end, as people use it: the demo (classroom_spawner.local.demo) -- the
Kubernetes stand-in running real jupyterhub-singleuser pods, the local OpenID
Connect provider, JupyterHub with configurable-http-proxy, ClassroomOAuthenticator
and ClassroomSpawner with real git lesson repos -- driven by headless Chromium.

The browser tests share one demo and run in order (ada's server, started in
one test, is what the instructors visit later). A screenshot of every key page
goes to test-artifacts/e2e-browser/ at the repository root. Without Chromium or
Playwright the browser tests are skipped, except in CI (CI=true), where that is
an error. The first test runs the ``classroom-spawner demo`` command itself and
stops it the way Ctrl-C in a terminal does.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import re
import secrets
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import pytest_asyncio

from classroom_spawner.local.browser import (
    Screenshots,
    artifacts_dir,
    dismiss_news_question,
    file_item,
    hub_sign_in,
    jupyterlab_ready,
    launch,
    new_context,
    provider_sign_in,
    require_browser,
    widen_file_browser,
)
from classroom_spawner.local.demo import ACCOUNTS, ROSTER_CONTACT, Demo
from classroom_spawner.local.hub import free_port
from classroom_spawner.local.kube.procutil import processes_with_env
from classroom_spawner.local.oidc import DEFAULT_TITLE
from classroom_spawner.local.oidc.browserless import login

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = artifacts_dir(ROOT, "e2e-browser")
SPAWN_TIMEOUT = (
    120_000  # ms: a readiness bound for a server start, not a timing assertion
)
UI_TIMEOUT = 30_000


async def eventually(check, what, timeout=60.0, interval=0.25):
    """Wait until ``await check()`` is truthy (a readiness wait; fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- the command


def _pids_with(marker):
    return [pid for pid in processes_with_env(marker) if pid != os.getpid()]


@pytest.mark.hub
async def test_demo_command_prints_logins_and_leaves_nothing_behind_on_ctrl_c(tmp_path):
    """`classroom-spawner demo` starts everything, prints the URL and the logins,
    and Ctrl-C (SIGINT to its process group, as a terminal sends it) stops every
    process it started, including a running user server."""
    port = free_port()
    workdir = tmp_path / "demo"
    mark = f"CLASSROOM_DEMO_TEST={secrets.token_hex(8)}"
    env = dict(
        os.environ, CLASSROOM_DEMO_TEST=mark.split("=", 1)[1], PYTHONUNBUFFERED="1"
    )
    cli = [sys.executable, "-m", "classroom_spawner.cli"]
    proc = await asyncio.create_subprocess_exec(
        *cli, "demo", "--port", str(port), "--workdir", str(workdir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=env, cwd=str(tmp_path), start_new_session=True,
    )  # fmt: skip
    output = []
    try:

        async def read_until(text):
            while not any(text in line for line in output):
                line = await proc.stdout.readline()
                if not line:
                    raise AssertionError("the demo exited:\n" + "".join(output))
                output.append(line.decode())

        await asyncio.wait_for(read_until("Press Ctrl-C to stop."), 120)
        banner = "".join(output)
        hub_url = f"http://127.0.0.1:{port}/"
        assert f"The classroom demo is running: {hub_url}" in banner
        for account in ACCOUNTS:
            assert re.search(
                rf"^  {account.username} +{account.password} +{account.role} ",
                banner,
                re.M,
            ), banner
        with urllib.request.urlopen(hub_url + "hub/api/", timeout=10) as r:
            assert json.load(r)["version"]

        # a student's server runs (a real jupyterhub-singleuser pod) when Ctrl-C comes
        ada = await asyncio.to_thread(
            login, hub_url, "ada", "ada-pw", next_url="/hub/home"
        )
        assert ada.ok, ada.describe()
        r = await asyncio.to_thread(ada.api, "POST", "users/ada/server")
        assert r.status_code in (201, 202), r.text

        async def ada_ready():
            model = (await asyncio.to_thread(ada.api, "GET", "user")).json()
            return (model.get("servers") or {}).get("", {}).get("ready")

        await eventually(ada_ready, "ada's server", timeout=120)
        standin_id = json.loads((workdir / "k8s" / "ready.json").read_text())[
            "standin_id"
        ]
        pod_marker = f"CLASSROOM_STANDIN={standin_id}"
        assert _pids_with(pod_marker), "no pod processes while ada's server runs?"
        assert len(_pids_with(mark)) >= 4  # demo, stand-in, hub, proxy, provider

        # the instructor's update, pushed from another terminal while the demo runs
        push = await asyncio.create_subprocess_exec(
            *cli, "demo", "--push-update", "--workdir", str(workdir),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        pushed = (await push.communicate())[0].decode()
        assert (
            push.returncode == 0
            and "added 02-dataframes.ipynb, changed 01-welcome.ipynb" in pushed
        ), pushed

        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 90)
        output.append(rest.decode())
        assert proc.returncode == 0, "".join(output)
        assert "Stopped. Nothing is left running." in output[-1], "".join(output)
        assert _pids_with(mark) == [], "".join(output)
        assert _pids_with(pod_marker) == []
        with pytest.raises(OSError):
            urllib.request.urlopen(hub_url + "hub/api/", timeout=5)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def test_the_readme_starts_with_the_demo_and_lists_its_logins():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```", 2)[1].splitlines()
    assert first_block[1].startswith("make demo") and first_block[2].startswith(
        "make test"
    ), first_block
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:.*\n\t\$\(BIN\)/classroom-spawner demo\b", makefile, re.M)
    docs = (ROOT / "docs" / "demo.md").read_text()
    for account in ACCOUNTS:
        assert f"`{account.username}` / `{account.password}`" in readme, account
        assert (
            f"| `{account.username}` | `{account.password}` | {account.role} |" in docs
        ), account


# ---------------------------------------------------------------- shared set-up


@pytest.fixture(scope="module")
def shots():
    return Screenshots(ARTIFACTS)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    chromium = require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await launch(pw, chromium)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def demo(tmp_path_factory):
    out = io.StringIO()
    workdir = tmp_path_factory.mktemp("e2e") / "demo"
    async with Demo(
        workdir, port=None, provision_delay=1.0, image_pull_delay=1.0, out=out
    ) as demo:
        yield demo
    # the logs, next to the screenshots, for whoever looks into a failure
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for path in demo.log_paths():
        if path.exists():
            shutil.copy(path, ARTIFACTS / path.name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def people(browser, demo):
    """One browser context (cookie jar) per person, kept across the tests."""
    contexts = {}

    async def page_of(username):
        if username not in contexts:
            contexts[username] = await new_context(browser)
        context = contexts[username]
        return context.pages[0] if context.pages else await context.new_page()

    page_of.contexts = contexts
    yield page_of
    for context in contexts.values():
        await context.close()


def screenshot_on_failure(test):
    """When the test fails, screenshot every page the people have open (FAILED-...png)."""

    @functools.wraps(test)
    async def run(*args, **kwargs):
        try:
            return await test(*args, **kwargs)
        except BaseException:
            people, shots = kwargs.get("people"), kwargs.get("shots")
            if people is not None and shots is not None:
                for username, context in people.contexts.items():
                    for page in context.pages:
                        try:
                            await shots.take(page, f"FAILED {test.__name__} {username}")
                        except Exception:
                            pass
            raise

    return run


def password(username):
    return next(a.password for a in ACCOUNTS if a.username == username)


async def hub_user(demo, name):
    r = await demo.hub.api("GET", f"users/{name}", raise_error=False)
    return r.json() if r.code == 200 else None


async def contents(page, demo, user, path):
    """The Jupyter contents API of ``user``'s server, with the browser's cookies."""
    r = await page.request.get(f"{demo.hub_url}user/{user}/api/contents/{path}")
    return await r.json() if r.ok else None


# ---------------------------------------------------------------- the tests


@pytest.mark.hub
@pytest.mark.browser
@screenshot_on_failure
async def test_an_unrostered_account_is_refused(browser, demo, people, shots):
    page = await people("mallory")
    await page.goto(demo.hub_url)
    sign_in = page.get_by_role("button", name=f"Sign in with {DEFAULT_TITLE}")
    await sign_in.wait_for(timeout=UI_TIMEOUT)
    await shots.take(page, "hub login page")
    await sign_in.click()
    await page.locator("#username").wait_for(timeout=UI_TIMEOUT)
    assert await page.title() == f"{DEFAULT_TITLE} — sign in"
    await page.fill("#username", "mallory")
    await shots.take(page, "provider login page")

    async with page.expect_response(re.compile(r"/hub/oauth_callback")) as callback:
        await provider_sign_in(page, "mallory", password("mallory"))
    assert (await callback.value).status == 403
    message = page.get_by_text("you are not on the roster of any course").first
    await message.wait_for(timeout=UI_TIMEOUT)
    assert ROSTER_CONTACT in await page.content()
    await shots.take(page, "403 not on a roster")
    assert await hub_user(demo, "mallory") is None


@pytest.mark.hub
@pytest.mark.browser
@screenshot_on_failure
async def test_a_student_in_two_courses_sees_exactly_those_two(
    browser, demo, people, shots
):
    page = await people("emmy")
    await hub_sign_in(page, demo.hub_url, "emmy", password("emmy"), next_url=None)
    # after login the hub goes to the spawn page: a form, since emmy has two courses
    await page.wait_for_url(re.compile(r"/hub/spawn$"), timeout=UI_TIMEOUT)
    radios = page.locator("#classroom-profiles input[name=profile]")
    await radios.first.wait_for(timeout=UI_TIMEOUT)
    values = [
        await radios.nth(i).get_attribute("value") for i in range(await radios.count())
    ]
    assert values == ["ds101", "phys210"]  # not astro120, the third course
    text = await page.locator("#classroom-profiles").inner_text()
    assert "Data Science 101" in text and "Computational Physics" in text
    assert "Observational Astronomy" not in text
    await shots.take(page, "options form of a student in two courses", full_page=True)

    await page.check("#profile-item-phys210")
    await page.get_by_role("button", name="Start").click()
    await page.wait_for_url(re.compile(r"/user/emmy/lab"), timeout=SPAWN_TIMEOUT)
    await jupyterlab_ready(page)
    await file_item(page, "phys210").wait_for(timeout=UI_TIMEOUT)
    assert await file_item(page, "ds101-lessons").count() == 0
    # done with emmy: her server is stopped to keep the machine free for the rest
    await demo.hub.stop_server("emmy")


@pytest.mark.hub
@pytest.mark.browser
@screenshot_on_failure
async def test_a_student_starts_and_lands_in_jupyterlab_with_the_lessons(
    browser, demo, people, shots
):
    page = await people("ada")
    await hub_sign_in(page, demo.hub_url, "ada", password("ada"), next_url=None)
    # one course: no form, the server starts at once and the progress page shows
    await page.wait_for_url(re.compile(r"/hub/spawn-pending/ada"), timeout=UI_TIMEOUT)
    assert await page.locator("#classroom-profiles").count() == 0
    await page.click("#progress-details summary")
    await page.locator("#progress-log .progress-log-event").nth(2).wait_for(
        timeout=SPAWN_TIMEOUT
    )
    await shots.take(page, "spawn progress page")

    await page.wait_for_url(re.compile(r"/user/ada/lab"), timeout=SPAWN_TIMEOUT)
    await jupyterlab_ready(page)
    # JupyterLab asks every new user once about news; ada says no
    await dismiss_news_question(page)
    await widen_file_browser(page)
    await file_item(page, "ds101-lessons").dblclick()
    await file_item(page, "01-welcome.ipynb").wait_for(timeout=UI_TIMEOUT)
    await file_item(page, "README.md").wait_for(timeout=UI_TIMEOUT)
    await shots.take(page, "jupyterlab with the lessons")
    listing = await contents(page, demo, "ada", "ds101-lessons")
    assert {"01-welcome.ipynb", "README.md", "data"} <= {
        item["name"] for item in listing["content"]
    }


EDIT = "answer = 42  # ada's own work"


@pytest.mark.hub
@pytest.mark.browser
@screenshot_on_failure
async def test_an_edit_survives_a_restart_and_the_lesson_update_arrives(
    browser, demo, people, shots
):
    page = await people("ada")
    await file_item(page, "01-welcome.ipynb").dblclick()
    # the exercise cell: the fourth, after "Exercise 1" (cells render one by one, so wait for it)
    cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(3).locator(".cm-content")
    await cell.wait_for(timeout=UI_TIMEOUT)
    assert await cell.inner_text() in ("", "\n")
    await cell.click()
    await page.keyboard.type(EDIT)
    await page.keyboard.press("Control+s")

    async def saved():
        model = await contents(page, demo, "ada", "ds101-lessons/01-welcome.ipynb")
        return model and EDIT in json.dumps(model["content"])

    await eventually(saved, "the edited notebook to be saved")

    # stop from the hub's home page
    await page.goto(demo.hub_url + "hub/home")
    await page.click("#stop")
    await demo.hub.wait_for_server("ada", ready=None)
    # meanwhile the instructor pushes an update that adds a notebook and changes the one ada edited
    update = demo.push_lesson_update()
    added = update["added"][0]

    # start again: the hub's home page, "Start My Server"
    await page.goto(demo.hub_url + "hub/home")
    await page.get_by_role("button", name="Start My Server").click()
    await page.wait_for_url(re.compile(r"/user/ada/lab"), timeout=SPAWN_TIMEOUT)
    await jupyterlab_ready(page)

    listing = await contents(page, demo, "ada", "ds101-lessons")
    names = {item["name"] for item in listing["content"]}
    upstream = [
        n
        for n in names
        if re.fullmatch(r"01-welcome\.upstream-([0-9a-f]{7,40})\.ipynb", n)
    ]
    assert added in names and upstream, names
    assert update["commit"].startswith(upstream[0].split("-")[-1].split(".")[0])
    model = await contents(page, demo, "ada", "ds101-lessons/01-welcome.ipynb")
    cells = ["".join(c["source"]) for c in model["content"]["cells"]]
    assert EDIT in cells  # her version stays, in the exercise cell
    note = await contents(page, demo, "ada", "LESSONS-SYNC-NOTE.md")
    assert note and "01-welcome.ipynb" in note["content"]

    await page.goto(demo.hub_url + "user/ada/lab/tree/ds101-lessons/01-welcome.ipynb")
    await jupyterlab_ready(page)
    await widen_file_browser(page)
    await page.locator(
        ".jp-NotebookPanel .jp-CodeCell .cm-content", has_text=EDIT
    ).wait_for(timeout=UI_TIMEOUT)
    await file_item(page, added).wait_for(timeout=UI_TIMEOUT)
    await file_item(page, upstream[0]).wait_for(timeout=UI_TIMEOUT)
    await shots.take(page, "edited notebook after restart with the lesson update")


@pytest.mark.hub
@pytest.mark.browser
@screenshot_on_failure
async def test_an_instructor_opens_a_students_server_of_their_course(
    browser, demo, people, shots
):
    page = await people("grace")
    await hub_sign_in(page, demo.hub_url, "grace", password("grace"))
    await page.wait_for_url(re.compile(r"/hub/home"), timeout=UI_TIMEOUT)

    # the admin page lists her course's students only
    await page.goto(demo.hub_url + "hub/admin")
    await page.get_by_text("ada", exact=True).first.wait_for(timeout=UI_TIMEOUT)
    await page.get_by_text("emmy", exact=True).first.wait_for(timeout=UI_TIMEOUT)
    for other in ("marie", "vera", "richard"):
        assert await page.get_by_text(other, exact=True).count() == 0, other
    await shots.take(page, "admin page of an instructor")

    await page.goto(demo.hub_url + "user/ada/lab")
    authorize = page.get_by_role("button", name="Authorize")
    await authorize.wait_for(timeout=UI_TIMEOUT)
    await shots.take(page, "instructor asked to authorize access to a students server")
    await authorize.click()
    await page.wait_for_url(re.compile(r"/user/ada/lab"), timeout=UI_TIMEOUT)
    await jupyterlab_ready(page)
    await page.goto(demo.hub_url + "user/ada/lab/tree/ds101-lessons")
    await jupyterlab_ready(page)
    await widen_file_browser(page)
    await file_item(page, "01-welcome.ipynb").wait_for(timeout=UI_TIMEOUT)
    listing = await contents(page, demo, "ada", "ds101-lessons/01-welcome.ipynb")
    assert EDIT in json.dumps(listing["content"])  # she sees ada's work
    await shots.take(page, "instructor in a students jupyterlab")


@pytest.mark.hub
@pytest.mark.browser
@screenshot_on_failure
async def test_an_instructor_of_another_course_is_refused(browser, demo, people, shots):
    page = await people("richard")
    await hub_sign_in(page, demo.hub_url, "richard", password("richard"))
    await page.wait_for_url(re.compile(r"/hub/home"), timeout=UI_TIMEOUT)

    async with page.expect_response(
        re.compile(r"/hub/api/oauth2/authorize")
    ) as authorize:
        await page.goto(demo.hub_url + "user/ada/lab")
    assert (await authorize.value).status == 403
    await page.get_by_text(
        "You do not have permission to access Server at /user/ada/"
    ).first.wait_for(timeout=UI_TIMEOUT)
    await shots.take(page, "403 for an instructor of another course")
    assert await contents(page, demo, "ada", "ds101-lessons") is None


@pytest.mark.hub
@pytest.mark.browser
@screenshot_on_failure
async def test_every_key_page_has_a_screenshot(browser, shots):
    names = [p.name for p in shots.taken]
    for expected in (
        "hub-login-page",
        "provider-login-page",
        "403-not-on-a-roster",
        "options-form",
        "spawn-progress-page",
        "jupyterlab-with-the-lessons",
        "edited-notebook-after-restart",
        "admin-page-of-an-instructor",
        "instructor-in-a-students-jupyterlab",
        "403-for-an-instructor-of-another-course",
    ):
        assert any(expected in name for name in names), (expected, names)
    assert all(p.stat().st_size > 0 for p in shots.taken)
