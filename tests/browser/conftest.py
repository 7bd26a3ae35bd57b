"""What the browser tests share: Debian's Chromium, a live ``ucf serve`` per module, the console.

Chromium is never downloaded: ``scripts/bootstrap --test`` installs Debian's
package, and without it these tests fail saying so (they never skip).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)

from tests.web.server import LiveServer, ucf_env
from ucf.fakes.github import GitHubFake

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN: Final = "ucf_browser-test-admin-token-3c1d9e"
SCREENSHOTS: Final = Path("/tmp")
TIMEOUT_MS: Final = 15_000


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubFake]:
    """A GitHub fake on loopback, one per test module (a dashboard walk connects to it)."""
    fake = GitHubFake(datetime.now(UTC)).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = ucf_env(UCF_API_TOKEN=TOKEN, UCF_ALLOW_HOSTS="127.0.0.1", UCF_SCHEDULER="0")
    with LiveServer(tmp_path_factory.mktemp("ucf-browser"), env) as live:
        yield live


@pytest_asyncio.fixture(loop_scope="function")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package. "
            "Run scripts/bootstrap --test (as root it runs 'apt-get install -y chromium'), "
            "or install it yourself."
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


def watch_console(page: Page) -> list[str]:
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


async def signed_in(
    browser: Browser, server: LiveServer, *, height: int = 900, token: str = TOKEN
) -> tuple[BrowserContext, Page, list[str]]:
    """A fresh browser context signed in to ``server`` with the admin token, its page, and
    the console errors it collects (a test asserts there are none)."""
    context = await browser.new_context(viewport={"width": 1280, "height": height})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    console = watch_console(page)
    await page.goto(server.url + "/login")
    await page.get_by_label("Admin API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    return context, page, console
