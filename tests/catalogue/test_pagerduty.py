"""PagerDuty specifics: the Token auth form, includes, offset limits, secret rotation."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.catalogue.conftest import Harness, descriptor_of, webhook_url
from ucf.fakes.pagerduty import (
    GOOD_KEY,
    OLD_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    PagerDutyFake,
    PagerDutyScenario,
    sign_delivery,
)
from ucf.runtime.webhooks import RejectCode, compile_verifier


def _get(
    fake: PagerDutyFake, path: str, *, auth: str = f"Token token={GOOD_KEY}"
) -> httpx.Response:
    return httpx.get(fake.server.url(path), headers={"Authorization": auth})


def test_a_bearer_header_is_not_pagerdutys_token_form_and_is_refused() -> None:
    with PagerDutyFake(datetime.now(UTC)) as fake:
        response = _get(fake, "/abilities", auth=f"Bearer {GOOD_KEY}")
        accepted = _get(fake, "/abilities")
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "Authentication failed", "code": 2006}}
    assert accepted.status_code == 200
    assert accepted.headers["ratelimit-limit"] == "960"


def test_offset_past_ten_thousand_is_a_client_error_as_documented() -> None:
    with PagerDutyFake(datetime.now(UTC)) as fake:
        response = _get(fake, "/log_entries?offset=9950&limit=100")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 2001


async def test_poll_asks_for_overview_entries_with_incidents_expanded(
    harness: Harness, now: datetime
) -> None:
    scenario = PagerDutyScenario()
    with scenario.fake(now) as fake:
        poll = await harness.poll(
            descriptor_of("pagerduty"), scenario, fake, checkpoint=None, now=now
        )
        first = fake.server.requests_to("/log_entries")[0]
    assert first.headers["accept"] == "application/vnd.pagerduty+json;version=2"
    assert first.query["include[]"] == ["incidents"]
    assert first.query["is_overview"] == ["true"]
    raw = poll.signals[0].signal.raw
    assert raw["incident"]["status"] in ("triggered", "acknowledged", "resolved")
    assert all(s.signal.summary.startswith("[#") for s in poll.signals)


def test_a_delivery_signed_only_with_a_rotated_out_secret_is_rejected() -> None:
    scenario = PagerDutyScenario()
    sample = scenario.webhook_samples()[0]
    url = webhook_url("pagerduty")
    verifier = compile_verifier(descriptor_of("pagerduty"))
    now = datetime.now(UTC)
    results = {}
    for name, secrets in (
        ("old only", (OLD_WEBHOOK_SECRET,)),
        ("both", (OLD_WEBHOOK_SECRET, WEBHOOK_SECRET)),
        ("new only", (WEBHOOK_SECRET,)),
    ):
        delivery = sign_delivery(sample, url=url, secrets=secrets)
        result = verifier.verify(
            body=delivery.body,
            headers=delivery.headers,
            url=url,
            query={},
            credentials=scenario.credentials(),
            now=now,
        )
        results[name] = None if result.reason is None else result.reason.code
    assert results == {
        "old only": RejectCode.SIGNATURE_MISMATCH,
        "both": None,
        "new only": None,
    }
