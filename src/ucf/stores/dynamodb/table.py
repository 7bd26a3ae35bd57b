"""The single table: the brief's key schema (PK/SK, GSI2), created idempotently.

Every item type of the store lives in this one table, addressed by the key
patterns in ``keys.py`` and documented in ``docs/storage.md``. Only string keys;
one global secondary index, ``GSI2`` (projection ALL), which the brief defines
for "all instances of a connector" and which the outbox reuses as a sparse
index; and a TTL attribute, ``expiresAt`` (epoch seconds), on expiring items.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ucf.core.records import datarecord
from ucf.stores.dynamodb.client import DynamoClient, DynamoError
from ucf.stores.errors import StoreCorrupt, StoreNotInitialised, StoreUnavailable

log = logging.getLogger(__name__)

GSI2 = "GSI2"
TTL_ATTRIBUTE = "expiresAt"
ACTIVE_TIMEOUT_S = 300.0

_KEY_SCHEMA = [
    {"AttributeName": "PK", "KeyType": "HASH"},
    {"AttributeName": "SK", "KeyType": "RANGE"},
]
_GSI2_KEY_SCHEMA = [
    {"AttributeName": "GSI2PK", "KeyType": "HASH"},
    {"AttributeName": "GSI2SK", "KeyType": "RANGE"},
]


@datarecord(slots=False)
class TableStatus:
    """What ``init`` found or did, for the CLI to report."""

    created: bool
    ttl_enabled: bool
    ttl_changed: bool
    ttl_note: str


async def ensure_table(client: DynamoClient, *, timeout_s: float = ACTIVE_TIMEOUT_S) -> TableStatus:
    """Create the table (GSI2, on-demand billing) if absent, wait until usable, enable TTL.

    Safe to run any number of times and from several processes at once: a
    concurrent creator's ``ResourceInUseException`` just means "already there".
    An existing table is only described (a Lambda role needs no CreateTable
    permission), and one with a different key schema is refused, never altered.
    """
    created = False
    try:
        await client.call("describe_table", TableName=client.table)
    except StoreNotInitialised:
        created = await _create(client)
    description = await _wait_active(client, timeout_s)
    _check_schema(client, description)
    enabled, changed, note = await _enable_ttl(client)
    return TableStatus(created=created, ttl_enabled=enabled, ttl_changed=changed, ttl_note=note)


async def _create(client: DynamoClient) -> bool:
    try:
        await client.call(
            "create_table",
            TableName=client.table,
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"}
                for name in ("PK", "SK", "GSI2PK", "GSI2SK")
            ],
            KeySchema=_KEY_SCHEMA,
            GlobalSecondaryIndexes=[
                {
                    "IndexName": GSI2,
                    "KeySchema": _GSI2_KEY_SCHEMA,
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except DynamoError as exc:
        if exc.code != "ResourceInUseException":
            raise
        return False  # another process created it a moment ago
    return True


async def _wait_active(client: DynamoClient, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    pause = 0.05
    while True:
        table = (await client.call("describe_table", TableName=client.table))["Table"]
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table.get("TableStatus") == "ACTIVE" and all(
            index.get("IndexStatus", "ACTIVE") == "ACTIVE" for index in indexes
        ):
            return dict(table)
        if time.monotonic() > deadline:
            raise StoreUnavailable(
                f"the DynamoDB table '{client.table}' is still {table.get('TableStatus')} "
                f"after {timeout_s:.0f} s",
                fix="wait for it to become ACTIVE in the AWS console, then run `ucf store init` again",
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


def _check_schema(client: DynamoClient, table: dict[str, Any]) -> None:
    index = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}.get(GSI2)
    if (
        table.get("KeySchema") != _KEY_SCHEMA
        or index is None
        or index["KeySchema"] != _GSI2_KEY_SCHEMA
        or index.get("Projection", {}).get("ProjectionType") != "ALL"
    ):
        raise StoreCorrupt(
            f"the DynamoDB table '{client.table}' exists but is not a ucf table "
            "(it needs string keys PK/SK and an index GSI2 on GSI2PK/GSI2SK projecting ALL)",
            fix="point the store URL at another table name; ucf never alters a foreign table",
        )


async def _enable_ttl(client: DynamoClient) -> tuple[bool, bool, str]:
    """Turn on TTL for ``expiresAt``; report honestly when the server cannot."""
    try:
        current = await client.call("describe_time_to_live", TableName=client.table)
        ttl = current.get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
            if ttl.get("AttributeName") == TTL_ATTRIBUTE:
                return True, False, f"TTL on {TTL_ATTRIBUTE} is enabled"
            return (
                False,
                False,
                (
                    f"TTL is enabled on '{ttl.get('AttributeName')}', not '{TTL_ATTRIBUTE}': "
                    "expired signals are hidden from reads but not deleted by DynamoDB"
                ),
            )
        await client.call(
            "update_time_to_live",
            TableName=client.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
        return True, True, f"TTL on {TTL_ATTRIBUTE} enabled"
    except DynamoError as exc:
        if exc.code != "UnknownOperationException":
            raise
        # dynalite (the local test server) implements neither UpdateTimeToLive nor
        # TTL deletion: there, expired signals simply stay.
        note = (
            "this DynamoDB endpoint does not support TTL (dynalite?): expired signals "
            "will not be deleted"
        )
        log.warning(note)
        return False, False, note
