"""poll_instance: what a user of a configured connector sees after each poll.

Real parts only: the GitHub fake on loopback, a SQLite store and the local
secret store in a temporary directory, the real HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.store_gates import AnswerLate
from ucf.core.mapping import MappingResult
from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault
from ucf.fakes.github import BAD_TOKEN, OWNER, REPO, GitHubFake
from ucf.runtime.health import Outcome
from ucf.runtime.sources import GenericSource
from ucf.service.context import UcfContext
from ucf.service.poll import (
    RESERVE_HOLD,
    PageReport,
    StoreRateGate,
    lease_name,
    poll_instance,
    rate_bucket,
    reserve_for_rpm,
)
from ucf.stores.models import RateDecision
from ucf.stores.secrets.local import DB_FILE_NAME
from ucf.stores.url import open_store, sqlite_path

from .poll_support import all_signals, connect_github, github_descriptor, open_context

ISSUES = "/repos/{owner}/{repo}/issues"


@pytest.fixture
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(datetime.now(UTC)) as github:
        yield github


@pytest_asyncio.fixture(loop_scope="function")
async def context(tmp_path: Path) -> AsyncIterator[UcfContext]:
    async with await open_context(tmp_path) as ctx:
        yield ctx


def issue_ids_since(fake: GitHubFake, moment: datetime) -> set[str]:
    return set(fake.ids_changed_since(moment))


async def test_first_poll_stores_every_issue_of_the_initial_window_once(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    started = context.clock()

    result = await poll_instance(context, "p1", "github-issues")

    assert result.status == "ok", result.error
    stored = await all_signals(context, "p1")
    expected = issue_ids_since(fake, started - timedelta(days=7))
    assert {s.signal["raw"]["number"] for s in stored}  # signals carry the issue fields
    assert len(stored) == len(expected) == result.inserted
    assert len({s.dedup_key for s in stored}) == len(stored)
    assert result.pages == 3
    assert result.duplicates == 0
    newest = max(fake.data.items.values(), key=lambda i: i.updated).updated
    assert result.checkpoint == newest.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    stored_checkpoint = await context.store.checkpoints.get("p1", "github-issues")
    assert stored_checkpoint.value == result.checkpoint


async def test_second_poll_stores_only_what_changed_and_absorbs_the_overlap(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    await poll_instance(context, "p1", "github-issues")
    before = {s.dedup_key for s in await all_signals(context, "p1")}

    activity = fake.add_activity(datetime.now(UTC))
    second = await poll_instance(context, "p1", "github-issues")

    after = await all_signals(context, "p1")
    new = [s for s in after if s.dedup_key not in before]
    assert second.status == "ok"
    assert {s.signal["raw"]["number"] for s in new} == {
        fake.data.items[n].number
        for n in fake.data.items
        if str(fake.data.items[n].id) in activity.new_ids | activity.changed_ids
    }
    assert second.inserted == len(new)
    assert second.pages == 1


async def test_every_new_signal_gets_exactly_one_outbox_entry_per_sink(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    await poll_instance(context, "p1", "github-issues")
    await poll_instance(context, "p1", "github-issues")  # duplicates enqueue nothing

    entries = await context.store.outbox.claim(
        "jsonl", limit=10_000, lease=timedelta(minutes=1), now=context.clock()
    )
    stored = await all_signals(context, "p1")
    assert sorted(e.signal["id"] for e in entries) == sorted(s.signal_id for s in stored)


async def test_stored_signals_are_sanitised(context: UcfContext, fake: GitHubFake) -> None:
    await connect_github(context, fake.base_url)
    await poll_instance(context, "p1", "github-issues")
    stored = await all_signals(context, "p1")
    assert all(s.signal["sanitised"] is True for s in stored)
    assert all("sanitisedSummary" in s.signal for s in stored)


async def test_a_successful_poll_marks_the_instance_healthy_and_synced(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    result = await poll_instance(context, "p1", "github-issues")
    record = await context.instances.record("p1", "github-issues")
    assert result.health == record.health_state == "healthy"
    assert record.last_sync_at is not None
    assert record.consecutive_failures == 0
    assert record.last_latency_ms is not None
    assert record.last_latency_ms > 0


async def test_rejected_token_puts_the_instance_in_error_at_once_and_is_not_retried(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url, token=BAD_TOKEN)

    result = await poll_instance(context, "p1", "github-issues")

    assert result.status == "failed"
    assert result.outcome is Outcome.REJECTED
    assert len(fake.server.requests_to(ISSUES)) == 1
    record = await context.instances.record("p1", "github-issues")
    assert (record.health_state, record.consecutive_failures) == ("error", 1)
    assert record.last_error is not None
    assert "401" in record.last_error
    assert BAD_TOKEN not in record.last_error
    assert BAD_TOKEN not in (result.error or "")
    assert (await context.store.checkpoints.get("p1", "github-issues")).version == 0


async def test_an_outage_degrades_the_instance_then_errors_it_on_the_third_failure(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    fake.server.inject(Fault.status(503), path=ISSUES, times=100)
    states = []
    for _ in range(3):
        result = await poll_instance(context, "p1", "github-issues")
        assert result.status == "failed"
        states.append(result.health)
    assert states == ["degraded", "degraded", "error"]

    fake.server.clear_faults()
    recovered = await poll_instance(context, "p1", "github-issues")
    assert recovered.status == "ok"
    assert recovered.health == "healthy"
    record = await context.instances.record("p1", "github-issues")
    assert record.consecutive_failures == 0
    assert record.last_error is None


async def test_a_poll_the_upstream_throttled_still_stores_everything_but_shows_degraded(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    fake.server.inject(Fault.rate_limited(0), path=ISSUES, times=1)

    result = await poll_instance(context, "p1", "github-issues")

    assert result.status == "ok"
    assert result.rate_limit_waits == 1
    assert result.health == "degraded"
    assert result.inserted == len(await all_signals(context, "p1"))


async def test_a_poll_throttled_past_the_retry_budget_backs_off_but_stays_degraded(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    fake.server.inject(fake.rate_limit_fault(3600), path=ISSUES, times=10)
    for _ in range(4):
        result = await poll_instance(context, "p1", "github-issues")
        assert result.outcome is Outcome.RATE_LIMITED
        assert result.retry_after is not None
        assert result.retry_after > 3000
    record = await context.instances.record("p1", "github-issues")
    assert (record.health_state, record.consecutive_failures) == ("degraded", 4)


async def test_another_workers_lease_means_this_poll_sends_nothing(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    await context.store.leases.acquire(
        lease_name("p1", "github-issues"),
        "other-worker",
        ttl=timedelta(minutes=1),
        now=context.clock(),
    )

    result = await poll_instance(context, "p1", "github-issues", owner="me")

    assert result.status == "skipped"
    assert fake.server.requests == []


async def test_the_lease_is_released_after_a_poll_and_after_a_failure(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    name = lease_name("p1", "github-issues")
    await poll_instance(context, "p1", "github-issues", owner="me")
    assert await context.store.leases.get(name, now=context.clock()) is None
    fake.server.inject(Fault.status(500), path=ISSUES, times=10)
    await poll_instance(context, "p1", "github-issues", owner="me")
    assert await context.store.leases.get(name, now=context.clock()) is None


async def test_a_poll_cancelled_while_taking_its_lease_leaves_no_lease_behind(
    context: UcfContext, fake: GitHubFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled after the store granted the lease but before the poll heard back:
    the next poll must not wait for the lease to lapse."""
    await connect_github(context, fake.base_url)
    leases = context.store.leases
    gate = AnswerLate(monkeypatch, leases, "acquire")
    task = asyncio.create_task(poll_instance(context, "p1", "github-issues", owner="me"))
    await gate.cancel_in_between(task)

    assert await leases.get(lease_name("p1", "github-issues"), now=context.clock()) is None
    assert fake.server.requests == []
    result = await poll_instance(context, "p1", "github-issues", owner="someone-else")
    assert result.status != "skipped"


async def test_a_poll_cancelled_twice_while_taking_its_lease_still_leaves_no_lease_behind(
    context: UcfContext, fake: GitHubFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C twice, or the shutdown grace running out after a first cancellation: the
    second one lands while the poll waits for the store's answer to the first."""
    await connect_github(context, fake.base_url)
    leases = context.store.leases
    gate = AnswerLate(monkeypatch, leases, "acquire")
    task = asyncio.create_task(poll_instance(context, "p1", "github-issues", owner="me"))
    await gate.cancel_in_between(task, times=2)

    assert await leases.get(lease_name("p1", "github-issues"), now=context.clock()) is None


async def test_a_checkpoint_moved_by_someone_else_stops_the_poll_without_overwriting_it(
    context: UcfContext, fake: GitHubFake
) -> None:
    await context.connectors.register(github_descriptor())
    await connect_github(context, fake.base_url, connector="gh-paged")
    url = context.settings.store_url

    def meddle(report: PageReport) -> None:
        if report.page.number != 1:
            return

        async def move() -> None:  # another process, another connection, same file
            async with open_store(url) as other:
                current = await other.checkpoints.get("p1", "gh-paged")
                await other.checkpoints.compare_and_set(
                    "p1",
                    "gh-paged",
                    expected_version=current.version,
                    value="2030-01-01T00:00:00.000Z",
                    now=datetime.now(UTC),
                )

        thread = threading.Thread(target=asyncio.run, args=(move(),))
        thread.start()
        thread.join()

    result = await poll_instance(context, "p1", "gh-paged", on_page=meddle)

    assert result.status == "conflict"
    assert result.pages == 2  # page 2's signals are stored (dedup makes that harmless)
    stored = await context.store.checkpoints.get("p1", "gh-paged")
    assert stored.value == "2030-01-01T00:00:00.000Z"


async def test_shutdown_stops_the_poll_after_the_page_it_is_storing(
    context: UcfContext, fake: GitHubFake
) -> None:
    await context.connectors.register(github_descriptor())
    await connect_github(context, fake.base_url, connector="gh-paged")
    stop = asyncio.Event()
    checkpoints: list[str | None] = []

    def on_page(report: PageReport) -> None:
        checkpoints.append(report.checkpoint)
        if report.page.number == 2:
            stop.set()

    result = await poll_instance(context, "p1", "gh-paged", stop=stop, on_page=on_page)

    assert result.status == "stopped"
    assert result.pages == 2
    fetched = len(fake.server.requests_to(ISSUES)) + len(
        fake.server.requests_to("/repositories/{id}/issues")
    )
    assert 2 <= fetched <= 4, "at most the pages fetched ahead, not the other 8 of 10"
    stored = await context.store.checkpoints.get("p1", "gh-paged")
    assert stored.value == checkpoints[-1] is not None
    assert len(await all_signals(context, "p1")) == result.inserted
    record = await context.instances.record("p1", "gh-paged")
    assert record.last_sync_at is None, "an interrupted poll is not a sync"


async def test_items_that_cannot_be_mapped_are_reported_and_the_rest_stored(
    tmp_path: Path,
) -> None:
    server = FakeServer()
    rows: list[dict[str, Any]] = [
        {"id": 1, "updated_at": "2026-01-01T00:00:00Z", "title": "ok"},
        {"updated_at": "2026-01-01T00:00:01Z", "title": "no id"},
        {"id": 3, "updated_at": "not a date", "title": "bad date"},
        {"id": 4, "updated_at": "2026-01-01T00:00:02Z", "title": "ok too"},
    ]
    server.add_route("GET", "/items", lambda request: FakeResponse.json(rows))
    descriptor = simple_descriptor()
    with server:
        async with await open_context(tmp_path) as context:
            await context.connectors.register(descriptor)
            await context.instances.create(
                "p1", "simple", credentials={}, config={"baseUrl": server.base_url}
            )
            clock_now = datetime(2026, 1, 2, tzinfo=UTC)
            context.clock = lambda: clock_now

            result = await poll_instance(context, "p1", "simple")

    assert result.status == "ok"
    assert (result.items, result.inserted, result.item_errors) == (4, 2, 2)
    assert [(p.index, p.item_id) for p in result.problems] == [(1, None), (2, "3")]
    assert "not a date" in result.problems[1].reason


def simple_descriptor(rpm: int = 6000) -> dict[str, Any]:
    return {
        "id": "simple",
        "name": "Simple",
        "description": "one page of items",
        "category": "Custom",
        "icon": "x",
        "kind": "generic",
        "version": "1.0.0",
        "auth": {"method": "none"},
        "ingestion": {
            "mode": "polling",
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "rateLimitRpm": rpm,
        },
        "fieldMapping": {
            "itemsPath": "$",
            "idPath": "$.id",
            "timestampPath": "$.updated_at",
            "summaryTemplate": "{{title}}",
            "signalTypeRules": [],
        },
        "healthCheck": {
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "expectStatus": 200,
            "timeoutMs": 1000,
        },
    }


async def test_rate_limit_rpm_is_one_budget_shared_by_every_worker(context: UcfContext) -> None:
    """Two gates (two workers) on one bucket: 60 rpm is 10 at once, then 1 per second."""
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        moment[0] += timedelta(seconds=seconds)

    def gate() -> StoreRateGate:
        return StoreRateGate(
            context.store.rate_limits,
            rate_bucket("p1", "github-issues"),
            60,
            clock=lambda: moment[0],
            sleep=sleep,
        )

    first, second = gate(), gate()
    waits = [await (first if n % 2 else second).acquire() for n in range(14)]

    assert waits[:10] == [0.0] * 10
    assert all(w == pytest.approx(1.0, abs=0.01) for w in waits[10:])
    assert sum(slept) == pytest.approx(4.0, abs=0.05)


async def test_a_page_is_stored_while_the_next_one_is_being_mapped(
    context: UcfContext, fake: GitHubFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll's two stages overlap: each page's write is on the store's thread before
    the event loop maps the next page. It used to reach the thread only once the loop
    next waited, which it does not when the next page is already fetched (a fast
    upstream): mapping and storing took turns.

    Here each page's store answer comes only once the page after the next is being
    fetched, so the next page is always waiting; mapping a page holds the event loop
    until the pages before it are committed (up to a bound it never needs)."""
    await connect_github(context, fake.base_url)
    database = sqlite_path(context.settings.store_url)
    signals = context.store.signals
    ingest = signals.ingest
    ingested = 0

    async def answer_once_the_page_after_next_is_asked_for(*args: Any, **kwargs: Any) -> Any:
        nonlocal ingested
        result = await ingest(*args, **kwargs)
        ingested += 1
        deadline = time.monotonic() + 0.5  # the last pages have no page after next
        while len(fake.server.requests_to(ISSUES)) < ingested + 2:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.005)
        return result

    normalise = GenericSource.normalise
    mapped: list[int] = []
    committed_while_mapping: list[int] = []

    def watched(
        self: GenericSource, items: Any, *, project_id: str, now: datetime
    ) -> MappingResult:
        if mapped:
            deadline = time.monotonic() + 5
            with contextlib.closing(sqlite3.connect(database)) as reader:
                while True:
                    (stored,) = reader.execute("SELECT count(*) FROM signals").fetchone()
                    if stored >= sum(mapped) or time.monotonic() > deadline:
                        break
                    time.sleep(0.005)
            committed_while_mapping.append(stored)
        result = normalise(self, items, project_id=project_id, now=now)
        mapped.append(len(result.signals))
        return result

    monkeypatch.setattr(signals, "ingest", answer_once_the_page_after_next_is_asked_for)
    monkeypatch.setattr(GenericSource, "normalise", watched)
    result = await poll_instance(context, "p1", "github-issues")

    assert result.status == "ok", result.error
    assert result.pages == len(mapped) >= 3
    assert committed_while_mapping == [sum(mapped[:n]) for n in range(1, len(mapped))]


async def test_a_poll_whose_credentials_cannot_be_read_fails_after_its_checkpoint_read(
    context: UcfContext, fake: GitHubFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The credentials and the checkpoint are read side by side; when the credentials
    fail (a damaged secret), the poll still waits for the checkpoint read before it
    releases its lease and fails. It used to fail at once, the read left running on
    its own, past the poll (on a Lambda, past the invocation). The failure is the
    instance's, recorded in its health with why."""
    await connect_github(context, fake.base_url)
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE_NAME)) as db, db:
        db.execute("UPDATE secrets SET envelope = zeroblob(64)")  # damaged on disk
    read = context.store.checkpoints.get
    answer = asyncio.Event()

    async def answered_when_let(*args: Any, **kwargs: Any) -> Any:
        result = await read(*args, **kwargs)
        await answer.wait()
        return result

    monkeypatch.setattr(context.store.checkpoints, "get", answered_when_let)
    poll = asyncio.create_task(poll_instance(context, "p1", "github-issues"))

    done, _ = await asyncio.wait({poll}, timeout=1)  # the credentials failed long before
    answer.set()
    result = await poll
    assert not done, "the poll failed while its checkpoint read was in flight"
    assert result.status == "failed"
    assert "store the credentials again" in (result.error or "")
    record = await context.instances.record("p1", "github-issues")
    assert record.last_error == result.error


class CountedBuckets:
    """The store's real buckets, with every draw and what it granted written down."""

    def __init__(self, context: UcfContext) -> None:
        self._buckets = context.store.rate_limits
        self.draws: list[tuple[float, bool]] = []

    async def try_acquire(
        self,
        bucket_key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: datetime,
        cost: float = 1.0,
    ) -> RateDecision:
        decision = await self._buckets.try_acquire(
            bucket_key, capacity=capacity, refill_per_second=refill_per_second, now=now, cost=cost
        )
        self.draws.append((cost, decision.allowed))
        return decision

    async def give_back(
        self,
        bucket_key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: datetime,
        tokens: float = 1.0,
    ) -> None:
        await self._buckets.give_back(
            bucket_key,
            capacity=capacity,
            refill_per_second=refill_per_second,
            now=now,
            tokens=tokens,
        )

    @property
    def granted(self) -> float:
        return sum(cost for cost, allowed in self.draws if allowed)


def test_a_poll_draws_ahead_only_where_the_budget_is_large() -> None:
    assert reserve_for_rpm(60) == 1  # GitHub's unauthenticated budget: a draw per request
    assert reserve_for_rpm(239) == 1
    assert reserve_for_rpm(240) == 2  # 40 tokens of burst: 1/20 of it
    assert reserve_for_rpm(1_000_000) == 32


async def test_a_polls_gate_makes_one_store_write_per_reserve_of_requests(
    context: UcfContext,
) -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)  # frozen: nothing refills
    buckets = CountedBuckets(context)
    gate = StoreRateGate(
        buckets, rate_bucket("p1", "x"), 6000, clock=lambda: moment, reserve=reserve_for_rpm(6000)
    )

    waits = [await gate.acquire() for _ in range(64)]

    assert waits == [0.0] * 64
    assert buckets.draws == [(32, True), (32, True)]
    left = StoreRateGate(
        context.store.rate_limits, rate_bucket("p1", "x"), 6000, clock=lambda: moment
    )
    assert await left.acquire_within(0) is True  # the bucket (1 000) lost exactly 64
    taken = 65
    while await left.acquire_within(0):
        taken += 1
    assert taken == 1000


async def test_requests_sent_side_by_side_through_one_gate_share_one_draw(
    context: UcfContext,
) -> None:
    """A poll's requests in flight together (Asana's source fetches eight tasks at once)
    find the reserve empty together: one of them draws it, the others wait and take
    from it. Each used to draw 32 for itself and keep only the last draw's: 224 of the
    shared bucket's tokens gone, spent by no request."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)  # frozen: nothing refills
    buckets = CountedBuckets(context)
    gate = StoreRateGate(buckets, rate_bucket("p1", "x"), 6000, clock=lambda: moment, reserve=32)

    waits = await asyncio.gather(*(gate.acquire() for _ in range(8)))
    waits += [await gate.acquire() for _ in range(24)]  # the rest of the one reserve

    assert waits == [0.0] * 32
    assert buckets.draws == [(32, True)]


async def test_tokens_drawn_ahead_are_dropped_after_a_second_not_spent_later(
    context: UcfContext,
) -> None:
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    buckets = CountedBuckets(context)
    gate = StoreRateGate(buckets, rate_bucket("p1", "x"), 6000, clock=lambda: moment[0], reserve=32)

    await gate.acquire()
    moment[0] += RESERVE_HOLD
    await gate.acquire()

    assert buckets.draws == [(32, True), (32, True)], "the 31 left over were not used"


async def test_a_token_drawn_ahead_is_the_first_requests_and_none_is_drawn_twice(
    context: UcfContext,
) -> None:
    """A poll draws its first request's token beside its credentials' and checkpoint's
    reads (on DynamoDB two round trips fewer before the first request): the request then
    spends it without a draw of its own; a gate that draws reserves draws one ahead."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)  # frozen: nothing refills
    buckets = CountedBuckets(context)
    single = StoreRateGate(buckets, rate_bucket("p1", "x"), 60, clock=lambda: moment)

    await single.draw_ahead()
    assert buckets.draws == [(1, True)]
    assert await single.acquire() == 0.0
    assert buckets.draws == [(1, True)], "the request spent the token drawn ahead"
    await single.acquire()
    assert buckets.draws == [(1, True), (1, True)]  # the next one draws its own

    reserving = StoreRateGate(
        buckets, rate_bucket("p2", "x"), 6000, clock=lambda: moment, reserve=32
    )
    await reserving.draw_ahead()
    await reserving.draw_ahead()  # held already: nothing more drawn
    assert [await reserving.acquire() for _ in range(32)] == [0.0] * 32
    assert buckets.draws[2:] == [(32, True)]


async def test_a_token_drawn_ahead_from_an_empty_bucket_is_not_waited_for_nor_kept(
    context: UcfContext,
) -> None:
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        moment[0] += timedelta(seconds=seconds)

    key = rate_bucket("p1", "x")
    spender = StoreRateGate(context.store.rate_limits, key, 60, clock=lambda: moment[0])
    while await spender.acquire_within(0):
        pass
    buckets = CountedBuckets(context)
    gate = StoreRateGate(buckets, key, 60, clock=lambda: moment[0], sleep=sleep)

    await gate.draw_ahead()
    assert (buckets.draws, slept) == ([(1, False)], [])
    assert await gate.acquire() > 0  # the request waits for its token, as without a draw
    assert buckets.draws[-1] == (1, True)


async def test_a_token_drawn_ahead_and_not_spent_within_its_hold_is_dropped(
    context: UcfContext,
) -> None:
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    buckets = CountedBuckets(context)
    gate = StoreRateGate(buckets, rate_bucket("p1", "x"), 60, clock=lambda: moment[0])

    await gate.draw_ahead()
    moment[0] += RESERVE_HOLD
    await gate.acquire()

    assert buckets.draws == [(1, True), (1, True)]


async def test_a_reserving_gate_near_an_empty_budget_draws_singly_and_waits_like_any_other(
    context: UcfContext,
) -> None:
    """Ten tokens left of 1 000: no reserve of 32 fits, so the ten go one draw each, then the
    poll waits for the refill (100 a second) instead of for a whole reserve."""
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        moment[0] += timedelta(seconds=seconds)

    key = rate_bucket("p1", "x")
    spender = StoreRateGate(context.store.rate_limits, key, 6000, clock=lambda: moment[0])
    for _ in range(990):
        assert await spender.acquire_within(0)
    buckets = CountedBuckets(context)
    gate = StoreRateGate(buckets, key, 6000, clock=lambda: moment[0], sleep=sleep, reserve=32)

    waits = [await gate.acquire() for _ in range(11)]

    assert waits[:10] == [0.0] * 10
    assert 0.005 <= waits[10] < 0.05  # about one token's refill (0.01 s), not 32 tokens' (0.32)
    assert buckets.draws[0] == (32, False)
    assert all(cost == 1 for cost, _ in buckets.draws[1:]), "no reserve tried while it cannot fit"


async def test_a_reserve_refused_when_drawn_ahead_is_not_tried_again_by_the_first_request(
    context: UcfContext,
) -> None:
    """Ten tokens left of 1 000: the reserve of 32 a poll draws ahead does not fit, and its
    first request draws one token, not the same refused reserve again first (on DynamoDB
    a read and a conditional write for nothing), as after any reserve the bucket refused."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)  # frozen: nothing refills
    key = rate_bucket("p1", "x")
    await context.store.rate_limits.try_acquire(
        key, capacity=1000, refill_per_second=100, now=moment, cost=990
    )
    buckets = CountedBuckets(context)
    gate = StoreRateGate(buckets, key, 6000, clock=lambda: moment, reserve=32)

    await gate.draw_ahead()
    assert await gate.acquire() == 0.0

    assert buckets.draws == [(32, False), (1, True)]


async def test_workers_drawing_ahead_never_take_more_than_the_shared_bucket_grants(
    context: UcfContext,
) -> None:
    """Three polls' gates on one bucket (rateLimitRpm 6000: 1 000 of burst, 100 a second),
    one request each in turn: every request spent a granted token, and the bucket granted
    no more than its burst plus its refill over the time that passed."""
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    start = moment[0]

    async def sleep(seconds: float) -> None:
        moment[0] += timedelta(seconds=seconds)

    buckets = CountedBuckets(context)
    gates = [
        StoreRateGate(
            buckets, rate_bucket("p1", "x"), 6000, clock=lambda: moment[0], sleep=sleep, reserve=32
        )
        for _ in range(3)
    ]
    requests = 0
    for n in range(2400):
        await gates[n % 3].acquire()
        requests += 1
        moment[0] += timedelta(milliseconds=1)  # the request itself

    elapsed = (moment[0] - start).total_seconds()
    assert requests <= buckets.granted <= 1000 + 100 * elapsed + 1e-6
    assert any(cost == 32 for cost, allowed in buckets.draws if allowed)


async def test_rotated_refresh_tokens_are_saved_so_the_next_poll_still_works(
    tmp_path: Path,
) -> None:
    server = FakeServer()
    tokens = {"refresh": "refresh-0001-initial", "access": ""}
    refreshes: list[str] = []

    def token(request: FakeRequest) -> FakeResponse:
        form = dict(pair.split("=", 1) for pair in request.body.decode().split("&"))
        if form.get("refresh_token") != tokens["refresh"]:
            return FakeResponse.json({"error": "invalid_grant"}, 400)
        n = len(refreshes) + 1
        refreshes.append(form["refresh_token"])
        tokens["refresh"] = f"refresh-{n:04d}-rotated"  # the old one dies now
        tokens["access"] = f"access-{n:04d}-token"
        return FakeResponse.json(
            {"access_token": tokens["access"], "refresh_token": tokens["refresh"], "expires_in": 1}
        )

    def items(request: FakeRequest) -> FakeResponse:
        if request.headers.get("authorization") != f"Bearer {tokens['access']}":
            return FakeResponse.json({"error": "invalid_token"}, 401)
        return FakeResponse.json([{"id": 1, "updated_at": "2026-01-01T00:00:00Z", "title": "x"}])

    server.add_route("POST", "/token", token)
    server.add_route("GET", "/items", items)
    descriptor = simple_descriptor()
    descriptor["auth"] = {
        "method": "oauth2",
        "config": {
            "authoriseUrl": "{{baseUrl}}/authorise",
            "tokenUrl": "{{baseUrl}}/token",
            "scopes": [],
            "rotatesRefreshToken": True,
            "credentialFields": [
                {"key": "clientId", "label": "Client id", "type": "text", "required": True},
                {"key": "clientSecret", "label": "Secret", "type": "password", "required": True},
                {"key": "refreshToken", "label": "Refresh", "type": "password", "required": True},
            ],
        },
    }
    with server:
        async with await open_context(tmp_path) as context:
            await context.connectors.register(descriptor)
            await context.instances.create(
                "p1",
                "simple",
                credentials={
                    "clientId": "client-id-7f3a",  # registered for masking: never a word of prose
                    "clientSecret": "client-secret-value",
                    "refreshToken": tokens["refresh"],
                },
                config={"baseUrl": server.base_url},
            )
            context.clock = lambda: datetime(2026, 1, 2, tzinfo=UTC)
            first = await poll_instance(context, "p1", "simple")
            # The access token expired meanwhile (expires_in: 1), so the next poll refreshes
            # with the rotated refresh token, which only works if it was saved.
            context.clock = lambda: datetime(2026, 1, 3, tzinfo=UTC)
            second = await poll_instance(context, "p1", "simple")
            record = await context.instances.record("p1", "simple")
            saved = await context.instances.credentials(record)

    assert (first.status, second.status) == ("ok", "ok"), (first.error, second.error)
    assert refreshes == ["refresh-0001-initial", "refresh-0001-rotated"]
    assert saved["refreshToken"] == "refresh-0002-rotated"
    assert saved["clientSecret"] == "client-secret-value"


async def test_an_upstream_whose_pagination_loops_fails_the_poll_clearly_keeping_what_it_stored(
    context: UcfContext, fake: GitHubFake
) -> None:
    """A Link header back to a page already read: the poll ends as failed with a
    one-line reason (no traceback, no hang until UCF_POLL_TIMEOUT), the page read is
    stored once, and the checkpoint does not move past what the listing never gave."""
    await connect_github(context, fake.base_url)
    issue = {"id": 7, "number": 7, "title": "loop", "updated_at": "2026-12-01T10:00:00Z"}
    again = fake.server.url(f"/repos/{OWNER}/{REPO}/issues?page=1")
    looping = FakeResponse.json([issue], headers={"Link": f'<{again}>; rel="next"'})
    fake.server.inject(Fault.respond(looping), path=ISSUES, times=5)

    result = await poll_instance(context, "p1", "github-issues")

    assert result.status == "failed"
    assert result.error is not None
    assert "stopped" in result.error
    assert "Traceback" not in result.error
    assert result.inserted == 1
    assert len(await all_signals(context, "p1")) == 1
    stored = await context.store.checkpoints.get("p1", "github-issues")
    assert stored.value == "2026-12-01T10:00:00.000Z"  # ascending: the stored page's newest
    record = await context.instances.record("p1", "github-issues")
    assert record.health_state == "degraded"


async def test_a_poll_whose_own_health_write_fails_keeps_its_pages_and_the_next_goes_on(
    context: UcfContext, fake: GitHubFake
) -> None:
    """A poll commits each page with its checkpoint; only then is its success written to
    the instance's health. Should that write fail, the AWS poll worker records the poll as
    failed inside ucf (with the store's error, and a backoff) rather than have SQS
    redeliver it: its health is wrong for one poll, its pages are not. The checkpoint
    stands where the last page put it, so the next poll neither ingests them again nor
    skips what changed meanwhile."""
    from ucf.aws.polling import PollRequest, poll_messages

    await connect_github(context, fake.base_url)
    started = context.clock()
    database = sqlite_path(context.settings.store_url)
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute(  # a poll's success sets lastSyncAt; the fallback's failure does not
            "CREATE TRIGGER fail_success AFTER UPDATE OF last_sync_at ON instances "
            "WHEN NEW.last_sync_at IS NOT OLD.last_sync_at "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )

    request = PollRequest("p1", "github-issues")
    outcome = await poll_messages(context, [("m1", request.body())], worker_id="w1")

    assert outcome.failed == []  # recorded in its health: not redelivered
    record = await context.instances.record("p1", "github-issues")
    assert record.last_sync_at is None
    assert record.consecutive_failures == 1
    assert "failed inside ucf" in (record.last_error or "")
    first = await all_signals(context, "p1")
    expected = issue_ids_since(fake, started - timedelta(days=7))
    assert len(first) == len(expected)
    newest = max(fake.data.items.values(), key=lambda i: i.updated).updated
    checkpoint = await context.store.checkpoints.get("p1", "github-issues")
    assert checkpoint.value == newest.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("DROP TRIGGER fail_success")
    activity = fake.add_activity(datetime.now(UTC))
    second = await poll_instance(context, "p1", "github-issues")

    assert second.status == "ok", second.error
    after = await all_signals(context, "p1")
    assert len({s.dedup_key for s in after}) == len(after)
    new = [s for s in after if s.dedup_key not in {f.dedup_key for f in first}]
    assert {s.signal["raw"]["number"] for s in new} == {
        item.number
        for item in fake.data.items.values()
        if str(item.id) in activity.new_ids | activity.changed_ids
    }
    assert second.pages == 1
    healed = await context.instances.record("p1", "github-issues")
    assert healed.consecutive_failures == 0
    assert healed.last_sync_at is not None
