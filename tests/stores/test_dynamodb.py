"""What only the DynamoDB store has: its URL, its table, its faults, its item layout.

Behaviour shared with SQLite is in the conformance suite (which runs here on
dynalite too). These tests talk to a real dynalite; faults are produced at the
wire by :class:`FaultProxy`, never by patching the store.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.stores.builders import T0, signal_write
from tests.stores.dynalite import FaultProxy, dynamodb_url, free_port, unique_table_name
from ucf.stores import (
    InvalidCursor,
    InvalidRecord,
    StoreConfigError,
    StoreCorrupt,
    StoreNotInitialised,
    StoreUnavailable,
    open_store,
)
from ucf.stores.dynamodb import open_dynamodb_store, parse_dynamodb_url
from ucf.stores.dynamodb.client import DynamoClient, DynamoTarget, RetryPolicy
from ucf.stores.errors import StoreError
from ucf.stores.models import DEFAULT_SIGNAL_RETENTION, SignalWrite, StoreOptions
from ucf.stores.protocols import Store

FAST_RETRY = RetryPolicy(attempts=4, base_s=0.001, cap_s=0.005)


@pytest.fixture
def table() -> str:
    return unique_table_name()


@pytest.fixture
def raw(dynalite_endpoint: str) -> Any:
    """A plain boto3 client, to look at the table the way another system would."""
    return boto3.client("dynamodb", endpoint_url=dynalite_endpoint, region_name="us-east-1")


@pytest.fixture
async def store(dynalite_endpoint: str, table: str) -> AsyncIterator[Store]:
    async with open_store(dynamodb_url(dynalite_endpoint, table)) as opened:
        yield opened


@pytest.fixture
def proxy(dynalite_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(dynalite_endpoint) as running:
        yield running


def _via(proxy: FaultProxy, table: str) -> Store:
    return open_dynamodb_store(dynamodb_url(proxy.url, table), StoreOptions(), retry=FAST_RETRY)


# --- the URL -------------------------------------------------------------------------


def test_store_url_names_table_region_and_endpoint() -> None:
    target = parse_dynamodb_url(
        "dynamodb://ucf-prod?region=eu-west-1&endpoint=http://127.0.0.1:8000"
    )
    assert (target.table, target.region, target.endpoint) == (
        "ucf-prod",
        "eu-west-1",
        "http://127.0.0.1:8000",
    )
    assert parse_dynamodb_url("dynamodb://ucf?region=eu-west-1").endpoint is None


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("dynamodb://x?region=eu-west-1", "table 'x'"),
        ("dynamodb://ucf?region=eu-west-1&colour=blue", "unknown parameter(s) colour"),
        ("dynamodb://ucf?region=eu-west-1&endpoint=localhost:8000", "not an http(s) URL"),
        ("dynamodb://ucf?region=", "empty or twice"),
        ("dynamodb://ucf/extra?region=eu-west-1", "path or fragment"),
    ],
)
def test_a_bad_dynamodb_url_says_what_is_wrong_and_how_to_write_it(
    url: str, complaint: str
) -> None:
    with pytest.raises(StoreConfigError) as caught:
        open_store(url)
    assert complaint in caught.value.problem
    assert caught.value.fix, "every refusal says how to write it instead"


def test_a_url_without_any_region_asks_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(StoreConfigError, match=r"no AWS region.*\?region="):
        open_store("dynamodb://ucf-table")


# --- the table -----------------------------------------------------------------------


async def test_init_creates_the_briefs_table_once_and_is_idempotent(
    dynalite_endpoint: str, table: str, raw: Any
) -> None:
    url = dynamodb_url(dynalite_endpoint, table)
    store = open_store(url)
    try:
        first = await store.init()
        second = await store.init()
    finally:
        await store.close()
    assert first.backend == "dynamodb"
    assert any("created DynamoDB table" in action for action in first.actions)
    assert not second.changed, "a second init finds everything in place and does nothing"

    described = raw.describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]} == {
        "PK": "S",
        "SK": "S",
        "GSI2PK": "S",
        "GSI2SK": "S",
    }
    (gsi2,) = described["GlobalSecondaryIndexes"]
    assert gsi2["IndexName"] == "GSI2"
    assert gsi2["KeySchema"] == [
        {"AttributeName": "GSI2PK", "KeyType": "HASH"},
        {"AttributeName": "GSI2SK", "KeyType": "RANGE"},
    ]
    assert gsi2["Projection"] == {"ProjectionType": "ALL"}


async def test_init_says_plainly_when_the_server_cannot_expire_signals(
    dynalite_endpoint: str, table: str, raw: Any
) -> None:
    # dynalite implements neither UpdateTimeToLive nor TTL deletion; AWS does both.
    # The store must not pretend: init reports it, and the table really has no TTL.
    async with open_store(dynamodb_url(dynalite_endpoint, table)) as store:
        report = await store.init()
    created = await _fresh_init_report(dynalite_endpoint)
    assert any("does not support TTL" in action for action in created.actions)
    assert not report.changed
    ttl = raw.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "DISABLED"


async def _fresh_init_report(endpoint: str) -> Any:
    store = open_store(dynamodb_url(endpoint, unique_table_name()))
    try:
        return await store.init()
    finally:
        await store.close()


async def test_processes_initialising_one_table_at_once_all_succeed(
    dynalite_endpoint: str, table: str
) -> None:
    stores = [open_store(dynamodb_url(dynalite_endpoint, table)) for _ in range(4)]
    try:
        reports = await asyncio.gather(*(s.init() for s in stores))
    finally:
        for s in stores:
            await s.close()
    assert sum(any("created" in a for a in r.actions) for r in reports) == 1


_PK_SK = [
    {"AttributeName": "PK", "KeyType": "HASH"},
    {"AttributeName": "SK", "KeyType": "RANGE"},
]
FOREIGN_TABLES: dict[str, dict[str, Any]] = {
    "other keys": {
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
    },
    "GSI2 projecting keys only": {
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("PK", "SK", "GSI2PK", "GSI2SK")
        ],
        "KeySchema": _PK_SK,
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "GSI2",
                "KeySchema": [
                    {"AttributeName": "GSI2PK", "KeyType": "HASH"},
                    {"AttributeName": "GSI2SK", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    },
}


@pytest.mark.parametrize("shape", list(FOREIGN_TABLES))
async def test_a_foreign_table_of_the_same_name_is_refused_not_altered(
    dynalite_endpoint: str, table: str, raw: Any, shape: str
) -> None:
    raw.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **FOREIGN_TABLES[shape])
    before = raw.describe_table(TableName=table)["Table"]
    store = open_store(dynamodb_url(dynalite_endpoint, table))
    try:
        with pytest.raises(StoreCorrupt, match=r"is not a ucf table.*another table name"):
            await store.init()
    finally:
        await store.close()
    after = raw.describe_table(TableName=table)["Table"]
    assert after["KeySchema"] == before["KeySchema"]
    assert _index_shapes(after) == _index_shapes(before)


def _index_shapes(described: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """What ucf could have altered in a table's indexes (their status moves on its own:
    dynalite builds a new index in the background, CREATING then ACTIVE)."""
    return [
        (index["IndexName"], index["KeySchema"], index["Projection"])
        for index in described.get("GlobalSecondaryIndexes") or []
    ]


async def test_a_missing_table_tells_you_to_run_store_init(
    dynalite_endpoint: str, table: str
) -> None:
    store = open_store(dynamodb_url(dynalite_endpoint, table))  # no init()
    try:
        with pytest.raises(StoreNotInitialised) as caught:
            await store.descriptors.get("jira")
    finally:
        await store.close()
    message = str(caught.value)
    assert f"table '{table}' does not exist" in message
    assert f"ucf store init --store 'dynamodb://{table}?region=us-east-1&endpoint=" in message
    assert "\n" not in message


@pytest.mark.serial  # asserts a time bound: `make test` runs it alone
async def test_an_unreachable_endpoint_fails_fast_with_the_endpoint_and_the_fix() -> None:
    url = dynamodb_url(f"http://127.0.0.1:{free_port()}", unique_table_name())
    store = open_store(url)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.init()
    finally:
        await store.close()
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "cannot reach DynamoDB at http://127.0.0.1:" in message
    assert "check the endpoint and region in the store URL" in message


async def test_missing_aws_credentials_are_named_as_the_problem(
    dynalite_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store = open_store(dynamodb_url(dynalite_endpoint, unique_table_name()))
    try:
        with pytest.raises(StoreUnavailable, match=r"no AWS credentials.*set AWS_PROFILE"):
            await store.init()
    finally:
        await store.close()


async def test_refused_credentials_point_at_credentials_and_iam(
    proxy: FaultProxy, table: str
) -> None:
    proxy.inject("DescribeTable", "UnrecognizedClientException")
    store = _via(proxy, table)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.init()
    finally:
        await store.close()
    assert "refused the request (UnrecognizedClientException)" in str(caught.value)
    assert caught.value.fix == "check the AWS credentials and the IAM permissions on the table"


def test_an_endpoint_with_credentials_in_it_never_shows_them() -> None:
    target = parse_dynamodb_url(
        "dynamodb://ucf?region=us-east-1&endpoint=http://admin:hunter2@127.0.0.1:9"
    )
    assert "hunter2" not in target.where
    assert target.where == "http://127.0.0.1:9"


# --- faults at the wire ----------------------------------------------------------------


@pytest.mark.parametrize(
    "throttling", [FaultProxy.THROTTLE, FaultProxy.OVER_CAPACITY, FaultProxy.OVER_LIMIT]
)
async def test_throttled_writes_are_retried_until_they_go_through(
    proxy: FaultProxy, table: str, throttling: str
) -> None:
    async with _via(proxy, table) as store:
        proxy.inject("PutItem", throttling, times=3)
        before = proxy.seen["PutItem"]
        result = await store.signals.ingest([signal_write("1")])
        assert result.inserted == (True,)
        assert proxy.seen["PutItem"] - before == 4, "three throttled attempts, then the real one"
        assert (await store.signals.query("p1")).items[0].signal["id"] == signal_write(
            "1"
        ).signal_id


async def test_throttling_that_does_not_stop_gives_up_after_a_bounded_number_of_attempts(
    proxy: FaultProxy, table: str
) -> None:
    async with _via(proxy, table) as store:
        proxy.inject("GetItem", FaultProxy.THROTTLE, times=100)
        before = proxy.seen["GetItem"]
        with pytest.raises(StoreUnavailable, match=r"kept throttling GetItem .*after 4 attempts"):
            await store.descriptors.get("jira")
        assert proxy.seen["GetItem"] - before == FAST_RETRY.attempts


async def test_a_give_back_that_loses_every_conditional_write_says_so(
    proxy: FaultProxy, table: str
) -> None:
    """Every conditional write of a give-back lost to another writer, as under extreme
    contention: after 32 tries it gave up silently, the token lost without a word. It
    raises the store's error now (the gateway logs and counts it); a take under the same
    contention is still a refusal, never a grant, and the bucket is unharmed."""
    async with _via(proxy, table) as store:
        rates = store.rate_limits
        take = functools.partial(rates.try_acquire, "b", capacity=2, refill_per_second=1 / 60)
        assert (await take(now=T0)).allowed
        proxy.inject("PutItem", "ConditionalCheckFailedException", times=32)
        before = proxy.seen["PutItem"]
        with pytest.raises(StoreUnavailable, match="changed by other writers 32 times in a row"):
            await rates.give_back("b", capacity=2, refill_per_second=1 / 60, now=T0)
        assert proxy.seen["PutItem"] - before == 32
        proxy.inject("PutItem", "ConditionalCheckFailedException", times=32)
        assert not (await take(now=T0)).allowed
        assert [(await take(now=T0)).allowed for _ in range(2)] == [True, False]


async def test_a_malformed_request_is_the_stores_error_and_a_misspelt_one_is_never_sent(
    proxy: FaultProxy, table: str
) -> None:
    """botocore does not check parameters for the store (the cost of its walk on every
    call): DynamoDB refuses a malformed value as a typed store error, and a misspelt
    parameter (a condition that would be lost) still stops before anything is sent."""
    item = {"PK": {"S": "DEDUP#1"}, "SK": {"S": "DEDUP"}}
    client = DynamoClient(DynamoTarget(table, "us-east-1", proxy.url), retry=FAST_RETRY)
    try:
        with pytest.raises(StoreError, match="DynamoDB PutItem failed"):
            await client.call("put_item", TableName=table, Item={**item, "n": {"N": 5}})
        sent = proxy.seen["PutItem"]
        with pytest.raises(KeyError, match="ConditionExpresion"):
            await client.call(
                "put_item",
                TableName=table,
                Item=item,
                ConditionExpresion="attribute_not_exists(PK)",
            )
    finally:
        client.close()
    assert proxy.seen["PutItem"] == sent == 1


async def test_batch_items_dynamodb_leaves_unprocessed_are_sent_again(
    proxy: FaultProxy, table: str
) -> None:
    async with _via(proxy, table) as store:
        proxy.inject("BatchWriteItem", FaultProxy.UNPROCESSED, times=2)
        batch = [signal_write(str(i)) for i in range(30)]
        result = await store.signals.ingest(batch, sinks=["http"])
        assert result.inserted_count == 30
        assert len((await store.signals.query("p1", limit=100)).items) == 30
        entries = await store.outbox.claim("http", limit=100, lease=timedelta(minutes=1), now=T0)
        assert len(entries) == 30


async def test_acking_a_batch_is_one_call_per_25_entries_and_survives_unprocessed_items(
    proxy: FaultProxy, table: str
) -> None:
    """A delivered batch of 30 is acked in two BatchWriteItem calls, not 30 DeleteItems
    (each call is a round trip and ~1 ms of botocore CPU on a Lambda cold start)."""
    async with _via(proxy, table) as store:
        await store.signals.ingest([signal_write(str(i)) for i in range(30)], sinks=["http"])
        entries = await store.outbox.claim("http", limit=100, lease=timedelta(minutes=1), now=T0)
        assert len(entries) == 30
        proxy.inject("BatchWriteItem", FaultProxy.UNPROCESSED, times=1)
        batches, deletes = proxy.seen["BatchWriteItem"], proxy.seen["DeleteItem"]
        await store.outbox.ack("http", [e.entry_id for e in entries])
        assert proxy.seen["DeleteItem"] == deletes
        assert proxy.seen["BatchWriteItem"] - batches == 3, "25 + 5, and the unprocessed again"
        assert (await store.outbox.lag("http", now=T0)).pending == 0
        later = await store.outbox.claim(
            "http", limit=100, lease=timedelta(minutes=1), now=T0 + timedelta(hours=1)
        )
        assert later == []


async def test_an_ingest_cut_short_is_finished_by_the_redelivery_and_stored_once(
    proxy: FaultProxy, dynalite_endpoint: str, table: str
) -> None:
    write = signal_write("7")
    async with _via(proxy, table) as store:
        proxy.inject("BatchWriteItem", FaultProxy.DISCONNECT)
        with pytest.raises(StoreUnavailable):
            await store.signals.ingest([write], sinks=["http"])
        # Committed but not finished: nobody sees half of it.
        assert await store.signals.get("p1", write.signal_id) is None
        assert (await store.signals.query("p1")).items == ()
        assert await store.outbox.claim("http", limit=10, lease=timedelta(minutes=1), now=T0) == []

        # The source delivers again (the webhook got no 2xx / the checkpoint did not move).
        again = await store.signals.ingest([write], sinks=["http"])
        assert again.inserted == (False,), "the first delivery was committed: this is a duplicate"
        stored = await store.signals.get("p1", write.signal_id)
        assert stored is not None
        assert stored.signal == dict(write.signal)
        entries = await store.outbox.claim(
            "http", limit=10, lease=timedelta(minutes=1), now=T0 + timedelta(seconds=1)
        )
        assert [e.signal["id"] for e in entries] == [write.signal_id]


async def test_an_ingest_cut_short_and_never_redelivered_is_finished_by_the_outbox_sweep(
    proxy: FaultProxy, dynalite_endpoint: str, table: str
) -> None:
    write = signal_write("8", received_at=T0)
    async with _via(proxy, table) as store:
        proxy.inject("BatchWriteItem", FaultProxy.DISCONNECT)
        with pytest.raises(StoreUnavailable):
            await store.signals.ingest([write], sinks=["http"])
    # A different worker, later: the delivery loop's claim finds the orphan.
    async with open_store(dynamodb_url(dynalite_endpoint, table)) as other:
        entries = await other.outbox.claim(
            "http", limit=10, lease=timedelta(minutes=1), now=T0 + timedelta(minutes=5)
        )
        assert [e.signal["id"] for e in entries] == [write.signal_id]
        assert await other.signals.get("p1", write.signal_id) is not None
        assert (await other.signals.ingest([write], sinks=["http"])).inserted == (False,)


# --- what is in the table --------------------------------------------------------------


async def test_registry_items_use_the_briefs_keys_and_attributes(
    store: Store, table: str, raw: Any
) -> None:
    await store.descriptors.register({"id": "jira", "version": "1.2.0"}, now=T0, built_in=True)
    await store.instances.create(
        "proj-1",
        "jira",
        config={"baseUrl": "https://acme.atlassian.net"},
        now=T0,
        credential_secret_ref="arn:aws:secretsmanager:eu-west-1:1:secret:jira",
    )
    descriptor = raw.get_item(
        TableName=table, Key={"PK": {"S": "CONNECTOR#jira"}, "SK": {"S": "DESCRIPTOR"}}
    )
    assert descriptor["Item"]["connectorId"] == {"S": "jira"}
    assert descriptor["Item"]["builtIn"] == {"BOOL": True}
    assert descriptor["Item"]["createdAt"]["S"].startswith("2025-03-01T12:00:00")

    instance = raw.get_item(
        TableName=table,
        Key={"PK": {"S": "PROJECT#proj-1"}, "SK": {"S": "CONNECTOR_INSTANCE#jira"}},
    )["Item"]
    assert instance["GSI2PK"] == {"S": "CONNECTOR#jira"}
    assert instance["GSI2SK"] == {"S": "PROJECT#proj-1"}
    assert instance["credentialSecretArn"] == {
        "S": "arn:aws:secretsmanager:eu-west-1:1:secret:jira"
    }
    assert instance["enabled"] == {"BOOL": True}
    assert instance["consecutiveFailures"] == {"N": "0"}


async def test_stored_signals_carry_the_ttl_attribute_at_receive_time_plus_retention(
    store: Store, table: str, raw: Any
) -> None:
    write = signal_write("9", received_at=T0)
    await store.signals.ingest([write], sinks=["http"])
    items = raw.scan(TableName=table)["Items"]
    expected = int((T0 + DEFAULT_SIGNAL_RETENTION).timestamp())
    signal_items = [
        i for i in items if i["PK"]["S"].startswith(("DEDUP#", "PROJECT#p1#", "OUTBOX#"))
    ]
    assert len(signal_items) == 4, "dedup, signal, id pointer, one outbox entry"
    assert {i["expiresAt"]["N"] for i in signal_items} == {str(expected)}
    (dedup,) = [i for i in signal_items if i["PK"]["S"].startswith("DEDUP#")]
    assert "GSI2PK" not in dedup, "a finished ingest is no longer pending"
    assert "body" not in dedup, "finished dedup items are slim"


async def test_ids_with_key_separators_cannot_reach_other_records(store: Store) -> None:
    await store.checkpoints.compare_and_set(
        "p1", "a", expected_version=0, value=1, now=T0, key="b#c"
    )
    await store.checkpoints.compare_and_set(
        "p1", "a#b", expected_version=0, value=2, now=T0, key="c"
    )
    await store.checkpoints.delete("p1", "a")
    assert (await store.checkpoints.get("p1", "a", "b#c")).version == 0
    assert (await store.checkpoints.get("p1", "a#b", "c")).value == 2
    await store.instances.create("p#1", "jira", config={}, now=T0)
    assert await store.instances.list_by_project("p") == []
    assert [i.project_id for i in await store.instances.list_by_connector("jira")] == ["p#1"]


async def test_a_signal_too_large_for_dynamodb_is_refused_before_anything_is_written(
    store: Store, table: str, raw: Any
) -> None:
    huge = signal_write("big", padding=0)
    huge_signal = {**huge.signal, "raw": {"body": "x" * 400_000}}
    oversized = SignalWrite(
        dedup_key=huge.dedup_key,
        project_id="p1",
        connector_id="github-issues",
        signal=huge_signal,
        received_at=T0,
    )
    with pytest.raises(InvalidRecord, match="trim the raw payload"):
        await store.signals.ingest([signal_write("small"), oversized])
    assert raw.scan(TableName=table, Select="COUNT")["Count"] == 0
    assert (await store.signals.ingest([signal_write("small")])).inserted == (True,)


async def test_a_signal_too_large_for_another_field_than_raw_is_refused_naming_it(
    store: Store,
) -> None:
    """The size error used to blame the raw payload whatever made the signal large."""
    base = signal_write("typed", padding=0)
    named = {**base.signal, "type": "t" * 400_000}
    oversized = SignalWrite(
        dedup_key=base.dedup_key,
        project_id="p1",
        connector_id="github-issues",
        signal=named,
        received_at=T0,
    )
    with pytest.raises(InvalidRecord, match="its 'type'") as refused:
        await store.signals.ingest([oversized])
    assert "raw payload" not in str(refused.value)
    assert "signal types shorter" in str(refused.value)


async def test_a_large_batch_with_duplicates_is_stored_once_each(store: Store) -> None:
    fresh = [signal_write(str(i)) for i in range(400)]
    first = await store.signals.ingest(fresh[:300], sinks=["http"])
    second = await store.signals.ingest(fresh[200:] + fresh[:50], sinks=["http"])
    assert first.inserted_count == 300
    assert second.inserted == (False,) * 100 + (True,) * 100 + (False,) * 50
    counts = await store.signals.counts("p1", "github-issues", now=T0)
    assert (counts.last_24h, counts.last_7d) == (400, 400)
    lag = await store.outbox.lag("http", now=T0)
    assert lag.pending == 400


async def test_a_forged_cursor_beyond_dynamodbs_key_limit_is_rejected_as_a_cursor(
    store: Store,
) -> None:
    forged = base64.urlsafe_b64encode(json.dumps(["v1", "SIGNAL#" + "9" * 2000]).encode())
    with pytest.raises(InvalidCursor):
        await store.signals.query("p1", cursor=forged.decode())


async def test_listings_sort_by_the_ids_themselves_not_their_escaped_keys(store: Store) -> None:
    # '#' is escaped to '%23' inside keys, which would sort it after '$'.
    for connector_id in ("a$", "a#"):
        await store.descriptors.register({"id": connector_id}, now=T0)
        await store.instances.create("p1", connector_id, config={}, now=T0)
    for project_id in ("q$", "q#"):
        await store.instances.create(project_id, "jira", config={}, now=T0)
    assert [d.connector_id for d in await store.descriptors.list_all()] == ["a#", "a$"]
    assert [i.connector_id for i in await store.instances.list_by_project("p1")] == ["a#", "a$"]
    assert [i.project_id for i in await store.instances.list_by_connector("jira")] == ["q#", "q$"]


async def test_versions_left_by_a_delete_cut_short_are_not_a_new_connectors_past(
    proxy: FaultProxy, table: str
) -> None:
    """Deleting a descriptor deletes its item, then its version items: no transaction
    (dynalite has none). Cut short between the two (here the batch delete refused), the
    version items stayed, and an id registered again listed, and could restore, the
    deleted connector's descriptors as its own history."""
    descriptor = {"id": "acme", "version": "1.0.0", "name": "Old"}
    async with _via(proxy, table) as store:
        registry = store.descriptors
        await registry.register(descriptor, now=T0)
        await registry.update("acme", {**descriptor, "version": "1.0.1"}, now=T0 + timedelta(1))
        proxy.inject("BatchWriteItem", "AccessDeniedException")
        with pytest.raises(StoreError):
            await registry.delete("acme")
        assert await registry.get("acme") is None
        later = T0 + timedelta(2)
        await registry.register({**descriptor, "name": "New"}, now=later)
        assert await registry.versions("acme") == []
        await registry.update("acme", {**descriptor, "version": "1.0.1"}, now=later + timedelta(1))
        assert [v.descriptor["name"] for v in await registry.versions("acme")] == ["New"]


async def test_an_edit_stamped_before_the_connectors_creation_stays_in_its_history(
    store: Store,
) -> None:
    """Version items saved before the connector was registered are left out as a deleted
    namesake's; an edit stamped earlier than the creation (another Lambda's clock a
    little behind, a clock stepped back) made the version it saved hidden for good: its
    descriptor was in no listing and could not be restored."""
    descriptor = {"id": "acme", "version": "1.0.0", "name": "First"}
    registry = store.descriptors
    await registry.register(descriptor, now=T0)
    second = {**descriptor, "version": "1.0.1", "name": "Second"}
    await registry.update("acme", second, now=T0 - timedelta(seconds=1))
    await registry.update("acme", {**descriptor, "version": "1.0.2"}, now=T0 + timedelta(1))

    assert [v.descriptor["name"] for v in await registry.versions("acme")] == ["Second", "First"]


async def test_an_edit_whose_history_pruning_fails_is_still_answered_as_saved(
    proxy: FaultProxy, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The versions past ``UCF_DESCRIPTOR_HISTORY`` go after the edit's compare-and-set,
    in the same call. A refused or throttled delete there raised out of an edit already
    stored: the caller saw an error (no ETag, its freed credentials never pruned) and
    would retry a write that was made. The edit is answered; the extra version waits for
    the next edit, which prunes it."""
    descriptor = {"id": "acme", "version": "1.0.0", "name": "v0"}
    options = StoreOptions(descriptor_history=1)
    async with open_dynamodb_store(
        dynamodb_url(proxy.url, table), options, retry=FAST_RETRY
    ) as store:
        registry = store.descriptors
        await registry.register(descriptor, now=T0)
        await registry.update("acme", {**descriptor, "version": "1.0.1"}, now=T0 + timedelta(1))
        proxy.inject("BatchWriteItem", "AccessDeniedException")
        with caplog.at_level("WARNING", logger="ucf.stores.dynamodb"):
            saved = await registry.update(
                "acme", {**descriptor, "version": "1.0.2"}, now=T0 + timedelta(2)
            )
        assert saved.descriptor["version"] == "1.0.2"
        assert "pruning its history past 1 versions failed" in caplog.text
        assert [v.version for v in await registry.versions("acme")] == ["1.0.1", "1.0.0"]

        await registry.update("acme", {**descriptor, "version": "1.0.3"}, now=T0 + timedelta(3))
        assert [v.version for v in await registry.versions("acme")] == ["1.0.2"]
