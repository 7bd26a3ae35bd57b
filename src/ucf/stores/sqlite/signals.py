"""Signals and their delivery outbox in SQLite.

A batch is one write transaction: insert the signals whose dedup key is new with
one ``executemany`` (the write lock is already held, so nobody can insert a key
in between), and enqueue the new ones' outbox entries with another. The signal
and its entries therefore commit together or not at all.
"""
# SQL here is assembled only from constant column lists and "?" placeholders;
# every value is bound, never formatted in.
# ruff: noqa: S608

from __future__ import annotations

import base64
import binascii
import json
import math
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from ucf.stores.errors import InvalidCursor
from ucf.stores.models import (
    CheckpointMove,
    IngestResult,
    OutboxEntry,
    OutboxLag,
    ParkedEntry,
    SignalCounts,
    SignalPage,
    SignalQuery,
    SignalWrite,
    StoredSignal,
    epoch_ms,
    from_epoch_ms,
)
from ucf.stores.sqlite.codec import dump_signal, load_signal
from ucf.stores.sqlite.coordination import compare_and_set_checkpoint
from ucf.stores.sqlite.database import Database

# Stay well under SQLite's bound-parameter limit in IN (...) lists.
_CHUNK = 500

_SIGNAL_COLUMNS = "body, dedup_key, project_id, connector_id, received_ms, expires_s"


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _stored(row: tuple[Any, ...]) -> StoredSignal:
    return StoredSignal(
        signal=load_signal(row[0]),
        dedup_key=row[1],
        project_id=row[2],
        connector_id=row[3],
        received_at=from_epoch_ms(row[4]),
        expires_at=from_epoch_ms(row[5] * 1000),
    )


def _encode_cursor(ts_ms: int, signal_id: str) -> str:
    raw = json.dumps([ts_ms, signal_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_ms, signal_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidCursor(
            f"cursor {cursor[:40]!r} was not issued by this store",
            "start again without a cursor",
        ) from None
    if not isinstance(ts_ms, int) or not isinstance(signal_id, str):
        raise InvalidCursor(
            f"cursor {cursor[:40]!r} was not issued by this store", "start again without a cursor"
        )
    return ts_ms, signal_id


_INSERT_IF_NEW = (
    "INSERT INTO signals VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (dedup_key) DO NOTHING"
)


def _insert_one(conn: sqlite3.Connection, row: tuple[Any, ...], sinks: tuple[str, ...]) -> bool:
    """One signal (a webhook delivery's usual batch) stored if its dedup key is new, in one
    statement instead of a lookup and an insert; whether it was new.

    ``ON CONFLICT (dedup_key) DO NOTHING`` names the one conflict that means "already
    stored": any other constraint still fails the write, as the plain insert does."""
    if conn.execute(_INSERT_IF_NEW, row).rowcount != 1:
        return False
    if sinks:
        conn.executemany(
            "INSERT INTO outbox (sink, dedup_key, enqueued_ms, available_ms) VALUES (?, ?, ?, ?)",
            [(sink, row[0], row[7], row[7]) for sink in sinks],
        )
    return True


_LAST_ROWID = (1 << 63) - 1
"""SQLite's largest rowid: only past it does an insert take a rowid below the largest one."""


def _insert_new(
    conn: sqlite3.Connection, candidates: list[tuple[Any, ...]]
) -> tuple[list[bool], list[tuple[Any, ...]]]:
    """Insert the rows whose dedup key is not stored yet; whether each candidate was new (a
    key repeated in the batch is new once, at its first row), and the new rows.

    One ``executemany`` of ``INSERT … ON CONFLICT (dedup_key) DO NOTHING``: the unique
    index's own check decides, instead of a ``SELECT … IN`` of every key first, which
    looked each key up in the hashed index a second time while a poll's event loop waited
    for the page's statements. When every row went in (a poll's usual page) that is all;
    otherwise the new rows are the ones past the largest rowid before the insert (SQLite
    gives each new row a rowid past the largest until that reaches its bound, checked
    first: then the keys are looked up before the insert, as before)."""
    if not candidates:
        return [], []
    (top,) = conn.execute("SELECT max(rowid) FROM signals").fetchone()
    if top is not None and top >= _LAST_ROWID - len(candidates):
        return _insert_unseen(conn, candidates)
    inserted = conn.executemany(_INSERT_IF_NEW, candidates).rowcount
    if inserted == len(candidates):
        return [True] * inserted, candidates
    new = {
        key
        for (key,) in conn.execute(
            "SELECT dedup_key FROM signals WHERE rowid > ?", (-(1 << 63) if top is None else top,)
        )
    }
    return _first_of(candidates, new)


def _insert_unseen(
    conn: sqlite3.Connection, candidates: list[tuple[Any, ...]]
) -> tuple[list[bool], list[tuple[Any, ...]]]:
    """:func:`_insert_new` by looking every key up first (rowids no longer tell new rows)."""
    keys = list(dict.fromkeys(row[0] for row in candidates))
    new = set(keys)
    for chunk in _chunks(keys):
        new.difference_update(
            row[0]
            for row in conn.execute(
                f"SELECT dedup_key FROM signals WHERE dedup_key IN ({_marks(len(chunk))})", chunk
            )
        )
    flags, rows = _first_of(candidates, new)
    if rows:
        conn.executemany("INSERT INTO signals VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    return flags, rows


def _first_of(
    candidates: list[tuple[Any, ...]], new: set[str]
) -> tuple[list[bool], list[tuple[Any, ...]]]:
    """Each candidate's flag (its key is in ``new`` and not already taken by an earlier row
    of the batch), and the rows flagged."""
    flags: list[bool] = []
    rows: list[tuple[Any, ...]] = []
    for row in candidates:
        key = row[0]
        if key in new:
            new.discard(key)
            flags.append(True)
            rows.append(row)
        else:
            flags.append(False)
    return flags, rows


class SqliteSignalStore:
    def __init__(self, db: Database, retention: timedelta) -> None:
        self._db = db
        self._retention = retention

    async def ingest(
        self,
        batch: Sequence[SignalWrite],
        *,
        sinks: Sequence[str] = (),
        checkpoint: CheckpointMove | None = None,
    ) -> IngestResult:
        if not batch and checkpoint is None:
            return IngestResult(())
        retention_s = self._retention.total_seconds()
        sink_names = tuple(dict.fromkeys(sinks))

        # Every row is built here, on the caller's thread, before the write is queued: the
        # store's thread then runs little Python (it waited for the GIL behind the busy
        # event loop to build them there). Rows of duplicates are built and dropped.
        candidates: list[tuple[Any, ...]] = []
        received_at: datetime | None = None  # one ingest's signals share it: converted once
        received_ms = expires_s = 0
        for item in batch:
            signal = item.signal
            if item.received_at is not received_at:
                received_at = item.received_at
                # SignalWrite holds its receive time in UTC too: epoch_ms without utc()'s call
                received_ms = int(received_at.timestamp() * 1000)
                expires_s = math.ceil(received_ms / 1000 + retention_s)
            candidates.append(
                (
                    item.dedup_key,
                    item.project_id,
                    item.signal_id,
                    item.connector_id,
                    str(signal.get("source", item.connector_id)),
                    str(signal.get("type", "unknown")),
                    # SignalWrite holds its timestamp in UTC: epoch_ms without utc()'s call.
                    int(item.timestamp.timestamp() * 1000),
                    received_ms,
                    expires_s,
                    dump_signal(signal, signal_id=item.signal_id),
                )
            )

        def run(conn: sqlite3.Connection) -> IngestResult:
            if len(candidates) == 1 and checkpoint is None:
                return IngestResult((_insert_one(conn, candidates[0], sink_names),))
            flags, rows = _insert_new(conn, candidates)
            if rows and sink_names:
                conn.executemany(
                    "INSERT INTO outbox (sink, dedup_key, enqueued_ms, available_ms) "
                    "VALUES (?, ?, ?, ?)",
                    [(sink, row[0], row[7], row[7]) for row in rows for sink in sink_names],
                )
            if checkpoint is None:
                return IngestResult(tuple(flags))
            # The page's checkpoint in the same transaction: one commit (one fsync) per page.
            return IngestResult(tuple(flags), compare_and_set_checkpoint(conn, checkpoint))

        # A poll page's write (it carries the checkpoint) overlaps the next page's mapping.
        return await self._db.write(run, hand_over=checkpoint is not None)

    async def get(self, project_id: str, signal_id: str) -> StoredSignal | None:
        def run(conn: sqlite3.Connection) -> StoredSignal | None:
            row = conn.execute(
                f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE project_id = ? AND signal_id = ? "
                "LIMIT 1",
                (project_id, signal_id),
            ).fetchone()
            return None if row is None else _stored(row)

        return await self._db.read(run)

    async def query(
        self,
        project_id: str,
        filters: SignalQuery = SignalQuery(),  # noqa: B008 - frozen, shared safely
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SignalPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where = ["project_id = ?"]
        params: list[Any] = [project_id]
        if filters.source is not None:
            where.append("source = ?")
            params.append(filters.source)
        if filters.type is not None:
            where.append("type = ?")
            params.append(filters.type)
        if filters.since is not None:
            where.append("ts_ms >= ?")
            params.append(epoch_ms(filters.since))
        if filters.until is not None:
            where.append("ts_ms < ?")
            params.append(epoch_ms(filters.until))
        if cursor is not None:
            where.append("(ts_ms, signal_id) < (?, ?)")
            params.extend(_decode_cursor(cursor))
        sql = (
            f"SELECT {_SIGNAL_COLUMNS}, ts_ms, signal_id FROM signals WHERE {' AND '.join(where)} "
            "ORDER BY ts_ms DESC, signal_id DESC LIMIT ?"
        )

        def run(conn: sqlite3.Connection) -> SignalPage:
            rows = conn.execute(sql, (*params, limit + 1)).fetchall()
            page = rows[:limit]
            next_cursor = None
            if len(rows) > limit:
                last = page[-1]
                next_cursor = _encode_cursor(last[6], last[7])
            return SignalPage(tuple(_stored(row) for row in page), next_cursor)

        return await self._db.read(run)

    async def counts(self, project_id: str, connector_id: str, *, now: datetime) -> SignalCounts:
        now_ms = epoch_ms(now)
        day_ago = epoch_ms(now - timedelta(days=1))
        week_ago = epoch_ms(now - timedelta(days=7))

        def run(conn: sqlite3.Connection) -> SignalCounts:
            day, week = conn.execute(
                "SELECT COALESCE(SUM(received_ms > ?), 0), COUNT(*) FROM signals "
                "WHERE project_id = ? AND connector_id = ? AND received_ms > ? "
                "AND received_ms <= ?",
                (day_ago, project_id, connector_id, week_ago, now_ms),
            ).fetchone()
            return SignalCounts(last_24h=int(day), last_7d=int(week))

        return await self._db.read(run)

    async def purge_expired(self, *, now: datetime) -> int:
        now_s = epoch_ms(now) // 1000

        def run(conn: sqlite3.Connection) -> int:
            for queue in ("outbox", "outbox_parked"):
                conn.execute(
                    f"DELETE FROM {queue} WHERE dedup_key IN "
                    "(SELECT dedup_key FROM signals WHERE expires_s <= ?)",
                    (now_s,),
                )
            return conn.execute("DELETE FROM signals WHERE expires_s <= ?", (now_s,)).rowcount

        return await self._db.write(run)


def _outbox_entry(sink: str, row: tuple[Any, ...], *, attempts: int) -> OutboxEntry:
    """From ``entry_id, enqueued_ms, attempts, project_id, connector_id, body``."""
    return OutboxEntry(
        entry_id=str(row[0]),
        sink=sink,
        project_id=row[3],
        connector_id=row[4],
        signal=load_signal(row[5]),
        enqueued_at=from_epoch_ms(row[1]),
        attempts=attempts,
    )


def _entry_ids(entry_ids: Sequence[str]) -> list[int]:
    """Our entry ids are integers; anything else cannot be pending here."""
    return [int(entry_id) for entry_id in entry_ids if entry_id.isdigit()]


class SqliteOutbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self, sink: str, *, limit: int, lease: timedelta, now: datetime
    ) -> list[OutboxEntry]:
        now_ms = epoch_ms(now)
        until_ms = epoch_ms(now + lease)

        def run(conn: sqlite3.Connection) -> list[OutboxEntry]:
            rows = conn.execute(
                "SELECT o.entry_id, o.enqueued_ms, o.attempts, s.project_id, s.connector_id, "
                "s.body FROM outbox o JOIN signals s ON s.dedup_key = o.dedup_key "
                "WHERE o.sink = ? AND o.available_ms <= ? ORDER BY o.entry_id LIMIT ?",
                (sink, now_ms, limit),
            ).fetchall()
            for chunk in _chunks([row[0] for row in rows]):
                conn.execute(
                    "UPDATE outbox SET available_ms = ?, attempts = attempts + 1 "
                    f"WHERE entry_id IN ({_marks(len(chunk))})",
                    (until_ms, *chunk),
                )
            return [_outbox_entry(sink, row, attempts=row[2] + 1) for row in rows]

        return await self._db.write(run)

    async def ack(self, sink: str, entry_ids: Sequence[str]) -> None:
        ids = _entry_ids(entry_ids)

        def run(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(ids):
                conn.execute(
                    f"DELETE FROM outbox WHERE sink = ? AND entry_id IN ({_marks(len(chunk))})",
                    (sink, *chunk),
                )

        await self._db.write(run)

    async def release(self, sink: str, entry_ids: Sequence[str], *, retry_at: datetime) -> int:
        ids = _entry_ids(entry_ids)
        retry_ms = epoch_ms(retry_at)

        def run(conn: sqlite3.Connection) -> int:
            done = 0
            for chunk in _chunks(ids):
                done += conn.execute(
                    "UPDATE outbox SET available_ms = ? "
                    f"WHERE sink = ? AND entry_id IN ({_marks(len(chunk))})",
                    (retry_ms, sink, *chunk),
                ).rowcount
            return done

        return await self._db.write(run)

    async def lag(self, sink: str, *, now: datetime) -> OutboxLag:
        def run(conn: sqlite3.Connection) -> OutboxLag:
            pending, oldest = conn.execute(
                "SELECT COUNT(*), MIN(enqueued_ms) FROM outbox WHERE sink = ?", (sink,)
            ).fetchone()
            (parked,) = conn.execute(
                "SELECT COUNT(*) FROM outbox_parked WHERE sink = ?", (sink,)
            ).fetchone()
            age = None if oldest is None else max(0.0, (epoch_ms(now) - oldest) / 1000)
            return OutboxLag(pending=int(pending), oldest_age_seconds=age, parked=int(parked))

        return await self._db.read(run)

    async def park(self, sink: str, entry_ids: Sequence[str], *, reason: str, now: datetime) -> int:
        ids = _entry_ids(entry_ids)
        parked_ms = epoch_ms(now)

        def run(conn: sqlite3.Connection) -> int:
            done = 0
            for chunk in _chunks(ids):
                marks = _marks(len(chunk))
                conn.execute(
                    "INSERT INTO outbox_parked (entry_id, sink, dedup_key, enqueued_ms, attempts, "
                    "parked_ms, reason) SELECT entry_id, sink, dedup_key, enqueued_ms, attempts, "
                    f"?, ? FROM outbox WHERE sink = ? AND entry_id IN ({marks})",
                    (parked_ms, reason, sink, *chunk),
                )
                done += conn.execute(
                    f"DELETE FROM outbox WHERE sink = ? AND entry_id IN ({marks})", (sink, *chunk)
                ).rowcount
            return done

        return await self._db.write(run)

    async def parked(self, sink: str, *, limit: int) -> list[ParkedEntry]:
        def run(conn: sqlite3.Connection) -> list[ParkedEntry]:
            rows = conn.execute(
                "SELECT p.entry_id, p.enqueued_ms, p.attempts, s.project_id, s.connector_id, "
                "s.body, p.reason, p.parked_ms FROM outbox_parked p "
                "JOIN signals s ON s.dedup_key = p.dedup_key "
                "WHERE p.sink = ? ORDER BY p.entry_id LIMIT ?",
                (sink, limit),
            ).fetchall()
            return [
                ParkedEntry(
                    entry=_outbox_entry(sink, row, attempts=row[2]),
                    reason=row[6],
                    parked_at=from_epoch_ms(row[7]),
                )
                for row in rows
            ]

        return await self._db.read(run)

    async def requeue_parked(self, sink: str, *, now: datetime) -> int:
        now_ms = epoch_ms(now)

        def run(conn: sqlite3.Connection) -> int:
            # New entry ids: requeued signals go to the back of the queue.
            conn.execute(
                "INSERT INTO outbox (sink, dedup_key, enqueued_ms, available_ms) "
                "SELECT sink, dedup_key, enqueued_ms, ? FROM outbox_parked WHERE sink = ? "
                "ORDER BY entry_id",
                (now_ms, sink),
            )
            return conn.execute("DELETE FROM outbox_parked WHERE sink = ?", (sink,)).rowcount

        return await self._db.write(run)
