"""A real browser for the web page's tests: Debian's chromium driven by Playwright.

``browser`` launches ``/usr/bin/chromium`` headless (never a browser that Playwright would
download: ``playwright install`` is not part of the set-up); a missing chromium or Playwright
skips locally and fails under CI.  ``open_page(base_url, width=1280)`` gives a page in a fresh
context (its own sessionStorage) whose console errors and uncaught exceptions are collected
in ``page.problems``; ``screenshot(page, name)`` saves ``test-output/web/<name>.png``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.settings import REPO_ROOT
from tests.fixtures.deps import missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = REPO_ROOT / "test-output" / "web"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 860}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing("Playwright", "pip install -e '.[dev]'")
    if shutil.which(str(CHROMIUM)) is None:
        missing("chromium", "scripts/bootstrap test (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def open_page(browser: Any) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    contexts: list[Any] = []

    async def open_(base_url: str, viewport: dict[str, int] | None = None) -> Any:
        context = await browser.new_context(
            base_url=base_url, viewport=viewport or LAPTOP, locale="en-GB", timezone_id="UTC"
        )
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(20_000)
        problems: list[str] = []
        page.on(
            "console",
            lambda message: (
                problems.append(f"console.{message.type}: {message.text}")
                if message.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        page.problems = problems
        return page

    yield open_
    for context in contexts:
        await context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def screenshot(screenshot_dir: Path) -> Callable[[Any, str], Awaitable[Path]]:
    async def take(page: Any, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        if os.environ.get("CI"):
            print(f"screenshot: {path}")
        return path

    return take


@pytest.fixture
def accessible() -> Callable[[Any, str], Awaitable[None]]:
    """``await accessible(page, where)``: axe-core finds no WCAG 2 A/AA violation."""
    try:
        from axe_playwright_python.async_playwright import Axe
    except ImportError:
        missing("axe-playwright-python", "pip install -e '.[dev]'")
    axe = Axe()

    async def check(page: Any, where: str) -> None:
        results = await axe.run(
            page,
            options={
                "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21aa"]},
                "resultTypes": ["violations"],
            },
        )
        found = [
            f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"][:5])
            for v in results.response["violations"]
        ]
        assert found == [], f"accessibility violations on {where}:\n" + "\n".join(found)

    return check
