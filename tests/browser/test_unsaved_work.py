"""What a user typed and has not saved yet, in Chromium: kept until Save, or asked about
before the page is left.

A browser differs here from a script posting forms: a password input is emptied by
every page the server draws, a link or the Back button drops an edited textarea
without a word, and the editor's script redraws the problems a refused save listed. The pages run under their real Content-Security-Policy: any console
error fails a test.
"""

from __future__ import annotations

from typing import Any, Final

import httpx
from playwright.async_api import Browser, Dialog, Page, expect

from tests.browser.conftest import TOKEN, signed_in
from tests.web.server import LiveServer
from ucf.fakes.github import BAD_TOKEN, GOOD_TOKEN, OWNER, REPO, GitHubFake

API: Final = {"Authorization": f"Bearer {TOKEN}"}


async def _connect(
    server: LiveServer, github: GitHubFake, project: str, credentials: dict[str, str]
) -> None:
    body: dict[str, Any] = {
        "connectorId": "github-issues",
        "credentials": credentials,
        "config": {"baseUrl": github.base_url, "owner": OWNER, "repo": REPO},
    }
    async with httpx.AsyncClient(headers=API) as api:
        created = await api.post(f"{server.url}/api/projects/{project}/instances", json=body)
        assert created.status_code == 201, created.text


async def test_a_key_typed_and_tested_in_the_instance_editor_is_the_one_save_stores(
    browser: Browser, server: LiveServer, github: GitHubFake
) -> None:
    """The user replaces a revoked token, tests it (it works), then saves. The test's page
    had emptied the password input, so Save stored nothing new: the instance kept the
    revoked token and failed its next poll, though the page had just said it works."""
    await _connect(server, github, "rotate", {"token": BAD_TOKEN})
    context, page, console = await signed_in(browser, server)
    await page.goto(server.url + "/projects/rotate/instances/github-issues/edit")
    await page.get_by_label("Personal access token").fill(GOOD_TOKEN)
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator("#edit-check")).to_contain_text("Connection works (HTTP 200)")
    await expect(page.get_by_label("Personal access token")).to_have_value("")
    await expect(page.locator("#f-credentials-token-saved")).to_contain_text(
        "Not saved yet: ••••" + GOOD_TOKEN[-4:]
    )
    assert GOOD_TOKEN not in await page.content()

    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".flash")).to_contain_text("settings and credentials saved")
    await page.get_by_role("button", name="Test connection").first.click()
    await expect(page.locator(".flash")).to_contain_text("Connection test passed")
    assert GOOD_TOKEN not in await page.content()
    assert console == [], console
    await context.close()


async def _leave_by_cancel(page: Page) -> list[str]:
    """Click the editor's Cancel link; the dialogs the page opened (each dismissed: the
    user stays)."""
    asked: list[str] = []

    async def stay(dialog: Dialog) -> None:
        asked.append(dialog.type)
        await dialog.dismiss()

    page.once("dialog", stay)
    await page.get_by_role("link", name="Cancel", exact=True).click()
    await page.wait_for_timeout(300)  # a dialog, if any, opens on the click
    page.remove_listener("dialog", stay)
    return asked


async def test_leaving_the_connector_editor_with_unsaved_changes_asks_first(
    browser: Browser, server: LiveServer
) -> None:
    """A link, Back or closing the tab dropped a descriptor being written without a word.
    Untouched, or just saved, the page is left without a question."""
    context, page, console = await signed_in(browser, server)
    editor = server.url + "/projects/default/connectors/new"
    await page.goto(editor)
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")
    await page.get_by_label("Id", exact=True).click()  # a look, no change
    assert await _leave_by_cancel(page) == []
    await expect(page.get_by_role("heading", name="Connector catalogue")).to_be_visible()

    await page.goto(editor)
    await page.get_by_label("Id", exact=True).fill("unsaved-work")
    assert await _leave_by_cancel(page) == ["beforeunload"]
    await expect(page.get_by_label("Id", exact=True)).to_have_value("unsaved-work")  # stayed

    # A refused save comes back holding text nothing stored: still asked about.
    await page.get_by_label("Name", exact=True).fill("")
    await page.get_by_role("button", name="Save connector").click()
    await expect(page.locator("#editor-status")).to_contain_text("problem")
    await page.get_by_label("Id", exact=True).click()
    assert await _leave_by_cancel(page) == ["beforeunload"]

    await page.get_by_label("Name", exact=True).fill("Unsaved work")
    await page.get_by_role("button", name="Save connector").click()  # no question on Save
    await expect(page.locator(".flash")).to_contain_text("Unsaved work created")
    console[:] = [c for c in console if "422" not in c]  # the refused save's own status
    assert console == [], console
    await context.close()


async def test_a_save_refused_for_a_taken_id_says_so_in_the_editor(
    browser: Browser, server: LiveServer
) -> None:
    """The refused save's page listed "a connector 'github-issues' already exists", and
    the editor's first check (the descriptor itself is valid) replaced it with "No
    problems found.": Save seemed to do nothing. Once the id changes, it goes."""
    context, page, console = await signed_in(browser, server)
    await page.goto(server.url + "/projects/default/connectors/new")
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")
    await page.get_by_label("Id", exact=True).fill("github-issues")
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")
    await page.get_by_role("button", name="Save connector").click()
    await expect(page.locator("#editor-status")).to_have_text("1 problem")
    await page.wait_for_timeout(1000)  # the page's own check has answered by now
    await expect(page.locator("#editor-status")).to_have_text("1 problem")
    field = page.locator('[data-field="id"]')
    await expect(field).to_contain_text("a connector 'github-issues' already exists")

    await page.get_by_label("Id", exact=True).fill("github-issues-mine")
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")
    await page.get_by_role("button", name="Save connector").click()
    await expect(page.locator(".flash")).to_contain_text("created")
    console[:] = [c for c in console if "409" not in c]  # the refused save's own status
    assert console == [], console
    await context.close()
