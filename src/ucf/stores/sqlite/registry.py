"""Descriptors and instances in SQLite."""

# SQL here is assembled only from constant column lists and "?" placeholders;
# every value is bound, never formatted in.
# ruff: noqa: S608

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ucf.stores.errors import (
    descriptor_changed,
    descriptor_exists,
    instance_exists,
    no_descriptor,
    no_instance,
)
from ucf.stores.models import (
    DEFAULT_DESCRIPTOR_HISTORY,
    UNSET,
    DeliveryObservation,
    DescriptorRecord,
    DescriptorVersion,
    HealthObservation,
    InstanceChanges,
    InstanceRecord,
    SyncReport,
    descriptor_identity,
    health_after_delivery,
    health_state_after,
    is_newer_version,
    pruned_versions,
    replacement_version,
)
from ucf.stores.sqlite.codec import dump_json, load_json, opt_time, parse_time, text_time
from ucf.stores.sqlite.database import Database

_DESCRIPTOR_COLUMNS = "connector_id, descriptor, built_in, version, created_at, updated_at"


def _descriptor(row: sqlite3.Row | tuple[Any, ...]) -> DescriptorRecord:
    return DescriptorRecord(
        connector_id=row[0],
        descriptor=load_json(row[1]),
        built_in=bool(row[2]),
        version=row[3],
        created_at=parse_time(row[4]),
        updated_at=parse_time(row[5]),
    )


def _select_descriptor(conn: sqlite3.Connection, connector_id: str) -> DescriptorRecord | None:
    row = conn.execute(
        f"SELECT {_DESCRIPTOR_COLUMNS} FROM descriptors WHERE connector_id = ?", (connector_id,)
    ).fetchone()
    return None if row is None else _descriptor(row)


def _descriptor_json(descriptor: Mapping[str, Any]) -> str:
    return dump_json(dict(descriptor), what="descriptor")


def _prune_versions(conn: sqlite3.Connection, connector_id: str, keep: int) -> None:
    """Delete the versions :func:`pruned_versions` lets go, in the transaction of the edit
    that added one. Counted first, on the primary key: under the bound (nearly always)
    no descriptor is read."""
    (count,) = conn.execute(
        "SELECT count(*) FROM descriptor_versions WHERE connector_id = ?", (connector_id,)
    ).fetchone()
    if count <= keep:
        return
    rows = conn.execute(
        "SELECT saved_at, descriptor FROM descriptor_versions WHERE connector_id = ? "
        "ORDER BY saved_at DESC",
        (connector_id,),
    ).fetchall()
    pruned = pruned_versions([(row[0], load_json(row[1])) for row in rows], keep)
    conn.executemany(
        "DELETE FROM descriptor_versions WHERE connector_id = ? AND saved_at = ?",
        [(connector_id, saved_at) for saved_at in pruned],
    )


class SqliteDescriptorRegistry:
    def __init__(self, db: Database, *, history: int = DEFAULT_DESCRIPTOR_HISTORY) -> None:
        self._db = db
        self._history = history
        """Earlier versions kept per connector, at least (:func:`pruned_versions`)."""

    async def list_all(self) -> list[DescriptorRecord]:
        def run(conn: sqlite3.Connection) -> list[DescriptorRecord]:
            rows = conn.execute(
                f"SELECT {_DESCRIPTOR_COLUMNS} FROM descriptors ORDER BY connector_id"
            ).fetchall()
            return [_descriptor(row) for row in rows]

        return await self._db.read(run)

    async def get(self, connector_id: str) -> DescriptorRecord | None:
        return await self._db.read(lambda conn: _select_descriptor(conn, connector_id))

    async def register(
        self, descriptor: Mapping[str, Any], *, now: datetime, built_in: bool = False
    ) -> DescriptorRecord:
        connector_id, version = descriptor_identity(descriptor)
        body = _descriptor_json(descriptor)
        stamp = text_time(now)

        def run(conn: sqlite3.Connection) -> DescriptorRecord:
            inserted = conn.execute(
                "INSERT INTO descriptors VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (connector_id) DO NOTHING",
                (connector_id, body, int(built_in), version, stamp, stamp),
            ).rowcount
            if not inserted:
                raise descriptor_exists(connector_id)
            record = _select_descriptor(conn, connector_id)
            assert record is not None
            return record

        return await self._db.write(run)

    async def update(
        self,
        connector_id: str,
        descriptor: Mapping[str, Any],
        *,
        now: datetime,
        built_in: bool | None = None,
        if_saved_at: datetime | None = None,
    ) -> DescriptorRecord:
        version = replacement_version(connector_id, descriptor)
        body = _descriptor_json(descriptor)
        stamp = text_time(now)

        def run(conn: sqlite3.Connection) -> DescriptorRecord:
            current = _select_descriptor(conn, connector_id)
            if current is None:
                raise no_descriptor(connector_id)
            if if_saved_at is not None and current.updated_at != if_saved_at:
                raise descriptor_changed(connector_id)
            # The one replaced stays readable, in the same transaction as its replacement.
            conn.execute(
                "INSERT OR REPLACE INTO descriptor_versions "
                "SELECT connector_id, updated_at, version, descriptor, ? "
                "FROM descriptors WHERE connector_id = ?",
                (stamp, connector_id),
            )
            _prune_versions(conn, connector_id, self._history)
            conn.execute(
                "UPDATE descriptors SET descriptor = ?, version = ?, updated_at = ?, "
                "built_in = COALESCE(?, built_in) WHERE connector_id = ?",
                (body, version, stamp, None if built_in is None else int(built_in), connector_id),
            )
            record = _select_descriptor(conn, connector_id)
            assert record is not None
            return record

        return await self._db.write(run)

    async def versions(self, connector_id: str) -> list[DescriptorVersion]:
        def run(conn: sqlite3.Connection) -> list[DescriptorVersion]:
            rows = conn.execute(
                "SELECT version, descriptor, saved_at, replaced_at FROM descriptor_versions "
                "WHERE connector_id = ? ORDER BY saved_at DESC",
                (connector_id,),
            ).fetchall()
            return [
                DescriptorVersion(
                    connector_id=connector_id,
                    version=row[0],
                    descriptor=load_json(row[1]),
                    saved_at=parse_time(row[2]),
                    replaced_at=parse_time(row[3]),
                )
                for row in rows
            ]

        return await self._db.read(run)

    async def delete(self, connector_id: str, *, if_saved_at: datetime | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if if_saved_at is not None:
                current = _select_descriptor(conn, connector_id)
                if current is not None and current.updated_at != if_saved_at:
                    raise descriptor_changed(connector_id)
            deleted = conn.execute(
                "DELETE FROM descriptors WHERE connector_id = ?", (connector_id,)
            ).rowcount
            if not deleted:
                raise no_descriptor(connector_id)
            conn.execute("DELETE FROM descriptor_versions WHERE connector_id = ?", (connector_id,))

        await self._db.write(run)

    async def sync_builtin(
        self, descriptors: Sequence[Mapping[str, Any]], *, now: datetime
    ) -> SyncReport:
        prepared = [(*descriptor_identity(d), _descriptor_json(d)) for d in descriptors]
        stamp = text_time(now)

        def run(conn: sqlite3.Connection) -> SyncReport:
            inserted: list[str] = []
            upgraded: list[str] = []
            unchanged: list[str] = []
            shadowed: list[str] = []
            for connector_id, version, body in prepared:
                current = _select_descriptor(conn, connector_id)
                if current is None:
                    conn.execute(
                        "INSERT INTO descriptors VALUES (?, ?, 1, ?, ?, ?)",
                        (connector_id, body, version, stamp, stamp),
                    )
                    inserted.append(connector_id)
                elif not current.built_in:
                    shadowed.append(connector_id)
                elif is_newer_version(version, current.version):
                    conn.execute(
                        "UPDATE descriptors SET descriptor = ?, version = ?, updated_at = ? "
                        "WHERE connector_id = ?",
                        (body, version, stamp, connector_id),
                    )
                    upgraded.append(connector_id)
                else:
                    unchanged.append(connector_id)
            return SyncReport(tuple(inserted), tuple(upgraded), tuple(unchanged), tuple(shadowed))

        return await self._db.write(run)


# --- instances -----------------------------------------------------------------------

_INSTANCE_COLUMNS = (
    "project_id, connector_id, enabled, credential_secret_ref, config, last_health_check, "
    "healthy, consecutive_failures, last_error, health_state, last_sync_at, last_latency_ms, "
    "created_at, updated_at, last_delivery_at, delivery_failures, poll_requested_at"
)


def _instance(row: tuple[Any, ...]) -> InstanceRecord:
    return InstanceRecord(
        project_id=row[0],
        connector_id=row[1],
        enabled=bool(row[2]),
        credential_secret_ref=row[3],
        config=load_json(row[4]),
        last_health_check=opt_time(row[5]),
        healthy=None if row[6] is None else bool(row[6]),
        consecutive_failures=row[7],
        last_error=row[8],
        health_state=row[9],
        last_sync_at=opt_time(row[10]),
        last_latency_ms=row[11],
        created_at=parse_time(row[12]),
        updated_at=parse_time(row[13]),
        last_delivery_at=opt_time(row[14]),
        delivery_failures=row[15],
        poll_requested_at=opt_time(row[16]),
    )


def _select_instance(
    conn: sqlite3.Connection, project_id: str, connector_id: str
) -> InstanceRecord | None:
    row = conn.execute(
        f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE project_id = ? AND connector_id = ?",
        (project_id, connector_id),
    ).fetchone()
    return None if row is None else _instance(row)


def _existing_instance(
    conn: sqlite3.Connection, project_id: str, connector_id: str
) -> InstanceRecord:
    record = _select_instance(conn, project_id, connector_id)
    if record is None:
        raise no_instance(project_id, connector_id)
    return record


class SqliteInstanceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, project_id: str, connector_id: str) -> InstanceRecord | None:
        return await self._db.read(lambda conn: _select_instance(conn, project_id, connector_id))

    async def _list(self, where: str, params: tuple[Any, ...], order: str) -> list[InstanceRecord]:
        def run(conn: sqlite3.Connection) -> list[InstanceRecord]:
            rows = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE {where} ORDER BY {order}",
                params,
            ).fetchall()
            return [_instance(row) for row in rows]

        return await self._db.read(run)

    async def list_by_project(self, project_id: str) -> list[InstanceRecord]:
        return await self._list("project_id = ?", (project_id,), "connector_id")

    async def list_by_connector(self, connector_id: str) -> list[InstanceRecord]:
        return await self._list("connector_id = ?", (connector_id,), "project_id")

    async def list_enabled(self) -> list[InstanceRecord]:
        return await self._list("enabled = 1", (), "project_id, connector_id")

    async def create(
        self,
        project_id: str,
        connector_id: str,
        *,
        config: Mapping[str, Any],
        now: datetime,
        credential_secret_ref: str | None = None,
        enabled: bool = True,
    ) -> InstanceRecord:
        body = dump_json(dict(config), what="instance config")
        stamp = text_time(now)

        def run(conn: sqlite3.Connection) -> InstanceRecord:
            inserted = conn.execute(
                "INSERT INTO instances (project_id, connector_id, enabled, credential_secret_ref, "
                "config, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (project_id, connector_id) DO NOTHING",
                (project_id, connector_id, int(enabled), credential_secret_ref, body, stamp, stamp),
            ).rowcount
            if not inserted:
                raise instance_exists(project_id, connector_id)
            return _existing_instance(conn, project_id, connector_id)

        return await self._db.write(run)

    async def update(
        self, project_id: str, connector_id: str, changes: InstanceChanges, *, now: datetime
    ) -> InstanceRecord:
        assignments = ["updated_at = ?"]
        params: list[Any] = [text_time(now)]
        if changes.enabled is not UNSET:
            assignments.append("enabled = ?")
            params.append(int(changes.enabled))
        if changes.credential_secret_ref is not UNSET:
            assignments.append("credential_secret_ref = ?")
            params.append(changes.credential_secret_ref)
        if changes.config is not UNSET:
            assignments.append("config = ?")
            params.append(dump_json(dict(changes.config), what="instance config"))
        sql = f"UPDATE instances SET {', '.join(assignments)} WHERE project_id = ? AND connector_id = ?"

        def run(conn: sqlite3.Connection) -> InstanceRecord:
            conn.execute(sql, (*params, project_id, connector_id))
            return _existing_instance(conn, project_id, connector_id)

        return await self._db.write(run)

    async def set_enabled(
        self, project_id: str, connector_id: str, enabled: bool, *, now: datetime
    ) -> InstanceRecord:
        return await self.update(
            project_id, connector_id, InstanceChanges(enabled=enabled), now=now
        )

    async def record_health(
        self, project_id: str, connector_id: str, observation: HealthObservation
    ) -> InstanceRecord:
        stamp = text_time(observation.at)

        def run(conn: sqlite3.Connection) -> InstanceRecord:
            current = _existing_instance(conn, project_id, connector_id)
            failures = 0 if observation.ok else current.consecutive_failures + 1
            state = health_state_after(
                observation.ok,
                failures,
                observation.failures_before_error,
                degraded=observation.degraded,
            )
            conn.execute(
                "UPDATE instances SET last_health_check = ?, healthy = ?, "
                "consecutive_failures = ?, last_error = ?, health_state = ?, "
                "last_latency_ms = COALESCE(?, last_latency_ms), "
                "last_sync_at = CASE WHEN ? THEN ? ELSE last_sync_at END "
                "WHERE project_id = ? AND connector_id = ?",
                (
                    stamp,
                    int(observation.ok),
                    failures,
                    observation.error,  # None on success, unless a degraded one says why
                    state,
                    observation.latency_ms,
                    int(observation.ok and observation.synced),
                    stamp,
                    project_id,
                    connector_id,
                ),
            )
            return _existing_instance(conn, project_id, connector_id)

        return await self._db.write(run)

    async def record_delivery(
        self, project_id: str, connector_id: str, observation: DeliveryObservation
    ) -> InstanceRecord:
        def run(conn: sqlite3.Connection) -> InstanceRecord:
            current = _existing_instance(conn, project_id, connector_id)
            after = health_after_delivery(current, observation)
            conn.execute(
                "UPDATE instances SET health_state = ?, last_error = ?, delivery_failures = ?, "
                "last_delivery_at = ? WHERE project_id = ? AND connector_id = ?",
                (
                    after.health_state,
                    after.last_error,
                    after.delivery_failures,
                    None if after.last_delivery_at is None else text_time(after.last_delivery_at),
                    project_id,
                    connector_id,
                ),
            )
            return _existing_instance(conn, project_id, connector_id)

        return await self._db.write(run)

    async def request_poll(self, project_id: str, connector_id: str, *, at: datetime) -> None:
        def run(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE instances SET poll_requested_at = ? WHERE project_id = ? "
                "AND connector_id = ?",
                (text_time(at), project_id, connector_id),
            )
            if cursor.rowcount == 0:
                raise no_instance(project_id, connector_id)

        await self._db.write(run)

    async def clear_poll_request(
        self, project_id: str, connector_id: str, *, up_to: datetime
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE instances SET poll_requested_at = NULL WHERE project_id = ? "
                "AND connector_id = ? AND poll_requested_at <= ?",
                (project_id, connector_id, text_time(up_to)),
            )
            return cursor.rowcount > 0

        return await self._db.write(run)

    async def delete(self, project_id: str, connector_id: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            _existing_instance(conn, project_id, connector_id)
            conn.execute(
                "DELETE FROM instances WHERE project_id = ? AND connector_id = ?",
                (project_id, connector_id),
            )

        await self._db.write(run)
