"""Signal ingest throughput: the store's dedup path against a raw sqlite3 floor, same run.

Stores N realistic signals (GitHub issues as ``raw``, 1-2 KB each) of which 20 %
are re-deliveries of earlier ones, in batches, through ``store.signals.ingest``,
and checks that exactly the unique ones were inserted. Next to it, the floor:
plain ``sqlite3.executemany`` with ``INSERT OR IGNORE`` of the same rows,
pre-serialised, into an equivalent table (same columns and indexes, same
pragmas), one transaction per batch of the same size. Target: the SQLite store
reaches ≥ 30 % of the floor. A barer floor (the dedup key as the only index) is
printed too, to show what the query indexes cost.

Two write shapes of the service are measured on SQLite as well, each beside the
alternative it replaced: a poll page (100 signals) stored with its checkpoint in
one transaction against ingest-then-compare-and-set (two commits, as DynamoDB
still does), and 32 webhook-sized ingests (one signal each) issued at once,
which group commit folds into shared transactions, against the same ingests
one at a time (a commit, an fsync and a thread hop each).

DynamoDB runs against dynalite when the backend and ``node_modules/.bin/dynalite``
are both present (dynalite is a single-threaded Node server: its figure says what
our request path costs, not what DynamoDB can do).

    uv run python bench/store.py [--signals 50000] [--batch 500] [--backends sqlite,dynamodb]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import math
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from github_items import github_issues
from ucf.core.signal import SanitisedSignal, SignalMetadata, dedup_key, iso_utc, signal_id
from ucf.stores import Store, open_store
from ucf.stores.models import CheckpointMove, SignalWrite, epoch_ms
from ucf.stores.sqlite.schema import MIGRATIONS

REPO = Path(__file__).resolve().parents[1]
DYNALITE = REPO / "node_modules" / ".bin" / "dynalite"
RECEIVED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TARGET = 0.30


def make_signals(count: int, duplicate_share: float) -> list[SignalWrite]:
    """``count`` writes: unique item versions plus re-deliveries of earlier ones, shuffled."""
    unique = count - round(count * duplicate_share)
    writes = []
    for item in github_issues(unique):
        updated = datetime.fromisoformat(item["updated_at"].replace("Z", "+00:00"))
        key = dedup_key("github-issues", "p1", str(item["id"]), iso_utc(updated))
        signal = SanitisedSignal(
            id=signal_id(key, epoch_ms(updated)),
            source="github-issues",
            timestamp=iso_utc(updated),
            type="issue_updated",
            summary=item["title"],
            raw=item,
            projectId="p1",
            metadata=SignalMetadata(
                priority="high", tags=[label["name"] for label in item["labels"]]
            ),
            sanitisedSummary=item["title"],
        )
        writes.append(SignalWrite.of(signal, dedup_key=key, received_at=RECEIVED))
    rng = random.Random(7)
    everything = writes + [rng.choice(writes) for _ in range(count - unique)]
    rng.shuffle(everything)
    return everything


def batches(items: Sequence[SignalWrite], size: int) -> list[Sequence[SignalWrite]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- the floor -----------------------------------------------------------------------


def _signals_ddl(*, with_indexes: bool) -> list[str]:
    """The signals table (and its secondary indexes) exactly as migration 1 creates them."""
    script = MIGRATIONS[0].sql
    statements = [s.strip() for s in script.split(";") if s.strip()]
    table = [s for s in statements if s.startswith("CREATE TABLE signals")]
    indexes = [s for s in statements if s.startswith("CREATE INDEX signals_")]
    return table + indexes if with_indexes else table


def raw_floor(
    writes: Sequence[SignalWrite], batch: int, directory: Path, *, with_indexes: bool
) -> tuple[float, int]:
    """Signals/s of executemany INSERT OR IGNORE; rows are serialised before the clock."""
    rows = [
        (
            w.dedup_key,
            w.project_id,
            w.signal_id,
            w.connector_id,
            w.signal["source"],
            w.signal["type"],
            epoch_ms(w.timestamp),
            epoch_ms(w.received_at),
            math.ceil(epoch_ms(w.received_at) / 1000 + 30 * 86400),
            json.dumps(w.signal, separators=(",", ":"), ensure_ascii=False),
        )
        for w in writes
    ]
    conn = sqlite3.connect(directory / f"floor-{with_indexes}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for statement in _signals_ddl(with_indexes=with_indexes):
        conn.execute(statement)
    gc.collect()
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR IGNORE INTO signals VALUES (?,?,?,?,?,?,?,?,?,?)", rows[i : i + batch]
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    stored = conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0]
    conn.close()
    return len(rows) / elapsed, stored


# --- store backends ------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    name: str
    open: Callable[[Path], AbstractAsyncContextManager[Store]]
    sinks: tuple[str, ...] = ()
    repeat: bool = True
    """Measured in every round (best counts); False: once, for slow servers."""


@contextlib.asynccontextmanager
async def sqlite_store(directory: Path) -> AsyncIterator[Store]:
    async with open_store(f"sqlite://{directory / 'ucf.db'}") as store:
        yield store


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def dynalite() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [str(DYNALITE), "--host", "127.0.0.1", "--port", str(port), "--createTableMs", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("dynalite did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@contextlib.asynccontextmanager
async def dynamodb_store(directory: Path) -> AsyncIterator[Store]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ.setdefault(name, value)
    with dynalite() as endpoint:
        async with open_store(
            f"dynamodb://ucf-bench?region=us-east-1&endpoint={endpoint}"
        ) as store:
            yield store


def available_backends() -> dict[str, list[Backend]]:
    """Backend name → the variants measured for it. Add a backend here."""
    found = {
        "sqlite": [
            Backend("sqlite store", sqlite_store),
            Backend("sqlite store + 1 outbox sink", sqlite_store, ("http",)),
        ]
    }
    if importlib.util.find_spec("ucf.stores.dynamodb") is not None and DYNALITE.exists():
        found["dynamodb"] = [Backend("dynamodb store (dynalite)", dynamodb_store, repeat=False)]
    return found


async def measure(
    backend: Backend, writes: Sequence[SignalWrite], batch: int, directory: Path
) -> tuple[float, int]:
    async with backend.open(directory) as store:
        gc.collect()
        inserted = 0
        start = time.perf_counter()
        for chunk in batches(writes, batch):
            result = await store.signals.ingest(chunk, sinks=backend.sinks)
            inserted += result.inserted_count
        elapsed = time.perf_counter() - start
    return len(writes) / elapsed, inserted


PAGE_SIZES = (100, 5)
"""A first poll's full pages, and a steady-state poll's few changes since the last one."""
CONCURRENT = 32


async def pages(
    writes: Sequence[SignalWrite], directory: Path, *, size: int, one_commit: bool
) -> float:
    """Poll pages/s: each page's signals and its checkpoint, in one commit or in two."""
    async with sqlite_store(directory) as store:
        gc.collect()
        start = time.perf_counter()
        for version, chunk in enumerate(batches(writes, size)):
            move = CheckpointMove("p1", "github-issues", version, version + 1, RECEIVED)
            if one_commit:
                result = await store.signals.ingest(chunk, checkpoint=move)
                moved = result.checkpoint_moved
            else:
                await store.signals.ingest(chunk)
                moved = await store.checkpoints.compare_and_set(
                    "p1", "github-issues", expected_version=version, value=version + 1, now=RECEIVED
                )
            assert moved, "a page's checkpoint did not move"
        return math.ceil(len(writes) / size) / (time.perf_counter() - start)


async def deliveries(writes: Sequence[SignalWrite], directory: Path, *, at_once: int) -> float:
    """Webhook-sized ingests/s (one signal each), ``at_once`` in flight."""
    async with sqlite_store(directory) as store:
        gc.collect()
        start = time.perf_counter()
        for i in range(0, len(writes), at_once):
            await asyncio.gather(
                *(store.signals.ingest([write]) for write in writes[i : i + at_once])
            )
        return len(writes) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=50_000)
    parser.add_argument("--duplicates", type=float, default=0.20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="best of N, interleaved")
    parser.add_argument("--backends", default="sqlite,dynamodb", help="comma-separated")
    args = parser.parse_args()

    writes = make_signals(args.signals, args.duplicates)
    unique = len({w.dedup_key for w in writes})
    size = sum(len(json.dumps(w.signal["raw"])) for w in writes[:1000]) / min(1000, len(writes))
    print(
        f"{len(writes)} signals ({unique} unique, {len(writes) - unique} re-deliveries), "
        f"raw ≈ {size / 1024:.1f} KB, batches of {args.batch}, sqlite {sqlite3.sqlite_version}, "
        f"best of {args.rounds} interleaved rounds"
    )
    wanted = {name.strip() for name in args.backends.split(",") if name.strip()}
    backends = available_backends()
    for name in sorted(wanted - backends.keys()):
        print(f"  ({name}: not available here, skipped)")
    measured = [(name, b) for name in sorted(wanted & backends.keys()) for b in backends[name]]

    best: dict[str, float] = {}

    def record(label: str, rate: float) -> None:
        best[label] = max(best.get(label, 0.0), rate)

    with tempfile.TemporaryDirectory(prefix="ucf-bench-") as tmp:
        for round_no in range(args.rounds):
            work = Path(tmp) / f"round-{round_no}"
            work.mkdir()
            for with_indexes, label in ((False, "bare"), (True, "floor")):
                rate, stored = raw_floor(writes, args.batch, work, with_indexes=with_indexes)
                assert stored == unique, (label, stored, unique)
                record(label, rate)
            for _, backend in measured:
                if round_no and not backend.repeat:
                    continue
                directory = work / backend.name.replace(" ", "-")
                directory.mkdir()
                rate, inserted = asyncio.run(measure(backend, writes, args.batch, directory))
                assert inserted == unique, f"{backend.name}: inserted {inserted}, expected {unique}"
                record(backend.name, rate)
            if "sqlite" in wanted:
                some = writes[: min(len(writes), 5_000)]
                for size in PAGE_SIZES:
                    for one_commit in (True, False):
                        directory = work / f"pages-{size}-{one_commit}"
                        rate = asyncio.run(
                            pages(some[: size * 60], directory, size=size, one_commit=one_commit)
                        )
                        record(f"pages {size} {one_commit}", rate)
                for at_once in (CONCURRENT, 1):
                    directory = work / f"deliveries-{at_once}"
                    rate = asyncio.run(deliveries(some[:4000], directory, at_once=at_once))
                    record(f"deliveries {at_once}", rate)

    bare, floor = best["bare"], best["floor"]
    print(f"  {'raw floor, dedup key only':34} {bare:>9,.0f} signals/s")
    print(f"  {'raw floor, same table and indexes':34} {floor:>9,.0f} signals/s  (the floor)")
    for name, backend in measured:
        rate = best[backend.name]
        verdict = ""
        if name == "sqlite":
            verdict = "  target ≥ 30 %: " + ("met" if rate >= TARGET * floor else "MISSED")
        print(
            f"  {backend.name:34} {rate:>9,.0f} signals/s  "
            f"{rate / floor:6.1%} of floor, {rate / bare:6.1%} of bare{verdict}"
        )
    if "sqlite" in wanted:
        for size in PAGE_SIZES:
            one, two = best[f"pages {size} True"], best[f"pages {size} False"]
            print(
                f"  poll pages of {size:>3} + checkpoint: one commit {one:,.0f} pages/s, "
                f"ingest then CAS (two commits) {two:,.0f} pages/s → {one / two:.2f}×"
            )
        grouped, serial = best[f"deliveries {CONCURRENT}"], best["deliveries 1"]
        print(
            f"  one-signal ingests, {CONCURRENT} at once (group commit) {grouped:,.0f}/s, "
            f"one at a time {serial:,.0f}/s → {grouped / serial:.2f}×"
        )


if __name__ == "__main__":
    main()
