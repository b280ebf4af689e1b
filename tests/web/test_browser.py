"""The web page in a real browser (Debian's chromium via Playwright) against the real API
server on the simulated cluster, with the real controller and the fake node-shim: a user logs
in, creates a devbox and sees it turn Running without a reload, copies the SSH command, keeps
live updates across a dropped WebSocket, stops the devbox and sees the commit, deletes it;
bad input and a bad token are refused with clear messages; the console stays clean.

Screenshots of the main screens at laptop (1280 px) and phone (390 px) widths are saved in
``test-output/web/``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.kubeclient import PODS
from tests.api.stack import Stack, running_stack
from tests.fixtures.api import ApiServer
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until_async
from tests.web.conftest import PHONE

pytestmark = pytest.mark.timeout(240)

Screenshot = Callable[[Any, str], Awaitable[Path]]
OpenPage = Callable[..., Awaitable[Any]]
Accessible = Callable[[Any, str], Awaitable[None]]


@pytest.fixture
async def stack(sim: Sim, api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(sim, api_database, tmp_path, controller=True) as running:
        yield running


def expect(target: Any) -> Any:
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


async def log_in(page: Any, token: str) -> None:
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Log in to Devbox")).to_be_visible()
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Devboxes")).to_be_visible()
    await expect(page.locator("#connection")).to_have_text("Live")
    # Set after loading: a page reload would lose it.
    await page.evaluate("window.__sameDocument = true")


async def same_document(page: Any) -> bool:
    return bool(await page.evaluate("window.__sameDocument === true"))


async def fits(page: Any) -> None:
    """Nothing sticks out sideways: the page needs no horizontal scrolling."""
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0


async def until_running(page: Any, stack: Stack, token: str) -> None:
    """The detail view shows Running within 30 s; if not, the failure says where the devbox
    and its pod were (the server's view and the cluster's), so that a page that missed an event
    is told from a devbox that did not start."""
    try:
        await expect(page.locator("#detail-phase")).to_have_text("Running", timeout=30_000)
    except AssertionError as exc:
        seen = await stack.server.gql(
            "{ devboxes(first: 10) { edges { node { name phase"
            " conditions { type status reason message } } } } }",
            {},
            token=token,
        )
        pods, _ = await stack.sim.kube.list_objects(PODS)
        states = [
            (p["metadata"]["name"], p.get("spec", {}).get("nodeName"), p.get("status"))
            for p in pods
        ]
        raise AssertionError(f"{exc}\nthe API says: {seen}\nthe pods: {states}") from exc


async def fill_create_form(page: Any, name: str) -> None:
    await page.get_by_label("Runtime").select_option(label="Python")
    await page.get_by_label("Version").select_option(label="3.12")
    await page.get_by_label("Name", exact=True).fill(name)


async def test_a_user_creates_watches_connects_stops_and_deletes_a_devbox(
    stack: Stack, open_page: OpenPage, screenshot: Screenshot, accessible: Accessible
) -> None:
    token = await stack.user("alice")
    page = await open_page(stack.server.url)
    sockets: list[Any] = []

    async def through(route: Any) -> None:
        sockets.append(route)
        route.connect_to_server()

    await page.route_web_socket(re.compile(r".*/graphql$"), through)

    # Log in: the token is kept in sessionStorage, never in the URL or localStorage.
    await page.goto("/")
    await expect(page.get_by_label("API token")).to_be_focused()
    await screenshot(page, "login-1280")
    await accessible(page, "the login screen")
    await log_in(page, token)
    assert token not in page.url
    assert await page.evaluate("sessionStorage.getItem('devbox.token')") == token
    assert await page.evaluate("localStorage.length") == 0
    await expect(page.get_by_text("No devboxes yet.")).to_be_visible()

    # The runtime catalogue, grouped by class.
    await page.get_by_role("link", name="Runtimes").click()
    for heading in ("Operating systems", "Languages"):
        await expect(page.get_by_role("heading", name=heading)).to_be_visible()
    await expect(page.get_by_role("link", name="Create a devbox from Python 3.12")).to_be_visible()
    await screenshot(page, "runtimes-1280")
    await accessible(page, "the runtime catalogue")

    # Create: the name is checked while it is typed.
    await page.get_by_role("link", name="New devbox").first.click()
    await fill_create_form(page, "Bad_Name")
    name_error = page.locator("[data-error-for=name]")
    await expect(name_error).to_contain_text("lowercase letters")
    await expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    await screenshot(page, "create-1280")
    await accessible(page, "the create form with an error")
    await page.get_by_label("Name", exact=True).fill("web")
    await expect(name_error).to_be_empty()
    await page.get_by_role("button", name="Create devbox").click()

    # The detail view turns Running by itself (subscription, no reload).
    await expect(page).to_have_url(re.compile(r"#/devboxes/web$"))
    await until_running(page, stack, token)
    assert await same_document(page)

    # SSH: the copy button puts the command shown on the clipboard.
    command = page.locator("#ssh-command")
    await expect(command).to_contain_text("ssh -i ~/.ssh/devbox-")
    await page.get_by_role("button", name="Copy command").click()
    await expect(
        page.get_by_role("status").filter(has_text="Copied the SSH command")
    ).to_be_visible()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == await command.text_content()
    assert re.fullmatch(r"ssh -i ~/\.ssh/devbox-\S+-web -p \d+ root@\S+", copied)
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download key").click()
    download = await download_info.value
    assert re.fullmatch(r"devbox-\S+-web", download.suggested_filename)
    key = await asyncio.to_thread(Path(await download.path()).read_text)
    assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    await expect(page.get_by_role("link", name="Open in VS Code")).to_have_attribute(
        "href", re.compile(r"^vscode://vscode-remote/ssh-remote\+devbox-")
    )
    await screenshot(page, "detail-running-1280")
    await accessible(page, "a running devbox")

    # The same screens on a phone.
    phone = await open_page(stack.server.url, viewport=PHONE)
    await log_in(phone, token)
    await expect(phone.locator("[data-devbox=web]")).to_have_attribute("data-phase", "RUNNING")
    await screenshot(phone, "list-390")
    await fits(phone)
    await phone.get_by_role("link", name="web", exact=True).click()
    await expect(phone.locator("#ssh-command")).to_be_visible()
    await screenshot(phone, "detail-390")
    await fits(phone)
    await accessible(phone, "a running devbox on a phone")
    await phone.get_by_role("link", name="New devbox").first.click()
    await fill_create_form(phone, "-nope")
    await expect(phone.locator("[data-error-for=name]")).to_contain_text("start with a letter")
    await screenshot(phone, "create-390")
    await fits(phone)
    await phone.goto("/#/devboxes")

    # A dropped WebSocket: the page reconnects by itself and stays live.
    assert len(sockets) == 1
    await sockets[0].close(code=1001, reason="dropped by the test")

    async def reconnected() -> bool:
        return len(sockets) == 2

    await until_async(reconnected, 15, "the page opened a new WebSocket")
    await expect(page.locator("#connection")).to_have_text("Live")

    # Stop: the commit in the history (its progress: the test with a hanging commit below).
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.locator("#detail-phase")).to_have_text("Stopped", timeout=30_000)
    await expect(page.locator("[data-note=committed]")).to_contain_text(
        "Your changes are saved in commit"
    )
    commit_row = page.locator("#commits tr[data-status=SUCCEEDED]")
    await expect(commit_row).to_have_count(1)
    await expect(commit_row).to_contain_text("Stop")
    await expect(page.locator("#audit")).to_contain_text("devboxStop")
    await screenshot(page, "detail-stopped-1280")
    await accessible(page, "a stopped devbox")
    assert await same_document(page)

    # The list shows the phase too, and the phone's list followed live.
    await page.get_by_role("link", name="← All devboxes").click()
    await expect(page.locator("[data-devbox=web]")).to_have_attribute("data-phase", "STOPPED")
    await expect(phone.locator("[data-devbox=web]")).to_have_attribute("data-phase", "STOPPED")
    await screenshot(page, "list-1280")
    await accessible(page, "the devbox list")

    # A name the API refuses (taken): its userError is shown next to the name field.
    await page.get_by_role("link", name="New devbox").first.click()
    await fill_create_form(page, "web")
    await page.get_by_role("button", name="Create devbox").click()
    await expect(page.locator("[data-error-for=name]")).to_contain_text("already")
    await expect(page.get_by_label("Name", exact=True)).to_be_focused()
    await screenshot(page, "create-refused-1280")

    # Delete, after a confirmation dialog.
    await page.goto("/#/devboxes/web")
    delete = page.get_by_role("button", name="Delete", exact=True)
    await delete.click()
    dialog = page.get_by_role("dialog", name="Delete web?")
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")  # keyboard users can back out; focus comes back
    await expect(dialog).to_have_count(0)
    await expect(delete).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_visible()
    await screenshot(page, "delete-dialog-1280")
    await accessible(page, "the delete dialog")
    await dialog.get_by_role("button", name="Delete web").click()
    await expect(page.get_by_text("web was deleted.").first).to_be_visible(timeout=30_000)
    await page.get_by_role("link", name="Back to all devboxes").click()
    await expect(page.get_by_text("No devboxes yet.")).to_be_visible()
    await expect(phone.locator("[data-devbox=web]")).to_have_count(0)

    assert page.problems == []
    assert phone.problems == []


async def test_an_invalid_token_is_refused(
    api_server: ApiServer, open_page: OpenPage, screenshot: Screenshot
) -> None:
    page = await open_page(api_server.url)
    await page.goto("/")
    await page.get_by_label("API token").fill("not-a-real-token")
    await page.get_by_role("button", name="Log in").click()
    error = page.locator("[data-error-for=token]")
    await expect(error).to_have_text("This token was refused: it is unknown, expired or revoked.")
    await expect(page.get_by_label("API token")).to_be_focused()
    assert await page.evaluate("sessionStorage.getItem('devbox.token')") is None
    await expect(page.locator("body")).not_to_have_class(re.compile("signed-in"))
    await screenshot(page, "login-refused-1280")
    # The browser itself logs the refused request (HTTP 401); nothing else may be logged.
    others = [p for p in page.problems if "status of 401" not in p]
    assert others == []


async def test_a_user_resizes_releases_shares_and_restores_a_devbox(
    stack: Stack, open_page: OpenPage, screenshot: Screenshot
) -> None:
    token = await stack.user("bob")
    assert (await stack.create(token, "app"))["userErrors"] == []
    page = await open_page(stack.server.url)
    await log_in(page, token)
    await expect(page.locator("[data-devbox=app]")).to_have_attribute("data-phase", "RUNNING")
    await page.get_by_role("link", name="app", exact=True).click()
    await expect(page.locator("#detail-phase")).to_have_text("Running")

    # Edit size and ports: the rules are checked in the dialog, the change shows at once.
    await page.get_by_role("button", name="Edit size and ports").click()
    dialog = page.get_by_role("dialog", name="Edit app")
    await dialog.get_by_label("CPU (cores)").fill("99")
    await expect(dialog.locator("[data-error-for=cpu]")).to_contain_text("between 0.1 and 16")
    await dialog.get_by_label("CPU (cores)").fill("4")
    await dialog.get_by_role("button", name="Add port").click()
    new_port = dialog.get_by_label("Port 2 number")
    await expect(new_port).to_be_focused()
    await new_port.fill("22")
    await expect(dialog.locator("[data-error-for=port]").nth(1)).to_contain_text("reserved for SSH")
    await new_port.fill("3000")
    await dialog.get_by_label("Port 2 name").fill("web")
    await screenshot(page, "edit-dialog-1280")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_have_count(0)
    await expect(page.locator("#resources [data-fact=cpu]")).to_have_text("4")
    await expect(page.locator("#ports tr", has_text="3000")).to_contain_text("web")
    await expect(page.get_by_role("button", name="Edit size and ports")).to_be_focused()

    # Stop, then release the stopped image as v1.0.0.
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.locator("#detail-phase")).to_have_text("Stopped", timeout=30_000)
    await page.get_by_role("textbox", name="Version").fill("1.0.0.0.0")
    await expect(page.locator("[data-error-for=version]")).to_contain_text("v1.2.3-rc.1")
    await page.get_by_role("textbox", name="Version").fill("v1.0.0")
    await page.get_by_label("Notes").fill("first cut")
    await page.get_by_role("button", name="Release", exact=True).click()
    release = page.locator("#releases tr[data-release='v1.0.0']")
    await expect(release).to_contain_text("Succeeded", timeout=30_000)

    # Share it as a runtime: it is in the catalogue, marked as shared.
    await release.get_by_role("button", name="Share v1.0.0 as a runtime").click()
    share = page.get_by_role("dialog", name="Share app v1.0.0 as a runtime")
    await expect(share.get_by_label("Runtime name")).to_have_value("app-v1-0-0")
    await share.get_by_label("Title").fill("Bob's app")
    await share.get_by_role("button", name="Share").click()
    await expect(share).to_have_count(0)
    await page.get_by_role("link", name="Runtimes").click()
    card = page.locator('[data-runtime="Bob\'s app"]')
    await expect(card).to_contain_text("Shared from")
    await expect(
        card.get_by_role("link", name="Create a devbox from Bob's app v1.0.0")
    ).to_be_visible()
    await screenshot(page, "runtimes-shared-1280")

    # Restore the commit: the devbox starts again from it.
    await page.goto("/#/devboxes/app")
    await (
        page.locator("#commits tr[data-status=SUCCEEDED]")
        .first.get_by_role("button", name=re.compile("^Restore commit"))
        .click()
    )
    await until_running(page, stack, token)
    await expect(page.locator("#audit")).to_contain_text("devboxRestore")

    # A revoked token: the next request is refused and the page asks to log in again.
    tokens = await stack.gql(token, "{ apiTokens(first: 10) { edges { node { id current } } } }")
    current = next(e["node"]["id"] for e in tokens["apiTokens"]["edges"] if e["node"]["current"])
    await stack.gql(
        token,
        "mutation($id: ID!) { apiTokenRevoke(input: {id: $id}) { userErrors { message } } }",
        id=current,
    )
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.get_by_role("heading", name="Log in to Devbox")).to_be_visible()
    await expect(page.get_by_text("Your API token was refused")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('devbox.token')") is None

    others = [p for p in page.problems if "status of 401" not in p]
    assert others == []


async def test_a_stop_shows_commit_progress_and_a_failed_commit_says_nothing_was_lost(
    stack: Stack, open_page: OpenPage, screenshot: Screenshot, accessible: Accessible
) -> None:
    assert stack.harness is not None
    shim = stack.harness.shim
    token = await stack.user("carol")
    assert (await stack.create(token, "box"))["userErrors"] == []
    page = await open_page(stack.server.url)
    await log_in(page, token)
    await page.goto("/#/devboxes/box")
    await until_running(page, stack, token)

    # While the commit runs: progress, in the detail and in the list.
    shim.mode = "hang"
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.locator("#detail-phase")).to_have_text("Stopping")
    committing = page.locator("[data-note=committing]")
    await expect(committing).to_contain_text("Saving your changes")
    await expect(committing.get_by_role("progressbar", name="Commit progress")).to_be_visible()
    await screenshot(page, "detail-committing-1280")

    # The commit fails: the page says why, and that nothing was lost.
    shim.failure = "push: registry answered 500 Internal Server Error"
    shim.mode = "fail"
    shim.release()
    failed = page.locator("[data-note=commit-failed]")
    await expect(failed).to_contain_text("registry answered 500", timeout=30_000)
    await expect(failed).to_contain_text("Nothing was lost")
    await expect(page.locator("#commits tr[data-status=FAILED]").first).to_contain_text(
        "registry answered 500"
    )
    await screenshot(page, "detail-commit-failed-1280")
    await accessible(page, "a devbox whose commit failed")
    await page.get_by_role("link", name="← All devboxes").click()
    await expect(page.locator("[data-devbox=box]")).to_contain_text("nothing was lost")

    # The retry succeeds: stopped, with the commit saved.
    shim.mode = "succeed"
    await expect(page.locator("[data-devbox=box]")).to_have_attribute(
        "data-phase", "STOPPED", timeout=60_000
    )
    await page.get_by_role("link", name="box", exact=True).click()
    await expect(page.locator("[data-note=committed]")).to_be_visible()
    assert page.problems == []
