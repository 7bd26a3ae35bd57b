"""Checkpoints, leases, token buckets, records and secret leases: every decision is one conditional write.

DynamoDB evaluates a write's condition and applies it atomically on the item,
so racing workers (or Lambdas) serialise on the item itself: one CAS wins, one
acquirer owns a lease, and a bucket never grants more than it holds.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ucf.stores.dynamodb import keys as k
from ucf.stores.dynamodb.client import ConditionFailed, DynamoClient
from ucf.stores.dynamodb.table import GSI2
from ucf.stores.errors import StoreUnavailable
from ucf.stores.models import (
    DEFAULT_CHECKPOINT_KEY,
    BucketState,
    Checkpoint,
    Lease,
    RateDecision,
    epoch_ms,
    from_epoch_ms,
    full_at,
    give_tokens,
    take_tokens,
    text_time,
    utc,
)


class DynamoCheckpointStore:
    def __init__(self, client: DynamoClient) -> None:
        self._db = client

    async def get(
        self, project_id: str, connector_id: str, key: str = DEFAULT_CHECKPOINT_KEY
    ) -> Checkpoint:
        reply = await self._db.call(
            "get_item",
            TableName=self._db.table,
            Key=k.checkpoint(project_id, connector_id, key),
            ConsistentRead=True,
        )
        item = reply.get("Item")
        if item is None:
            return Checkpoint(None, 0)
        return Checkpoint(
            json.loads(item["value"]["S"]),
            int(item["version"]["N"]),
            datetime.fromisoformat(item["updatedAt"]["S"]),
        )

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
        body = k.s(k.dump_json(value, what="checkpoint value"))
        stamp = k.s(text_time(now))
        item_key = k.checkpoint(project_id, connector_id, key)
        try:
            if expected_version == 0:
                await self._db.call(
                    "put_item",
                    TableName=self._db.table,
                    Item={**item_key, "value": body, "version": k.n(1), "updatedAt": stamp},
                    ConditionExpression="attribute_not_exists(PK)",
                )
            else:
                await self._db.call(
                    "update_item",
                    TableName=self._db.table,
                    Key=item_key,
                    UpdateExpression="SET #v = :value, version = :next, updatedAt = :at",
                    ConditionExpression="version = :expected",
                    ExpressionAttributeNames={"#v": "value"},  # VALUE is a reserved word
                    ExpressionAttributeValues={
                        ":value": body,
                        ":next": k.n(expected_version + 1),
                        ":at": stamp,
                        ":expected": k.n(expected_version),
                    },
                )
        except ConditionFailed:
            return False
        return True

    async def delete(self, project_id: str, connector_id: str) -> None:
        items = await self._db.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={
                ":pk": k.s(k.project_pk(project_id)),
                ":prefix": k.s(k.checkpoint_prefix(connector_id)),
            },
            ProjectionExpression="PK, SK",
            ConsistentRead=True,
        )
        await self._db.batch_write([{"DeleteRequest": {"Key": item}} for item in items])


class DynamoLeaseStore:
    def __init__(self, client: DynamoClient) -> None:
        self._db = client

    async def _conditional(self, operation: str, **params: Any) -> bool:
        try:
            await self._db.call(operation, TableName=self._db.table, **params)
        except ConditionFailed:
            return False
        return True

    async def acquire(self, name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        until_ms = epoch_ms(now + ttl)
        return await self._conditional(
            "update_item",
            Key=k.lease(name),
            UpdateExpression="SET leaseOwner = :owner, leaseUntilMs = :until, expiresAt = :ttl",
            ConditionExpression=(
                "attribute_not_exists(PK) OR leaseUntilMs <= :now OR leaseOwner = :owner"
            ),
            ExpressionAttributeValues={
                ":owner": k.s(owner),
                ":until": k.n(until_ms),
                ":now": k.n(epoch_ms(now)),
                # TTL tidies leases nobody released; an expired lease is free anyway.
                ":ttl": k.n(math.ceil(until_ms / 1000)),
            },
        )

    async def renew(self, name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        until_ms = epoch_ms(now + ttl)
        return await self._conditional(
            "update_item",
            Key=k.lease(name),
            UpdateExpression="SET leaseUntilMs = :until, expiresAt = :ttl",
            ConditionExpression="leaseOwner = :owner",
            ExpressionAttributeValues={
                ":owner": k.s(owner),
                ":until": k.n(until_ms),
                ":ttl": k.n(math.ceil(until_ms / 1000)),
            },
        )

    async def release(self, name: str, owner: str) -> bool:
        return await self._conditional(
            "delete_item",
            Key=k.lease(name),
            ConditionExpression="leaseOwner = :owner",
            ExpressionAttributeValues={":owner": k.s(owner)},
        )

    async def get(self, name: str, *, now: datetime) -> Lease | None:
        reply = await self._db.call(
            "get_item", TableName=self._db.table, Key=k.lease(name), ConsistentRead=True
        )
        item = reply.get("Item")
        if item is None or int(item["leaseUntilMs"]["N"]) <= epoch_ms(now):
            return None
        return Lease(name, item["leaseOwner"]["S"], from_epoch_ms(int(item["leaseUntilMs"]["N"])))


_Answer = TypeVar("_Answer")


class _Contended(Exception):
    """Every attempt of a bucket's conditional write lost to another writer."""


class DynamoRateLimitStore:
    """Token buckets as read, decide, conditional write on the bucket's revision.

    A single update expression cannot refill by elapsed time, so each decision
    reads the bucket and writes the new state on condition that its revision is
    unchanged; a racing writer makes us re-read and decide again. The retries
    are bounded: under extreme contention the answer is "not now", never a
    grant the bucket did not have; a give-back then raises
    :class:`~ucf.stores.errors.StoreUnavailable`, so the caller knows the tokens
    did not go back (it gave up silently before: a token lost without a word).
    """

    ATTEMPTS = 32

    def __init__(self, client: DynamoClient) -> None:
        self._db = client

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

        def take(stored: BucketState | None) -> tuple[RateDecision, BucketState | None]:
            decision, bucket = take_tokens(
                stored,
                capacity=capacity,
                refill_per_second=refill_per_second,
                now_s=now_s,
                cost=cost,
            )
            return decision, bucket if decision.allowed else None  # nothing taken: no write

        try:
            return await self._change(bucket_key, capacity, refill_per_second, take)
        except _Contended:
            return RateDecision(False, 0.05)

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

        def give(stored: BucketState | None) -> tuple[None, BucketState | None]:
            # No bucket (None, nothing written): it is full already.
            return None, give_tokens(
                stored,
                capacity=capacity,
                refill_per_second=refill_per_second,
                now_s=now_s,
                tokens=tokens,
            )

        try:
            await self._change(bucket_key, capacity, refill_per_second, give)
        except _Contended:
            raise StoreUnavailable(
                f"the rate-limit bucket was changed by other writers {self.ATTEMPTS} times "
                "in a row; its tokens were not given back"
            ) from None

    async def _change(
        self,
        bucket_key: str,
        capacity: float,
        refill_per_second: float,
        change: Callable[[BucketState | None], tuple[_Answer, BucketState | None]],
    ) -> _Answer:
        """Read the bucket, ``change`` it (its answer, and the bucket to write or None for
        no write), write on condition that its revision is unchanged; a racing writer
        makes it read and change again, ``ATTEMPTS`` times at most (then :class:`_Contended`)."""
        item_key = k.rate_bucket(bucket_key)
        for attempt in range(self.ATTEMPTS):
            reply = await self._db.call(
                "get_item", TableName=self._db.table, Key=item_key, ConsistentRead=True
            )
            item = reply.get("Item")
            stored = (
                None
                if item is None
                else BucketState(float(item["tokens"]["S"]), float(item["updatedS"]["S"]))
            )
            answer, bucket = change(stored)
            if bucket is None:
                return answer
            revision = 0 if item is None else int(item["rev"]["N"])
            state: dict[str, Any] = {
                **item_key,
                "tokens": k.s(repr(bucket.tokens)),
                "updatedS": k.s(repr(bucket.updated_s)),
                "rev": k.n(revision + 1),
            }
            full = full_at(bucket, capacity=capacity, refill_per_second=refill_per_second)
            if full != math.inf:  # TTL drops it a minute after it is full again
                state["expiresAt"] = k.n(math.ceil(full) + 60)
            try:
                await self._db.call(
                    "put_item",
                    TableName=self._db.table,
                    Item=state,
                    ConditionExpression=(
                        "attribute_not_exists(PK)" if item is None else "rev = :rev"
                    ),
                    **(
                        {}
                        if item is None
                        else {"ExpressionAttributeValues": {":rev": k.n(revision)}}
                    ),
                )
            except ConditionFailed:
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            return answer
        raise _Contended


class DynamoRecordStore:
    """Implements :class:`~ucf.stores.protocols.KeyValueStore`. ``take`` is one
    ``DeleteItem`` returning the old item, so exactly one caller gets it. TTL
    deletion is lazy (up to days late), so expiry is also checked on read."""

    def __init__(self, client: DynamoClient) -> None:
        self._db = client

    async def put(
        self, key: str, value: dict[str, Any], *, expires_at: datetime | None = None
    ) -> None:
        item: dict[str, Any] = {**k.record(key), "value": k.s(k.dump_json(value, what="record"))}
        if expires_at is not None:
            item["expiresAt"] = k.n(int(utc(expires_at).timestamp()))
        await self._db.call("put_item", TableName=self._db.table, Item=item)

    async def get(self, key: str, *, now: datetime) -> dict[str, Any] | None:
        reply = await self._db.call(
            "get_item", TableName=self._db.table, Key=k.record(key), ConsistentRead=True
        )
        return _live_record(reply.get("Item"), now)

    async def take(self, key: str, *, now: datetime) -> dict[str, Any] | None:
        reply = await self._db.call(
            "delete_item", TableName=self._db.table, Key=k.record(key), ReturnValues="ALL_OLD"
        )
        return _live_record(reply.get("Attributes"), now)

    async def delete(self, key: str) -> None:
        await self._db.call("delete_item", TableName=self._db.table, Key=k.record(key))


class DynamoSecretLeaseStore:
    """Implements :class:`~ucf.stores.protocols.SecretLeaseStore`: an item per ref, in
    GSI2 under ``SECRET_LEASES`` by its time, so finding the due ones is one Query (one
    read when none is due) and never a scan."""

    def __init__(self, client: DynamoClient) -> None:
        self._db = client

    async def hold(self, ref: str, *, until: datetime) -> None:
        until_ms = epoch_ms(until)
        item = {
            **k.secret_lease(ref),
            "secretRef": k.s(ref),
            "untilMs": k.n(until_ms),
            "GSI2PK": k.s(k.SECRET_LEASES_GSI2PK),
            "GSI2SK": k.s(f"{k.sortable_ms(until_ms)}#{k.part(ref)}"),
        }
        await self._db.call("put_item", TableName=self._db.table, Item=item)

    async def due(self, *, now: datetime, limit: int) -> list[str]:
        reply = await self._db.call(
            "query",
            TableName=self._db.table,
            IndexName=GSI2,
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK < :after",
            ExpressionAttributeValues={
                ":pk": k.s(k.SECRET_LEASES_GSI2PK),
                # Every time up to ``now`` included: "{ms}#…" sorts before "{ms + 1}".
                ":after": k.s(k.sortable_ms(epoch_ms(now) + 1)),
            },
            ProjectionExpression="secretRef",
            Limit=limit,
        )
        return [item["secretRef"]["S"] for item in reply.get("Items", [])]

    async def release(self, ref: str) -> None:
        await self._db.call("delete_item", TableName=self._db.table, Key=k.secret_lease(ref))


def _live_record(item: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    if item is None:
        return None
    expires = item.get("expiresAt")
    if expires is not None and int(expires["N"]) <= int(utc(now).timestamp()):
        return None
    value = json.loads(item["value"]["S"])
    return value if isinstance(value, dict) else None
