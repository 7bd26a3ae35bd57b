"""The delivery function: the outbox reaches the pipeline right after an ingest (the table's
stream) or within a tick, and an outage loses nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.aws.conftest import CONNECTOR, PROJECT, Lab
from tests.aws.events import LambdaContext, dynamodb_stream_event, scheduled_event
from tests.service.aws_sink_support import drain_queue
from tests.service.delivery_support import Pipeline
from ucf.aws.config import AwsConfigError
from ucf.aws.container import Container
from ucf.aws.handlers import delivery
from ucf.fakes.github import WEBHOOK_SECRET, GitHubFake
from ucf.fakes.kit import FakeServer, Fault
from ucf.stores import open_store
from ucf.stores.dynamodb import keys
from ucf.stores.models import Lease


@pytest.fixture
def pipeline(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    with FakeServer() as server:
        sink = Pipeline(server)
        monkeypatch.setenv("UCF_SINK_HTTP", sink.url)
        yield sink


def deliver_webhook(lab: Lab, number: int) -> None:
    body = json.dumps(
        {
            "action": "opened",
            "issue": {
                "id": 9000 + number,
                "number": number,
                "title": f"Issue {number}",
                "updated_at": f"2025-03-01T12:{number:02d}:00Z",
                "labels": [],
            },
        }
    ).encode()
    mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    reply = lab.call(
        "POST",
        f"/api/webhooks/{CONNECTOR}/{PROJECT}",
        body=body,
        headers={
            "content-type": "application/json",
            "x-github-event": "issues",
            "x-github-delivery": f"delivery-{number}",
            "x-hub-signature-256": f"sha256={mac}",
        },
        token=False,
    )
    assert reply.status == 200, reply.body


def tick() -> dict[str, object]:
    return delivery.handler(scheduled_event(datetime.now(UTC)), LambdaContext(timeout_seconds=120))


def test_stored_signals_reach_the_pipeline_once_per_tick(
    lab: Lab, github: GitHubFake, pipeline: Pipeline
) -> None:
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    deliver_webhook(lab, 2)

    first = tick()
    second = tick()

    assert first == {"delivered": {"http": 2}, "errors": {}}
    assert second == {"delivered": {"http": 0}, "errors": {}}
    stored = {signal["id"] for signal in lab.signals()}
    assert sorted(pipeline.signal_ids()) == sorted(stored)


def test_a_refused_batch_is_retried_by_a_later_tick_and_nothing_overtakes_it(
    lab: Lab, github: GitHubFake, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCF_DELIVERY_LEASE_SECONDS", "2")
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    # 401: the sink's configuration is at fault, so the batch waits (a 422 would park it).
    pipeline.server.inject(Fault.status(401), path="/signals")

    refused = tick()
    deliver_webhook(lab, 2)
    held = tick()  # the refused batch is not due yet: nobody may deliver past it
    time.sleep(4.2)  # the batch is due again, and the sink lease after it has run out
    recovered = tick()

    assert refused["delivered"] == {"http": 0}
    assert "401" in str(refused["errors"])
    assert held["delivered"] == {"http": 0}
    assert recovered == {"delivered": {"http": 2}, "errors": {}}
    oldest_first = [signal["id"] for signal in reversed(lab.signals())]
    assert pipeline.signal_ids() == oldest_first


def test_without_a_sink_the_function_does_nothing(lab: Lab) -> None:
    assert tick() == {"delivered": {}}


def test_a_bad_budget_is_refused_by_name(
    lab: Lab, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCF_DELIVERY_SECONDS", "soon")

    with pytest.raises(AwsConfigError, match="UCF_DELIVERY_SECONDS"):
        tick()


def outbox_keys(lab: Lab, sink: str) -> list[dict[str, Any]]:
    """The keys of a sink's outbox items, as the table's KEYS_ONLY stream reports them."""
    dynamodb = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=lab.endpoints.dynamodb
    )
    try:
        reply = dynamodb.query(
            TableName=lab.table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.outbox_pk(sink)}},
            ProjectionExpression="PK, SK",
        )
    finally:
        dynamodb.close()
    items: list[dict[str, Any]] = reply["Items"]
    return items


def test_new_outbox_entries_on_the_tables_stream_reach_every_sink_without_waiting_for_a_tick(
    lab: Lab, github: GitHubFake, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = lab.sqs.create_queue(
        QueueName=f"signals-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    events = boto3.client("events", region_name="us-east-1", endpoint_url=lab.endpoints.moto)
    bus = f"signals-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=bus)
    target = lab.sqs.create_queue(QueueName=f"bus-target-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    target_arn = lab.sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(Name="pipeline", EventBusName=bus, EventPattern='{"source":["ucf"]}')
    events.put_targets(Rule="pipeline", EventBusName=bus, Targets=[{"Id": "q", "Arn": target_arn}])
    events.close()
    monkeypatch.setenv("UCF_SINK_SQS", queue)
    monkeypatch.setenv("UCF_SINK_EVENTBRIDGE", bus)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", lab.endpoints.moto)
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    deliver_webhook(lab, 2)
    written = [key for sink in ("http", "sqs", "eventbridge") for key in outbox_keys(lab, sink)]
    stream_arn = (
        f"arn:aws:dynamodb:us-east-1:123456789012:table/{lab.table}/stream/2026-01-01T00:00:00.000"
    )

    woken = delivery.handler(
        dynamodb_stream_event(written, stream_arn), LambdaContext(timeout_seconds=120)
    )

    assert woken == {"delivered": {"http": 2, "sqs": 2, "eventbridge": 2}, "errors": {}}
    stored = [signal["id"] for signal in reversed(lab.signals())]
    assert pipeline.signal_ids() == stored
    assert [json.loads(m["Body"])["id"] for m in drain_queue(lab.sqs, queue)] == stored
    assert sorted(
        json.loads(m["Body"])["detail"]["id"] for m in drain_queue(lab.sqs, target)
    ) == sorted(stored)
    assert tick() == {"delivered": {"http": 0, "sqs": 0, "eventbridge": 0}, "errors": {}}


def test_one_sinks_store_error_fails_only_that_sink_not_the_invocation(
    lab: Lab, github: GitHubFake, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sink has its own queue and worker: a store error on one (here DynamoDB
    refusing to claim an entry whose attempt count is no number) must not fail the
    invocation, which would leave the other sinks' workers behind mid-batch in a frozen
    execution environment and report nothing of what they delivered."""
    queue = lab.sqs.create_queue(QueueName=f"signals-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("UCF_SINK_SQS", queue)
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    [entry] = outbox_keys(lab, "sqs")
    dynamodb = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=lab.endpoints.dynamodb
    )
    try:
        dynamodb.update_item(
            TableName=lab.table,
            Key=entry,
            UpdateExpression="SET attempts = :text",
            ExpressionAttributeValues={":text": {"S": "many"}},
        )
    finally:
        dynamodb.close()

    result = tick()

    assert result["delivered"] == {"http": 1, "sqs": 0}
    errors = result["errors"]
    assert isinstance(errors, dict)
    assert list(errors) == ["sqs"]
    assert "store" in errors["sqs"]
    assert len(pipeline.signal_ids()) == 1


def test_a_pipeline_answering_in_eleven_seconds_gets_its_batch_once_not_every_minute(
    lab: Lab, github: GitHubFake, pipeline: Pipeline
) -> None:
    """The delivery function waited 10 s for an answer (half its 20 s lease), and the
    HTTP sink's own timeouts were sized for another lease (60 s). A pipeline that takes
    a batch in 10-15 s got it, was counted as a failure, and got it again at every tick,
    with nothing behind it moving. The sink waits for half the lease the function uses,
    and the default lease gives 18 s while a failed sink is still retried within a tick."""
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    pipeline.delay = 11.0

    first = tick()

    assert first == {"delivered": {"http": 1}, "errors": {}}
    assert len(pipeline.batches()) == 1
    assert tick() == {"delivered": {"http": 0}, "errors": {}}


async def sink_lease(lab: Lab, sink: str) -> Lease | None:
    async with open_store(lab.environ["UCF_STORE"]) as store:
        return await store.leases.get(f"delivery:{sink}", now=datetime.now(UTC))


def test_a_failed_batch_keeps_its_sink_until_it_is_due_again_plus_the_lease_not_past_a_tick(
    lab: Lab, github: GitHubFake, pipeline: Pipeline
) -> None:
    """A failing sink is retried about once a minute: the failing invocation keeps the
    sink until its batch is due again plus the lease (at worst 18 + 1 + 36 = 55 s). The
    sink lease it took runs for twice the lease, though, and was left to run out: 72 s
    with the 36 s default, past the next tick, so an outage was retried every other
    minute and the pipeline, once back, waited two."""
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    pipeline.server.inject(Fault.status(401), path="/signals")
    started = datetime.now(UTC)

    refused = tick()
    lease = asyncio.run(sink_lease(lab, "http"))

    assert "401" in str(refused["errors"])
    assert lease is not None  # still held: nobody may deliver past the batch before it is due
    assert lease.expires_at - started < timedelta(seconds=55)


def test_an_invocation_overlapping_one_that_delivers_stands_by_and_the_batch_arrives_once(
    lab: Lab, github: GitHubFake, pipeline: Pipeline
) -> None:
    """Two invocations at once (a stream record's and a tick's, in two sandboxes): the one
    that finds the sink held stands by, without an error, and the batch in flight is
    delivered once; the sink is handed over at the end, so the next tick finds it free."""
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    in_flight, answer = threading.Event(), threading.Event()

    def held(signal: dict[str, Any]) -> bool:
        in_flight.set()
        return not answer.wait(30)  # accepted once let go

    pipeline.refuse_signal = held
    results: list[dict[str, object]] = []
    first = threading.Thread(target=lambda: results.append(tick()))
    first.start()
    assert in_flight.wait(30)
    other = delivery.DeliveryFunction(Container("delivery"))
    try:
        overlapping = other(scheduled_event(datetime.now(UTC)), LambdaContext(timeout_seconds=120))
    finally:
        answer.set()
        first.join(60)
        other.container.close()

    assert overlapping == {"delivered": {"http": 0}, "errors": {}}
    assert results == [{"delivered": {"http": 1}, "errors": {}}]
    assert len(pipeline.batches()) == 1
    assert asyncio.run(sink_lease(lab, "http")) is None
    assert tick() == {"delivered": {"http": 0}, "errors": {}}


@pytest.mark.serial  # asserts a time bound: `make test` runs it alone
def test_a_function_with_a_short_timeout_sends_within_it_with_a_lease_that_fits(
    lab: Lab, github: GitHubFake, pipeline: Pipeline
) -> None:
    """Its budget was cut to what the timeout left, but even a budget of 0 lets the
    first batch start, and that batch waited half the configured 36 s lease for an
    answer: a function with a 10 s timeout and a pipeline answering in 11 s was killed
    by Lambda mid-send, nothing recorded. The lease fits the time left: the send gives
    up within it, the failure is recorded, and the batch is retried later."""
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    pipeline.delay = 11.0
    started = time.monotonic()

    result = delivery.handler(scheduled_event(datetime.now(UTC)), LambdaContext(timeout_seconds=10))

    assert time.monotonic() - started < 10
    assert result["delivered"] == {"http": 0}
    assert "http" in result["errors"]


def test_a_function_with_almost_no_time_left_sends_nothing_and_says_why(
    lab: Lab, github: GitHubFake, pipeline: Pipeline
) -> None:
    lab.connect_github(github)
    deliver_webhook(lab, 1)

    result = delivery.handler(scheduled_event(datetime.now(UTC)), LambdaContext(timeout_seconds=6))

    assert result["delivered"] == {"http": 0}
    assert "raise the timeout" in str(result["errors"]["http"])
    assert pipeline.batches() == []
    assert tick() == {"delivered": {"http": 1}, "errors": {}}


@pytest.mark.serial  # asserts a time bound: `make test` runs it alone
def test_a_function_with_a_short_timeout_still_sorts_out_a_batch_the_pipeline_refuses(
    lab: Lab, github: GitHubFake, pipeline: Pipeline
) -> None:
    """A function whose timeout leaves no budget past its first batch (under ~23 s) stops
    as soon as that batch is claimed, and a stopping worker sorted out nothing: a batch
    the pipeline refused for one signal (422) was given back whole by every invocation,
    with no error said, and nothing behind it ever moved. The one-by-one sends go on
    while they still fit before the function's timeout: the bad signal is parked and
    the good one delivered."""
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    deliver_webhook(lab, 2)
    pipeline.refuse_signal = lambda signal: "Issue 1" in str(signal.get("summary"))
    started = time.monotonic()

    result = delivery.handler(scheduled_event(datetime.now(UTC)), LambdaContext(timeout_seconds=20))

    assert time.monotonic() - started < 15
    assert result == {"delivered": {"http": 1}, "errors": {}}
    assert [signal["summary"] for signal in pipeline.batches()[-1]] == ["#2 Issue 2"]
    assert tick() == {"delivered": {"http": 0}, "errors": {}}
