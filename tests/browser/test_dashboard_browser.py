"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against ``ucf serve``.

One walk through what a user does on a fresh server: log in with the token
``ucf serve`` printed, search the catalogue, connect GitHub Issues through the
generated form (against the GitHub fake on loopback), test the connection,
watch signals arrive, poll now, disable, disconnect. The browser runs with
the pages' real Content-Security-Policy, so an inline script or a blocked
asset would show up as a console error, which fails the test.

Chromium is never downloaded: ``scripts/bootstrap --test`` installs Debian's
package, and without it this test fails saying so (it never skips).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import SCREENSHOTS, TIMEOUT_MS, TOKEN, signed_in, watch_console
from tests.web.server import LiveServer
from ucf.fakes import jira as jira_fake
from ucf.fakes.github import GOOD_TOKEN, OWNER, REPO, GitHubFake
from ucf.fakes.jira import JiraFake


async def test_a_user_connects_github_watches_signals_and_disconnects(
    browser: Browser, server: LiveServer, github: GitHubFake
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    console = watch_console(page)
    base = server.url

    # Log in: a wrong token first, then the right one.
    await page.goto(base + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.screenshot(path=str(SCREENSHOTS / "ucf-dashboard-login.png"))
    assert console == [], console
    await page.get_by_label("Admin API token").fill("not-the-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not this server's admin API token")
    console.clear()  # the browser reports the refused login's 401 as a failed load
    await page.get_by_label("Admin API token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Connector catalogue")).to_be_visible()
    await page.screenshot(path=str(SCREENSHOTS / "ucf-dashboard-catalogue.png"), full_page=True)

    # Search: the grid filters as the user types, and the server agrees on submit.
    slack = page.locator(".card.connector", has_text="Slack")
    await expect(slack).to_be_visible()
    search = page.get_by_role("searchbox", name="Search connectors by name")
    await search.fill("github")
    await expect(slack).to_be_hidden()
    await expect(page.locator(".card.connector:visible")).to_have_count(2)
    await search.press("Enter")
    await expect(page).to_have_url(re.compile(r"q=github"))
    await expect(page.locator(".card.connector")).to_have_count(2)

    # Connect GitHub Issues: credentials, configuration, test, confirm.
    await page.get_by_role("link", name="Connect GitHub Issues").click()
    await expect(page.get_by_role("heading", name="Credentials")).to_be_visible()
    await page.get_by_label("Personal access token").fill(GOOD_TOKEN)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Configuration")).to_be_visible()
    await expect(page.get_by_label("API base URL")).to_have_value("https://api.github.com")
    await page.get_by_label("API base URL").fill(github.base_url)
    await page.get_by_label("Owner").fill(OWNER)
    await page.get_by_label("Repository").fill(REPO)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Test connection")).to_be_visible()
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator(".check")).to_contain_text("Connection works")
    await expect(page.locator(".check .health")).to_have_text("Healthy")
    await page.screenshot(path=str(SCREENSHOTS / "ucf-dashboard-setup.png"), full_page=True)
    await page.get_by_role("link", name="Continue", exact=True).click()
    await page.get_by_role("button", name="Connect GitHub Issues").click()
    await expect(page.locator(".flash")).to_contain_text("GitHub Issues is connected")
    await expect(page.locator(".instance .health").first).to_have_text("Healthy")
    assert GOOD_TOKEN not in await page.content()
    assert "••••" in await page.content()

    # Signals arrive on the open signals page by themselves (auto-refresh) after a poll.
    await page.get_by_role("link", name="Signals", exact=True).click()
    await expect(page.get_by_text("No signals yet")).to_be_visible()
    await expect(page.get_by_label("Auto-refresh")).to_be_checked()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        polled = await api.post(f"{base}/api/projects/default/instances/github-issues/poll")
        assert polled.status_code == 200, polled.text
        first_poll = polled.json()["inserted"]
    assert first_poll > 0
    await expect(page.locator("table.signals tbody tr")).to_have_count(min(first_poll, 50))
    if first_poll > 50:
        await expect(page.get_by_role("link", name="Older →")).to_be_visible()
    await page.locator("table.signals summary").first.click()
    await page.screenshot(path=str(SCREENSHOTS / "ucf-dashboard-signals.png"))

    # Poll now, from the monitoring page, after new activity upstream.
    github.add_activity(datetime.now(UTC))
    await page.get_by_role("link", name="Connected", exact=True).click()
    await page.get_by_role("button", name="Poll now").click()
    await expect(page.locator(".flash")).to_contain_text(
        re.compile(r"Polled GitHub Issues: \d+ new")
    )
    facts = page.locator(".instance .facts")
    await expect(facts).to_contain_text("Received 24 h")
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator(".flash")).to_contain_text("Connection test passed")
    await page.screenshot(path=str(SCREENSHOTS / "ucf-dashboard-monitoring.png"), full_page=True)

    # Disable, and the instance says so; polling is off.
    switch = page.get_by_role("switch", name="Enabled: GitHub Issues")
    await expect(switch).to_have_attribute("aria-checked", "true")
    await switch.click()
    await expect(page.locator(".flash")).to_contain_text("GitHub Issues is disabled")
    await expect(page.get_by_role("switch", name="Enabled: GitHub Issues")).to_have_attribute(
        "aria-checked", "false"
    )
    await expect(page.locator(".instance .health").first).to_have_text("Disabled")
    await expect(page.get_by_role("button", name="Poll now")).to_be_disabled()

    # Disconnect, confirming first.
    await page.get_by_role("link", name=re.compile("Details and disconnect")).click()
    await page.screenshot(path=str(SCREENSHOTS / "ucf-dashboard-instance.png"), full_page=True)
    await page.get_by_role("link", name="Disconnect…").click()
    await expect(
        page.get_by_role("heading", name=re.compile("Disconnect GitHub Issues"))
    ).to_be_visible()
    await page.get_by_role("button", name="Disconnect GitHub Issues").click()
    await expect(page.locator(".flash")).to_contain_text("GitHub Issues is disconnected")
    await expect(page.get_by_text("Nothing is connected to project default yet.")).to_be_visible()

    assert console == [], console
    await context.close()


@pytest.fixture(scope="module")
def jira() -> Iterator[JiraFake]:
    fake = JiraFake(datetime.now(UTC)).start()
    try:
        yield fake
    finally:
        fake.stop()


async def test_a_user_connects_jira_from_the_catalogue_and_sees_its_signals(
    browser: Browser, server: LiveServer, jira: JiraFake
) -> None:
    """The native Jira connector through the same generated setup flow as any connector."""
    context, page, console = await signed_in(browser, server, height=860)
    await expect(page.get_by_role("heading", name="Connector catalogue")).to_be_visible()
    await page.get_by_role("searchbox", name="Search connectors by name").fill("jira")
    card = page.locator(".card.connector:visible")
    await expect(card).to_have_count(1)
    await expect(card).to_contain_text("Project Management")

    await page.get_by_role("link", name="Connect Jira Cloud").click()
    await expect(page.get_by_role("heading", name="Credentials")).to_be_visible()
    await page.get_by_label("Atlassian account email").fill(jira_fake.GOOD_EMAIL)
    await page.get_by_label(re.compile(r"^API token")).fill(jira_fake.GOOD_TOKEN)
    await page.get_by_label("Webhook secret").fill(jira_fake.WEBHOOK_SECRET)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Configuration")).to_be_visible()
    await page.get_by_label("Jira site URL").fill(jira.base_url)
    await page.get_by_label("JQL filter").fill("project = OPS")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Test connection")).to_be_visible()
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator(".check")).to_contain_text("Connection works")
    await page.get_by_role("link", name="Continue", exact=True).click()
    await page.get_by_role("button", name="Connect Jira Cloud").click()
    await expect(page.locator(".flash")).to_contain_text("Jira Cloud is connected")
    assert jira_fake.GOOD_TOKEN not in await page.content()
    assert jira.server.requests_to("/rest/api/3/myself"), "Test Connection reached the fake"

    # Poll now: the native source's schedule makes it pollable from the monitoring page.
    await page.get_by_role("button", name="Poll now").click()
    await expect(page.locator(".flash")).to_contain_text(re.compile(r"Polled Jira Cloud: \d+ new"))
    await page.get_by_role("link", name="Signals", exact=True).click()
    rows = page.locator("table.signals tbody tr", has_text="OPS-")
    await expect(rows.first).to_be_visible()
    await expect(page.locator("table.signals")).to_contain_text("issue_status_changed")
    await page.screenshot(path=str(SCREENSHOTS / "ucf-dashboard-jira-signals.png"))

    assert console == [], console
    await context.close()
