"""The dashboard behind a proxy at a path, in Chromium: nothing leads out of ucf.

``ucf serve --public-url http://127.0.0.1:PORT/ucf`` behind a real reverse proxy
that takes ``/ucf`` off (tests/web/proxy.py, as nginx would). The walk logs in
from a deep link, searches the catalogue, connects GitHub Issues through the
setup form, tests it from the instance page, validates and tries a connector in
the editor (the page's own fetch() calls), and logs out. Every request outside
the prefix is the proxy's 404 and is listed by it: a link, form, redirect,
asset or script call built from the host's root fails the test, and so would
a console error (a blocked or missing asset).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import TIMEOUT_MS, TOKEN, watch_console
from tests.web.proxy import PrefixProxy
from tests.web.server import LiveServer, ucf_env
from ucf.fakes.github import GOOD_TOKEN, OWNER, REPO, GitHubFake
from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer

PREFIX: Final = "/ucf"
KEY: Final = "tkly_live_prefix_7c2e94"


@pytest.fixture(scope="module")
def proxy() -> Iterator[PrefixProxy]:
    with PrefixProxy(PREFIX) as running:
        yield running


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory: pytest.TempPathFactory, proxy: PrefixProxy) -> Iterator[LiveServer]:
    """``ucf serve`` told it is reached at the proxy's ``/ucf``."""
    env = ucf_env(UCF_API_TOKEN=TOKEN, UCF_ALLOW_HOSTS="127.0.0.1", UCF_SCHEDULER="0")
    public = proxy.url + PREFIX
    with LiveServer(tmp_path_factory.mktemp("ucf-prefix"), env, "--public-url", public) as live:
        proxy.upstream = live.url
        yield live


@pytest.fixture(scope="module")
def items_api() -> Iterator[FakeServer]:
    """``GET /items`` with a bearer key: what the editor's blank connector reads."""
    fake = FakeServer()

    @fake.route("GET", "/items")
    def listing(request: FakeRequest) -> FakeResponse:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return FakeResponse.json({"message": "invalid key"}, status=401)
        return FakeResponse.json(
            {"items": [{"id": 1, "title": "Behind the proxy", "updated_at": 1700000000}]}
        )

    with fake:
        yield fake


async def links_outside(page: Page, public: str) -> list[str]:
    """Every link, form, stylesheet and script of this page's own site not under ``public``."""
    found: list[str] = await page.evaluate(
        """() => [
            ...Array.from(document.querySelectorAll("a[href]"), (a) => a.href),
            ...Array.from(document.querySelectorAll("form"), (f) => f.action),
            ...Array.from(document.querySelectorAll("link[href]"), (l) => l.href),
            ...Array.from(document.querySelectorAll("script[src]"), (s) => s.src),
        ]"""
    )
    origin = public[: public.index("/", len("http://"))]
    return [url for url in found if url.startswith(origin) and not url.startswith(public + "/")]


async def test_the_dashboard_behind_a_proxy_at_a_path_never_leads_out_of_it(
    browser: Browser,
    proxy: PrefixProxy,
    prefixed: LiveServer,
    github: GitHubFake,
    items_api: FakeServer,
) -> None:
    public = proxy.url + PREFIX
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    console = watch_console(page)

    # A deep link while logged out: the login page, and back to that page after it.
    await page.goto(public + "/projects/default/signals")
    await expect(page).to_have_url(
        public + "/login?next=/projects/default/signals", ignore_case=False
    )
    await page.get_by_label("Admin API token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(public + "/projects/default/signals")
    assert await links_outside(page, public) == []
    cookies = {cookie["name"]: cookie["path"] for cookie in await context.cookies()}
    assert cookies["ucf_session"] == PREFIX, cookies

    # The catalogue, from the header's tab; its search form.
    await page.get_by_role("link", name="Catalogue", exact=True).click()
    await expect(page.get_by_role("heading", name="Connector catalogue")).to_be_visible()
    await page.get_by_role("searchbox", name="Search connectors by name").fill("github")
    await page.get_by_role("searchbox", name="Search connectors by name").press("Enter")
    await expect(page).to_have_url(
        re.compile(re.escape(public) + r"/projects/default/connectors\?q=github")
    )
    assert await links_outside(page, public) == []

    # The connect form: credentials, configuration, test, confirm.
    await page.get_by_role("link", name="Connect GitHub Issues").click()
    await page.get_by_label("Personal access token").fill(GOOD_TOKEN)
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_label("API base URL").fill(github.base_url)
    await page.get_by_label("Owner").fill(OWNER)
    await page.get_by_label("Repository").fill(REPO)
    await page.get_by_role("button", name="Continue").click()
    assert await links_outside(page, public) == []
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator(".check")).to_contain_text("Connection works")
    await page.get_by_role("link", name="Continue", exact=True).click()
    await page.get_by_role("button", name="Connect GitHub Issues").click()
    await expect(page.locator(".flash")).to_contain_text("GitHub Issues is connected")

    # The instance page: its webhook URL is the public one, its buttons post under /ucf.
    await expect(page).to_have_url(public + "/projects/default/instances/github-issues")
    await expect(page.locator(".webhook__url")).to_contain_text(
        public + "/api/webhooks/github-issues/default/"
    )
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator(".flash")).to_contain_text("Connection test passed")
    await expect(page).to_have_url(public + "/projects/default/instances/github-issues")
    assert await links_outside(page, public) == []

    # The editor: validation as the author types, and Try it, both fetch() from the page.
    await page.goto(public + "/projects/default/connectors/new")
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")
    await page.get_by_label("Id", exact=True).fill("prefixed")
    await page.get_by_label("Name", exact=True).fill("Prefixed")
    items_path = page.get_by_label("Items path", exact=True)
    await items_path.fill("$.items[")
    await expect(page.locator("#editor-status")).to_have_text("1 problem")
    await items_path.fill("$.items[*]")
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")
    await page.get_by_role("tab", name="Try it").click()
    await page.get_by_label("API base URL").fill(items_api.base_url)
    await page.get_by_label("API key").fill(KEY)
    await page.get_by_role("button", name="Send one request").click()
    await expect(page.locator("#try-result")).to_contain_text("Response: HTTP 200")
    await expect(page.locator("#try-result")).to_contain_text("1 signal")
    assert await links_outside(page, public) == []

    # Log out: the login page under /ucf, and the session is gone.
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(public + "/login")
    await page.goto(public + "/")
    await expect(page).to_have_url(re.compile(re.escape(public) + r"/login\?next="))

    assert proxy.outside == [], proxy.outside
    assert console == [], console
    await context.close()
