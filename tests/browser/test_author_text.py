"""Text a connector's author chose, on the pages that show it, in Chromium.

A descriptor's name is free text: markup must stay text, and one long word must
wrap instead of widening the card, and then the whole page, beyond the window.
The pages run under their real Content-Security-Policy: any console error, or
any dialog a script opened, fails the test.
"""

from __future__ import annotations

from typing import Final

import httpx
from playwright.async_api import Browser, Dialog, expect

from tests.browser.conftest import TOKEN, signed_in
from tests.web.server import LiveServer
from ucf.catalogue.starter import starter_descriptor

API: Final = {"Authorization": f"Bearer {TOKEN}"}
NAME: Final = "<img src=x onerror=alert(1)>" + "W" * 240
WIDTH: Final = 1280


async def test_a_long_hostile_connector_name_stays_text_and_inside_the_window(
    browser: Browser, server: LiveServer
) -> None:
    """The catalogue card of a connector named with one 240-letter word grew to the
    word's width: the page scrolled sideways, 4500 px wide in a 1280 px window."""
    descriptor = starter_descriptor("long-name", NAME)
    async with httpx.AsyncClient(headers=API) as api:
        registered = await api.post(f"{server.url}/api/connectors", json=descriptor)
        assert registered.status_code == 201, registered.text
        connected = await api.post(
            f"{server.url}/api/projects/long/instances",
            json={
                "connectorId": "long-name",
                "credentials": {"apiKey": "k-0123456789"},
                "config": {"baseUrl": "https://api.example.com"},
            },
        )
        assert connected.status_code == 201, connected.text
    context, page, console = await signed_in(browser, server)
    assert page.viewport_size is not None
    assert page.viewport_size["width"] == WIDTH
    dialogs: list[str] = []

    async def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", record)
    for path in (
        "/projects/long/connectors?category=Custom",
        "/projects/other/connectors/long-name/connect",
        "/projects/long/instances",
        "/projects/long/instances/long-name",
        "/projects/long/connectors/long-name/edit",
    ):
        await page.goto(server.url + path)
        await expect(page.get_by_text(NAME).first).to_be_visible()
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= WIDTH, (path, wide)
    assert dialogs == []
    assert console == [], console
    await context.close()
