"""Authoring without code, in Chromium: a connector for an API ucf has never seen.

"Ticketly" is a local fake that is in no catalogue: ``GET /items`` with a
bearer key, page numbers, items under ``items``. The user starts from the blank
template, types a wrong items path and sees the problem inline, fixes it, tries
the connector against the live fake, saves it, connects it through the usual
setup flow and sees its signals. The pages run under their real
Content-Security-Policy: any console error fails the test.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import SCREENSHOTS, TOKEN, signed_in
from tests.web.server import LiveServer
from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer

KEY: Final = "tkly_live_5b8e1c0a9d7f42"


@pytest.fixture(scope="module")
def ticketly() -> Iterator[FakeServer]:
    now = datetime.now(UTC)
    items = [
        {
            "id": n,
            "title": f"Ticket {n}",
            "state": "closed" if n == 2 else "open",
            "created_at": (now - timedelta(hours=3)).isoformat(),
            "updated_at": (now - timedelta(minutes=10 * n)).isoformat(),
        }
        for n in range(1, 4)
    ]
    fake = FakeServer()

    def authorised(request: FakeRequest) -> bool:
        return bool(request.headers.get("authorization") == f"Bearer {KEY}")

    @fake.route("GET", "/me")
    def me(request: FakeRequest) -> FakeResponse:
        if not authorised(request):
            return FakeResponse.json({"message": "invalid key"}, status=401)
        return FakeResponse.json({"user": "ana"})

    @fake.route("GET", "/items")
    def listing(request: FakeRequest) -> FakeResponse:
        if not authorised(request):
            return FakeResponse.json({"message": "invalid key"}, status=401)
        page = int(request.param("page") or "1")
        size = int(request.param("per_page") or "50")
        return FakeResponse.json({"items": items[(page - 1) * size : page * size]})

    with fake:
        yield fake


async def test_a_user_builds_tries_saves_and_connects_a_connector_for_a_new_api(
    browser: Browser,
    server: LiveServer,
    ticketly: FakeServer,
) -> None:
    context, page, console = await signed_in(browser, server, height=900)
    base = server.url
    await page.get_by_role("link", name="New connector").click()
    await expect(page.get_by_role("heading", name="New connector")).to_be_visible()
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")

    # The form view: name it, and get the items path wrong.
    await page.get_by_label("Id", exact=True).fill("ticketly")
    await page.get_by_label("Name", exact=True).fill("Ticketly")
    items_path = page.get_by_label("Items path", exact=True)
    await items_path.fill("$.items[")
    field = page.locator('[data-field="fieldMapping.itemsPath"]')
    await expect(field.locator(".field__error")).to_contain_text("JSONPath does not parse")
    await expect(page.locator("#editor-status")).to_have_text("1 problem")
    await page.screenshot(path=str(SCREENSHOTS / "ucf-editor-problem.png"), full_page=True)
    await items_path.fill("$.items[*]")
    await expect(field.locator(".field__error")).to_have_count(0)
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")

    # A rule added in the form: "in" takes a comma-separated list.
    await page.get_by_role("button", name="Add signal type rule").click()
    rule = page.get_by_role("group", name="Signal type rule 3")
    await rule.get_by_label("Operator", exact=True).select_option("in")
    await rule.get_by_label("When", exact=True).fill("$.state")
    await rule.get_by_label("Value (optional)", exact=True).fill("archived, deleted")
    await rule.get_by_label("Then", exact=True).fill("item_removed")
    await expect(page.locator("#editor-status")).to_have_text("No problems found.")

    # Switching views loses nothing: the JSON has what the form typed.
    await page.get_by_role("tab", name="JSON").click()
    await expect(page.get_by_label("Descriptor (JSON)")).to_have_value(
        re.compile(r'"itemsPath": "\$\.items\[\*\]"')
    )
    typed = json.loads(await page.get_by_label("Descriptor (JSON)").input_value())
    assert typed["fieldMapping"]["signalTypeRules"][2] == {
        "when": "$.state",
        "operator": "in",
        "value": ["archived", "deleted"],
        "then": "item_removed",
    }
    await page.get_by_role("tab", name="Form").click()
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Ticketly")
    await expect(rule.get_by_label("Value (optional)", exact=True)).to_have_value(
        "archived, deleted"
    )

    # Try it against the live fake: request shown masked, response, signals with reasons.
    await page.get_by_role("tab", name="Try it").click()
    await page.get_by_label("API base URL").fill(ticketly.base_url)
    await page.get_by_label("API key").fill(KEY)
    await page.get_by_role("button", name="Send one request").click()
    result = page.locator("#try-result")
    await expect(result).to_contain_text("Response: HTTP 200")
    await expect(result).to_contain_text("3 signals, 0 item errors")
    await expect(result).to_contain_text("item_closed")
    await expect(result).to_contain_text('rule 0: $.state equals "closed"')
    assert KEY not in await result.inner_text()
    await page.screenshot(path=str(SCREENSHOTS / "ucf-editor-try.png"), full_page=True)

    # The preview tab maps a pasted response offline, with the reason behind each type.
    await page.get_by_role("tab", name="Webhook preview").click()
    await page.get_by_label("Payload (JSON)").fill(
        '{"items": [{"id": 9, "title": "Pasted", "state": "closed", "updated_at": 1700000000}]}'
    )
    await page.get_by_label("The sample is").select_option("poll")
    await page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview-result")
    await expect(preview).to_contain_text("1 signal")
    await expect(preview).to_contain_text("item_closed Pasted")

    # Save: it is in the catalogue under Custom, marked custom.
    await page.get_by_role("button", name="Save connector").click()
    await expect(page.locator(".flash")).to_contain_text("Ticketly created")
    card = page.locator(".card.connector", has_text="Ticketly")
    await expect(card.locator(".chip--custom")).to_have_text("Custom")

    # Connect it through the usual setup flow, and see its signals.
    await page.get_by_role("link", name="Connect Ticketly").click()
    await page.get_by_label("API key").fill(KEY)
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_label("API base URL").fill(ticketly.base_url)
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator(".check")).to_contain_text("Connection works")
    await page.get_by_role("link", name="Continue", exact=True).click()
    await page.get_by_role("button", name="Connect Ticketly").click()
    await expect(page.locator(".flash")).to_contain_text("Ticketly is connected")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        polled = await api.post(f"{base}/api/projects/default/instances/ticketly/poll")
        assert polled.status_code == 200, polled.text
        assert polled.json()["inserted"] == 3
    await page.get_by_role("link", name="Signals", exact=True).click()
    await expect(page.locator("table.signals tbody tr")).to_have_count(3)
    await expect(page.locator("table.signals")).to_contain_text("Ticket 2")
    await page.screenshot(path=str(SCREENSHOTS / "ucf-editor-signals.png"), full_page=True)
    assert KEY not in await page.content()
    assert console == [], console
    await context.close()


HELD: Final = {
    "id": "held-lists",
    "name": "Held Lists",
    "description": "Lists of a fake whose 'held' list answers only when the test says so.",
    "category": "Custom",
    "icon": "ticket",
    "kind": "generic",
    "version": "1.0.0",
    "configFields": [
        {"key": "baseUrl", "label": "API base URL", "type": "url"},
        {"key": "list", "label": "List name"},
    ],
    "auth": {"method": "none"},
    "ingestion": {
        "mode": "polling",
        "endpoint": "{{baseUrl}}/lists/{{config.list}}",
        "method": "GET",
        "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
        "rateLimitRpm": 600,
        "pagination": {"type": "link_header", "pageSize": 10},
    },
    "fieldMapping": {
        "itemsPath": "$.items",
        "idPath": "$.id",
        "timestampPath": "$.updated_at",
        "summaryTemplate": "{{title}}",
        "signalTypeRules": [],
        "defaultType": "item_listed",
    },
    "healthCheck": {
        "endpoint": "{{baseUrl}}/me",
        "method": "GET",
        "expectStatus": 200,
        "timeoutMs": 5000,
    },
}


async def test_a_slow_earlier_try_does_not_replace_the_answer_to_the_latest_one(
    browser: Browser, server: LiveServer, ticketly: FakeServer
) -> None:
    """A slow upstream: the user changes the list and tries again before the first try
    answers. The first answer, arriving last, replaced the second on the page, so the
    page showed what the settings no longer said."""
    release = threading.Event()
    updated = datetime.now(UTC).isoformat()

    async def listing(request: FakeRequest) -> FakeResponse:
        name = request.path_params["name"]
        if name == "held":
            await asyncio.to_thread(release.wait, 60)
        title = "From the first try" if name == "held" else "From the second try"
        return FakeResponse.json({"items": [{"id": name, "title": title, "updated_at": updated}]})

    ticketly.add_route("GET", "/lists/{name}", listing)
    context, page, console = await signed_in(browser, server)
    try:
        await page.goto(server.url + "/projects/default/connectors/new")
        await page.get_by_role("tab", name="JSON").click()
        await page.get_by_label("Descriptor (JSON)").fill(json.dumps(HELD))
        await expect(page.locator("#editor-status")).to_have_text("No problems found.")
        await page.get_by_role("tab", name="Try it").click()
        await page.get_by_label("API base URL").fill(ticketly.base_url)
        result = page.locator("#try-result")
        await page.get_by_label("List name").fill("held")
        await page.get_by_role("button", name="Send one request").click()
        await expect(result).to_have_text("Sending…")
        await page.get_by_label("List name").fill("quick")
        await page.get_by_role("button", name="Send one request").click()
        await expect(result).to_contain_text("From the second try")

        async with page.expect_response(lambda r: r.url.endswith("/api/connectors/try")) as late:
            release.set()
        await (await late.value).finished()
        await page.evaluate("() => new Promise((done) => setTimeout(done, 300))")
        await expect(result).to_contain_text("From the second try")
        await expect(result).not_to_contain_text("From the first try")
        assert console == [], console
    finally:
        release.set()
        await context.close()


HOOKY: Final = {
    "id": "hooky",
    "name": "Hooky",
    "description": "Tickets pushed by webhooks only.",
    "category": "Custom",
    "icon": "ticket",
    "kind": "generic",
    "version": "1.0.0",
    "auth": {
        "method": "api_key",
        "config": {
            "delivery": "header",
            "paramName": "X-Hooky-Key",
            "credentialFields": [
                {"key": "secret", "label": "Signing secret", "type": "password", "required": True}
            ],
        },
    },
    "ingestion": {
        "mode": "webhook",
        "eventTypes": ["ticket"],
        "eventTypeHeader": "X-Hooky-Event",
        "actionPath": "$.action",
        "verification": "signature",
        "signature": {"header": "X-Hooky-Signature", "secretCredential": "secret"},
    },
    "fieldMapping": {
        "itemsPath": "$.ticket",
        "idPath": "$.id",
        "timestampPath": "$.updated_at",
        "summaryTemplate": "{{title}}",
        "signalTypeRules": [
            {
                "when": "$.id",
                "operator": "exists",
                "eventTypes": ["ticket.opened"],
                "then": "opened",
            }
        ],
        "defaultType": "updated",
    },
    "healthCheck": {
        "endpoint": "https://hooky.example/me",
        "method": "GET",
        "expectStatus": 200,
        "timeoutMs": 5000,
    },
}


async def test_a_webhook_only_connector_is_tried_with_a_pasted_delivery(
    browser: Browser, server: LiveServer
) -> None:
    """Its Try tab offered a live request and answered "nothing to poll". It now takes a
    pasted delivery and shows the signals the gateway would store, with no signature."""
    context, page, console = await signed_in(browser, server)
    try:
        await page.goto(server.url + "/projects/default/connectors/new")
        await page.get_by_role("tab", name="JSON").click()
        await page.get_by_label("Descriptor (JSON)").fill(json.dumps(HOOKY))
        await expect(page.locator("#editor-status")).to_have_text("No problems found.")
        await page.get_by_role("tab", name="Try it").click()
        await expect(page.get_by_role("button", name="Send one request")).to_be_hidden()
        delivery = {"action": "opened", "ticket": {"id": 5, "title": "Door stuck", "updated_at": 1}}
        await page.get_by_label("Delivery body (JSON)").fill(json.dumps(delivery))
        await page.get_by_label("Event type (optional)").fill("ticket")
        await page.get_by_role("button", name="Map this delivery").click()
        result = page.locator("#try-result")
        await expect(result).to_contain_text("1 signal, 0 item errors")
        await expect(result).to_contain_text("Event type: ticket.opened")
        await expect(result).to_contain_text("opened Door stuck")
        await expect(result).to_contain_text("no signature is needed for a try")
        assert console == [], console
    finally:
        await context.close()
