"""The connector editor's schema-drawn form and JSON completion, in Chromium.

A user builds a connector that polls *and* receives webhooks using only the
form: the ingestion mode switch moves the polling settings under ``polling``,
the webhook block gets an event type header, a signature verification (and the
verification selector swaps the signature and token sub-forms, keeping what
they share), its own field mapping; the item mapping gets a rule with an
``all`` condition and a priority rule. A wrong JSONPath shows inline at its
path and is fixed there. Switching to the JSON view and back loses nothing,
not even a key the schema does not know (whose problem, having no field, is
listed at the top). The webhook preview signs the pasted payload with the
typed secret (the signature is checked here against an HMAC computed
independently), and rejects the payload once its bytes change. In the JSON
view, completion offers the keys allowed at the cursor, a key's enum values
and JSONPaths from the last sample. The page runs under its real CSP: any
console error fails the test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any, Final

import httpx
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import SCREENSHOTS, TOKEN, signed_in
from tests.web.server import LiveServer

SECRET: Final = "hookly-signing-secret-51c0"
PAYLOAD: Final = (
    '{"action": "updated", "ticket": {"id": 7, "title": "Printer on fire", '
    '"state": "open", "priority": "urgent", "updated_at": "2026-12-05T10:00:00Z"}}'
)


async def _json(page: Page) -> Any:
    return json.loads(await page.get_by_label("Descriptor (JSON)").input_value())


async def _type_at(page: Page, marker: str, text: str) -> None:
    """Put the cursor just after ``marker`` in the JSON view and type ``text`` there."""
    area = page.get_by_label("Descriptor (JSON)")
    await area.evaluate(
        "(area, marker) => { const at = area.value.indexOf(marker) + marker.length;"
        " area.focus(); area.setSelectionRange(at, at); }",
        marker,
    )
    await page.keyboard.type(text)


async def test_a_webhook_and_poll_connector_is_built_with_the_form_alone(
    browser: Browser, server: LiveServer
) -> None:
    context, page, console = await signed_in(browser, server, height=900)
    base = server.url
    status = page.locator("#editor-status")
    await page.goto(base + "/projects/default/connectors/new")
    await expect(status).to_have_text("No problems found.")
    await page.get_by_label("Id", exact=True).fill("hookly")
    await page.get_by_label("Name", exact=True).fill("Hookly")

    # The mode selector swaps the ingestion sub-form; polling settings move under 'polling'.
    mode = page.get_by_label("Mode", exact=True)
    await mode.focus()  # as a keyboard user would
    await mode.select_option("polling_and_webhook")
    await expect(mode).to_be_focused()  # kept across the redraw
    await expect(page.locator('[data-field="ingestion.polling.endpoint"] input')).to_have_value(
        "{{baseUrl}}/items"
    )
    # Pagination shows the settings its type reads: a cursor has a next path, pages do not.
    pagination = page.locator('[data-field="ingestion.polling.pagination"]')
    next_path = pagination.get_by_label("Next path (optional)")
    await expect(next_path).to_have_count(0)
    await pagination.get_by_label("Type", exact=True).select_option("cursor")
    await expect(next_path).to_be_visible()
    await pagination.get_by_label("Type", exact=True).select_option("page_number")
    await expect(next_path).to_have_count(0)
    webhook = page.locator('[data-field="ingestion.webhook"]')
    await webhook.get_by_label("Event types", exact=True).fill("ticket.updated, ticket.created")
    await webhook.get_by_label("Event type header (optional)").fill("X-Hookly-Event")

    # Verification: the signature sub-form; token and back keep what the two share.
    signature = page.locator('[data-field="ingestion.webhook.signature"]')
    await signature.get_by_label("Header", exact=True).fill("X-Hookly-Signature")
    await signature.get_by_label("Prefix (optional)").fill("sha256=")
    verification = webhook.get_by_label("Verification", exact=True)
    await verification.select_option("token")
    await expect(signature).to_have_count(0)
    token = page.locator('[data-field="ingestion.webhook.token"]')
    await expect(token.get_by_label("Header (optional)")).to_have_value("X-Hookly-Signature")
    await verification.select_option("signature")
    await expect(signature.get_by_label("Prefix (optional)")).to_have_value("sha256=")

    # The signing secret is a credential field the user adds.
    await page.get_by_role("button", name="Add credential field").click()
    secret_field = page.get_by_role("group", name="Credential field 2")
    await secret_field.get_by_label("Key", exact=True).fill("webhookSecret")
    await secret_field.get_by_label("Label", exact=True).fill("Webhook secret")
    await secret_field.get_by_label("Type", exact=True).select_option("password")

    # The auth method selector swaps the settings and keeps what the methods share.
    method = page.get_by_role("group", name="Auth", exact=True).get_by_label("Method")
    await method.select_option("basic")
    await expect(page.get_by_label("Param name", exact=True)).to_have_count(0)
    await expect(secret_field.get_by_label("Key", exact=True)).to_have_value("webhookSecret")
    await method.select_option("api_key")
    await expect(page.get_by_label("Param name", exact=True)).to_have_value("Authorization")

    # Deliveries wrap the ticket: the webhook gets its own field mapping.
    await webhook.get_by_role("button", name="Add field mapping").click()
    hook_mapping = page.locator('[data-field="ingestion.webhook.fieldMapping"]')
    await hook_mapping.get_by_label("Items path", exact=True).fill("$.ticket")
    await hook_mapping.get_by_label("Id path", exact=True).fill("$.id")
    await hook_mapping.get_by_label("Timestamp path", exact=True).fill("$.updated_at")
    await hook_mapping.get_by_label("Summary template", exact=True).fill("{{title}}")
    await hook_mapping.get_by_label("Default type (optional)").fill("ticket_changed")

    # A rule with an 'all' condition; its wrong path shows inline, at its path, and is fixed.
    mapping = page.locator('[data-field="fieldMapping"]')
    await mapping.get_by_role("button", name="Add signal type rule").click()
    rule = page.get_by_role("group", name="Signal type rule 3")
    await expect(
        rule.get_by_label("When", exact=True)
    ).to_be_focused()  # the new rule's first field
    await rule.get_by_label("When", exact=True).fill("$.state")
    await rule.get_by_label("Value (optional)", exact=True).fill("open")
    await rule.get_by_label("Then", exact=True).fill("item_escalated")
    await rule.get_by_role("button", name="Add condition").click()
    condition = rule.get_by_role("group", name="Condition 1")
    await condition.get_by_label("When", exact=True).fill("$.priority[")
    await condition.get_by_label("Value (optional)", exact=True).fill("urgent")
    inline = page.locator(
        '[data-field="fieldMapping.signalTypeRules[2].all[0].when"] .field__error'
    )
    await expect(inline).to_contain_text("JSONPath does not parse")
    await expect(status).to_have_text("1 problem")
    await expect(page.locator("#problem-list li:visible")).to_have_count(0)  # shown inline only
    await page.screenshot(path=str(SCREENSHOTS / "ucf-form-problem.png"), full_page=True)
    await condition.get_by_label("When", exact=True).fill("$.priority")
    await expect(inline).to_have_count(0)

    # A priority rule.
    await mapping.get_by_role("button", name="Add priority rule").click()
    priority = page.get_by_role("group", name="Priority rule 1")
    await priority.get_by_label("When", exact=True).fill("$.priority")
    await priority.get_by_label("Value (optional)", exact=True).fill("urgent")
    await priority.get_by_label("Then", exact=True).select_option("critical")
    await expect(status).to_have_text("No problems found.")
    await page.screenshot(path=str(SCREENSHOTS / "ucf-form-built.png"), full_page=True)

    # The JSON view has what the form built.
    await page.get_by_role("tab", name="JSON").click()
    built = await _json(page)
    ingestion = built["ingestion"]
    assert ingestion["mode"] == "polling_and_webhook"
    assert ingestion["polling"]["endpoint"] == "{{baseUrl}}/items"
    assert ingestion["polling"]["delta"]["type"] == "timestamp_filter"
    assert "endpoint" not in ingestion
    assert ingestion["webhook"] == {
        "eventTypes": ["ticket.updated", "ticket.created"],
        "verification": "signature",
        "eventTypeHeader": "X-Hookly-Event",
        "signature": {"header": "X-Hookly-Signature", "prefix": "sha256="},
        "fieldMapping": {
            "itemsPath": "$.ticket",
            "idPath": "$.id",
            "timestampPath": "$.updated_at",
            "summaryTemplate": "{{title}}",
            "signalTypeRules": [],
            "defaultType": "ticket_changed",
        },
    }
    assert built["auth"]["method"] == "api_key"
    assert built["auth"]["config"]["valuePrefix"] == "Bearer "  # remembered across 'basic'
    assert built["auth"]["config"]["credentialFields"][1] == {
        "key": "webhookSecret",
        "label": "Webhook secret",
        "type": "password",
        "required": False,
    }
    assert built["fieldMapping"]["signalTypeRules"][2] == {
        "when": "$.state",
        "operator": "equals",
        "then": "item_escalated",
        "value": "open",
        "all": [{"when": "$.priority", "operator": "equals", "value": "urgent"}],
    }
    assert built["fieldMapping"]["priorityMapping"] == [
        {"when": "$.priority", "operator": "equals", "then": "critical", "value": "urgent"}
    ]

    # A key the schema does not know survives the form; its problem has no field, so it is
    # listed at the top.
    built["x-owner"] = "ana"
    await page.get_by_label("Descriptor (JSON)").fill(json.dumps(built, indent=2))
    await page.get_by_role("tab", name="Form").click()
    listed = page.locator('#problem-list li[data-path="x-owner"]')
    await expect(listed).to_be_visible()
    await expect(page.locator("#form-fields")).to_contain_text(
        "Also in the descriptor, edited in the JSON view: x-owner"
    )
    await page.get_by_label("Description", exact=True).fill("Tickets from Hookly.")
    await page.get_by_role("tab", name="JSON").click()
    assert await _json(page) == {**built, "description": "Tickets from Hookly."}
    del built["x-owner"]
    built["description"] = "Tickets from Hookly."
    await page.get_by_label("Descriptor (JSON)").fill(json.dumps(built, indent=2))
    await expect(status).to_have_text("No problems found.")

    # The poll mapping: the 'all' condition and the priority rule at work.
    await page.get_by_role("tab", name="Webhook preview").click()
    times = {"created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-05T09:00:00Z"}
    items = [
        {"id": 1, "title": "Urgent one", "state": "open", "priority": "urgent", **times},
        {"id": 2, "title": "Calm one", "state": "open", "priority": "low", **times},
    ]
    await page.get_by_label("Payload (JSON)").fill(json.dumps({"items": items}))
    await page.get_by_label("The sample is").select_option("poll")
    await page.get_by_role("button", name="Preview", exact=True).click()
    preview = page.locator("#preview-result")
    await expect(preview).to_contain_text("2 signals")
    await expect(preview).to_contain_text("item_escalated Urgent one")
    await expect(preview).to_contain_text("rule 2:")
    await expect(preview).to_contain_text("item_updated Calm one")
    await expect(preview.locator(".editor__signal").first).to_contain_text('"critical"')

    # A webhook delivery, signed by the server with the typed secret.
    await page.get_by_label("The sample is").select_option("webhook")
    await expect(page.locator("#preview-bytes")).to_contain_text("exact bytes")
    await page.get_by_label("Payload (JSON)").fill(PAYLOAD)
    await page.get_by_label("Headers, one per line").fill("X-Hookly-Event: ticket.updated")
    await page.get_by_label("Webhook secret (optional)").fill(SECRET)
    await page.get_by_role("button", name="Sign this payload with the secret").click()
    await expect(preview).to_contain_text("Verified as the gateway would.")
    await expect(preview).to_contain_text("ticket_changed Printer on fire")
    mac = hmac.new(SECRET.encode(), PAYLOAD.encode(), hashlib.sha256).hexdigest()
    await expect(page.get_by_label("Headers, one per line")).to_have_value(
        f"X-Hookly-Event: ticket.updated\nX-Hookly-Signature: sha256={mac}"
    )
    await page.get_by_label("Payload (JSON)").fill(PAYLOAD.replace(", ", ",", 1))
    await page.get_by_role("button", name="Preview", exact=True).click()
    await expect(preview).to_contain_text("Verification fails")
    assert SECRET not in await preview.inner_text()

    # Completion in the JSON view: keys at the cursor, enum values, JSONPaths from the sample.
    await page.get_by_role("tab", name="JSON").click()
    suggestions = page.locator("#json-completion")
    await _type_at(page, '"signature": {', '\n"secretE')
    await expect(suggestions).to_contain_text("secretEncoding")
    await expect(suggestions).to_contain_text("Standard Webhooks")
    await suggestions.get_by_role("button", name="secretEncoding").click()
    await page.keyboard.type('"')
    await expect(suggestions).to_contain_text("whsec")
    await suggestions.get_by_role("button", name="utf8").click()
    await page.keyboard.type(",")
    typed = await _json(page)
    assert typed["ingestion"]["webhook"]["signature"]["secretEncoding"] == "utf8"
    await _type_at(page, '"fieldMapping": {', '\n"tagsPath": "$.t')
    await expect(suggestions).to_contain_text("$.ticket.title")
    await page.keyboard.press("ArrowDown")  # into the list, by keyboard
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Descriptor (JSON)")).to_have_value(
        re.compile(r'"fieldMapping": \{\n"tagsPath": "\$\.ticket"\n')
    )
    await page.screenshot(path=str(SCREENSHOTS / "ucf-form-completion.png"), full_page=True)
    await page.get_by_label("Descriptor (JSON)").fill(json.dumps(built, indent=2))

    # Saved as built.
    await page.get_by_role("button", name="Save connector").click()
    await expect(page.locator(".flash")).to_contain_text("Hookly created")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        saved = await api.get(f"{base}/api/connectors/hookly")
        assert saved.status_code == 200, saved.text
        hook = saved.json()["ingestion"]["webhook"]
        assert hook["signature"]["header"] == "X-Hookly-Signature"
        assert hook["eventTypeHeader"] == "X-Hookly-Event"
        assert saved.json()["fieldMapping"]["priorityMapping"][0]["then"] == "critical"
    assert console == [], console
    await context.close()


async def test_every_catalogue_connector_round_trips_through_the_form(
    browser: Browser, server: LiveServer
) -> None:
    """'Customise a copy' of each built-in draws its form; an edit there keeps the rest. A
    copy of a native connector has no code behind its new id: its one problem, at
    ``kind``, is said as it is validated (saving it would be refused)."""
    context, page, console = await signed_in(browser, server, height=900)
    base = server.url
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        listed = (await api.get(f"{base}/api/connectors", params={"limit": 100})).json()
    builtins = {c["id"]: c["kind"] for c in listed["items"] if c["builtIn"]}
    ids = sorted(builtins)
    assert len(ids) >= 10, ids
    assert set(builtins.values()) >= {"native", "generic"}, builtins
    for connector in ids:
        await page.goto(f"{base}/projects/default/connectors/new?copy={connector}")
        status = "1 problem" if builtins[connector] == "native" else "No problems found."
        await expect(page.locator("#editor-status")).to_have_text(status)
        await page.get_by_role("tab", name="JSON").click()
        before = await _json(page)
        await page.get_by_role("tab", name="Form").click()
        await page.get_by_label("Name", exact=True).fill("Renamed copy")
        await page.get_by_role("tab", name="JSON").click()
        assert await _json(page) == {**before, "name": "Renamed copy"}, connector
    assert console == [], console
    await context.close()
