"""Checkpoints, leases, token buckets, records and secret leases in SQLite: each decision is one write
transaction (or one conditional statement), so racing processes agree."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any, Final

from ucf.stores.models import (
    DEFAULT_CHECKPOINT_KEY,
    BucketState,
    Checkpoint,
    CheckpointMove,
    Lease,
    RateDecision,
    epoch_ms,
    from_epoch_ms,
    full_at,
    give_tokens,
    take_tokens,
    utc,
)
from ucf.stores.sqlite.codec import dump_json, load_json, parse_time, text_time
from ucf.stores.sqlite.database import Database


def compare_and_set_checkpoint(conn: sqlite3.Connection, move: CheckpointMove) -> bool:
    """The checkpoint compare-and-set, inside the caller's write transaction."""
    body = dump_json(move.value, what="checkpoint value")
    stamp = text_time(move.now)
    if move.expected_version == 0:
        cursor = conn.execute(
            "INSERT INTO checkpoints VALUES (?, ?, ?, ?, 1, ?) "
            "ON CONFLICT (project_id, connector_id, key) DO NOTHING",
            (move.project_id, move.connector_id, move.key, body, stamp),
        )
    else:
        cursor = conn.execute(
            "UPDATE checkpoints SET value = ?, version = version + 1, updated_at = ? "
            "WHERE project_id = ? AND connector_id = ? AND key = ? AND version = ?",
            (body, stamp, move.project_id, move.connector_id, move.key, move.expected_version),
        )
    return cursor.rowcount == 1


class SqliteCheckpointStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(
        self, project_id: str, connector_id: str, key: str = DEFAULT_CHECKPOINT_KEY
    ) -> Checkpoint:
        def run(conn: sqlite3.Connection) -> Checkpoint:
            row = conn.execute(
                "SELECT value, version, updated_at FROM checkpoints "
                "WHERE project_id = ? AND connector_id = ? AND key = ?",
                (project_id, connector_id, key),
            ).fetchone()
            if row is None:
                return Checkpoint(None, 0)
            return Checkpoint(load_json(row[0]), row[1], parse_time(row[2]))

        return await self._db.read(run)

    async def compare_and_set(
        self,
        project_id: str,
        connector_id: str,
        *,
        expected_version: int,
        value: Any,
        now: datetime,
        key: str = DEFAULT_CHECKPOINT_KEY,
    ) -> bool:
        move = CheckpointMove(project_id, connector_id, expected_version, value, now, key)
        return await self._db.write(lambda conn: compare_and_set_checkpoint(conn, move))

    async def delete(self, project_id: str, connector_id: str) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                "DELETE FROM checkpoints WHERE project_id = ? AND connector_id = ?",
                (project_id, connector_id),
            )
        )


class SqliteLeaseStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def acquire(self, name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        now_ms, until_ms = epoch_ms(now), epoch_ms(now + ttl)

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET owner = excluded.owner, expires_ms = excluded.expires_ms "
                "WHERE leases.expires_ms <= ? OR leases.owner = excluded.owner",
                (name, owner, until_ms, now_ms),
            )
            return cursor.rowcount == 1

        return await self._db.write(run)

    async def renew(self, name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        until_ms = epoch_ms(now + ttl)

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE leases SET expires_ms = ? WHERE name = ? AND owner = ?",
                (until_ms, name, owner),
            )
            return cursor.rowcount == 1

        return await self._db.write(run)

    async def release(self, name: str, owner: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
            return cursor.rowcount == 1

        return await self._db.write(run)

    async def get(self, name: str, *, now: datetime) -> Lease | None:
        def run(conn: sqlite3.Connection) -> Lease | None:
            row = conn.execute(
                "SELECT owner, expires_ms FROM leases WHERE name = ? AND expires_ms > ?",
                (name, epoch_ms(now)),
            ).fetchone()
            return None if row is None else Lease(name, row[0], from_epoch_ms(row[1]))

        return await self._db.read(run)


PRUNED_PER_NEW_BUCKET: Final = 16
"""Full buckets dropped each time a bucket is made: more than one, so the table shrinks
back after a flood, and few, so that making a bucket stays one short write."""


def _bucket(conn: sqlite3.Connection, bucket_key: str) -> BucketState | None:
    """A bucket as stored (None: no row, the bucket is full)."""
    row = conn.execute(
        "SELECT tokens, updated_s FROM rate_buckets WHERE bucket_key = ?", (bucket_key,)
    ).fetchone()
    return None if row is None else BucketState(row[0], row[1])


class SqliteRateLimitStore:
    """Implements :class:`~ucf.stores.protocols.RateLimitStore`.

    A bucket with no row is full, so a row whose bucket has refilled (``full_s``) is
    kept for nothing. Every sender that fails webhook verification gets a bucket of its
    own address; without dropping full ones the table would grow with every address a
    flood comes from. DynamoDB's buckets expire by TTL at the same instant.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def try_acquire(
        self,
        bucket_key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: datetime,
        cost: float = 1.0,
    ) -> RateDecision:
        now_s = utc(now).timestamp()

        def run(conn: sqlite3.Connection) -> RateDecision:
            stored = _bucket(conn, bucket_key)
            decision, state = take_tokens(
                stored,
                capacity=capacity,
                refill_per_second=refill_per_second,
                now_s=now_s,
                cost=cost,
            )
            if stored is None:  # a new bucket: drop a few that are full again (no row = full)
                conn.execute(
                    "DELETE FROM rate_buckets WHERE bucket_key IN (SELECT bucket_key "
                    "FROM rate_buckets WHERE full_s <= ? LIMIT ?)",
                    (now_s, PRUNED_PER_NEW_BUCKET),
                )
            full_s = full_at(state, capacity=capacity, refill_per_second=refill_per_second)
            conn.execute(
                "INSERT INTO rate_buckets (bucket_key, tokens, updated_s, full_s) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (bucket_key) DO UPDATE SET "
                "tokens = excluded.tokens, updated_s = excluded.updated_s, "
                "full_s = excluded.full_s",
                (bucket_key, state.tokens, state.updated_s, full_s),
            )
            return decision

        return await self._db.write(run)

    async def give_back(
        self,
        bucket_key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: datetime,
        tokens: float = 1.0,
    ) -> None:
        now_s = utc(now).timestamp()

        def run(conn: sqlite3.Connection) -> None:
            stored = _bucket(conn, bucket_key)
            state = give_tokens(
                stored,
                capacity=capacity,
                refill_per_second=refill_per_second,
                now_s=now_s,
                tokens=tokens,
            )
            if state is None:  # no row: the bucket is full already
                return
            full_s = full_at(state, capacity=capacity, refill_per_second=refill_per_second)
            conn.execute(
                "UPDATE rate_buckets SET tokens = ?, updated_s = ?, full_s = ? "
                "WHERE bucket_key = ?",
                (state.tokens, state.updated_s, full_s, bucket_key),
            )

        await self._db.write(run)


class SqliteRecordStore:
    """Implements :class:`~ucf.stores.protocols.KeyValueStore`; ``take`` is one
    ``DELETE … RETURNING``, so two callers cannot both get a record."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(
        self, key: str, value: dict[str, Any], *, expires_at: datetime | None = None
    ) -> None:
        body = dump_json(value, what="record")
        expires = None if expires_at is None else int(utc(expires_at).timestamp())
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO records VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value, expires_s = excluded.expires_s",
                (key, body, expires),
            )
        )

    async def get(self, key: str, *, now: datetime) -> dict[str, Any] | None:
        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT value FROM records WHERE key = ? AND (expires_s IS NULL OR expires_s > ?)",
                (key, int(utc(now).timestamp())),
            ).fetchone()
            return None if row is None else _record(row[0])

        return await self._db.read(run)

    async def take(self, key: str, *, now: datetime) -> dict[str, Any] | None:
        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "DELETE FROM records WHERE key = ? RETURNING value, expires_s", (key,)
            ).fetchone()
            if row is None or (row[1] is not None and row[1] <= int(utc(now).timestamp())):
                return None
            return _record(row[0])

        return await self._db.write(run)

    async def delete(self, key: str) -> None:
        await self._db.write(lambda conn: conn.execute("DELETE FROM records WHERE key = ?", (key,)))


class SqliteSecretLeaseStore:
    """Implements :class:`~ucf.stores.protocols.SecretLeaseStore`: one row per ref, found
    by the index on its time."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def hold(self, ref: str, *, until: datetime) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO secret_leases VALUES (?, ?) "
                "ON CONFLICT (ref) DO UPDATE SET until_ms = excluded.until_ms",
                (ref, epoch_ms(until)),
            )
        )

    async def due(self, *, now: datetime, limit: int) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT ref FROM secret_leases WHERE until_ms <= ? ORDER BY until_ms LIMIT ?",
                (epoch_ms(now), limit),
            )
            return [str(row[0]) for row in rows]

        return await self._db.read(run)

    async def release(self, ref: str) -> None:
        await self._db.write(
            lambda conn: conn.execute("DELETE FROM secret_leases WHERE ref = ?", (ref,))
        )


def _record(text: str) -> dict[str, Any]:
    value = load_json(text)
    return value if isinstance(value, dict) else {}
