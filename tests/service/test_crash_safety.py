"""The delivery guarantee, proven the hard way: SIGKILL a polling process anywhere.

ARCHITECTURE "Delivery": a poll checkpoint advances only after the page's
signals are stored, so a crash at any point loses nothing and duplicates
nothing. Here a real poller process (the scheduler of ``ucf worker --once``)
polls a paginating fake — a generic connector (GitHub: Link header, ``since``,
ascending order, 56 pages) and native ones (Jira: the JQL search,
``nextPageToken``, 17 pages; Outlook: Graph's delta query, 15 pages) — into SQLite, and the GitHub one into DynamoDB
(dynalite: a conditional put commits each signal, batch writes derive the rest)
— and is killed with SIGKILL at random points — mostly after
a random number of requests plus a random delay (mid-page: mapping, the ingest
transaction, the checkpoint CAS, the next request), sometimes at a random time
since launch (start-up, migrations, catalogue sync, any page) — over and over,
each run resuming from what the killed one left. Then one run goes to
completion, and the stored signals (ids, dedup keys, content) must equal a
clean run's exactly, with exactly one outbox entry per signal.

Seeded; set ``UCF_CRASH_SEED`` to replay a failure and ``UCF_CRASH_KILLS`` for more kills
(docs/storage.md, "Crash safety").
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.stores.dynalite import dynalite_endpoint
from ucf.fakes import graph as fake_graph
from ucf.fakes import jira as fake_jira
from ucf.fakes.github import GitHubFake
from ucf.fakes.scenario import ProviderFake
from ucf.service.context import UcfContext
from ucf.service.settings import Settings
from ucf.stores.url import open_store

from .crash_support import KILLS, SEED, Backend, Child, Zygote, module_zygote, zygote
from .poll_support import FAST_HTTP, connect_github, github_descriptor

__all__ = ["dynalite_endpoint", "module_zygote", "zygote"]  # fixtures

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the zygote's loop

PROJECT = "crash"
CHILD_TIMEOUT = 60.0
POLL_ONCE = "tests.service.crash_children:poll_once"

Snapshot = frozenset[tuple[str, str, str]]


@dataclass
class Stored:
    signals: Snapshot
    outbox: Counter[str]
    checkpoint: Any
    version: int


@dataclass(frozen=True)
class Target:
    """One connector the poller is killed over: its fake and how an instance is set up."""

    connector: str
    fake: Callable[[], ProviderFake]
    add_instance: Callable[[UcfContext, str], Awaitable[None]]
    settled: Callable[[Any], Any] = lambda checkpoint: checkpoint
    """What two complete runs' checkpoints have in common (all of it, mostly)."""


def _delta_link_without_token(checkpoint: Any) -> Any:
    """Graph's deltaLink names its round with an opaque token that also encodes the run's
    own time window (``receivedDateTime ge`` the poll's start minus 7 days), so two complete
    runs share the link but not its token; a nextLink (a poll cut short) stays as it is."""
    if isinstance(checkpoint, str) and "$deltatoken=" in checkpoint:
        return checkpoint.split("$deltatoken=")[0]
    return checkpoint


async def _github_instance(context: UcfContext, base_url: str) -> None:
    descriptor = github_descriptor("gh-crash", page_size=5)
    descriptor["ingestion"]["polling"]["rateLimitRpm"] = 60_000  # pacing is not under test
    await context.connectors.register(descriptor)
    await connect_github(context, base_url, project=PROJECT, connector="gh-crash")


async def _jira_instance(context: UcfContext, base_url: str) -> None:
    """The built-in native connector as shipped (its own schedule and rate budget)."""
    scenario = fake_jira.JiraScenario()
    await context.instances.create(
        PROJECT, "jira", credentials=scenario.credentials(), config=scenario.config(base_url)
    )


async def _outlook_instance(context: UcfContext, base_url: str) -> None:
    """The built-in native connector, app-only (a rotating refresh token is not under test)."""
    await context.instances.create(
        PROJECT,
        "outlook",
        credentials={"clientId": fake_graph.CLIENT_ID, "clientSecret": fake_graph.CLIENT_SECRET},
        config={
            "baseUrl": f"{base_url}/v1.0",
            "authorityUrl": base_url,
            "tenant": fake_graph.TENANT,
            "mailbox": fake_graph.MAILBOX,
        },
    )


TARGETS = {
    "github": Target("gh-crash", lambda: GitHubFake(datetime.now(UTC)), _github_instance),
    # Jira may return fewer issues than maxResults asks (documented): 8 a page, 17 pages.
    "jira": Target(
        "jira", lambda: fake_jira.JiraFake(datetime.now(UTC), page_max=8), _jira_instance
    ),
    # Graph's delta query: 150 messages, 10 a page whatever maxpagesize asks, 15 pages.
    "outlook": Target(
        "outlook",
        lambda: fake_graph.GraphFake(datetime.now(UTC), messages=150, page_max=10),
        _outlook_instance,
        _delta_link_without_token,
    ),
}


RUNS = [("github", "sqlite"), ("jira", "sqlite"), ("outlook", "sqlite"), ("github", "dynamodb")]
"""Which connector over which backend: every connector on SQLite; the generic one on DynamoDB,
whose ingest is three steps a kill can fall between (docs/storage.md)."""


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    found: Target = TARGETS[request.param]
    return found


@pytest.fixture(scope="module")
def fake(target: Target) -> Iterator[ProviderFake]:
    with target.fake() as started:
        yield started


def backend_of(request: pytest.FixtureRequest, name: str) -> Backend:
    """SQLite files, or tables on the session's dynalite."""
    if name == "dynamodb":
        return Backend(name, request.getfixturevalue("dynalite_endpoint"))
    return Backend(name)


@dataclass
class Crash:
    """One parametrised run: the zygote that forks pollers, the backend, the fake."""

    zygote: Zygote
    backend: Backend
    target: Target
    fake: ProviderFake

    def settings(self, directory: Path) -> Settings:
        environ = self.backend.env(directory)
        return dataclasses.replace(Settings.from_env(environ, data_dir=directory), http=FAST_HTTP)

    async def make_data(self, directory: Path) -> None:
        """A data directory (and store) with the connector registered and one instance."""
        async with await UcfContext.open(self.settings(directory)) as context:
            await self.target.add_instance(context, self.fake.base_url)

    async def launch(self, directory: Path) -> Child:
        return await self.zygote.launch(POLL_ONCE, [str(directory)], self.backend.env(directory))


@dataclass
class Timing:
    """When, after launch, a clean run sent its first request and when it was done."""

    first_request: float
    done: float
    requests: int = 1

    @property
    def per_request(self) -> float:
        """How long the clean run spent per upstream request (fetch, map, sanitise, store)."""
        return max(self.done - self.first_request, 0.0) / max(self.requests, 1)


async def run_to_completion(crash: Crash, directory: Path) -> Timing:
    fake = crash.fake
    seen = len(fake.server.requests)
    started = time.monotonic()
    child = await crash.launch(directory)
    first_request: float | None = None
    while child.returncode is None and time.monotonic() - started < CHILD_TIMEOUT:
        if first_request is None and len(fake.server.requests) > seen:
            first_request = time.monotonic() - started
        await asyncio.sleep(0.005)
    assert await asyncio.wait_for(child.wait(), CHILD_TIMEOUT) == 0, child.output
    done = time.monotonic() - started
    return Timing(
        first_request if first_request is not None else done,
        done,
        len(fake.server.requests) - seen,
    )


async def snapshot(crash: Crash, directory: Path) -> Stored:
    """Everything the store holds for the project, read by a fresh process-like opener."""
    async with open_store(crash.backend.store_url(directory)) as store:
        signals: set[tuple[str, str, str]] = set()
        cursor: str | None = None
        while True:
            page = await store.signals.query(PROJECT, limit=500, cursor=cursor)
            for item in page.items:
                content = json.dumps(item.signal, sort_keys=True)
                signals.add((item.signal_id, item.dedup_key, content))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        entries = await store.outbox.claim(
            "jsonl", limit=100_000, lease=timedelta(seconds=1), now=datetime.now(UTC)
        )
        await store.outbox.release(
            "jsonl", [e.entry_id for e in entries], retry_at=datetime.now(UTC)
        )
        checkpoint = await store.checkpoints.get(PROJECT, crash.target.connector)
    return Stored(
        frozenset(signals),
        Counter(e.signal["id"] for e in entries),
        checkpoint.value,
        checkpoint.version,
    )


async def kill_somewhere(
    crash: Crash, directory: Path, rng: random.Random, clean: Timing
) -> str | None:
    """Launch a poller and SIGKILL it at a random point; None if it finished first."""
    fake = crash.fake
    seen = len(fake.server.requests)
    child = await crash.launch(directory)
    launched = time.monotonic()
    if rng.random() < 0.75:
        target = seen + rng.randint(1, 2)
        while len(fake.server.requests) < target and child.returncode is None:
            if time.monotonic() - launched > CHILD_TIMEOUT:
                break
            await asyncio.sleep(0.002)
        # Within the work that follows a request, however long it takes on this machine
        # (a fixed window can end before the page's commit, and every kill lands before it).
        delay = rng.uniform(0, max(0.03, 2 * clean.per_request))
        where = f"request {target - seen} + {delay * 1000:.0f} ms"
    else:
        # From just before the store opens (start-up, migrations, catalogue sync) to the end.
        delay = rng.uniform(clean.first_request * 0.8, clean.done)
        where = f"{delay:.2f} s after launch"
    await asyncio.wait([asyncio.ensure_future(child.wait())], timeout=delay)
    if child.returncode is not None:
        assert child.returncode == 0, f"a poller failed before it was killed: {child.output}"
        return None
    await child.kill()
    return where


@pytest.mark.parametrize(("target", "backend_name"), RUNS, indirect=["target"])
async def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    target: Target,
    backend_name: str,
    fake: ProviderFake,
    zygote: Zygote,
) -> None:
    backend = backend_of(request, backend_name)
    await _kill_over_and_over(Crash(zygote, backend, target, fake), tmp_path)


async def _kill_over_and_over(crash: Crash, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    fake = crash.fake
    clean = tmp_path / "clean"
    await crash.make_data(clean)
    timing = await run_to_completion(crash, clean)
    expected = await snapshot(crash, clean)
    in_window = fake.ids_changed_since(datetime.now(UTC) - timedelta(days=7))
    stored = len(expected.signals)
    if crash.target.connector == "outlook":
        # A message first seen settled is its arrival and its change: two signals.
        stored = len({json.loads(text)["raw"]["id"] for _, _, text in expected.signals})
    assert stored == len(in_window) > 100, "the clean run must store every issue"
    assert expected.version > 10, "the checkpoint must advance page by page (sortedAscending)"
    assert set(expected.outbox.values()) == {1}

    kills: list[str] = []
    intermediate: set[tuple[int, int]] = set()
    wanted = min(5, KILLS // 4)

    def partial() -> set[tuple[int, int]]:
        return {state for state in intermediate if 0 < state[1] < len(expected.signals)}

    def more() -> bool:
        """KILLS kills; more (up to 3×) while they landed in too few mid-poll states.
        Where kills land is chance, so the coverage goal is pursued, not hoped for."""
        return len(kills) < KILLS or (len(partial()) < wanted and len(kills) < 3 * KILLS)

    trial = 0
    while more():
        trial += 1
        directory = tmp_path / f"trial-{trial}"
        await crash.make_data(directory)
        while more():
            where = await kill_somewhere(crash, directory, rng, timing)
            state = await snapshot(crash, directory)
            assert state.signals <= expected.signals, f"seed {SEED}: a signal no clean run stores"
            assert set(state.outbox.values()) <= {1}, f"seed {SEED}: a signal enqueued twice"
            assert set(state.outbox) == {sid for sid, _, _ in state.signals}
            if where is not None:
                kills.append(f"trial {trial}: {where}")
                intermediate.add((state.version, len(state.signals)))
            if crash.target.settled(state.checkpoint) == crash.target.settled(expected.checkpoint):
                break  # this trial's data is complete; start another from scratch
        await run_to_completion(crash, directory)
        final = await snapshot(crash, directory)
        assert final.signals == expected.signals, (
            f"seed {SEED}, trial {trial}: "
            f"{len(expected.signals - final.signals)} lost, "
            f"{len(final.signals - expected.signals)} unexpected; kills: {kills}"
        )
        assert final.outbox == expected.outbox, f"seed {SEED}, trial {trial}: outbox differs"
        assert crash.target.settled(final.checkpoint) == crash.target.settled(expected.checkpoint)

    assert len(partial()) >= wanted, (
        f"seed {SEED}: {len(kills)} kills landed in too few distinct mid-poll states "
        f"{sorted(intermediate)}"
    )
