"""A backlog larger than one poll may read (``maxPages × pageSize``), newest first.

Issue 15 finding 5: a connector that is not ``sortedAscending`` used to keep
its old checkpoint when ``maxPages`` cut a poll short, so the next poll read
the same newest pages again, forever, while reporting ``ok``. Now a cut-short
poll stores where it stopped and the next one goes on from there. Real parts:
the GitHub fake's pull request listing (newest first, Link headers), SQLite.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.service.poll_support import ROOT, all_signals, open_context
from ucf.core.signal import iso_utc
from ucf.fakes.github import GOOD_TOKEN, OWNER, REPO, WEBHOOK_SECRET, GitHubFake
from ucf.runtime.delta import ResumePosition
from ucf.service.context import UcfContext
from ucf.service.poll import PollResult, poll_instance
from ucf.web.metrics import Metrics

PROJECT = "p1"
CONNECTOR = "gh-prs-small"
PAGE_SIZE, MAX_PAGES = 20, 2  # 40 pull requests a poll; the fake has 130 in the window


def small_pages_descriptor() -> dict[str, Any]:
    """The shipped github-prs descriptor (newest first) with a small per-poll budget."""
    data: dict[str, Any] = json.loads((ROOT / "src/ucf/catalogue/github-prs.json").read_text())
    data.update(id=CONNECTOR, name="GitHub PRs (small pages)", category="Custom")
    pagination = data["ingestion"]["polling"]["pagination"]
    pagination.update(pageSize=PAGE_SIZE, maxPages=MAX_PAGES)
    return data


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def fake(now: datetime) -> Iterator[GitHubFake]:
    with GitHubFake(now, view="pulls") as github:
        yield github


@pytest_asyncio.fixture(loop_scope="function")
async def context(tmp_path: Path, fake: GitHubFake) -> AsyncIterator[UcfContext]:
    async with await open_context(tmp_path) as ctx:
        await ctx.connectors.register(small_pages_descriptor())
        await ctx.instances.create(
            PROJECT,
            CONNECTOR,
            credentials={"token": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET},
            config={"baseUrl": fake.base_url, "owner": OWNER, "repo": REPO},
        )
        yield ctx


async def test_a_newest_first_backlog_is_read_to_its_end_over_several_polls_each_item_once(
    context: UcfContext, fake: GitHubFake, now: datetime
) -> None:
    window = fake.ids_changed_since(now - timedelta(days=7))
    assert len(window) > PAGE_SIZE * MAX_PAGES * 3  # a backlog of several polls
    results: list[PollResult] = []
    for _ in range(10):
        result = await poll_instance(context, PROJECT, CONNECTOR)
        assert result.status == "ok", result.error
        results.append(result)
        if not result.truncated:
            break
    assert [r.truncated for r in results] == [True] * (len(results) - 1) + [False]
    assert len(results) == -(-len(window) // (PAGE_SIZE * MAX_PAGES))
    stored = await all_signals(context, PROJECT)
    numbers = {str(i.pr_id): i.number for i in fake.data.items.values() if i.is_pull}
    stored_numbers = sorted(s.signal["raw"]["number"] for s in stored)
    assert stored_numbers == sorted(numbers[i] for i in window)  # every one, exactly once
    assert sum(r.inserted for r in results) == len(window)
    newest = max(i.updated for i in fake.data.items.values() if i.is_pull)
    assert results[-1].checkpoint == iso_utc(newest)  # the pending high-water mark, at last


async def test_a_cut_short_poll_stores_where_it_stopped_and_reports_it(
    context: UcfContext, fake: GitHubFake, now: datetime
) -> None:
    metrics = Metrics()
    first = await poll_instance(context, PROJECT, CONNECTOR)
    metrics.observe_poll(first)
    assert first.truncated
    assert first.checkpoint is not None
    position = ResumePosition.decode(first.checkpoint)
    assert position is not None
    assert position.checkpoint is None  # the listing still starts from the initial window
    newest = max(i.updated for i in fake.data.items.values() if i.is_pull)
    assert position.pending == iso_utc(newest)
    assert position.next.url is not None
    assert "page=3" in position.next.url
    record = await context.instances.record(PROJECT, CONNECTOR)
    assert record.health_state == "degraded"  # behind, not failing
    assert record.last_error is not None
    assert "maxPages" in record.last_error
    text = metrics.render().decode()
    assert f'ucf_polls_truncated_total{{connector="{CONNECTOR}"}} 1.0' in text
