"""What only the SQLite backend does: its file, its migrations, its purge, its faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.stores.builders import T0, minutes, signal_write
from ucf.stores import InvalidRecord, StoreCorrupt, StoreUnavailable, open_store
from ucf.stores.models import CheckpointMove, SignalQuery
from ucf.stores.sqlite import database
from ucf.stores.sqlite.database import Database
from ucf.stores.sqlite.schema import MIGRATIONS, Migration


def url(path: Path) -> str:
    return f"sqlite://{path}"


async def test_first_init_creates_file_and_schema_and_second_init_does_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "ucf.db"
    store = open_store(url(path))
    first = await store.init()
    await store.close()
    assert first.actions == (
        f"created directory {path.parent}",
        f"created SQLite file {path}",
        *(f"applied migration {m.version}: {m.summary}" for m in MIGRATIONS),
    )
    again = open_store(url(path))
    second = await again.init()
    await again.close()
    assert second.actions == ()
    assert f"schema version {MIGRATIONS[-1].version}" in second.location


async def test_database_is_in_wal_mode_so_readers_never_block_the_writer(tmp_path: Path) -> None:
    async with open_store(url(tmp_path / "ucf.db")):
        pass
    with sqlite3.connect(tmp_path / "ucf.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_older_database_is_upgraded_in_place_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "ucf.db"
    write = signal_write("1")
    first = Database(path, migrations=MIGRATIONS[:1])  # a database from ucf's first release
    await first.open()
    await first.close()
    with sqlite3.connect(path) as conn:  # a delivery the first release left pending
        conn.execute(
            "INSERT INTO signals VALUES (?,?,?,?,?,?,?,?,?,?)",
            ("k-old", "p1", "OLD", "github-issues", "github-issues", "t", 0, 0, 2**40, "{}"),
        )
        conn.execute("INSERT INTO outbox VALUES (7, 'http', 'k-old', 0, 0, 0)")
    async with open_store(url(path)) as store:  # upgraded by today's migrations
        await store.signals.ingest([write], sinks=["http"])
        entries = await store.outbox.claim("http", limit=5, lease=timedelta(seconds=30), now=T0)
        assert entries[0].entry_id == "7", "queued entries survive the upgrade"
        assert int(entries[1].entry_id) > 7
        assert await store.outbox.park("http", [entries[1].entry_id], reason="HTTP 422", now=T0)

    following = MIGRATIONS[-1].version + 1
    later = Migration(following, "signal notes", "ALTER TABLE signals ADD COLUMN note TEXT;")
    newer = Database(path, migrations=(*MIGRATIONS, later))
    assert await newer.open() == (f"applied migration {following}: signal notes",)
    rows = await newer.read(lambda c: c.execute("SELECT signal_id, note FROM signals").fetchall())
    parked = await newer.read(lambda c: c.execute("SELECT reason FROM outbox_parked").fetchall())
    await newer.close()
    assert sorted(rows) == sorted([("OLD", None), (write.signal_id, None)])
    assert parked == [("HTTP 422",)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == following


async def test_a_database_from_a_newer_ucf_is_refused_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "ucf.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    store = open_store(url(path))
    with pytest.raises(StoreCorrupt, match=r"schema version 99.*upgrade ucf"):
        await store.init()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


async def test_a_garbage_file_is_reported_as_corrupt_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "ucf.db"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    store = open_store(url(path))
    with pytest.raises(StoreCorrupt, match=r"ucf\.db is not a usable SQLite database.*move"):
        await store.init()
    await store.close()


async def test_a_path_under_a_regular_file_is_unavailable_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    store = open_store(url(tmp_path / "not-a-dir" / "ucf.db"))
    with pytest.raises(StoreUnavailable, match=r"not a directory.*UCF_STORE"):
        await store.init()
    await store.close()


async def test_a_directory_as_database_path_is_unavailable(tmp_path: Path) -> None:
    store = open_store(url(tmp_path))
    with pytest.raises(StoreUnavailable, match="is a directory"):
        await store.init()
    await store.close()


async def test_store_used_without_init_opens_itself(tmp_path: Path) -> None:
    store = open_store(url(tmp_path / "ucf.db"))
    try:
        assert (await store.signals.ingest([signal_write("1")])).inserted == (True,)
    finally:
        await store.close()


async def test_a_batch_that_fails_midway_stores_nothing_and_queues_nothing(
    tmp_path: Path,
) -> None:
    good = signal_write("good")
    bad = signal_write("bad")
    unserialisable = {**bad.signal, "raw": {"not json": object()}}
    bad = type(bad)(bad.dedup_key, "p1", bad.connector_id, unserialisable, bad.received_at)
    async with open_store(url(tmp_path / "ucf.db")) as store:
        with pytest.raises(InvalidRecord, match="not JSON"):
            await store.signals.ingest([good, bad], sinks=["http"])
        assert await store.signals.get("p1", good.signal_id) is None
        assert (await store.outbox.lag("http", now=T0)).pending == 0
        assert (await store.signals.ingest([good], sinks=["http"])).inserted == (True,)


async def test_a_single_signal_is_stored_if_new_in_one_statement_not_a_lookup_and_an_insert(
    tmp_path: Path,
) -> None:
    """A webhook delivery is one signal: the store's thread runs one insert that skips a
    known dedup key (bench/webhook.py: about a fifth of its instructions per delivery),
    with the answers and outbox entries of the lookup-then-insert it replaces."""
    async with open_store(url(tmp_path / "ucf.db")) as store:
        db: Database = store.signals._db  # type: ignore[attr-defined]
        statements: list[str] = []
        await db.write(lambda conn: conn.set_trace_callback(statements.append))
        statements.clear()
        first = await store.signals.ingest([signal_write("a")], sinks=["http", "jsonl"])
        again = await store.signals.ingest([signal_write("a")], sinks=["http", "jsonl"])
        await db.write(lambda conn: conn.set_trace_callback(None))
        assert (first.inserted, again.inserted) == ((True,), (False,))
        on_signals = [s for s in statements if "signals" in s and "outbox" not in s]
        assert len(on_signals) == 2, on_signals
        assert all(s.startswith("INSERT INTO signals") for s in on_signals), on_signals
        for sink in ("http", "jsonl"):
            assert (await store.outbox.lag(sink, now=T0)).pending == 1, "queued once, when new"
        write = signal_write("a")
        assert (await store.signals.get("p1", write.signal_id)) is not None


async def test_a_poll_page_is_inserted_by_its_unique_index_without_looking_its_keys_up(
    tmp_path: Path,
) -> None:
    """A page's rows go in with one ``INSERT … ON CONFLICT DO NOTHING`` and the unique index
    decides, instead of a ``SELECT … IN`` of every key first (each key looked up twice while
    the poll's event loop waits for the page's statements); the answers, first duplicate
    winning, and the outbox entries are the lookup's."""
    async with open_store(url(tmp_path / "ucf.db")) as store:
        db: Database = store.signals._db  # type: ignore[attr-defined]
        await store.signals.ingest([signal_write("1")], sinks=["http"])
        statements: list[str] = []
        await db.write(lambda conn: conn.set_trace_callback(statements.append))
        statements.clear()
        page = [signal_write(str(n)) for n in range(2, 40)]
        all_new = await store.signals.ingest(page, sinks=["http"], checkpoint=_move(0, "a"))
        assert all_new.inserted == (True,) * len(page)
        assert not [s for s in statements if "WHERE dedup_key IN" in s], statements
        inserts = [s for s in statements if s.startswith("INSERT INTO signals")]
        assert inserts
        assert all("ON CONFLICT (dedup_key) DO NOTHING" in s for s in inserts)

        later = signal_write("40")
        mixed = [signal_write("1"), later, signal_write("3"), signal_write("40", padding=50)]
        result = await store.signals.ingest(mixed, sinks=["http"], checkpoint=_move(1, "b"))
        await db.write(lambda conn: conn.set_trace_callback(None))
        assert result.inserted == (False, True, False, False)
        assert not [s for s in statements if "WHERE dedup_key IN" in s], statements
        stored = await store.signals.get("p1", later.signal_id)
        assert stored is not None
        assert stored.signal["raw"]["body"] == "", "the first one won"
        assert (await store.outbox.lag("http", now=T0)).pending == 1 + len(page) + 1


async def test_a_page_stored_past_the_largest_rowid_still_tells_new_from_known(
    tmp_path: Path,
) -> None:
    """Once a row holds SQLite's largest rowid, new rows take rowids below the largest (at
    random), so they can no longer be told by being past it: the keys are looked up
    first, and the answers and outbox entries stay right."""
    async with open_store(url(tmp_path / "ucf.db")) as store:
        db: Database = store.signals._db  # type: ignore[attr-defined]
        known = signal_write("known")
        await store.signals.ingest([known], sinks=["http"])
        await db.write(
            lambda conn: conn.execute(
                "UPDATE signals SET rowid = ? WHERE dedup_key = ?", ((1 << 63) - 2, known.dedup_key)
            )
        )
        batch = [signal_write("a"), known, signal_write("b"), signal_write("c"), signal_write("a")]
        result = await store.signals.ingest(batch, sinks=["http"], checkpoint=_move(0, "x"))
        assert result.inserted == (True, False, True, True, False)
        assert (await store.outbox.lag("http", now=T0)).pending == 1 + 3
        for item in ("a", "b", "c"):
            assert await store.signals.get("p1", signal_write(item).signal_id) is not None


async def test_pages_stored_by_two_processes_on_one_file_at_once_each_tell_new_from_known(
    tmp_path: Path,
) -> None:
    """Held (poll13's insert): two stores on one file (ucf serve and a worker) ingesting
    overlapping pages together, after deletes that took the largest rowid away: each key
    is new for exactly one of them, and queued once. The largest rowid is read inside
    the write transaction, which SQLite serialises across connections."""
    path = url(tmp_path / "ucf.db")
    async with open_store(path) as first, open_store(path) as second:
        db: Database = first.signals._db  # type: ignore[attr-defined]
        await first.signals.ingest([signal_write(f"old-{n}") for n in range(5)], sinks=["http"])
        await db.write(lambda conn: conn.execute("DELETE FROM signals WHERE rowid >= 3"))
        for round_ in range(6):
            one = [signal_write(f"{round_}-{n}") for n in range(0, 60)]
            two = [signal_write(f"{round_}-{n}") for n in range(30, 90)]
            a, b = await asyncio.gather(
                first.signals.ingest(one, sinks=["http"]),
                second.signals.ingest(two, sinks=["http"]),
            )
            new = {w.dedup_key for w, flag in zip(one, a.inserted, strict=True) if flag}
            also = {w.dedup_key for w, flag in zip(two, b.inserted, strict=True) if flag}
            assert not new & also
            assert new | also == {w.dedup_key for w in (*one, *two)}
        assert (await first.outbox.lag("http", now=T0)).pending == 5 + 6 * 90


def _move(expected_version: int, value: object) -> CheckpointMove:
    return CheckpointMove("p1", "github-issues", expected_version, value, T0)


async def test_a_poll_page_and_its_checkpoint_are_one_commit_all_or_nothing(
    tmp_path: Path,
) -> None:
    move = CheckpointMove("p1", "github-issues", 0, "page-2", T0)
    async with open_store(url(tmp_path / "ucf.db")) as store:
        statements: list[str] = []
        db: Database = store.signals._db  # type: ignore[attr-defined]
        await db.write(lambda conn: conn.set_trace_callback(statements.append))
        statements.clear()
        result = await store.signals.ingest([signal_write("a")], checkpoint=move)
        assert result.checkpoint_moved is True
        assert statements.count("COMMIT") == 1, "one fsync per page, not two"
        unwritable = CheckpointMove("p1", "github-issues", 1, {"not json": object()}, T0)
        with pytest.raises(InvalidRecord):
            await store.signals.ingest([signal_write("b")], checkpoint=unwritable)
        assert await store.signals.get("p1", signal_write("b").signal_id) is None
        assert (await store.checkpoints.get("p1", "github-issues")).value == "page-2"


async def test_purge_deletes_expired_signals_and_their_deliveries(tmp_path: Path) -> None:
    old = signal_write("old", received_at=T0)
    fresh = signal_write("fresh", received_at=T0 + timedelta(days=20))
    async with open_store(url(tmp_path / "ucf.db")) as store:
        await store.signals.ingest([old, fresh], sinks=["http"])
        assert await store.signals.purge_expired(now=T0 + timedelta(days=29)) == 0
        assert await store.signals.purge_expired(now=T0 + timedelta(days=30, seconds=1)) == 1
        assert await store.signals.get("p1", old.signal_id) is None
        assert await store.signals.get("p1", fresh.signal_id) is not None
        entries = await store.outbox.claim(
            "http", limit=10, lease=timedelta(seconds=5), now=T0 + timedelta(days=31)
        )
        assert [e.signal["id"] for e in entries] == [fresh.signal_id]


async def test_retention_is_configurable(tmp_path: Path) -> None:
    from ucf.stores.models import StoreOptions

    write = signal_write("1", received_at=T0)
    options = StoreOptions(signal_retention=timedelta(days=2))
    async with open_store(url(tmp_path / "ucf.db"), options=options) as store:
        await store.signals.ingest([write])
        stored = await store.signals.get("p1", write.signal_id)
        assert stored is not None
        assert stored.expires_at == T0 + timedelta(days=2)
        assert await store.signals.purge_expired(now=T0 + timedelta(days=2)) == 1


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common default umask: new files group- and world-readable unless asked otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted(directory.iterdir())}


async def test_the_database_and_its_wal_files_are_private_in_an_existing_directory(
    tmp_path: Path, open_umask: None
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    store = open_store(url(directory / "ucf.db"))
    await store.init()
    await store.signals.ingest([signal_write("s1")])
    try:
        assert _modes(directory) == {"ucf.db": 0o600, "ucf.db-shm": 0o600, "ucf.db-wal": 0o600}
    finally:
        await store.close()


async def test_a_database_an_older_ucf_left_world_readable_is_made_private(
    tmp_path: Path, open_umask: None
) -> None:
    path = tmp_path / "ucf.db"
    first = open_store(url(path))
    await first.init()
    await first.close()
    path.chmod(0o644)
    again = open_store(url(path))
    report = await again.init()
    await again.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert report.actions == ("made ucf.db readable by this user only (mode 0600)",)


# --- group commit: concurrent writes share one transaction and one fsync -------------------

_GROUP_SCHEMA = (
    Migration(
        1,
        "a parent and a child whose foreign key is checked at COMMIT",
        """
        CREATE TABLE parent (name TEXT PRIMARY KEY);
        CREATE TABLE child (
            name   TEXT PRIMARY KEY,
            parent TEXT NOT NULL REFERENCES parent (name) DEFERRABLE INITIALLY DEFERRED
        );
        """,
    ),
)


def _insert(table: str, *values: str) -> Callable[[sqlite3.Connection], str]:
    def run(conn: sqlite3.Connection) -> str:
        conn.execute(f"INSERT INTO {table} VALUES ({','.join('?' * len(values))})", values)
        return values[0]

    return run


def _names(path: Path, table: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute(f"SELECT name FROM {table}")}


@pytest.fixture
async def group_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(tmp_path / "group.db", migrations=_GROUP_SCHEMA)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def test_concurrent_writes_share_one_commit_and_each_gets_its_own_result(
    group_db: Database,
) -> None:
    statements: list[str] = []
    await group_db.write(lambda conn: conn.set_trace_callback(statements.append))
    statements.clear()
    names = [f"p{i}" for i in range(32)]
    results = await asyncio.gather(*(group_db.write(_insert("parent", n)) for n in names))
    assert results == names
    assert statements.count("COMMIT") == 1, "32 concurrent writes, one commit, one fsync"
    assert _names(group_db.path, "parent") == set(names), "all durable, seen by another reader"


async def test_a_group_whose_writes_all_succeed_runs_without_savepoints(
    group_db: Database,
) -> None:
    """Savepoints are for the write that raises: a group where none does pays for none
    (they were a fifth of the store thread's instructions per webhook delivery)."""
    statements: list[str] = []
    await group_db.write(lambda conn: conn.set_trace_callback(statements.append))
    statements.clear()
    names = [f"p{i}" for i in range(8)]
    assert await asyncio.gather(*(group_db.write(_insert("parent", n)) for n in names)) == names
    assert statements.count("COMMIT") == 1
    assert not [s for s in statements if "SAVEPOINT" in s.upper()], statements


async def test_a_write_that_fails_after_others_in_its_group_leaves_theirs_stored_once(
    group_db: Database,
) -> None:
    """The group runs again, each write in a savepoint, once one raises: the writes
    before it are undone and redone (stored once, not twice: a second insert of the
    same key would fail), the ones after it run once, all in one commit."""

    def count_then_insert(name: str) -> Callable[[sqlite3.Connection], int]:
        def run(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute("SELECT COUNT(*) FROM parent").fetchone()
            conn.execute("INSERT INTO parent VALUES (?)", (name,))
            return int(count)

        return run

    def insert_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO parent VALUES ('half')")
        raise ValueError("the write's own mistake")

    before = group_db.commits
    results = await asyncio.gather(
        group_db.write(count_then_insert("a")),
        group_db.write(count_then_insert("b")),
        group_db.write(insert_then_fail),
        group_db.write(count_then_insert("c")),
        return_exceptions=True,
    )
    assert [results[0], results[1], results[3]] == [0, 1, 2], results
    assert isinstance(results[2], ValueError)
    assert group_db.commits == before + 1, "the four were one group"
    assert _names(group_db.path, "parent") == {"a", "b", "c"}


async def test_a_write_that_fails_inside_a_group_fails_alone_and_leaves_nothing(
    group_db: Database,
) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO parent VALUES ('half')")
        raise ValueError("the write's own mistake")

    before = group_db.commits
    first, failed, last = await asyncio.gather(
        group_db.write(_insert("parent", "a")),
        group_db.write(half_then_fail),
        group_db.write(_insert("parent", "b")),
        return_exceptions=True,
    )
    assert (first, last) == ("a", "b")
    assert isinstance(failed, ValueError)
    assert group_db.commits == before + 1, "the three were one group"
    assert _names(group_db.path, "parent") == {"a", "b"}


async def test_a_caller_cancelled_mid_commit_gets_no_answer_and_costs_the_others_nothing(
    group_db: Database,
) -> None:
    """A webhook request cancelled (a shutdown) while its write is being committed with
    others': it is never told "stored" (so never acknowledged), and the writes it shared
    the transaction with are committed and answered as if it had never been there."""
    on_the_thread, go_on = threading.Event(), threading.Event()

    def held(conn: sqlite3.Connection) -> str:
        on_the_thread.set()
        go_on.wait(10)
        return _insert("parent", "a")(conn)

    first = asyncio.create_task(group_db.write(held))
    cancelled = asyncio.create_task(group_db.write(_insert("parent", "b")))
    last = asyncio.create_task(group_db.write(_insert("parent", "c")))
    before = group_db.commits
    await asyncio.to_thread(on_the_thread.wait, 10)  # the group is on the store's thread
    cancelled.cancel()
    go_on.set()

    assert (await first, await last) == ("a", "c")
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert group_db.commits == before + 1, "the three were one group"
    # Its write was in the transaction already: stored, unacknowledged; a redelivery
    # is a duplicate the dedup key absorbs, never a loss.
    assert _names(group_db.path, "parent") == {"a", "b", "c"}


async def test_a_poll_pages_statements_run_while_the_loop_waits_not_after_its_next_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll page's write (it carries the checkpoint) is handed over with the GIL: its
    statements have run by the time the loop goes back to its own work (mapping the
    next page), so only the COMMIT's WAL write and fsync remain, and they run beside
    that work. Before, the store's thread waited for the GIL between statements until
    the busy loop had nothing left to do: the write ran after the work."""
    # However slow this machine is now: the bound only keeps a stuck write from stopping the loop.
    monkeypatch.setattr(database, "HAND_OVER_LIMIT", 30.0)
    async with open_store(url(tmp_path / "ucf.db")) as store:
        db: Database = store.signals._db  # type: ignore[attr-defined]
        statements: list[str] = []
        await db.write(lambda conn: conn.set_trace_callback(statements.append))
        statements.clear()
        move = CheckpointMove("p1", "github-issues", 0, "page-2", T0)
        page = asyncio.create_task(
            store.signals.ingest([signal_write("a"), signal_write("b")], checkpoint=move)
        )
        for _ in range(2):  # the page's task queues its write; the committer hands it over
            await asyncio.sleep(0)
        # No turn of the loop (and no release of the GIL) since: what ran, ran meanwhile.
        ran = list(statements)
        assert any(s.startswith("INSERT INTO signals") for s in ran), ran
        assert any("checkpoints" in s for s in ran), ran
        assert (await page).checkpoint_moved is True
        assert (await store.checkpoints.get("p1", "github-issues")).value == "page-2"


async def test_a_handed_over_write_that_takes_long_holds_the_loop_only_briefly(
    group_db: Database,
) -> None:
    """The loop waits for a handed-over write's statements only up to a bound: a write
    stuck behind another process's lock must not stop the loop. Here the write can only
    go on once the loop has run again."""
    loop_ran = threading.Event()

    def needs_the_loop(conn: sqlite3.Connection) -> str:
        assert loop_ran.wait(10), "the loop stayed blocked behind the write"
        return _insert("parent", "a")(conn)

    write = asyncio.create_task(group_db.write(needs_the_loop, hand_over=True))
    for _ in range(2):  # queued, then handed over: the loop waits, then gives up waiting
        await asyncio.sleep(0)
    loop_ran.set()
    assert await write == "a"
    assert _names(group_db.path, "parent") == {"a"}


async def test_a_handed_over_write_that_raises_fails_alone_and_the_loop_goes_on(
    group_db: Database,
) -> None:
    def fails(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO parent VALUES ('half')")
        raise ValueError("the write's own mistake")

    with pytest.raises(ValueError, match="own mistake"):
        await group_db.write(fails, hand_over=True)
    assert await group_db.write(_insert("parent", "b"), hand_over=True) == "b"
    assert _names(group_db.path, "parent") == {"b"}


async def test_a_write_asked_for_before_the_close_is_committed_and_the_file_stays_closed(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "closing.db", migrations=_GROUP_SCHEMA)
    await db.open()
    queued = asyncio.create_task(db.write(_insert("parent", "last words")))
    await asyncio.sleep(0)  # queued, not yet committed
    await db.close()

    assert queued.done(), "close() returned before the write it was asked after"
    assert await queued == "last words"
    assert _names(tmp_path / "closing.db", "parent") == {"last words"}
    # The last connection closed checkpoints and removes the WAL: none was reopened.
    assert not (tmp_path / "closing.db-wal").exists()


async def test_a_write_asked_for_while_the_file_is_closing_is_committed_before_the_close(
    tmp_path: Path,
) -> None:
    """A write asked for once close() has begun closing the file (a webhook request still
    in flight at shutdown) is committed, and the file closed after it: it used to run
    after the close, reopening the file and leaving that connection open."""
    db = Database(tmp_path / "closing.db", migrations=_GROUP_SCHEMA)
    await db.open()
    assert await db.write(_insert("parent", "first")) == "first"
    closing = asyncio.create_task(db.close())
    await asyncio.sleep(0)  # close() is closing the file on the store's thread
    late = asyncio.create_task(db.write(_insert("parent", "late"), hand_over=True))
    await closing

    assert late.done(), "close() returned before a write asked for meanwhile"
    assert await late == "late"
    assert _names(tmp_path / "closing.db", "parent") == {"first", "late"}
    # The last connection closed checkpoints and removes the WAL: none was reopened.
    assert not (tmp_path / "closing.db-wal").exists()


async def test_a_failed_commit_fails_exactly_its_group_with_a_retryable_error(
    group_db: Database,
) -> None:
    outcomes = await asyncio.gather(
        group_db.write(_insert("parent", "a")),
        group_db.write(_insert("child", "orphan", "nobody")),  # refused only at COMMIT
        group_db.write(_insert("parent", "b")),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    assert _names(group_db.path, "parent") == set()
    assert await group_db.write(_insert("parent", "c")) == "c", "the next group commits"
    assert _names(group_db.path, "parent") == {"c"}


async def test_a_handed_over_write_in_a_mixed_group_is_answered_only_by_its_commit(
    group_db: Database,
) -> None:
    """A poll page (handed over) in one group with webhook writes: the loop goes on at the
    COMMIT, but each caller's answer is still the COMMIT's. One write's own mistake stays
    in its savepoint; a COMMIT that fails (a deferred foreign key) fails the whole group,
    the handed-over write too, and the next group commits."""

    def half_then_fail(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO parent VALUES ('half')")
        raise ValueError("the webhook write's own mistake")

    page, failed, webhook = await asyncio.gather(
        group_db.write(_insert("parent", "page"), hand_over=True),
        group_db.write(half_then_fail),
        group_db.write(_insert("parent", "hook")),
        return_exceptions=True,
    )
    assert (page, webhook) == ("page", "hook")
    assert isinstance(failed, ValueError)
    assert _names(group_db.path, "parent") == {"page", "hook"}

    outcomes = await asyncio.gather(
        group_db.write(_insert("parent", "a"), hand_over=True),
        group_db.write(_insert("child", "orphan", "nobody")),  # refused only at COMMIT
        group_db.write(_insert("parent", "b"), hand_over=True),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    assert _names(group_db.path, "parent") == {"page", "hook"}
    assert await group_db.write(_insert("parent", "c"), hand_over=True) == "c"
    assert _names(group_db.path, "parent") == {"page", "hook", "c"}


async def test_a_handed_over_write_waiting_for_another_process_lock_leaves_the_loop_free(
    group_db: Database,
) -> None:
    """BEGIN IMMEDIATE waits for another process's write lock (up to the busy timeout):
    the loop waits for the handed-over write only up to its bound, then runs on."""
    with contextlib.closing(sqlite3.connect(group_db.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(group_db.write(_insert("parent", "a"), hand_over=True))
        turns = 0
        while turns < 20:  # the loop turns while the write waits for the lock
            await asyncio.sleep(0.001)
            turns += 1
        assert not write.done()
        other.execute("COMMIT")
    assert await write == "a"


async def test_every_signal_and_outbox_query_searches_an_index_never_scans_the_signals(
    tmp_path: Path,
) -> None:
    """Each index of ``signals`` serves a query (dedup, get, query, counts, purge) and
    every insert pays for each: a query left scanning the table, or an index left
    serving none, fails here (docs/storage.md, "Indexes")."""
    async with open_store(url(tmp_path / "ucf.db")) as store:
        db: Database = store.signals._db  # type: ignore[attr-defined]
        statements: list[str] = []
        await db.write(lambda conn: conn.set_trace_callback(statements.append))
        write = signal_write("a")
        move = CheckpointMove("p1", "github-issues", 0, "x", T0)
        await store.signals.ingest([write, signal_write("b")], sinks=["http"], checkpoint=move)
        await store.signals.get("p1", write.signal_id)
        filters = SignalQuery(source="github-issues", type="t", since=T0, until=T0 + minutes(1))
        await store.signals.query("p1", filters)
        page = await store.signals.query("p1", limit=1)
        await store.signals.query("p1", limit=1, cursor=page.next_cursor)
        await store.signals.counts("p1", "github-issues", now=T0)
        entries = await store.outbox.claim("http", limit=5, lease=minutes(1), now=T0 + minutes(1))
        await store.outbox.park("http", [entries[0].entry_id], reason="refused", now=T0)
        await store.outbox.parked("http", limit=5)
        await store.outbox.ack("http", [e.entry_id for e in entries])
        await store.signals.purge_expired(now=T0)
        await db.write(lambda conn: conn.set_trace_callback(None))
        reads = {s for s in statements if s.split()[0] in ("SELECT", "UPDATE", "DELETE")}
        assert len(reads) >= 10
        used: set[str] = set()
        for statement in sorted(reads):
            plan = await db.read(partial(_query_plan, statement=statement))
            steps = [row[3] for row in plan]
            assert not any(step.startswith("SCAN signals") for step in steps), (statement, steps)
            used.update(word for step in steps for word in step.split() if word.startswith("s"))
        indexes = await db.read(
            lambda conn: {row[1] for row in conn.execute("PRAGMA index_list('signals')")}
        )
        assert indexes <= used, f"indexes no query uses cost every insert: {indexes - used}"


def _query_plan(conn: sqlite3.Connection, *, statement: str) -> list[Any]:
    return conn.execute("EXPLAIN QUERY PLAN " + statement).fetchall()


async def test_full_rate_buckets_are_dropped_as_new_ones_are_made(tmp_path: Path) -> None:
    """A bucket with no row is full; rows of refilled buckets must not pile up (one per
    address that ever failed webhook verification)."""
    path = tmp_path / "ucf.db"
    async with open_store(url(path)) as store:
        buckets = store.rate_limits
        for _ in range(2):  # emptied: full again only after 2 000 s
            taken = await buckets.try_acquire(
                "drained", capacity=2, refill_per_second=0.001, now=T0
            )
            assert taken.allowed
        for n in range(40):  # a flood from 40 addresses: each bucket is full again 1 s later
            await buckets.try_acquire(f"flood-{n}", capacity=10, refill_per_second=1, now=T0)
        later = T0 + timedelta(seconds=5)
        for n in range(40):  # 40 more senders later on: each new bucket drops up to 16 full
            await buckets.try_acquire(f"later-{n}", capacity=10, refill_per_second=1, now=later)
        with sqlite3.connect(path) as conn:
            keys = {key for (key,) in conn.execute("SELECT bucket_key FROM rate_buckets")}
        assert keys == {"drained", *(f"later-{n}" for n in range(40))}
        # The drained bucket was not full, so it was kept and still refuses.
        refused = await buckets.try_acquire(
            "drained", capacity=2, refill_per_second=0.001, now=later
        )
        assert not refused.allowed
