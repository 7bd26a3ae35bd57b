"""The delivery guarantee, proven the hard way: SIGKILL a polling process anywhere.

ARCHITECTURE "Delivery": a poll checkpoint advances only after the page's
signals are stored, so a crash at any point loses nothing and duplicates
nothing. Here a real poller process (the scheduler of ``ucf worker --once``)
polls a paginating fake into SQLite — a generic connector (GitHub: Link header,
``since``, ascending order, 56 pages) and a native one (Jira: the JQL search,
``nextPageToken``, 17 pages) — and is killed with SIGKILL at random points — mostly after
a random number of requests plus a random delay (mid-page: mapping, the ingest
transaction, the checkpoint CAS, the next request), sometimes at a random time
since launch (start-up, migrations, catalogue sync, any page) — over and over,
each run resuming from what the killed one left. Then one run goes to
completion, and the stored signals (ids, dedup keys, content) must equal a
clean run's exactly, with exactly one outbox entry per signal.

Seeded; set ``UCF_CRASH_SEED`` to replay a failure and ``UCF_CRASH_KILLS`` for more kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ucf.fakes import jira as fake_jira
from ucf.fakes.github import GitHubFake
from ucf.fakes.scenario import ProviderFake
from ucf.service.context import UcfContext
from ucf.stores.url import open_store

from .poll_support import connect_github, github_descriptor, open_context, settings_for

PROJECT = "crash"
WORKER_ID = "crash-test-worker"  # reused, so a killed run's lease is taken back at once
KILLS = int(os.environ.get("UCF_CRASH_KILLS", "20"))
SEED = int(os.environ.get("UCF_CRASH_SEED", str(random.SystemRandom().randrange(10**6))))
CHILD_TIMEOUT = 60.0

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


TARGETS = {
    "github": Target("gh-crash", lambda: GitHubFake(datetime.now(UTC)), _github_instance),
    # Jira may return fewer issues than maxResults asks (documented): 8 a page, 17 pages.
    "jira": Target(
        "jira", lambda: fake_jira.JiraFake(datetime.now(UTC), page_max=8), _jira_instance
    ),
}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    found: Target = TARGETS[request.param]
    return found


@pytest.fixture(scope="module")
def fake(target: Target) -> Iterator[ProviderFake]:
    with target.fake() as started:
        yield started


async def make_template(directory: Path, target: Target, base_url: str) -> None:
    """A data directory with the connector registered and one instance, never polled."""
    async with await open_context(directory) as context:
        await target.add_instance(context, base_url)


def child_env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCF_")}
    env.update(
        UCF_ALLOW_HOSTS="127.0.0.1",
        UCF_SINK_JSONL=str(directory / "signals.jsonl"),
        UCF_DATA_DIR=str(directory),
    )
    return env


POLLER = f"""
import asyncio, sys
from pathlib import Path
from ucf.service.context import UcfContext
from ucf.service.scheduler import Scheduler
from ucf.service.settings import Settings

async def main() -> None:
    settings = Settings.from_env(data_dir=Path(sys.argv[1]))
    async with await UcfContext.open(settings) as context:
        results = await Scheduler(context, {WORKER_ID!r}, 1).run_once()
    sys.exit(0 if all(r.status == "ok" for r in results) else 1)

asyncio.run(main())
"""
"""What ``ucf worker --once`` runs, minus the CLI's imports: ~20 launches, each one counts."""


async def launch(directory: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        POLLER,
        str(directory),
        env=child_env(directory),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


@dataclass
class Timing:
    """When, after launch, a clean run sent its first request and when it was done."""

    first_request: float
    done: float


async def run_to_completion(directory: Path, fake: ProviderFake) -> Timing:
    seen = len(fake.server.requests)
    started = time.monotonic()
    child = await launch(directory)
    first_request: float | None = None
    while child.returncode is None and time.monotonic() - started < CHILD_TIMEOUT:
        if first_request is None and len(fake.server.requests) > seen:
            first_request = time.monotonic() - started
        await asyncio.sleep(0.005)
    _, stderr = await asyncio.wait_for(child.communicate(), CHILD_TIMEOUT)
    assert child.returncode == 0, stderr.decode(errors="replace")
    done = time.monotonic() - started
    return Timing(first_request if first_request is not None else done, done)


async def snapshot(directory: Path, connector: str) -> Stored:
    """Everything the store holds for the project, read by a fresh process-like opener."""
    url = settings_for(directory).store_url
    async with open_store(url) as store:
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
        checkpoint = await store.checkpoints.get(PROJECT, connector)
    return Stored(
        frozenset(signals),
        Counter(e.signal["id"] for e in entries),
        checkpoint.value,
        checkpoint.version,
    )


async def kill_somewhere(
    directory: Path, fake: ProviderFake, rng: random.Random, clean: Timing
) -> str | None:
    """Launch a poller and SIGKILL it at a random point; None if it finished first."""
    seen = len(fake.server.requests)
    child = await launch(directory)
    launched = time.monotonic()
    if rng.random() < 0.75:
        target = seen + rng.randint(1, 2)
        while len(fake.server.requests) < target and child.returncode is None:
            if time.monotonic() - launched > CHILD_TIMEOUT:
                break
            await asyncio.sleep(0.002)
        delay = rng.uniform(0, 0.03)
        where = f"request {target - seen} + {delay * 1000:.0f} ms"
    else:
        # From just before the store opens (start-up, migrations, catalogue sync) to the end.
        delay = rng.uniform(clean.first_request * 0.8, clean.done)
        where = f"{delay:.2f} s after launch"
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(child.wait(), delay)
    if child.returncode is not None:
        assert child.returncode == 0, "a poller exited with an error before it was killed"
        return None
    child.kill()
    await child.wait()
    return where


async def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    tmp_path: Path, target: Target, fake: ProviderFake
) -> None:
    rng = random.Random(SEED)
    template = tmp_path / "template"
    await make_template(template, target, fake.base_url)

    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    timing = await run_to_completion(clean, fake)
    expected = await snapshot(clean, target.connector)
    in_window = fake.ids_changed_since(datetime.now(UTC) - timedelta(days=7))
    assert len(expected.signals) == len(in_window) > 100, "the clean run must store every issue"
    assert expected.version > 10, "the checkpoint must advance page by page (sortedAscending)"
    assert set(expected.outbox.values()) == {1}

    kills: list[str] = []
    intermediate: set[tuple[int, int]] = set()
    trial = 0
    while len(kills) < KILLS:
        trial += 1
        directory = tmp_path / f"trial-{trial}"
        shutil.copytree(template, directory)
        while len(kills) < KILLS:
            where = await kill_somewhere(directory, fake, rng, timing)
            state = await snapshot(directory, target.connector)
            assert state.signals <= expected.signals, f"seed {SEED}: a signal no clean run stores"
            assert set(state.outbox.values()) <= {1}, f"seed {SEED}: a signal enqueued twice"
            assert set(state.outbox) == {sid for sid, _, _ in state.signals}
            if where is not None:
                kills.append(f"trial {trial}: {where}")
                intermediate.add((state.version, len(state.signals)))
            if state.checkpoint == expected.checkpoint:
                break  # this trial's data is complete; start another from scratch
        await run_to_completion(directory, fake)
        final = await snapshot(directory, target.connector)
        assert final.signals == expected.signals, (
            f"seed {SEED}, trial {trial}: "
            f"{len(expected.signals - final.signals)} lost, "
            f"{len(final.signals - expected.signals)} unexpected; kills: {kills}"
        )
        assert final.outbox == expected.outbox, f"seed {SEED}, trial {trial}: outbox differs"
        assert final.checkpoint == expected.checkpoint

    partial = {state for state in intermediate if 0 < state[1] < len(expected.signals)}
    assert len(partial) >= 5, (
        f"seed {SEED}: kills landed in too few distinct mid-poll states {sorted(intermediate)}"
    )
