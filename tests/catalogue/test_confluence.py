"""Confluence specifics: CQL dates in the user's time zone, relative next links, Basic auth."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.catalogue.conftest import Harness, descriptor_of
from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.validation import parse_descriptor
from ucf.fakes.confluence import ConfluenceScenario

LATER = timedelta(minutes=10)


def _with_overlap(seconds: int) -> ConnectorDescriptor:
    data = descriptor_of("confluence").to_json()
    data["ingestion"]["delta"]["overlapSeconds"] = seconds
    return parse_descriptor(data)


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Pacific/Kiritimati", "Etc/GMT+12"])
async def test_users_in_any_time_zone_lose_nothing_between_polls(
    zone: str, harness: Harness, now: datetime
) -> None:
    descriptor = descriptor_of("confluence")
    scenario = ConfluenceScenario(zone=zone)
    with scenario.fake(now) as fake:
        first = await harness.poll(descriptor, scenario, fake, checkpoint=None, now=now)
        activity = fake.add_activity(now + LATER)
        second = await harness.poll(
            descriptor, scenario, fake, checkpoint=first.checkpoint, now=now + LATER
        )
    fresh = {s.item_id for s in second.signals if s.dedup_key not in first.keys}
    assert fresh == activity.ids


async def test_a_one_minute_overlap_would_miss_changes_of_users_west_of_utc(
    harness: Harness, now: datetime
) -> None:
    """Why the shipped descriptor reaches back 12 hours: CQL reads dates as local time."""
    descriptor = _with_overlap(60)
    scenario = ConfluenceScenario(zone="America/Los_Angeles")
    with scenario.fake(now) as fake:
        first = await harness.poll(descriptor, scenario, fake, checkpoint=None, now=now)
        activity = fake.add_activity(now + LATER)
        second = await harness.poll(
            descriptor, scenario, fake, checkpoint=first.checkpoint, now=now + LATER
        )
    fresh = {s.item_id for s in second.signals if s.dedup_key not in first.keys}
    assert not fresh & activity.ids


async def test_next_links_stay_under_wiki_and_the_cql_is_minute_precise(
    harness: Harness, now: datetime
) -> None:
    scenario = ConfluenceScenario()
    with scenario.fake(now) as fake:
        poll = await harness.poll(
            descriptor_of("confluence"), scenario, fake, checkpoint=None, now=now
        )
        requests = fake.server.requests_to("/wiki/rest/api/content/search")
    assert len(requests) == len(poll.pages) >= 2
    assert all("cursor" in r.query for r in requests[1:])
    cql = requests[0].query["cql"][0]
    since = (now - timedelta(days=7)).strftime("%Y/%m/%d %H:%M")
    assert f'lastmodified >= "{since}"' in cql
    assert cql.startswith('space = "ENG"')
    assert requests[0].headers["authorization"].startswith("Basic ")
    comment = next(s for s in poll.signals if s.signal.type == "page_commented")
    assert comment.signal.summary.startswith("Re: ")
