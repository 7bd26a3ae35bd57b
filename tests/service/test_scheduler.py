"""The poll scheduler and ``ucf worker``: intervals, leases across workers, backoff, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ucf.core.validation import parse_descriptor
from ucf.fakes import FakeRequest, FakeResponse, FakeServer
from ucf.runtime.health import Outcome
from ucf.service.connectors import Connector
from ucf.service.context import UcfContext
from ucf.service.poll import lease_name, request_poll
from ucf.service.scheduler import (
    LONG_AGO,
    NEVER,
    SchedulePolicy,
    Scheduler,
    check_due_at,
    due_at,
)
from ucf.stores.models import InstanceRecord

from .poll_support import GITHUB, all_signals, open_context

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=60)
QUICK = SchedulePolicy(shutdown_grace=5.0)


# --------------------------------------------------------------------------- a fake of many feeds


class Feeds:
    """``GET /{feed}/items?page=N``: ``pages`` pages of two items, each answer held ``delay`` s.

    Records how many requests of each feed overlap in time, which is how two
    polls of one instance at once would show (a single poll is sequential).
    """

    def __init__(self, *, pages: int = 3, delay: float = 0.03) -> None:
        self.pages = pages
        self.delay = delay
        self.in_flight: Counter[str] = Counter()
        self.most_at_once: Counter[str] = Counter()
        self.total = 0
        self.most_total = 0
        self.first_pages: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.failing: set[str] = set()
        self.throttled: dict[str, str] = {}  # feed -> the Retry-After its 429 says
        self.base = datetime.now(UTC) - timedelta(days=1)

    async def __call__(self, request: FakeRequest) -> FakeResponse:
        feed = request.path_params["feed"]
        page = int(request.param("page") or "1")
        if page == 1:
            self.first_pages[feed] += 1
        self.in_flight[feed] += 1
        self.total += 1
        self.most_at_once[feed] = max(self.most_at_once[feed], self.in_flight[feed])
        self.most_total = max(self.most_total, self.total)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight[feed] -= 1
            self.total -= 1
        if feed in self.failing:
            return FakeResponse.json({"message": "down"}, 503)
        if feed in self.throttled:
            headers = {"Retry-After": self.throttled[feed]}
            return FakeResponse.json({"message": "slow down"}, 429, headers=headers)
        self.answered[feed] += 1
        items = [
            {
                "id": f"{feed}-{page}-{n}",
                "updated_at": (self.base + timedelta(minutes=page * 10 + n)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "title": f"item {n} of page {page}",
            }
            for n in range(2)
        ]
        headers = {}
        if page < self.pages:
            following = request.url_for(f"/{feed}/items?page={page + 1}")
            headers["Link"] = f'<{following}>; rel="next"'
        return FakeResponse.json(items, headers=headers)


async def eventually(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait for something the fake (on its own thread) observes."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the fake")
        await asyncio.sleep(0.01)


def feed_descriptor() -> dict[str, Any]:
    return {
        "id": "feed",
        "name": "Feed",
        "description": "paged items",
        "category": "Custom",
        "icon": "x",
        "kind": "generic",
        "version": "1.0.0",
        "auth": {"method": "none"},
        "ingestion": {
            "mode": "polling",
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "delta": {
                "type": "timestamp_filter",
                "queryParam": "since",
                "format": "iso8601",
                "sortedAscending": True,
            },
            "rateLimitRpm": 60_000,
            "intervalSeconds": 60,
            "pagination": {"type": "link_header", "pageSize": 2},
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
            "timeoutMs": 2000,
        },
    }


@pytest.fixture
def feeds() -> Iterator[tuple[FakeServer, Feeds]]:
    server = FakeServer()
    fake = Feeds()
    server.add_route("GET", "/{feed}/items", fake)
    with server:
        yield server, fake


async def add_feeds(context: UcfContext, server: FakeServer, count: int) -> list[str]:
    await context.connectors.register(feed_descriptor())
    names = [f"f{n}" for n in range(count)]
    for name in names:
        await context.instances.create(
            f"project-{name}", "feed", credentials={}, config={"baseUrl": server.url(f"/{name}")}
        )
    return names


# --------------------------------------------------------------------------- due times


def feed_connector() -> Connector:
    return Connector(
        parse_descriptor(feed_descriptor()), built_in=False, created_at=T0, updated_at=T0
    )


def instance(project: str = "p", **fields: Any) -> InstanceRecord:
    base = InstanceRecord(
        project_id=project,
        connector_id="feed",
        enabled=True,
        credential_secret_ref=None,
        config={},
        created_at=T0,
        updated_at=T0,
    )
    return dataclasses.replace(base, **fields)


def test_a_never_polled_instance_is_due_at_once() -> None:
    assert due_at(instance(), feed_connector(), SchedulePolicy()) == LONG_AGO


def test_a_synced_instance_is_due_one_interval_later_plus_a_stable_jitter() -> None:
    policy = SchedulePolicy(jitter_ratio=0.1)
    synced = instance(last_sync_at=T0, last_health_check=T0, health_state="healthy")
    due = due_at(synced, feed_connector(), policy)
    assert T0 + INTERVAL <= due < T0 + INTERVAL * 1.1
    assert due == due_at(synced, feed_connector(), policy), "every worker computes the same time"
    spread = {
        due_at(dataclasses.replace(synced, project_id=f"p{n}"), feed_connector(), policy)
        for n in range(20)
    }
    assert len(spread) > 10, "instances sharing an interval do not fire together"


def test_a_failing_instance_waits_its_backoff_from_the_last_attempt() -> None:
    policy = SchedulePolicy(jitter_ratio=0)
    failing = instance(
        last_sync_at=T0 - timedelta(hours=1),
        last_health_check=T0,
        consecutive_failures=3,
        health_state="error",
    )
    assert due_at(failing, feed_connector(), policy) == T0 + INTERVAL * 4


def test_changing_a_failing_instances_settings_makes_it_due_at_once() -> None:
    fixed = instance(
        last_health_check=T0, consecutive_failures=1, health_state="error", updated_at=T0 + INTERVAL
    )
    assert due_at(fixed, feed_connector(), SchedulePolicy()) == LONG_AGO


def test_a_requested_poll_makes_a_synced_instance_due_at_the_request() -> None:
    synced = instance(last_sync_at=T0, last_health_check=T0, health_state="healthy")
    asked = dataclasses.replace(synced, poll_requested_at=T0 + INTERVAL / 4)
    assert due_at(asked, feed_connector(), SchedulePolicy()) == T0 + INTERVAL / 4
    later = dataclasses.replace(synced, poll_requested_at=T0 + INTERVAL * 5)
    assert due_at(later, feed_connector(), SchedulePolicy()) == due_at(
        synced, feed_connector(), SchedulePolicy()
    ), "a request never delays the schedule"


def test_a_requested_poll_does_not_cut_a_backoff_short() -> None:
    policy = SchedulePolicy(jitter_ratio=0)
    failing = instance(
        last_health_check=T0,
        consecutive_failures=3,
        health_state="error",
        poll_requested_at=T0 + INTERVAL,
    )
    assert due_at(failing, feed_connector(), policy) == T0 + INTERVAL * 4


def test_disabled_instances_and_webhook_only_connectors_are_never_due() -> None:
    assert due_at(instance(enabled=False), feed_connector(), SchedulePolicy()) == NEVER
    webhook_only = dict(GITHUB)
    webhook_only["ingestion"] = {**GITHUB["ingestion"]["webhook"], "mode": "webhook"}
    connector = Connector(
        parse_descriptor(webhook_only), built_in=True, created_at=T0, updated_at=T0
    )
    assert due_at(instance(), connector, SchedulePolicy()) == NEVER


def webhook_only_descriptor(connector_id: str = "github-issues") -> dict[str, Any]:
    data = dict(GITHUB)
    data["id"] = connector_id
    data["ingestion"] = {**GITHUB["ingestion"]["webhook"], "mode": "webhook"}
    return data


def webhook_only_connector() -> Connector:
    descriptor = parse_descriptor(webhook_only_descriptor())
    return Connector(descriptor, built_in=True, created_at=T0, updated_at=T0)


def test_an_instance_that_only_receives_is_checked_once_idle_past_its_interval() -> None:
    policy = SchedulePolicy(jitter_ratio=0, idle_check_after=timedelta(hours=1))
    hook = webhook_only_connector()
    assert check_due_at(instance(), hook, policy) == LONG_AGO  # never checked, never delivered
    checked = instance(last_health_check=T0)
    assert check_due_at(checked, hook, policy) == T0 + timedelta(hours=1)
    delivered = instance(last_health_check=T0, last_delivery_at=T0 + timedelta(minutes=50))
    assert check_due_at(delivered, hook, policy) == T0 + timedelta(hours=1, minutes=50)
    assert check_due_at(instance(enabled=False), hook, policy) == NEVER
    assert check_due_at(instance(), feed_connector(), policy) == NEVER  # its polls are checks


async def test_run_once_checks_the_health_of_an_idle_webhook_only_instance(
    tmp_path: Path,
) -> None:
    from ucf.fakes.github import GOOD_TOKEN, OWNER, REPO, WEBHOOK_SECRET, GitHubFake

    clock = [T0]
    with GitHubFake(datetime.now(UTC)) as github:
        async with await open_context(tmp_path, clock=lambda: clock[0]) as context:
            await context.connectors.register(webhook_only_descriptor("gh-hooks"))
            await context.instances.create(
                "p1",
                "gh-hooks",
                credentials={"token": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET},
                config={"baseUrl": github.base_url, "owner": OWNER, "repo": REPO},
            )
            policy = SchedulePolicy(jitter_ratio=0, idle_check_after=timedelta(hours=1))
            scheduler = Scheduler(context, "w1", 2, policy=policy)

            def checks() -> int:
                return len(github.server.requests_to("/rate_limit"))

            assert await scheduler.run_once() == []  # nothing polls
            record = await context.instances.record("p1", "gh-hooks")
            assert (record.health_state, record.last_health_check, checks()) == ("healthy", T0, 1)

            clock[0] = T0 + timedelta(minutes=30)
            await scheduler.run_once()
            assert checks() == 1  # checked half an hour ago: not idle yet

            github.tokens.clear()  # the token was revoked meanwhile
            clock[0] = T0 + timedelta(hours=1, minutes=1)
            await scheduler.run_once()
            record = await context.instances.record("p1", "gh-hooks")
            assert (record.health_state, checks()) == ("error", 2)  # no longer healthy forever


# --------------------------------------------------------------------------- scheduling


async def test_run_once_polls_every_due_instance_and_then_nothing_until_the_interval(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    async with await open_context(tmp_path) as context:
        names = await add_feeds(context, server, 3)
        scheduler = Scheduler(context, "w1", 4, policy=QUICK)

        first = await scheduler.run_once()
        second = await scheduler.run_once()

        assert sorted(r.project_id for r in first if r.status == "ok") == [
            f"project-{n}" for n in names
        ]
        assert second == []
        assert fake.first_pages == Counter(dict.fromkeys(names, 1))
        for name in names:
            assert len(await all_signals(context, f"project-{name}")) == 2 * fake.pages


async def test_two_workers_on_one_sqlite_file_never_poll_an_instance_at_once(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    async with await open_context(tmp_path) as one, await open_context(tmp_path) as two:
        names = await add_feeds(one, server, 8)
        workers = [Scheduler(one, "worker-a", 4), Scheduler(two, "worker-b", 4)]

        rounds = await asyncio.gather(*(w.run_once() for w in workers))

    polled = [r for results in rounds for r in results if r.status == "ok"]
    assert sorted(r.project_id for r in polled) == sorted(f"project-{n}" for n in names)
    assert max(fake.most_at_once.values()) == 1
    assert fake.first_pages == Counter(dict.fromkeys(names, 1)), "each instance polled once"


async def test_a_poll_requested_through_one_worker_is_run_once_by_another(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    async with await open_context(tmp_path) as gateway, await open_context(tmp_path) as worker:
        [name] = await add_feeds(gateway, server, 1)
        project = f"project-{name}"
        scheduler = Scheduler(worker, "worker-b", 2, policy=QUICK)
        assert [r.status for r in await scheduler.run_once()] == ["ok"]
        assert await scheduler.run_once() == [], "nothing due before the interval"

        await request_poll(gateway, project, "feed", reason="the provider missed deliveries")
        await request_poll(gateway, project, "feed", reason="and said so twice")
        again = await scheduler.run_once()
        after = await scheduler.run_once()

    assert [(r.project_id, r.status) for r in again] == [(project, "ok")]
    assert after == [], "the poll answered every request made before it started"
    assert fake.first_pages[name] == 2


async def test_polls_run_concurrently_but_never_beyond_the_bound(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    async with await open_context(tmp_path) as context:
        await add_feeds(context, server, 6)
        results = await Scheduler(context, "w1", 2).run_once()
    assert len(results) == 6
    assert fake.most_total == 2


async def test_a_failing_instance_is_not_polled_again_until_its_backoff_ends(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    now = [datetime.now(UTC)]
    async with await open_context(tmp_path, clock=lambda: now[0]) as context:
        await add_feeds(context, server, 1)
        fake.failing.add("f0")
        scheduler = Scheduler(context, "w1", 1, policy=SchedulePolicy(jitter_ratio=0))

        failed = await scheduler.run_once()
        now[0] += INTERVAL * 0.9
        too_soon = await scheduler.run_once()
        now[0] += INTERVAL * 0.2
        retried = await scheduler.run_once()  # failures=2 now: next wait is 2 intervals
        now[0] += INTERVAL * 1.5
        still_waiting = await scheduler.run_once()
        fake.failing.clear()
        await context.instances.update("project-f0", "feed", config={"baseUrl": server.url("/f0")})
        after_fix = await scheduler.run_once()

    assert [r.status for r in failed] == ["failed"]
    assert too_soon == []
    assert [r.status for r in retried] == ["failed"]
    assert still_waiting == []
    assert [(r.status, r.health) for r in after_fix] == [("ok", "healthy")]


@pytest.mark.parametrize("asked", ["1e9", "1e13"], ids=["31-years", "past-datetime"])
async def test_an_absurd_retry_after_pauses_an_instance_no_longer_than_the_backoff_cap(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds], asked: str
) -> None:
    """A hostile or broken upstream's ``Retry-After: 1e9`` paused the instance for 31
    years (until the worker restarted); ``1e13`` overflowed ``datetime`` and crashed the
    poll task instead of recording the result."""
    server, fake = feeds
    now = [datetime.now(UTC)]
    policy = SchedulePolicy(jitter_ratio=0)
    async with await open_context(tmp_path, clock=lambda: now[0]) as context:
        await add_feeds(context, server, 1)
        fake.throttled["f0"] = asked
        scheduler = Scheduler(context, "w1", 1, policy=policy)

        throttled = await scheduler.run_once()
        fake.throttled.clear()
        now[0] += policy.health.backoff_cap + INTERVAL
        after_the_cap = await scheduler.run_once()

    assert [(r.status, r.outcome) for r in throttled] == [("failed", Outcome.RATE_LIMITED)]
    assert [r.status for r in after_the_cap] == ["ok"]


async def test_an_instance_leased_by_a_crashed_worker_waits_for_the_lease_to_expire(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    # The store's clock, not the wall's: on a busy machine a real 0.3 s lease could lapse
    # before the first look, and the "blocked" poll would run.
    now = [datetime.now(UTC)]
    async with await open_context(tmp_path, clock=lambda: now[0]) as context:
        await add_feeds(context, server, 1)
        await context.store.leases.acquire(
            lease_name("project-f0", "feed"),
            "dead-worker",
            ttl=timedelta(seconds=30),
            now=context.clock(),
        )
        blocked = await Scheduler(context, "w1", 1).run_once()
        now[0] += timedelta(seconds=29)
        still_blocked = await Scheduler(context, "w1", 1).run_once()
        now[0] += timedelta(seconds=2)
        resumed = await Scheduler(context, "w1", 1).run_once()
    assert [r.status for r in blocked] == ["skipped"]
    assert [r.status for r in still_blocked] == ["skipped"]
    assert [r.status for r in resumed] == ["ok"]
    assert fake.first_pages["f0"] == 1


async def test_stop_lets_running_polls_store_their_page_then_returns(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    fake.pages, fake.delay = 50, 0.05
    results: list[Any] = []
    async with await open_context(tmp_path) as context:
        await add_feeds(context, server, 2)
        scheduler = Scheduler(context, "w1", 2, policy=QUICK, on_result=results.append)
        running = asyncio.create_task(scheduler.run())
        await eventually(lambda: sum(fake.answered.values()) >= 4)
        scheduler.stop()
        answered_at_stop = Counter(fake.answered)
        await asyncio.wait_for(running, 30)

        assert sorted(r.status for r in results) == ["stopped", "stopped"]
        # Counted in pages, not seconds (a busy machine slows both alike): after the
        # stop, each poll stores the page it has and at most the one fetched ahead.
        for result in results:
            feed = result.project_id.removeprefix("project-")
            assert result.pages <= answered_at_stop[feed] + 2, (
                "a stop waits for one page, not the whole poll"
            )
        for result in results:
            stored = await all_signals(context, result.project_id)
            assert len(stored) == 2 * result.pages == result.inserted
            checkpoint = await context.store.checkpoints.get(result.project_id, "feed")
            assert checkpoint.value == result.checkpoint
            assert (
                await context.store.leases.get(
                    lease_name(result.project_id, "feed"), now=context.clock()
                )
                is None
            )


async def test_a_stop_that_lands_while_the_scheduler_looks_at_the_store_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM arrives while the loop is busy with the store (here: the purge), not
    while it sleeps: the loop must still see it, not sleep a whole rescan first."""
    async with await open_context(tmp_path) as context:
        signals = context.store.signals
        real_purge = signals.purge_expired
        purging, go_on = asyncio.Event(), asyncio.Event()

        async def purge_late(*args: Any, **kwargs: Any) -> int:
            purging.set()
            await go_on.wait()
            return await real_purge(*args, **kwargs)

        monkeypatch.setattr(signals, "purge_expired", purge_late)
        scheduler = Scheduler(context, "w1", policy=SchedulePolicy(rescan_seconds=3600))
        running = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(purging.wait(), timeout=10)
        scheduler.stop()
        go_on.set()
        # Only bounds a broken run: a lost stop sleeps the hour-long rescan.
        await asyncio.wait_for(running, timeout=30)


async def test_stop_now_abandons_pages_in_flight_safely(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    fake.pages, fake.delay = 20, 0.2
    async with await open_context(tmp_path) as context:
        await add_feeds(context, server, 1)
        scheduler = Scheduler(context, "w1", 1)
        running = asyncio.create_task(scheduler.run())
        await eventually(lambda: fake.answered["f0"] >= 2)
        scheduler.stop(now=True)
        await asyncio.wait_for(running, 10)
        checkpoint = await context.store.checkpoints.get("project-f0", "feed")
        stored = await all_signals(context, "project-f0")
    # Pages are stored whole (2 signals each). Abandoning may fall between a
    # page's ingest and its checkpoint CAS: that page is stored and re-fetched
    # next time (dedup absorbs it), so the checkpoint trails by at most one page.
    pages_stored, half = divmod(len(stored), 2)
    assert half == 0
    assert checkpoint.version <= pages_stored <= checkpoint.version + 1


async def test_expired_signals_are_purged(tmp_path: Path, feeds: tuple[FakeServer, Feeds]) -> None:
    server, _ = feeds
    now = [datetime.now(UTC)]
    async with await open_context(tmp_path, clock=lambda: now[0]) as context:
        await add_feeds(context, server, 1)
        scheduler = Scheduler(context, "w1", 1)
        await scheduler.run_once()
        assert len(await all_signals(context, "project-f0")) == 6
        now[0] += context.settings.signal_retention + timedelta(minutes=1)
        purged = await scheduler.purge(force=True)
        assert purged == 6
        assert await all_signals(context, "project-f0") == []


# --------------------------------------------------------------------------- ucf worker


def worker_command(data_dir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from ucf.cli.main import app; app(prog_name='ucf')",
        "worker",
        "--data-dir",
        str(data_dir),
        *args,
    ]


def worker_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCF_")}
    env.update(UCF_ALLOW_HOSTS="127.0.0.1", UCF_DATA_DIR=str(data_dir))
    return env


async def test_ucf_worker_stops_cleanly_on_sigterm(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    fake.pages, fake.delay = 50, 0.05
    async with await open_context(tmp_path, sink=False) as context:
        await add_feeds(context, server, 1)
    child = await asyncio.create_subprocess_exec(
        *worker_command(tmp_path),
        env=worker_env(tmp_path),
        stderr=asyncio.subprocess.PIPE,
    )
    await eventually(lambda: fake.answered["f0"] >= 2, within=30)
    child.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(child.communicate(), 10)
    log = stderr.decode()
    assert child.returncode == 0, log
    assert "stopping" in log
    assert "stopped after" in log
    assert fake.answered["f0"] < fake.pages


async def test_ucf_worker_once_exits_non_zero_when_a_poll_failed(
    tmp_path: Path, feeds: tuple[FakeServer, Feeds]
) -> None:
    server, fake = feeds
    async with await open_context(tmp_path, sink=False) as context:
        await add_feeds(context, server, 2)
    fake.failing.add("f1")
    child = await asyncio.create_subprocess_exec(
        *worker_command(tmp_path, "--once"),
        env=worker_env(tmp_path),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 30)
    summary = stderr.decode().strip().splitlines()[-1]
    assert child.returncode == 1
    assert summary == "1 failed, 1 ok; 6 new signal(s)"


def test_ucf_worker_refuses_a_bad_store_url_in_one_line(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [*worker_command(tmp_path, "--once", "--store", "nonsense://x")],
        env=worker_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error:")
    assert len(done.stderr.strip().splitlines()) == 1
