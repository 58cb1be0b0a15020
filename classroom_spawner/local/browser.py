"""Headless Chromium for the end-to-end tests: Debian's ``chromium`` driven by
Playwright (its own browser download is not reachable here).

::

    from classroom_spawner.local.browser import require_browser, launch, Screenshots

    chromium = require_browser()           # skip (locally) or fail (CI=true) if missing
    async with async_playwright() as pw:
        browser = await launch(pw, chromium)
        page = await (await new_context(browser)).new_page()
        await hub_sign_in(page, hub_url, "ada", "ada-pw")
        await shots.take(page, "jupyterlab")

Test and demo tool only; nothing on the production code path imports it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

#: path of the browser to use instead of ``chromium`` found on PATH
CHROMIUM_ENV = "CLASSROOM_CHROMIUM"

#: Chromium runs as root in CI containers, which needs --no-sandbox; the rest
#: keeps it from calling Google's hosts (there is no internet here).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
)

VIEWPORT = {"width": 1280, "height": 800}


def find_chromium() -> str | None:
    """``$CLASSROOM_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return (
            "the Playwright Python package is not installed (pip install -e '.[test]')"
        )
    if find_chromium() is None:
        where = os.environ.get(CHROMIUM_ENV)
        if where:
            return f"${CHROMIUM_ENV}={where} is not an executable"
        return "Chromium is not installed (Debian: apt-get install chromium; or set $CLASSROOM_CHROMIUM)"
    return None


def require_browser() -> str:
    """The Chromium executable; otherwise skip the test, or fail it when ``$CI`` is set."""
    import pytest

    reason = browser_unavailable()
    if reason is None:
        return find_chromium()
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason} (in CI, CI=true, this is an error)")


async def launch(playwright, executable_path: str | None = None, **kwargs):
    """Launch headless Chromium with the options this environment needs."""
    args = list(CHROMIUM_ARGS) + list(kwargs.pop("args", ()))
    return await playwright.chromium.launch(
        executable_path=executable_path or find_chromium(),
        args=args,
        headless=True,
        **kwargs,
    )


async def new_context(browser, **kwargs):
    """A fresh browser context (its own cookies: one per person, because the
    identity provider's single sign-on would otherwise log the next one in as
    the previous)."""
    kwargs.setdefault("viewport", VIEWPORT)
    return await browser.new_context(**kwargs)


# ---------------------------------------------------------------- the hub's pages


async def provider_sign_in(page, username: str, password: str, timeout: float = 30_000):
    """Fill in the local identity provider's login form (the page must be showing it)."""
    await page.locator("#username").wait_for(timeout=timeout)
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#submit")


async def hub_sign_in(
    page, hub_url: str, username: str, password: str, next_url: str | None = "/hub/home"
):
    """Log in through the hub's OAuth login and the provider's form.

    ``next_url``: where the hub sends the user afterwards (None: the hub's own
    default, i.e. with ``redirect_to_server`` the spawn page).
    """
    url = hub_url.rstrip("/") + "/hub/oauth_login"
    if next_url:
        from urllib.parse import quote

        url += "?next=" + quote(next_url, safe="")
    await page.goto(url)
    await provider_sign_in(page, username, password)
    await page.wait_for_load_state()


async def jupyterlab_ready(page, timeout: float = 120_000):
    """Wait until JupyterLab's file browser shows a listing."""
    await page.locator(".jp-DirListing-content").wait_for(timeout=timeout)


async def dismiss_news_question(page, timeout: float = 30_000):
    """Answer "No" to JupyterLab's first-start question "Would you like to get
    notified about official Jupyter news?" (asked once per user; the answer is
    saved in their settings). Returns False if the question did not come."""
    no = page.locator(".jp-toast-button, button").filter(has_text=re.compile(r"^No$"))
    question = page.get_by_text(
        "Would you like to get notified about official Jupyter news?"
    )
    try:
        await question.wait_for(timeout=timeout)
    except Exception:
        return False
    await no.first.click()
    await question.wait_for(state="hidden", timeout=timeout)
    return True


async def widen_file_browser(page, width: int = 500):
    """Drag the left sidebar's edge to ``width`` pixels, so long file names show in full."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = await handle.bounding_box()
    if not box:
        return
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(width, y, steps=5)
    await page.mouse.up()


def file_item(page, name: str):
    """The file browser entry called exactly ``name``."""
    return page.locator(".jp-DirListing-content .jp-DirListing-itemText").get_by_text(
        name, exact=True
    )


# ---------------------------------------------------------------- artefacts


class Screenshots:
    """Numbered screenshots in one folder of the test artefacts.

    The folder is emptied of old ``.png`` files when created, so what is
    there belongs to the last run.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0
        self.taken: list[Path] = []

    async def take(self, page, name: str, full_page: bool = False) -> Path:
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        path = self.folder / f"{self.count:02d}-{slug}.png"
        await page.screenshot(path=str(path), full_page=full_page)
        self.taken.append(path)
        return path


def artifacts_dir(repo_root, name: str) -> Path:
    """``<repo_root>/test-artifacts/<name>`` (``$CLASSROOM_TEST_ARTIFACTS`` replaces
    ``<repo_root>/test-artifacts``)."""
    base = os.environ.get("CLASSROOM_TEST_ARTIFACTS") or os.path.join(
        repo_root, "test-artifacts"
    )
    return Path(base) / name
