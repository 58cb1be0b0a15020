"""End to end from the LMS: the demo with a local LTI 1.3 platform
(classroom_spawner.local.lti.demo) -- the Kubernetes stand-in running real
jupyterhub-singleuser pods with lesson repos, JupyterHub with
ClassroomLTI13Authenticator and ClassroomSpawner -- driven by headless Chromium
from the platform's course page. Screenshots go to
test-artifacts/e2e-lti-browser/. Skipped without Chromium or Playwright
(an error in CI).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import pytest_asyncio

from classroom_spawner.local.browser import (
    Screenshots,
    artifacts_dir,
    dismiss_news_question,
    jupyterlab_ready,
    launch,
    new_context,
    require_browser,
)
from classroom_spawner.local.lti.demo import LESSON_LINK, LMSDemo

pytestmark = [
    pytest.mark.hub,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = artifacts_dir(ROOT, "e2e-lti-browser")
SPAWN_TIMEOUT = (
    180_000  # ms: a readiness bound for a server start, not a timing assertion
)
UI_TIMEOUT = 30_000


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
async def demo(tmp_path_factory, browser):
    workdir = tmp_path_factory.mktemp("e2e-lti") / "demo"
    async with LMSDemo(
        workdir, port=None, provision_delay=0.5, image_pull_delay=0.5, out=io.StringIO()
    ) as demo:
        yield demo
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for path in demo.log_paths():
        if path.exists():
            shutil.copy(path, ARTIFACTS / path.name)


async def click_launch(browser, demo, user, link=""):
    context = await new_context(browser)
    page = await context.new_page()
    await page.goto(demo.lms.url + "/")
    await page.locator("section#lms-ml201").wait_for(timeout=UI_TIMEOUT)
    await page.locator(
        f"a.launch[data-user='{user}'][data-link='{link}']"
    ).first.click()
    return context, page


async def user_model(demo, name):
    r = await demo.hub.api("GET", f"users/{name}", raise_error=False)
    return r.json() if r.code == 200 else None


async def test_student_clicks_the_lesson_link_and_lands_on_the_notebook(
    browser, demo, shots
):
    context, page = await click_launch(browser, demo, "katherine", LESSON_LINK[0])
    try:
        lesson, notebook = LESSON_LINK[1]["lesson"], LESSON_LINK[1]["notebook"]
        await page.wait_for_url(
            f"**/user/katherine/lab/tree/{lesson}/{notebook}*", timeout=SPAWN_TIMEOUT
        )
        await jupyterlab_ready(page, timeout=SPAWN_TIMEOUT)
        await dismiss_news_question(page, timeout=10_000)
        tab = page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
        await tab.filter(has_text=notebook).wait_for(timeout=UI_TIMEOUT)
        # the notebook came from the lesson repo: its first cell is there
        await page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=UI_TIMEOUT)
        await shots.take(page, "student lands on the lesson notebook")
        model = await user_model(demo, "katherine")
        assert model["groups"] == ["ml201"]  # on no course file: the LMS said so
        assert model["auth_state"]["classroom"]["courses"] == {"ml201": "student"}
        assert "ml201" in str(model["servers"][""]["user_options"])
    finally:
        await context.close()


async def test_instructor_launch_gets_the_instructor_role_over_that_course_only(
    browser, demo, shots
):
    context, page = await click_launch(browser, demo, "hedy")
    try:
        await page.wait_for_url("**/hub/**", timeout=UI_TIMEOUT)
        await shots.take(page, "instructor after the launch")
        model = await user_model(demo, "hedy")
        assert model is not None
        assert model["groups"] == ["ml201-instructors"]
        assert sorted(model["roles"]) == ["ml201-instructor", "user"]
    finally:
        await context.close()


async def test_launch_from_a_course_the_hub_does_not_serve_is_refused(
    browser, demo, shots
):
    context = await new_context(browser)
    page = await context.new_page()
    try:
        await page.goto(demo.lms.url + "/")
        await page.locator(
            "section#lms-art300 a.launch[data-user='vera']"
        ).first.click()
        await page.get_by_text(
            "does not serve the course you came from (Art History 300)"
        ).first.wait_for(timeout=UI_TIMEOUT)
        await shots.take(page, "launch from an unknown course")
        assert await user_model(demo, "vera") is None
    finally:
        await context.close()
