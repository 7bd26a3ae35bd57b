"""Notion specifics the shared battery cannot state: body cursors, versions, titles, handshake."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from tests.catalogue.conftest import Harness, descriptor_of, webhook_url
from ucf.fakes.notion import GOOD_TOKEN, VERIFICATION_TOKEN, NotionFake, NotionScenario
from ucf.runtime.webhooks import check_delivery, compile_verifier


def _search(
    fake: NotionFake, body: object, *, version: str | None = "2022-06-28"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {GOOD_TOKEN}"}
    if version is not None:
        headers["Notion-Version"] = version
    return httpx.post(fake.server.url("/v1/search"), json=body, headers=headers)


def test_first_search_page_is_rejected_when_it_sends_a_null_start_cursor() -> None:
    with NotionFake(datetime.now(UTC)) as fake:
        response = _search(fake, {"page_size": 10, "start_cursor": None})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "start_cursor should be a string or `undefined`" in response.json()["message"]


def test_requests_without_a_notion_version_are_refused_like_notion_does() -> None:
    with NotionFake(datetime.now(UTC)) as fake:
        response = _search(fake, {}, version=None)
    assert response.status_code == 400
    assert response.json()["code"] == "missing_version"


async def test_poll_sends_no_cursor_first_then_the_previous_next_cursor(
    harness: Harness, now: datetime
) -> None:
    scenario = NotionScenario()
    with scenario.fake(now) as fake:
        await harness.poll(descriptor_of("notion"), scenario, fake, checkpoint=None, now=now)
        bodies = [json.loads(r.body) for r in fake.server.requests_to("/v1/search")]
    assert "start_cursor" not in bodies[0]
    assert bodies[0]["page_size"] == 100
    assert all(isinstance(b["start_cursor"], str) for b in bodies[1:])
    assert bodies[0]["sort"] == {"direction": "descending", "timestamp": "last_edited_time"}


async def test_page_and_database_summaries_read_their_titles(
    harness: Harness, now: datetime
) -> None:
    scenario = NotionScenario()
    with scenario.fake(now) as fake:
        poll = await harness.poll(descriptor_of("notion"), scenario, fake, checkpoint=None, now=now)
        tracker = fake.data.tracker.id
    summaries = {s.item_id: s.signal.summary for s in poll.signals}
    assert summaries[tracker] == "Engineering tasks"
    assert all(summaries.values()), "every page and database has a title in the dataset"
    assert not any(s.startswith("[") for s in summaries.values())


def test_verification_token_post_is_answered_unsigned_and_hands_over_the_secret() -> None:
    scenario = NotionScenario()
    descriptor = descriptor_of("notion")
    sample = scenario.verification_request()
    admission = check_delivery(
        compile_verifier(descriptor),
        descriptor,
        method="POST",
        body=sample.body,
        headers={"Content-Type": "application/json"},
        url=webhook_url("notion"),
        query={},
        credentials={"token": GOOD_TOKEN},
        now=datetime.now(UTC),
    )
    assert admission.ok
    assert admission.handshake is not None
    assert admission.handshake.captured_secret == VERIFICATION_TOKEN
