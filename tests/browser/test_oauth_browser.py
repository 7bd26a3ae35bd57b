""" "Connect with …" in a real browser: Debian's Chromium against ``ucf serve`` and the Slack fake.

The operator registers the OAuth app on the dashboard's OAuth apps page; the
user clicks Connect, consents on the fake provider's page, comes back to the
setup flow, tests, confirms and sees signals; then the provider revokes the
app, the instance turns to Error, and the user reconnects from the instance
page with its checkpoint kept. The connector is the shipped Slack one; its
settings (asked first in a consent's setup) point it at the fake.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import SCREENSHOTS, signed_in
from tests.web.server import LiveServer, ucf_env
from ucf.fakes.slack import CHANNEL, CLIENT_ID, CLIENT_SECRET, SlackFake

TOKEN = "ucf_oauth-browser-admin-token-8e2b6f0a41d7"


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackFake]:
    fake = SlackFake(datetime.now(UTC)).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = ucf_env(UCF_API_TOKEN=TOKEN, UCF_ALLOW_HOSTS="127.0.0.1", UCF_SCHEDULER="0")
    with LiveServer(tmp_path_factory.mktemp("ucf-oauth-browser"), env) as live:
        yield live


async def test_a_user_connects_slack_by_consent_and_reconnects_after_a_revocation(
    browser: Browser,
    server: LiveServer,
    slack: SlackFake,
) -> None:
    base = server.url
    instance_api = f"{base}/api/projects/default/instances/slack"

    context, page, console = await signed_in(browser, server, token=TOKEN)
    await expect(page.get_by_role("heading", name="Connector catalogue")).to_be_visible()

    # The operator registers the app; the page shows the redirect URI to give Slack.
    await page.goto(base + "/oauth-apps")
    await expect(page.get_by_role("heading", name="OAuth apps")).to_be_visible()
    card = page.locator("section.card", has_text="Slack")
    await expect(card).to_contain_text(f"{base}/oauth/callback")
    await card.get_by_label("Client id").fill(CLIENT_ID)
    await card.get_by_label("Client secret").fill(CLIENT_SECRET)
    await card.get_by_role("button", name="Register Slack").click()
    await expect(page.locator(".flash")).to_contain_text("OAuth app is registered")
    assert CLIENT_SECRET not in await page.content()

    # The user connects: one button, the provider's consent page, back to the setup.
    # With a consent the settings come first: its URLs depend on them.
    await page.goto(base + "/projects/default/connectors/slack/connect")
    await expect(page.get_by_role("heading", name="Configuration")).to_be_visible()
    await page.get_by_label("Web API base URL").fill(slack.base_url)
    await page.get_by_label("Slack sign-in URL").fill(slack.base_url)
    await page.get_by_label("Channel id").fill(CHANNEL)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Credentials")).to_be_visible()
    await page.get_by_role("button", name="Connect with Slack").click()
    await expect(page.get_by_role("heading", name="Allow access?")).to_be_visible()
    await page.screenshot(path=str(SCREENSHOTS / "ucf-oauth-consent.png"))
    await page.locator("#allow").click()
    await expect(page.get_by_role("heading", name="Test connection")).to_be_visible()
    await expect(page.locator(".flash")).to_contain_text("Connected with Slack")
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator(".check .health")).to_have_text("Healthy")
    await page.get_by_role("link", name="Continue", exact=True).click()
    await page.get_by_role("button", name="Connect Slack").click()
    await expect(page.locator(".flash")).to_contain_text("Slack is connected")
    await page.screenshot(path=str(SCREENSHOTS / "ucf-oauth-connected.png"), full_page=True)

    await page.get_by_role("button", name="Poll now").click()
    await expect(page.locator(".flash")).to_contain_text(re.compile(r"Polled Slack: \d+ new"))
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        signals = await api.get(f"{base}/api/projects/default/signals", params={"limit": 5})
        assert signals.json()["items"], signals.text
    checkpoint_before = (await _status(instance_api))["lastSyncAt"]

    # The workspace removes the app: the next poll fails, the instance shows why.
    slack.auth.revoke_all()
    await page.get_by_role("button", name="Poll now").click()
    await expect(page.locator(".flash")).to_contain_text("failed")
    await page.goto(base + "/projects/default/instances/slack")
    await expect(page.locator(".instance .health").first).to_have_text("Error")
    await expect(page.locator(".last-error")).to_contain_text("credentials rejected")

    # Reconnect from the instance page: same consent, tokens replaced, history kept.
    await page.get_by_role("button", name="Reconnect").click()
    await expect(page.get_by_role("heading", name="Allow access?")).to_be_visible()
    await page.locator("#allow").click()
    await expect(page.get_by_role("heading", name="Slack", exact=True)).to_be_visible()
    assert (await _status(instance_api))["lastSyncAt"] == checkpoint_before
    await page.get_by_role("button", name="Poll now").click()
    await expect(page.locator(".flash")).to_contain_text(re.compile(r"Polled Slack"))
    status = await _status(instance_api)
    assert status["healthState"] == "healthy", status
    await page.screenshot(path=str(SCREENSHOTS / "ucf-oauth-reconnected.png"), full_page=True)

    page_text = await page.content()
    for token in slack.auth.access_tokens | slack.auth.refresh_tokens:
        assert token not in page_text
    assert console == [], console
    await context.close()


async def _status(instance_api: str) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        response = await api.get(f"{instance_api}/status")
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status
