"""The browser checks the page tests rely on can fail: axe-core reports a missing label, the
overflow check sees a page wider than the screen."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.web.conftest import PHONE
from tests.web.test_browser import fits


async def test_the_accessibility_and_overflow_checks_can_fail(
    browser: Any, accessible: Callable[[Any, str], Awaitable[None]]
) -> None:
    page = await browser.new_page(viewport=PHONE)
    await page.set_content("<html lang='en'><title>t</title><main><input type='text'></main>")
    with pytest.raises(AssertionError, match="label"):
        await accessible(page, "a bare input")
    await page.set_content("<div style='width: 800px'>wide</div>")
    with pytest.raises(AssertionError):
        await fits(page)
    await page.close()
