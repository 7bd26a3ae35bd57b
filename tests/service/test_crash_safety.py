"""The delivery guarantee, proven the hard way: SIGKILL a polling process anywhere.

ARCHITECTURE "Delivery": a poll checkpoint advances only after the page's
signals are stored, so a crash at any point loses nothing and duplicates
nothing. Here a real ``ucf worker --once`` process polls a paginating GitHub
fake (Link header, ``since``, ascending order, 28 pages) into SQLite, and is
killed with SIGKILL at random points — after a random number of requests plus a
random delay (mid-page: mapping, the ingest transaction, the checkpoint CAS),
or at a random time since launch (start-up, migrations, catalogue sync) — over
and over, each run resuming from what the killed one left. Then one run goes to
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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ucf.fakes.github import GitHubFake
from ucf.stores.url import open_store

from .poll_support import connect_github, github_descriptor, open_context, settings_for

CONNECTOR = "gh-crash"
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


@pytest.fixture(scope="module")
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(datetime.now(UTC)) as github:
        yield github


async def make_template(directory: Path, base_url: str) -> None:
    """A data directory with the connector registered and one instance, never polled."""
    async with await open_context(directory) as context:
        descriptor = github_descriptor(CONNECTOR, page_size=10)
        descriptor["ingestion"]["polling"]["rateLimitRpm"] = 60_000  # pacing is not under test
        await context.connectors.register(descriptor)
        await connect_github(context, base_url, project=PROJECT, connector=CONNECTOR)


def child_env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCF_")}
    env.update(
        UCF_ALLOW_HOSTS="127.0.0.1",
        UCF_SINK_JSONL=str(directory / "signals.jsonl"),
        UCF_DATA_DIR=str(directory),
    )
    return env


async def launch(directory: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from ucf.cli.main import app; app(prog_name='ucf')",
        "worker",
        "--once",
        "--data-dir",
        str(directory),
        "--worker-id",
        WORKER_ID,
        env=child_env(directory),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_to_completion(directory: Path) -> float:
    started = time.monotonic()
    child = await launch(directory)
    _, stderr = await asyncio.wait_for(child.communicate(), CHILD_TIMEOUT)
    assert child.returncode == 0, stderr.decode(errors="replace")
    return time.monotonic() - started


async def snapshot(directory: Path) -> Stored:
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
        checkpoint = await store.checkpoints.get(PROJECT, CONNECTOR)
    return Stored(
        frozenset(signals),
        Counter(e.signal["id"] for e in entries),
        checkpoint.value,
        checkpoint.version,
    )


async def kill_somewhere(
    directory: Path, fake: GitHubFake, rng: random.Random, clean_seconds: float
) -> str | None:
    """Launch a poller and SIGKILL it at a random point; None if it finished first."""
    seen = len(fake.server.requests)
    child = await launch(directory)
    launched = time.monotonic()
    if rng.random() < 0.6:
        target = seen + rng.randint(1, 3)
        while len(fake.server.requests) < target and child.returncode is None:
            if time.monotonic() - launched > CHILD_TIMEOUT:
                break
            await asyncio.sleep(0.002)
        delay = rng.uniform(0, 0.03)
        where = f"request {target - seen} + {delay * 1000:.0f} ms"
    else:
        delay = rng.uniform(0.2, clean_seconds)
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
    tmp_path: Path, fake: GitHubFake
) -> None:
    rng = random.Random(SEED)
    template = tmp_path / "template"
    await make_template(template, fake.base_url)

    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    clean_seconds = await run_to_completion(clean)
    expected = await snapshot(clean)
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
            where = await kill_somewhere(directory, fake, rng, clean_seconds)
            state = await snapshot(directory)
            assert state.signals <= expected.signals, f"seed {SEED}: a signal no clean run stores"
            assert set(state.outbox.values()) <= {1}, f"seed {SEED}: a signal enqueued twice"
            assert set(state.outbox) == {sid for sid, _, _ in state.signals}
            if where is not None:
                kills.append(f"trial {trial}: {where}")
                intermediate.add((state.version, len(state.signals)))
            if state.checkpoint == expected.checkpoint:
                break  # this trial's data is complete; start another from scratch
        await run_to_completion(directory)
        final = await snapshot(directory)
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
