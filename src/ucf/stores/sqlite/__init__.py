"""The embedded SQLite store: one WAL-mode file, schema versioned by migrations."""

from __future__ import annotations

from pathlib import Path

from ucf.stores.models import InitReport, StoreOptions
from ucf.stores.protocols import Store
from ucf.stores.sqlite.coordination import (
    SqliteCheckpointStore,
    SqliteLeaseStore,
    SqliteRateLimitStore,
    SqliteRecordStore,
    SqliteSecretLeaseStore,
)
from ucf.stores.sqlite.database import Database
from ucf.stores.sqlite.registry import SqliteDescriptorRegistry, SqliteInstanceStore
from ucf.stores.sqlite.signals import SqliteOutbox, SqliteSignalStore


class SqliteLifecycle:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def description(self) -> str:
        return f"SQLite file {self._db.path}"

    async def init(self) -> InitReport:
        actions = await self._db.open()
        return InitReport(
            backend="sqlite",
            location=f"{self.description}, schema version {self._db.schema_version}",
            actions=actions,
        )

    async def close(self) -> None:
        await self._db.close()


def open_sqlite_store(path: Path, options: StoreOptions) -> Store:
    """A store on the SQLite file at ``path``; the file is created on ``init()``."""
    db = Database(path.absolute())
    return Store(
        lifecycle=SqliteLifecycle(db),
        descriptors=SqliteDescriptorRegistry(db, history=options.descriptor_history),
        instances=SqliteInstanceStore(db),
        checkpoints=SqliteCheckpointStore(db),
        signals=SqliteSignalStore(db, options.signal_retention),
        outbox=SqliteOutbox(db),
        leases=SqliteLeaseStore(db),
        rate_limits=SqliteRateLimitStore(db),
        records=SqliteRecordStore(db),
        secret_leases=SqliteSecretLeaseStore(db),
    )


__all__ = ["open_sqlite_store"]
