"""Signals and their outbox on DynamoDB: dedup by conditional put, no transactions.

An ingest of one signal touches several items: the dedup item (its commit
point), the signal in its project's time-ordered partition, a pointer for
lookup by id, and one outbox entry per sink. DynamoDB could write them in one
``TransactWriteItems``, but the local server the suite runs on (dynalite) has
no transactions, transactions cost twice the write capacity, and one failed
dedup condition cancels the other 99 actions of a batch. So instead:

1. **Commit.** A conditional put (``attribute_not_exists(PK)``) of the dedup
   item, carrying the whole record, marked *pending* (it sits in GSI2 under
   ``INGEST#PENDING``). Exactly one of any number of racing writers wins; for
   the rest the signal is a duplicate. A batch runs its puts side by side.
2. **Derive.** Batch-write the signal, pointer and outbox items. Each is a
   pure function of the committed record, so writing them again is harmless.
3. **Finish.** Batch-write the dedup item again, slim and no longer pending.

Readers see a signal only once step 2 is done, so nobody ever sees a signal
without its outbox entries, or an entry without its signal. A crash between
1 and 3 leaves a pending dedup item that is finished by whoever meets it: a
re-delivery of the same item (the source's at-least-once delivery: a poll whose
checkpoint did not advance, a webhook that got no 2xx), or the sweep that
``Outbox.claim`` and ``purge_expired`` run for ingests pending over a minute.
Finishing rewrites the outbox entries, so a sink may see such a signal twice:
delivery is at least once, storage exactly once.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ucf.core.records import datarecord
from ucf.stores.dynamodb import keys as k
from ucf.stores.dynamodb.client import ConditionFailed, DynamoClient, Item
from ucf.stores.dynamodb.table import GSI2
from ucf.stores.errors import InvalidCursor, SignalTooLarge
from ucf.stores.models import (
    CheckpointMove,
    IngestResult,
    SignalQuery,
    SignalWrite,
    epoch_ms,
    from_epoch_ms,
)
from ucf.stores.protocols import CheckpointStore
from ucf.stores.signal_text import dump_signal

if TYPE_CHECKING:  # what reads build, imported where they do (a poll only writes)
    from ucf.stores.read_models import (
        OutboxEntry,
        OutboxLag,
        ParkedEntry,
        SignalCounts,
        SignalPage,
        StoredSignal,
    )

# An ingest still pending after this long was interrupted (a live one takes milliseconds).
INTERRUPTED_AFTER = timedelta(seconds=60)
SWEEP_EVERY = timedelta(seconds=30)
# Room under DynamoDB's 400 KB item limit for the keys and attributes around the body.
MAX_SIGNAL_BYTES = 380 * 1024


_SHORTER: Final = {
    "raw": "trim the raw payload in the connector's mapping (rawFields)",
    "metadata": "map shorter lists to participants, tags or related items",
    "type": "give the connector's signal types shorter names",
}


def _largest_field(signal: Mapping[str, Any]) -> tuple[str, int]:
    """The signal's field taking the most bytes as JSON, and those bytes: the size error
    names it, since it is not always ``raw``."""
    sizes = {
        name: len(json.dumps(value, ensure_ascii=False, default=str).encode())
        for name, value in signal.items()
    }
    field = max(sizes, key=sizes.__getitem__, default="raw")
    return field, sizes.get(field, 0)


@datarecord
class _Record:
    """Everything one ingest writes; kept whole in the pending dedup item."""

    dedup_key: str
    project_id: str
    connector_id: str
    signal_id: str
    body: str
    source: str
    type: str
    ts_ms: int
    received_ms: int
    expires_s: int
    seq: int
    sinks: tuple[str, ...]

    @classmethod
    def of(
        cls, write: SignalWrite, *, seq: int, sinks: tuple[str, ...], retention: timedelta
    ) -> _Record:
        received_ms = epoch_ms(write.received_at)
        body = dump_signal(dict(write.signal), signal_id=write.signal_id)
        size = len(body.encode())
        if size > MAX_SIGNAL_BYTES:
            # Refused before anything is written: a commit whose derived items could
            # never be stored would stay pending for ever.
            field, field_size = _largest_field(write.signal)
            raise SignalTooLarge(
                f"signal {write.signal_id} is {size // 1024} KiB as JSON, "
                f"{field_size // 1024} KiB of it its {field!r}; DynamoDB items hold at most "
                f"400 KB, so ucf stores signals up to {MAX_SIGNAL_BYTES // 1024} KiB",
                _SHORTER.get(field, f"make the signal's {field!r} shorter"),
                signal_id=write.signal_id,
                size=size,
                limit=MAX_SIGNAL_BYTES,
            )
        return cls(
            dedup_key=write.dedup_key,
            project_id=write.project_id,
            connector_id=write.connector_id,
            signal_id=write.signal_id,
            body=body,
            source=str(write.signal.get("source", write.connector_id)),
            type=str(write.signal.get("type", "unknown")),
            ts_ms=epoch_ms(write.timestamp),
            received_ms=received_ms,
            expires_s=math.ceil(received_ms / 1000 + retention.total_seconds()),
            seq=seq,
            sinks=sinks,
        )

    @classmethod
    def from_pending(cls, item: Item) -> _Record:
        return cls(
            dedup_key=item["dedupKey"]["S"],
            project_id=item["projectId"]["S"],
            connector_id=item["connectorId"]["S"],
            signal_id=item["signalId"]["S"],
            body=item["body"]["S"],
            source=item["signalSource"]["S"],
            type=item["signalType"]["S"],
            ts_ms=int(item["tsMs"]["N"]),
            received_ms=int(item["receivedMs"]["N"]),
            expires_s=int(item["expiresAt"]["N"]),
            seq=int(item["seq"]["N"]),
            sinks=tuple(json.loads(item["sinks"]["S"])),
        )

    @property
    def signal_sk(self) -> str:
        return k.signal_sk(self.ts_ms, self.signal_id)

    def _common(self) -> Item:
        return {
            "dedupKey": k.s(self.dedup_key),
            "projectId": k.s(self.project_id),
            "connectorId": k.s(self.connector_id),
            "expiresAt": k.n(self.expires_s),
        }

    def pending_item(self) -> Item:
        return {
            **k.dedup(self.dedup_key),
            **self._common(),
            "GSI2PK": k.s(k.PENDING_INGEST_GSI2PK),
            "GSI2SK": k.s(f"{k.sortable_ms(self.received_ms)}#{k.part(self.dedup_key)}"),
            "signalId": k.s(self.signal_id),
            "body": k.s(self.body),
            "signalSource": k.s(self.source),
            "signalType": k.s(self.type),
            "tsMs": k.n(self.ts_ms),
            "receivedMs": k.n(self.received_ms),
            "seq": k.n(self.seq),
            "sinks": k.s(json.dumps(list(self.sinks))),
        }

    def finished_item(self) -> Item:
        return {**k.dedup(self.dedup_key), **self._common(), "signalId": k.s(self.signal_id)}

    def derived_items(self) -> list[Item]:
        signal: Item = {
            **k.signal(self.project_id, self.ts_ms, self.signal_id),
            **self._common(),
            "GSI2PK": k.s(k.received_gsi2pk(self.project_id, self.connector_id)),
            "GSI2SK": k.s(f"{k.sortable_ms(self.received_ms)}#{k.part(self.dedup_key)}"),
            "body": k.s(self.body),
            "signalSource": k.s(self.source),
            "signalType": k.s(self.type),
            "receivedMs": k.n(self.received_ms),
        }
        pointer: Item = {
            **k.signal_pointer(self.project_id, self.signal_id),
            "signalSK": k.s(self.signal_sk),
            "expiresAt": k.n(self.expires_s),
        }
        entry_id = k.outbox_entry_id(self.received_ms, self.seq, self.dedup_key)
        entries: list[Item] = [
            {
                **k.outbox_entry(sink, entry_id),
                **self._common(),
                "body": k.s(self.body),
                "enqueuedMs": k.n(self.received_ms),
                "availableMs": k.n(self.received_ms),
                "attempts": k.n(0),
            }
            for sink in self.sinks
        ]
        return [signal, pointer, *entries]


def _entry(sink: str, item: Item) -> OutboxEntry:
    from ucf.stores.read_models import OutboxEntry

    return OutboxEntry(
        entry_id=item["SK"]["S"][len(k.ENTRY_PREFIX) :],
        sink=sink,
        project_id=item["projectId"]["S"],
        connector_id=item["connectorId"]["S"],
        signal=json.loads(item["body"]["S"]),
        enqueued_at=from_epoch_ms(int(item["enqueuedMs"]["N"])),
        attempts=int(item["attempts"]["N"]),
    )


def _put(item: Item) -> Item:
    return {"PutRequest": {"Item": item}}


def _stored(item: Item) -> StoredSignal:
    from ucf.stores.read_models import StoredSignal

    return StoredSignal(
        signal=json.loads(item["body"]["S"]),
        dedup_key=item["dedupKey"]["S"],
        project_id=item["projectId"]["S"],
        connector_id=item["connectorId"]["S"],
        received_at=from_epoch_ms(int(item["receivedMs"]["N"])),
        expires_at=from_epoch_ms(int(item["expiresAt"]["N"]) * 1000),
    )


_MAX_SORT_KEY_BYTES = 1024  # DynamoDB's limit: a longer cursor cannot be one of ours


def _encode_cursor(signal_sk: str) -> str:
    raw = json.dumps(["v1", signal_sk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, signal_sk = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        version, signal_sk = None, None
    if (
        version != "v1"
        or not isinstance(signal_sk, str)
        or not signal_sk.startswith("SIGNAL#")
        or len(signal_sk.encode()) > _MAX_SORT_KEY_BYTES
    ):
        raise InvalidCursor(
            f"cursor {cursor[:40]!r} was not issued by this store", "start again without a cursor"
        )
    return signal_sk


class DynamoSignalStore:
    def __init__(
        self, client: DynamoClient, retention: timedelta, checkpoints: CheckpointStore
    ) -> None:
        self._db = client
        self._retention = retention
        self._checkpoints = checkpoints
        # Orders the outbox entries of one receive millisecond in ingest order.
        self._seq = itertools.count()
        self._last_sweep: datetime | None = None

    # --- ingest ---------------------------------------------------------------------

    async def ingest(
        self,
        batch: Sequence[SignalWrite],
        *,
        sinks: Sequence[str] = (),
        checkpoint: CheckpointMove | None = None,
    ) -> IngestResult:
        """A batch is more items than one TransactWriteItems may hold, so each signal is
        its own conditional write, and a checkpoint moves only after all of them."""
        stored = await self._ingest(batch, sinks)
        if checkpoint is None:
            return stored
        moved = await self._checkpoints.compare_and_set(
            checkpoint.project_id,
            checkpoint.connector_id,
            expected_version=checkpoint.expected_version,
            value=checkpoint.value,
            now=checkpoint.now,
            key=checkpoint.key,
        )
        return IngestResult(stored.inserted, moved)

    async def _ingest(self, batch: Sequence[SignalWrite], sinks: Sequence[str]) -> IngestResult:
        if not batch:
            return IngestResult(())
        sink_names = tuple(dict.fromkeys(sinks))
        first: dict[str, int] = {}
        for index, write in enumerate(batch):
            first.setdefault(write.dedup_key, index)  # within a batch the first one wins
        records = [
            _Record.of(batch[i], seq=next(self._seq), sinks=sink_names, retention=self._retention)
            for i in first.values()
        ]
        won = await self._db.concurrently(self._commit(record) for record in records)
        new = [record for record, ok in zip(records, won, strict=True) if ok]
        lost = [record.dedup_key for record, ok in zip(records, won, strict=True) if not ok]
        interrupted = await self._pending(lost)
        await self._finish(new + interrupted)
        new_keys = {record.dedup_key for record in new}
        return IngestResult(
            tuple(first[w.dedup_key] == i and w.dedup_key in new_keys for i, w in enumerate(batch))
        )

    async def _commit(self, record: _Record) -> bool:
        try:
            await self._db.call(
                "put_item",
                TableName=self._db.table,
                Item=record.pending_item(),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ConditionFailed:
            return False
        return True

    async def _pending(self, dedup_keys: Sequence[str]) -> list[_Record]:
        """Those of ``dedup_keys`` whose ingest was committed but never finished."""
        if not dedup_keys:
            return []
        items = await self._db.batch_get([k.dedup(key) for key in dedup_keys], consistent=True)
        return [_Record.from_pending(item) for item in items if "GSI2PK" in item]

    async def _finish(self, records: Sequence[_Record]) -> None:
        if not records:
            return
        await self._db.batch_write(
            [_put(item) for record in records for item in record.derived_items()]
        )
        # Only once every derived item is stored does the dedup item stop being pending.
        await self._db.batch_write([_put(record.finished_item()) for record in records])

    async def finish_interrupted(self, *, now: datetime) -> int:
        """Complete ingests that a crash cut short; returns how many it finished."""
        self._last_sweep = now
        cutoff = k.sortable_ms(epoch_ms(now - INTERRUPTED_AFTER))
        candidates = await self._db.query_all(
            IndexName=GSI2,
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK < :cutoff",
            ExpressionAttributeValues={
                ":pk": k.s(k.PENDING_INGEST_GSI2PK),
                ":cutoff": k.s(cutoff),
            },
            ProjectionExpression="dedupKey",
        )
        # The index lags the table: confirm with a consistent read before rewriting.
        records = await self._pending([item["dedupKey"]["S"] for item in candidates])
        await self._finish(records)
        return len(records)

    async def sweep_if_due(self, now: datetime) -> None:
        if self._last_sweep is None or now - self._last_sweep >= SWEEP_EVERY:
            await self.finish_interrupted(now=now)

    # --- reads ----------------------------------------------------------------------

    async def get(self, project_id: str, signal_id: str) -> StoredSignal | None:
        pointer = await self._db.call(
            "get_item",
            TableName=self._db.table,
            Key=k.signal_pointer(project_id, signal_id),
            ConsistentRead=True,
        )
        if "Item" not in pointer:
            return None
        reply = await self._db.call(
            "get_item",
            TableName=self._db.table,
            Key=k.key(k.signals_pk(project_id), pointer["Item"]["signalSK"]["S"]),
            ConsistentRead=True,
        )
        item = reply.get("Item")
        return None if item is None else _stored(item)

    async def query(
        self,
        project_id: str,
        filters: SignalQuery = SignalQuery(),  # noqa: B008 - frozen, shared safely
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SignalPage:
        from ucf.stores.read_models import SignalPage

        if limit < 1:
            raise ValueError("limit must be at least 1")
        # since <= ts < until, as a key range: "SIGNAL#{ts}" sorts just before every
        # "SIGNAL#{ts}#{id}", so the upper bound excludes signals at exactly ``until``.
        low = "SIGNAL#" + ("" if filters.since is None else k.sortable_ms(epoch_ms(filters.since)))
        high = (
            "SIGNAL$"
            if filters.until is None
            else "SIGNAL#" + k.sortable_ms(epoch_ms(filters.until))
        )
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":pk": k.s(k.signals_pk(project_id)),
                ":low": k.s(low),
                ":high": k.s(high),
            },
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        conditions = []
        if filters.source is not None:
            conditions.append("signalSource = :source")
            params["ExpressionAttributeValues"][":source"] = k.s(filters.source)
        if filters.type is not None:
            conditions.append("signalType = :type")
            params["ExpressionAttributeValues"][":type"] = k.s(filters.type)
        if conditions:
            params["FilterExpression"] = " AND ".join(conditions)
        else:
            params["Limit"] = limit + 1  # without filters, one page is exactly enough
        if cursor is not None:
            after = _decode_cursor(cursor)
            if after < low:
                return SignalPage((), None)
            if after < high:
                params["ExclusiveStartKey"] = k.key(k.signals_pk(project_id), after)
        if high < low:  # ``until`` before ``since``: nothing, where DynamoDB refuses the BETWEEN
            return SignalPage((), None)
        found: list[Item] = []
        while len(found) <= limit:
            page = await self._db.call("query", TableName=self._db.table, **params)
            found.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        items = found[:limit]
        next_cursor = _encode_cursor(items[-1]["SK"]["S"]) if len(found) > limit else None
        return SignalPage(tuple(_stored(item) for item in items), next_cursor)

    async def counts(self, project_id: str, connector_id: str, *, now: datetime) -> SignalCounts:
        from ucf.stores.read_models import SignalCounts

        now_ms = epoch_ms(now)
        day_ago = epoch_ms(now - timedelta(days=1))
        week_ago = epoch_ms(now - timedelta(days=7))
        # week_ago < received <= now, as the key range [week_ago + 1, now + 1).
        items = await self._db.query_all(
            IndexName=GSI2,
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK BETWEEN :low AND :high",
            ExpressionAttributeValues={
                ":pk": k.s(k.received_gsi2pk(project_id, connector_id)),
                ":low": k.s(k.sortable_ms(week_ago + 1)),
                ":high": k.s(k.sortable_ms(now_ms + 1)),
            },
            ProjectionExpression="GSI2SK",
        )
        received = [k.ms_from_sortable(item["GSI2SK"]["S"].split("#", 1)[0]) for item in items]
        return SignalCounts(
            last_24h=sum(1 for ms in received if ms > day_ago), last_7d=len(received)
        )

    async def purge_expired(self, *, now: datetime) -> int:
        # DynamoDB deletes expired items itself (TTL on ``expiresAt``), without
        # spending write capacity; deleting them here would only cost more. This
        # maintenance call is, however, a good moment to finish interrupted ingests.
        await self.finish_interrupted(now=now)
        return 0


class DynamoOutbox:
    """One queue partition per sink, ordered by enqueue time; claims are conditional updates."""

    def __init__(self, client: DynamoClient, signals: DynamoSignalStore) -> None:
        self._db = client
        self._signals = signals
        self._requeue_seq = itertools.count()

    async def claim(
        self, sink: str, *, limit: int, lease: timedelta, now: datetime
    ) -> list[OutboxEntry]:
        if limit < 1:
            return []
        await self._signals.sweep_if_due(now)
        now_ms = epoch_ms(now)
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk",
            "FilterExpression": "availableMs <= :now",
            "ExpressionAttributeValues": {":pk": k.s(k.outbox_pk(sink)), ":now": k.n(now_ms)},
            "ConsistentRead": True,
            "Limit": max(limit, 25),
        }
        candidates: list[Item] = []
        while len(candidates) < limit:
            page = await self._db.call("query", TableName=self._db.table, **params)
            candidates.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        claimed = await self._db.concurrently(
            self._claim_one(sink, item, now_ms, epoch_ms(now + lease))
            for item in candidates[:limit]
        )
        return [entry for entry in claimed if entry is not None]

    async def _claim_one(
        self, sink: str, item: Item, now_ms: int, until_ms: int
    ) -> OutboxEntry | None:
        try:
            reply = await self._db.call(
                "update_item",
                TableName=self._db.table,
                Key=k.key(item["PK"]["S"], item["SK"]["S"]),
                UpdateExpression="SET availableMs = :until ADD attempts :one",
                # Still available: another claimer did not take it since we looked.
                ConditionExpression="availableMs <= :now",
                ExpressionAttributeValues={
                    ":until": k.n(until_ms),
                    ":one": k.n(1),
                    ":now": k.n(now_ms),
                },
                ReturnValues="ALL_NEW",
            )
        except ConditionFailed:
            return None
        return _entry(sink, reply["Attributes"])

    async def ack(self, sink: str, entry_ids: Sequence[str]) -> None:
        """One BatchWriteItem per 25 entries, not a DeleteItem each: a batch of 20 is one
        call instead of 20 (~1 ms of botocore CPU each; ``bench/coldstart.py``'s delivery).
        Unconditional, as the single deletes were: an entry delivered is done with,
        whoever claims it meanwhile (delivery is at least once)."""
        await self._db.batch_write(
            [{"DeleteRequest": {"Key": k.outbox_entry(sink, e)}} for e in dict.fromkeys(entry_ids)]
        )

    async def release(self, sink: str, entry_ids: Sequence[str], *, retry_at: datetime) -> int:
        async def give_back(entry_id: str) -> bool:
            try:
                await self._db.call(
                    "update_item",
                    TableName=self._db.table,
                    Key=k.outbox_entry(sink, entry_id),
                    UpdateExpression="SET availableMs = :at",
                    ConditionExpression="attribute_exists(PK)",
                    ExpressionAttributeValues={":at": k.n(epoch_ms(retry_at))},
                )
            except ConditionFailed:
                return False
            return True

        done = await self._db.concurrently(give_back(e) for e in dict.fromkeys(entry_ids))
        return sum(done)

    async def lag(self, sink: str, *, now: datetime) -> OutboxLag:
        from ucf.stores.read_models import OutboxLag

        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": k.s(k.outbox_pk(sink))},
            "ConsistentRead": True,
        }
        oldest = await self._db.call(
            "query", TableName=self._db.table, Limit=1, ProjectionExpression="enqueuedMs", **params
        )
        parked = await self._count(k.parked_pk(sink))
        if not oldest.get("Items"):
            return OutboxLag(pending=0, oldest_age_seconds=None, parked=parked)
        oldest_ms = int(oldest["Items"][0]["enqueuedMs"]["N"])
        return OutboxLag(
            pending=await self._count(k.outbox_pk(sink)),
            oldest_age_seconds=max(0.0, (epoch_ms(now) - oldest_ms) / 1000),
            parked=parked,
        )

    async def _count(self, pk: str) -> int:
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": k.s(pk)},
            "ConsistentRead": True,
        }
        count = 0
        while True:
            page = await self._db.call("query", TableName=self._db.table, Select="COUNT", **params)
            count += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return count
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def _items(self, pk: str, limit: int | None = None) -> list[Item]:
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": k.s(pk)},
            "ConsistentRead": True,
        }
        items: list[Item] = []
        while limit is None or len(items) < limit:
            if limit is not None:
                params["Limit"] = limit - len(items)
            page = await self._db.call("query", TableName=self._db.table, **params)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items

    async def park(self, sink: str, entry_ids: Sequence[str], *, reason: str, now: datetime) -> int:
        async def set_aside(entry_id: str) -> bool:
            found = await self._db.call(
                "get_item",
                TableName=self._db.table,
                Key=k.outbox_entry(sink, entry_id),
                ConsistentRead=True,
            )
            item = found.get("Item")
            if item is None:
                return False
            # The copy first: a crash in between leaves the entry in the queue (it is
            # refused and parked again), never in neither place.
            await self._db.call(
                "put_item",
                TableName=self._db.table,
                Item={
                    **item,
                    **k.parked_entry(sink, entry_id),
                    "reason": k.s(reason),
                    "parkedMs": k.n(epoch_ms(now)),
                },
            )
            await self._db.call(
                "delete_item", TableName=self._db.table, Key=k.outbox_entry(sink, entry_id)
            )
            return True

        done = await self._db.concurrently(set_aside(e) for e in dict.fromkeys(entry_ids))
        return sum(done)

    async def parked(self, sink: str, *, limit: int) -> list[ParkedEntry]:
        from ucf.stores.read_models import ParkedEntry

        if limit < 1:
            return []
        return [
            ParkedEntry(
                entry=_entry(sink, item),
                reason=item["reason"]["S"],
                parked_at=from_epoch_ms(int(item["parkedMs"]["N"])),
            )
            for item in await self._items(k.parked_pk(sink), limit)
        ]

    async def requeue_parked(self, sink: str, *, now: datetime) -> int:
        now_ms = epoch_ms(now)

        async def requeue(item: Item) -> bool:
            # A new entry id at ``now``: requeued signals go to the back of the queue.
            entry_id = k.outbox_entry_id(now_ms, next(self._requeue_seq), item["dedupKey"]["S"])
            queued = {
                key: value for key, value in item.items() if key not in ("reason", "parkedMs")
            }
            queued.update(
                {
                    **k.outbox_entry(sink, entry_id),
                    "availableMs": k.n(now_ms),
                    "attempts": k.n(0),
                }
            )
            await self._db.call("put_item", TableName=self._db.table, Item=queued)
            await self._db.call(
                "delete_item", TableName=self._db.table, Key=k.key(item["PK"]["S"], item["SK"]["S"])
            )
            return True

        items = await self._items(k.parked_pk(sink))
        # One at a time, in order, so the queue keeps the parked entries' order.
        done = 0
        for item in items:
            done += await requeue(item)
        return done
