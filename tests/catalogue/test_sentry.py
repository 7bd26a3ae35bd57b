"""Sentry specifics: Link headers with results=, the search query sent, the bare-string 429."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.catalogue.conftest import Harness, RecordingSleep, descriptor_of
from ucf.fakes.sentry import GOOD_TOKEN, ORG, SentryFake, SentryScenario

ISSUES = f"/api/0/organizations/{ORG}/issues/"


def test_every_page_links_both_ways_and_says_where_results_end() -> None:
    with SentryFake(datetime.now(UTC)) as fake:
        headers = {"Authorization": f"Bearer {GOOD_TOKEN}"}
        first = httpx.get(fake.server.url(ISSUES + "?query=&limit=100"), headers=headers)
        last = httpx.get(first.links["next"]["url"], headers=headers)
    assert isinstance(first.json(), list)
    assert first.links["previous"]["results"] == "false"
    assert first.links["next"]["results"] == "true"
    assert first.links["next"]["cursor"] == "0:100:0"
    assert last.links["next"]["results"] == "false", "the last page still links onwards"
    assert last.headers["X-Sentry-Rate-Limit-Limit"] == "40"


def test_without_a_query_sentry_only_lists_unresolved_issues() -> None:
    with SentryFake(datetime.now(UTC)) as fake:
        headers = {"Authorization": f"Bearer {GOOD_TOKEN}"}
        default = httpx.get(fake.server.url(ISSUES), headers=headers).json()
    assert default
    assert {issue["status"] for issue in default} == {"unresolved"}


async def test_poll_searches_by_last_seen_across_statuses(harness: Harness, now: datetime) -> None:
    scenario = SentryScenario()
    with scenario.fake(now) as fake:
        poll = await harness.poll(descriptor_of("sentry"), scenario, fake, checkpoint=None, now=now)
        first = fake.server.requests_to(ISSUES)[0]
    query = first.query["query"][0]
    assert query.startswith("lastSeen:>=")
    assert first.query["project"] == ["-1"]
    assert "error_resolved" in poll.types
    assert all(":" in s.signal.summary for s in poll.signals)


async def test_a_bare_string_429_is_waited_out_by_its_reset_header(
    harness: Harness, now: datetime
) -> None:
    scenario = SentryScenario()
    sleep = RecordingSleep()
    with scenario.fake(now) as fake:
        fake.server.inject(fake.rate_limit_fault(retry_after=2), path=fake.poll_route, times=1)
        refused = await harness.client.get(
            fake.server.url(ISSUES), headers={"Authorization": f"Bearer {GOOD_TOKEN}"}
        )
        fake.server.inject(fake.rate_limit_fault(retry_after=2), path=fake.poll_route, times=1)
        poll = await harness.poll(
            descriptor_of("sentry"), scenario, fake, checkpoint=None, now=now, sleep=sleep
        )
    assert refused.status_code == 429
    assert isinstance(refused.json(), str)
    assert "retry-after" not in refused.headers
    assert refused.headers["X-Sentry-Rate-Limit-Remaining"] == "0"
    assert poll.signals
    assert len(sleep.calls) == 1
    assert 0 < sleep.calls[0] <= 3
