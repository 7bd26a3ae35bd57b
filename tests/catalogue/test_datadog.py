"""Datadog specifics: two keys on every request, event cursors, unsigned token webhooks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.catalogue.conftest import Harness, descriptor_of, webhook_url
from ucf.core.timestamps import to_epoch_ms
from ucf.fakes.datadog import API_KEY, APP_KEY, DatadogFake, DatadogScenario
from ucf.runtime.webhooks import RejectCode, compile_verifier


def test_an_api_key_without_its_application_key_is_forbidden() -> None:
    with DatadogFake(datetime.now(UTC)) as fake:
        alone = httpx.get(fake.server.url("/api/v2/events"), headers={"DD-API-KEY": API_KEY})
        validated = httpx.get(fake.server.url("/api/v1/validate"), headers={"DD-API-KEY": API_KEY})
    assert alone.status_code == 403
    assert alone.json() == {"errors": ["Forbidden"]}
    assert validated.json() == {"valid": True}


def test_event_pages_chain_by_meta_page_after_and_the_last_has_none() -> None:
    now = datetime.now(UTC)
    headers = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
    params = {
        "filter[query]": "source:alert",
        "filter[from]": str(to_epoch_ms(now - timedelta(days=7))),
        "sort": "timestamp",
        "page[limit]": "100",
    }
    pages = []
    with DatadogFake(now) as fake:
        while True:
            body = httpx.get(
                fake.server.url("/api/v2/events"), params=params, headers=headers
            ).json()
            pages.append(body)
            after = body["meta"]["page"].get("after")
            if after is None:
                break
            params["page[cursor]"] = after
    assert len(pages) >= 2
    assert "next" not in pages[-1]["links"]
    stamps = [e["attributes"]["timestamp"] for page in pages for e in page["data"]]
    assert stamps == sorted(stamps), "sort=timestamp lists oldest first"


async def test_poll_sends_both_keys_and_a_millisecond_from(harness: Harness, now: datetime) -> None:
    scenario = DatadogScenario()
    with scenario.fake(now) as fake:
        poll = await harness.poll(
            descriptor_of("datadog"), scenario, fake, checkpoint=None, now=now
        )
        first = fake.server.requests_to("/api/v2/events")[0]
    assert first.headers["dd-api-key"] == API_KEY
    assert first.headers["dd-application-key"] == APP_KEY
    assert first.query["filter[from]"] == [str(to_epoch_ms(now - timedelta(days=7)))]
    assert first.query["filter[query]"] == ["source:alert"]
    assert {"monitor_triggered", "monitor_resolved"} <= poll.types


def test_a_delivery_without_the_configured_header_is_refused() -> None:
    scenario = DatadogScenario()
    sample = scenario.webhook_samples()[0]
    result = compile_verifier(descriptor_of("datadog")).verify(
        body=sample.body,
        headers={"Content-Type": "application/json"},
        url=webhook_url("datadog"),
        query={},
        credentials=scenario.credentials(),
        now=datetime.now(UTC),
    )
    assert result.reason is not None
    assert result.reason.code is RejectCode.MISSING_HEADER
