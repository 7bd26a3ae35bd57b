"""A connected instance's pages in Chromium, where what a user does differs from what a
script posting forms does: a password input is emptied by every page the server draws.

Each test connects GitHub Issues (against its fake on loopback) through the API, then
works on the instance's pages as a user would. The pages run under their real
Content-Security-Policy: any console error fails a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import TOKEN, signed_in
from tests.web.server import LiveServer
from ucf.fakes.github import BAD_TOKEN, GOOD_TOKEN, OWNER, REPO, GitHubFake

API: Final = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubFake]:
    fake = GitHubFake(datetime.now(UTC)).start()
    try:
        yield fake
    finally:
        fake.stop()


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
