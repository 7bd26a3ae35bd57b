"""The SQLite schema as an ordered list of migrations.

``PRAGMA user_version`` records how many have been applied. A migration is
appended, never edited: a database written by an older ucf is upgraded by
running the ones it lacks, in order, inside one write transaction.

Timestamps the application reads back are ISO 8601 text (UTC, microseconds);
the ones queries order or filter by are integers (signal time and receive time
in epoch milliseconds, expiry in epoch seconds like DynamoDB's TTL attribute).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "registry, instances, checkpoints, signals, outbox, leases, rate-limit buckets",
        """
        CREATE TABLE descriptors (
            connector_id TEXT PRIMARY KEY,
            descriptor   TEXT NOT NULL,
            built_in     INTEGER NOT NULL,
            version      TEXT NOT NULL,
            created_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL
        );

        CREATE TABLE instances (
            project_id            TEXT NOT NULL,
            connector_id          TEXT NOT NULL,
            enabled               INTEGER NOT NULL,
            credential_secret_ref TEXT,
            config                TEXT NOT NULL,
            last_health_check     TEXT,
            healthy               INTEGER,
            consecutive_failures  INTEGER NOT NULL DEFAULT 0,
            last_error            TEXT,
            health_state          TEXT NOT NULL DEFAULT 'unknown',
            last_sync_at          TEXT,
            last_latency_ms       REAL,
            created_at            TEXT NOT NULL,
            updated_at            TEXT NOT NULL,
            PRIMARY KEY (project_id, connector_id)
        ) WITHOUT ROWID;
        CREATE INDEX instances_by_connector ON instances (connector_id, project_id);

        CREATE TABLE checkpoints (
            project_id   TEXT NOT NULL,
            connector_id TEXT NOT NULL,
            key          TEXT NOT NULL,
            value        TEXT NOT NULL,
            version      INTEGER NOT NULL,
            updated_at   TEXT NOT NULL,
            PRIMARY KEY (project_id, connector_id, key)
        ) WITHOUT ROWID;

        CREATE TABLE signals (
            dedup_key    TEXT NOT NULL UNIQUE,
            project_id   TEXT NOT NULL,
            signal_id    TEXT NOT NULL,
            connector_id TEXT NOT NULL,
            source       TEXT NOT NULL,
            type         TEXT NOT NULL,
            ts_ms        INTEGER NOT NULL,
            received_ms  INTEGER NOT NULL,
            expires_s    INTEGER NOT NULL,
            body         TEXT NOT NULL
        );
        CREATE INDEX signals_by_time ON signals (project_id, ts_ms, signal_id);
        CREATE INDEX signals_by_id ON signals (project_id, signal_id);
        CREATE INDEX signals_received ON signals (project_id, connector_id, received_ms);
        CREATE INDEX signals_expiry ON signals (expires_s);

        CREATE TABLE outbox (
            entry_id     INTEGER PRIMARY KEY,
            sink         TEXT NOT NULL,
            dedup_key    TEXT NOT NULL,
            enqueued_ms  INTEGER NOT NULL,
            available_ms INTEGER NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX outbox_by_sink ON outbox (sink, entry_id);

        CREATE TABLE leases (
            name       TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            expires_ms INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE rate_buckets (
            bucket_key TEXT PRIMARY KEY,
            tokens     REAL NOT NULL,
            updated_s  REAL NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
    Migration(
        2,
        "outbox ids never reused; parked outbox entries (refused for good by their sink)",
        """
        CREATE TABLE outbox_v2 (
            entry_id     INTEGER PRIMARY KEY AUTOINCREMENT,
            sink         TEXT NOT NULL,
            dedup_key    TEXT NOT NULL,
            enqueued_ms  INTEGER NOT NULL,
            available_ms INTEGER NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO outbox_v2 SELECT entry_id, sink, dedup_key, enqueued_ms, available_ms, attempts
            FROM outbox;
        DROP TABLE outbox;
        ALTER TABLE outbox_v2 RENAME TO outbox;
        CREATE INDEX outbox_by_sink ON outbox (sink, entry_id);

        CREATE TABLE outbox_parked (
            entry_id    INTEGER PRIMARY KEY,
            sink        TEXT NOT NULL,
            dedup_key   TEXT NOT NULL,
            enqueued_ms INTEGER NOT NULL,
            attempts    INTEGER NOT NULL,
            parked_ms   INTEGER NOT NULL,
            reason      TEXT NOT NULL
        );
        CREATE INDEX outbox_parked_by_sink ON outbox_parked (sink, entry_id);
        """,
    ),
    Migration(
        3,
        "records: small JSON values by key, optionally expiring (OAuth flows, OAuth clients)",
        """
        CREATE TABLE records (
            key       TEXT PRIMARY KEY,
            value     TEXT NOT NULL,
            expires_s INTEGER
        ) WITHOUT ROWID;
        """,
    ),
    Migration(
        4,
        "webhook deliveries of an instance: the last verified one, failures since",
        """
        ALTER TABLE instances ADD COLUMN last_delivery_at TEXT;
        ALTER TABLE instances ADD COLUMN delivery_failures INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    Migration(
        5,
        "a poll asked for sooner than the schedule (a missed webhook), until a poll starts",
        """
        ALTER TABLE instances ADD COLUMN poll_requested_at TEXT;
        """,
    ),
    Migration(
        6,
        "rate-limit buckets: when each is full again, so that full ones can be dropped",
        """
        ALTER TABLE rate_buckets ADD COLUMN full_s REAL NOT NULL DEFAULT 0;
        UPDATE rate_buckets SET full_s = updated_s + 3600;
        CREATE INDEX rate_buckets_by_full ON rate_buckets (full_s);
        """,
    ),
    Migration(
        7,
        "descriptor versions: each descriptor an edit replaced, readable and restorable",
        """
        CREATE TABLE descriptor_versions (
            connector_id TEXT NOT NULL,
            saved_at     TEXT NOT NULL,
            version      TEXT NOT NULL,
            descriptor   TEXT NOT NULL,
            replaced_at  TEXT NOT NULL,
            PRIMARY KEY (connector_id, saved_at)
        ) WITHOUT ROWID;
        """,
    ),
    Migration(
        8,
        "secret leases: short-lived secrets (OAuth verifiers, tickets) deleted once past their time",
        """
        CREATE TABLE secret_leases (
            ref      TEXT PRIMARY KEY,
            until_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX secret_leases_by_until ON secret_leases (until_ms);
        """,
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
