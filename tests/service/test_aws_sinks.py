"""The SQS and EventBridge sinks: what a pipeline reading the queue or the bus would notice.

Real parts: a SQLite store, moto's standalone server speaking the AWS wire
protocol (boto3 reaches it through the standard ``AWS_ENDPOINT_URL_*``
variables), and a proxy that fails chosen entries of a batch as AWS does.
EventBridge events are observed where a pipeline would get them: through a
rule on the bus whose target is an SQS queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
import pytest_asyncio

from tests.stores.moto_server import AWS_ENV_TO_CLEAR, DUMMY_AWS_ENV, running_moto_server
from ucf.fakes import FakeServer
from ucf.service.aws_sinks import (
    EventBridgeSink,
    SqsSink,
    aws_sink_client,
    message_group_id,
)
from ucf.service.context import UcfContext
from ucf.service.delivery import (
    SINKS,
    Backoff,
    DeliveryWorker,
    outbox_lag,
    start_delivery,
    stop_delivery,
)
from ucf.service.settings import Settings
from ucf.stores.models import OutboxEntry

from .aws_sink_support import EntryFailureProxy, drain_queue
from .delivery_support import Pipeline, eventually, ingest_one, mapped, open_context

QUICK = Backoff(base=0.05, cap=1.0)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with running_moto_server() as url:
        yield url


@pytest.fixture
def aws(moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Dummy credentials, endpoints on moto; an SQS client for the test's own look."""
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in (*AWS_ENV_TO_CLEAR, "AWS_ENDPOINT_URL_EVENTBRIDGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto)
    try:
        yield sqs
    finally:
        sqs.close()


def new_queue(sqs: Any, *, fifo: bool, max_bytes: int | None = None) -> str:
    name = f"signals-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    if max_bytes is not None:
        attributes["MaximumMessageSize"] = str(max_bytes)
    url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url


def new_bus(moto: str, sqs: Any) -> tuple[str, str]:
    """A bus whose rule for ``source: ucf`` targets a queue; (bus name, that queue's URL)."""
    events = boto3.client("events", region_name="us-east-1", endpoint_url=moto)
    bus = f"signals-{uuid.uuid4().hex[:10]}"
    events.create_event_bus(Name=bus)
    queue = new_queue(sqs, fifo=False)
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="to-pipeline", EventBusName=bus, EventPattern='{"source":["ucf"]}')
    events.put_targets(
        Rule="to-pipeline", EventBusName=bus, Targets=[{"Id": "pipeline", "Arn": arn}]
    )
    events.close()
    return bus, queue


def bodies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in messages]


async def stored(context: UcfContext, project: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for sid in ids:
        record = await context.store.signals.get(project, sid)
        assert record is not None
        found[sid] = record.signal
    return found


def worker(context: UcfContext, name: str, sink: Any, **options: Any) -> DeliveryWorker:
    defaults: dict[str, Any] = {
        "batch_size": 25,
        "lease": timedelta(seconds=10),
        "idle_seconds": 0.02,
        "backoff": QUICK,
    }
    return DeliveryWorker(context, name, sink, **{**defaults, **options})


@pytest_asyncio.fixture(loop_scope="function")
async def fifo(tmp_path: Path, aws: Any) -> AsyncIterator[tuple[UcfContext, str]]:
    queue = new_queue(aws, fifo=True)
    async with await open_context(tmp_path, UCF_SINK_SQS=queue) as context:
        yield context, queue


# --------------------------------------------------------------------------- SQS


async def test_each_signal_is_one_fifo_message_grouped_per_instance_in_order(
    fifo: tuple[UcfContext, str], aws: Any, moto: str
) -> None:
    context, queue = fifo
    ids = [await ingest_one(context, mapped("github-issues", "p1", n)) for n in range(23)]
    sink = SqsSink(queue, aws_sink_client("sqs", region=None))

    assert await worker(context, "sqs", sink).run_once() == 23

    messages = drain_queue(aws, queue)
    assert [body["id"] for body in bodies(messages)] == ids
    signals = await stored(context, "p1", ids)
    assert bodies(messages) == [signals[sid] for sid in ids]  # the signal, as the API serves it
    first = messages[0]
    assert first["Attributes"]["MessageGroupId"] == "p1/github-issues"
    assert first["Attributes"]["MessageDeduplicationId"] == ids[0]
    assert {k: v["StringValue"] for k, v in first["MessageAttributes"].items()} == {
        "signalId": ids[0],
        "projectId": "p1",
        "source": "github-issues",
        "type": "issue.opened",
    }
    assert (await outbox_lag(context))["sqs"].pending == 0


async def test_a_redelivered_batch_is_not_duplicated_in_a_fifo_queue(
    fifo: tuple[UcfContext, str], aws: Any
) -> None:
    """A crash between "sent" and "acked" sends the batch again: SQS drops the copies."""
    context, queue = fifo
    ids = [await ingest_one(context, mapped("sentry", "p2", n)) for n in range(4)]
    sink = SqsSink(queue, aws_sink_client("sqs", region=None))
    entries = await context.store.outbox.claim(
        "sqs", limit=10, lease=timedelta(milliseconds=1), now=context.clock()
    )
    await sink.deliver(entries)  # ... and the process dies before the ack
    await asyncio.sleep(0.01)

    assert await worker(context, "sqs", sink).run_once() == 4  # the lease lapsed: sent again

    assert [body["id"] for body in bodies(drain_queue(aws, queue))] == ids


async def test_a_message_over_the_queues_size_limit_is_parked_and_the_rest_flow(
    tmp_path: Path, aws: Any
) -> None:
    queue = new_queue(aws, fifo=True, max_bytes=1024)
    async with await open_context(tmp_path, UCF_SINK_SQS=queue) as context:
        ids = []
        for n in range(5):
            raw = {"number": n, "body": "x" * (2000 if n == 2 else 10)}
            ids.append(await ingest_one(context, mapped("github-issues", "p1", n, raw=raw)))
        sink = SqsSink(queue, aws_sink_client("sqs", region=None))
        work = worker(context, "sqs", sink)

        assert await work.run_once() == 4

        assert [b["id"] for b in bodies(drain_queue(aws, queue))] == ids[:2] + ids[3:]
        lag = (await outbox_lag(context))["sqs"]
        assert (lag.pending, lag.parked, work.stats.parked) == (0, 1, 1)
        [parked] = await context.store.outbox.parked("sqs", limit=5)
        assert parked.entry.signal["id"] == ids[2]
        assert "1024-byte limit" in parked.reason


async def test_a_failed_entry_is_retried_alone_and_the_fifo_order_holds(
    fifo: tuple[UcfContext, str], aws: Any, moto: str
) -> None:
    context, queue = fifo
    ids = [await ingest_one(context, mapped("github-issues", "p1", n)) for n in range(6)]

    def fail_third(entry: dict[str, Any]) -> str | None:
        return "InternalError" if entry["MessageDeduplicationId"] == ids[2] else None

    with EntryFailureProxy(moto, fail_third, times=2) as proxy:
        sink = SqsSink(queue, aws_sink_client("sqs", region=None, endpoint=proxy.url))
        sink._retry_pause = 0.01
        work = worker(context, "sqs", sink)
        assert await work.run_once() == 6

    assert work.stats.failures == 0, "a per-entry failure must be retried within the batch"
    assert [b["id"] for b in bodies(drain_queue(aws, queue))] == ids
    sent = [e["MessageDeduplicationId"] for e in proxy.forwarded_entries]
    assert sent == ids, "one instance's next message waits until the failed one is taken"


async def test_an_entry_that_keeps_failing_sends_back_itself_and_what_follows_not_what_went_before(
    fifo: tuple[UcfContext, str], aws: Any, moto: str
) -> None:
    """The batch went back whole, and the message a call before had got through was sent
    again at the retry (a FIFO queue dropped it within its five-minute deduplication
    window; after a longer backoff, or on a standard queue or a bus, a duplicate)."""
    context, queue = fifo
    ids = [await ingest_one(context, mapped("github-issues", "p1", n)) for n in range(3)]

    def fail_second(entry: dict[str, Any]) -> str | None:
        return "InternalError" if entry["MessageDeduplicationId"] == ids[1] else None

    with EntryFailureProxy(moto, fail_second, times=3) as proxy:
        sink = SqsSink(queue, aws_sink_client("sqs", region=None, endpoint=proxy.url))
        sink._retry_pause = 0.01
        work = worker(context, "sqs", sink)
        assert await work.run_once() == 1
        assert work.stats.last_error is not None
        assert "InternalError" in work.stats.last_error
        assert (await outbox_lag(context))["sqs"].pending == 2
        await asyncio.sleep(0.1)  # the backoff; the fault has run its course
        assert await work.run_once() == 2

    assert [b["id"] for b in bodies(drain_queue(aws, queue))] == ids
    sent = [e["MessageDeduplicationId"] for e in proxy.forwarded_entries]
    assert sent == ids, "each message sent once, in order"


async def test_a_queue_too_slow_for_a_whole_batch_takes_it_in_parts_each_message_once(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    """A batch is sent in calls of ten, all within the send's time: a queue answering
    each call slowly got the first calls, then the send ran out of time and the whole
    batch went back, to be sent again from its start at every retry (every call that had
    got through sent again, a duplicate each on a standard queue) and, never fitting,
    never moved. A call is started only while one call's time is left; what went
    through counts, and the rest goes again at once."""
    queue = new_queue(aws, fifo=False)
    async with await open_context(tmp_path, UCF_SINK_SQS=queue) as context:
        ids = [await ingest_one(context, mapped("github-issues", "p1", n)) for n in range(80)]
        with EntryFailureProxy(moto, lambda entry: None) as proxy:
            proxy.delay = 0.5  # a call: the whole batch's 8 take 4 s, its send has 3
            sink = SqsSink(queue, aws_sink_client("sqs", region=None, endpoint=proxy.url))
            sink.call_seconds = 1.5
            work = worker(context, "sqs", sink, batch_size=100, lease=timedelta(seconds=6))
            assert await work.run_once() == 80
            assert work.stats.batches > 1, "in parts"
            assert work.stats.failures == 0

        assert (await outbox_lag(context))["sqs"].pending == 0
        sent = [json.loads(e["MessageBody"])["id"] for e in proxy.forwarded_entries]
        assert sorted(sent) == sorted(ids), "each message sent once"
        assert sorted(b["id"] for b in bodies(drain_queue(aws, queue))) == sorted(ids)


async def test_a_call_that_outlasts_the_batchs_time_keeps_what_the_calls_before_it_took(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    """A call started with one call's time left may still take longer (botocore's own
    retries, a slow answer): the send's timeout then ended the batch as a whole, the
    messages the calls before it had got through went back with it and were sent again
    at every retry, and a queue that slow never took the rest (each retry ran out of
    time at the same call). Those calls count; the one cut short goes again."""
    queue = new_queue(aws, fifo=False)
    async with await open_context(tmp_path, UCF_SINK_SQS=queue) as context:
        ids = [await ingest_one(context, mapped("github-issues", "p1", n)) for n in range(20)]
        with EntryFailureProxy(moto, lambda entry: None) as proxy:
            proxy.delay = 1.6  # the send has 3 s: the second call starts with 1.4 s left
            sink = SqsSink(queue, aws_sink_client("sqs", region=None, endpoint=proxy.url))
            sink.call_seconds = 1.0
            work = worker(context, "sqs", sink, batch_size=20, lease=timedelta(seconds=6))
            assert await work.run_once() == 20
            assert work.stats.failures == 0

        assert (await outbox_lag(context))["sqs"].pending == 0
        sent = [json.loads(e["MessageBody"])["id"] for e in proxy.forwarded_entries]
        assert sent[:10] == ids[:10]
        assert sorted(set(sent)) == sorted(ids)
        first_call = set(ids[:10])
        assert len([s for s in sent if s in first_call]) == 10, "the first call's sent once"
        # The call cut short may have got through as well: sent again, at least once.


async def test_a_call_that_would_not_fit_after_refusals_only_is_not_started(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    """A batch's next call is not started without one call's time left once part of it is
    settled. Refused entries count as settled too: after a first call whose entries were
    all refused, the next was started with too little time, given up on, and its messages,
    which the queue took all the same, sent again with the rest (twice each)."""
    queue = new_queue(aws, fifo=False)
    async with await open_context(tmp_path, UCF_SINK_SQS=queue) as context:
        ids = [await ingest_one(context, mapped("sentry", "p1", n)) for n in range(20)]
        refused = set(ids[:10])

        def refuse_the_first_call(entry: dict[str, Any]) -> str | None:
            signal_id = entry["MessageAttributes"]["signalId"]["StringValue"]
            return "InvalidMessageContents" if signal_id in refused else None

        with EntryFailureProxy(moto, refuse_the_first_call, times=99) as proxy:
            proxy.delay = 2.6  # the send has 4 s: 1.4 s left after the first call
            sink = SqsSink(queue, aws_sink_client("sqs", region=None, endpoint=proxy.url))
            sink.call_seconds = 2.0
            work = worker(context, "sqs", sink, batch_size=20, lease=timedelta(seconds=8))
            assert await work.run_once() == 10
            assert work.stats.parked == 10
            assert work.stats.failures == 0

        sent = [json.loads(e["MessageBody"])["id"] for e in proxy.forwarded_entries]
        assert sorted(sent) == sorted(ids[10:]), "each message taken once"
        assert sorted(b["id"] for b in bodies(drain_queue(aws, queue))) == sorted(ids[10:])


async def test_an_entry_sqs_refuses_for_its_content_is_parked_and_not_sent_twice(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    queue = new_queue(aws, fifo=False)
    async with await open_context(tmp_path, UCF_SINK_SQS=queue) as context:
        ids = [await ingest_one(context, mapped("sentry", "p1", n)) for n in range(4)]

        def refuse_first(entry: dict[str, Any]) -> str | None:
            attributes = entry["MessageAttributes"]
            return (
                "InvalidMessageContents"
                if attributes["signalId"]["StringValue"] == ids[0]
                else None
            )

        with EntryFailureProxy(moto, refuse_first, times=99) as proxy:
            sink = SqsSink(queue, aws_sink_client("sqs", region=None, endpoint=proxy.url))
            work = worker(context, "sqs", sink)
            assert await work.run_once() == 3

        assert len(proxy.forwarded_entries) == 3, "what SQS took must not be sent again"
        assert sorted(b["id"] for b in bodies(drain_queue(aws, queue))) == sorted(ids[1:])
        [parked] = await context.store.outbox.parked("sqs", limit=5)
        assert parked.entry.signal["id"] == ids[0]
        assert "InvalidMessageContents" in parked.reason


def _refuse_one(
    refused_id: str, failing_id: str | None, seen: list[str] | None = None
) -> Callable[[dict[str, Any]], str | None]:
    """A proxy rule: SQS refuses ``refused_id`` for its content and keeps failing
    ``failing_id`` (when given); each signal id a call holds is added to ``seen``."""

    def rule(entry: dict[str, Any]) -> str | None:
        signal_id = entry["MessageAttributes"]["signalId"]["StringValue"]
        if seen is not None:
            seen.append(signal_id)
        if signal_id == refused_id:
            return "InvalidMessageContents"
        return "InternalError" if signal_id == failing_id else None

    return rule


async def test_an_entry_refused_in_a_call_that_then_fails_is_parked_at_once(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    """One call: SQS refuses one entry for its content, keeps failing another, takes the
    rest. The refusal was forgotten when the call then failed for the other entry: the
    refused entry went back with it and was sent again (and refused again) at the retry."""
    queue = new_queue(aws, fifo=False)
    async with await open_context(tmp_path, UCF_SINK_SQS=queue) as context:
        ids = [await ingest_one(context, mapped("sentry", "p1", n)) for n in range(3)]
        refused_id, failing_id = ids[0], ids[1]
        sent: list[str] = []
        with EntryFailureProxy(moto, _refuse_one(refused_id, failing_id, sent), times=99) as proxy:
            sink = SqsSink(queue, aws_sink_client("sqs", region=None, endpoint=proxy.url))
            sink._retry_pause = 0.01
            work = worker(context, "sqs", sink)
            assert await work.run_once() == 1
            [parked] = await context.store.outbox.parked("sqs", limit=5)
            assert parked.entry.signal["id"] == refused_id
            assert "InvalidMessageContents" in parked.reason
            assert (await outbox_lag(context))["sqs"].pending == 1, "only the failing one"

        assert sent.count(refused_id) == 1, "refused once, never sent again"
        assert [b["id"] for b in bodies(drain_queue(aws, queue))] == [ids[2]]


@pytest.mark.parametrize("another_keeps_failing", [False, True])
async def test_a_refused_entry_the_store_cannot_park_undoes_none_of_what_the_call_took(
    tmp_path: Path, aws: Any, moto: str, another_keeps_failing: bool
) -> None:
    """The entries a call refused were parked before the ones it took were acknowledged,
    so a park the store failed (a full disk here) left those taken unacknowledged, to be
    sent again once the claim lapsed: a duplicate each on a standard queue. They are
    acknowledged first; the refused one stays claimed, to be refused and parked later."""
    queue = new_queue(aws, fifo=False)
    async with await open_context(tmp_path, UCF_SINK_SQS=queue) as context:
        ids = [await ingest_one(context, mapped("sentry", "p1", n)) for n in range(3)]
        refused_id, failing_id = ids[0], ids[1] if another_keeps_failing else None
        with sqlite3.connect(tmp_path / "ucf.db") as conn:
            conn.execute(
                "CREATE TRIGGER no_room BEFORE INSERT ON outbox_parked "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )

        with EntryFailureProxy(moto, _refuse_one(refused_id, failing_id), times=99) as proxy:
            sink = SqsSink(queue, aws_sink_client("sqs", region=None, endpoint=proxy.url))
            sink._retry_pause = 0.01
            work = worker(context, "sqs", sink)
            assert await work.run_once() == (1 if another_keeps_failing else 2)

        taken = [i for i in ids if i not in (refused_id, failing_id)]
        assert [json.loads(e["MessageBody"])["id"] for e in proxy.forwarded_entries] == taken
        assert await context.store.outbox.parked("sqs", limit=5) == []
        pending = 2 if another_keeps_failing else 1
        assert (await outbox_lag(context))["sqs"].pending == pending, "the taken acknowledged"
        later = context.clock() + timedelta(minutes=5)  # every claim and backoff over
        again = await context.store.outbox.claim("sqs", limit=5, lease=work.lease, now=later)
        assert [e.signal["id"] for e in again] == [i for i in ids if i not in taken]


async def test_a_missing_queue_makes_its_sink_wait_while_the_others_deliver(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    """Each sink has its own cursor: one sink's outage holds only that sink."""
    missing = f"{moto}/123456789012/later-{uuid.uuid4().hex[:8]}"
    with FakeServer() as server:
        pipeline = Pipeline(server)
        env = {"UCF_SINK_HTTP": pipeline.url, "UCF_SINK_SQS": missing}
        async with await open_context(tmp_path, env=env) as context:
            ids = [await ingest_one(context, mapped("sentry", "p1", n)) for n in range(3)]
            tasks = start_delivery(context)
            try:
                await eventually(lambda: pending(context, "http", 0), what="HTTP delivery")
                assert (await outbox_lag(context))["sqs"].pending == 3
                aws.create_queue(QueueName=missing.rsplit("/", 1)[1])
                await eventually(lambda: pending(context, "sqs", 0), what="SQS", within=20)
            finally:
                await stop_delivery(tasks)

    assert pipeline.signal_ids() == ids
    assert [b["id"] for b in bodies(drain_queue(aws, missing))] == ids


async def pending(context: UcfContext, sink: str, count: int) -> bool:
    return (await context.store.outbox.lag(sink, now=context.clock())).pending == count


def test_message_groups_are_readable_when_they_can_be_and_stable_when_not() -> None:
    assert message_group_id("p1", "github-issues") == "p1/github-issues"
    odd = message_group_id("projet é", "x" * 200)
    assert odd.startswith("ucf-")
    assert odd == message_group_id("projet é", "x" * 200)
    assert odd != message_group_id("projet è", "x" * 200)
    assert len(odd) <= 128


# --------------------------------------------------------------------------- EventBridge


async def test_each_signal_is_one_event_a_rule_on_the_bus_routes_to_the_pipeline(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    bus, target = new_bus(moto, aws)
    env = {"UCF_SINK_EVENTBRIDGE": bus, "AWS_ENDPOINT_URL_EVENTS": moto}  # ucf's alias
    async with await open_context(tmp_path, env=env) as context:
        ids = [await ingest_one(context, mapped("linear", "p7", n)) for n in range(12)]
        tasks = start_delivery(context)  # the real wiring: settings → sink → client
        try:
            await eventually(lambda: pending(context, "eventbridge", 0), what="delivery")
        finally:
            await stop_delivery(tasks)
        signals = await stored(context, "p7", ids)

    events = bodies(drain_queue(aws, target))
    assert sorted(e["detail"]["id"] for e in events) == sorted(ids)
    event = next(e for e in events if e["detail"]["id"] == ids[0])
    assert event["source"] == "ucf"
    assert event["detail-type"] == "NormalisedSignal"
    assert event["detail"] == signals[ids[0]]


async def test_an_event_over_eventbridges_entry_limit_is_parked(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    bus, target = new_bus(moto, aws)
    async with await open_context(tmp_path, UCF_SINK_EVENTBRIDGE=bus) as context:
        ids = []
        for n in range(3):
            # 12 strings of 9000 "€" (3 bytes each in UTF-8): 324 KB, under the sanitiser's bounds.
            raw = {"number": n, "log": ["€" * 9000] * (12 if n == 1 else 1)}
            ids.append(await ingest_one(context, mapped("sentry", "p1", n, raw=raw)))
        client = aws_sink_client("events", region=None, endpoint=moto)
        work = worker(context, "eventbridge", EventBridgeSink(bus, client))

        assert await work.run_once() == 2

        [parked] = await context.store.outbox.parked("eventbridge", limit=5)
        assert parked.entry.signal["id"] == ids[1]
        assert "262144-byte limit" in parked.reason
    assert sorted(e["detail"]["id"] for e in bodies(drain_queue(aws, target))) == sorted(
        [ids[0], ids[2]]
    )


async def test_throttled_event_entries_are_retried_and_each_event_arrives_once(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    bus, target = new_bus(moto, aws)
    async with await open_context(tmp_path, UCF_SINK_EVENTBRIDGE=bus) as context:
        ids = [await ingest_one(context, mapped("sentry", "p1", n)) for n in range(5)]

        def throttle_odd(entry: dict[str, Any]) -> str | None:
            return "ThrottlingException" if json.loads(entry["Detail"])["id"] in ids[1::2] else None

        with EntryFailureProxy(moto, throttle_odd, times=2) as proxy:
            client = aws_sink_client("events", region=None, endpoint=proxy.url)
            sink = EventBridgeSink(bus, client, retry_pause=0.01)
            work = worker(context, "eventbridge", sink)
            assert await work.run_once() == 5

    assert work.stats.failures == 0
    assert len(proxy.forwarded_entries) == 5, "only the failed entries are sent again"
    assert sorted(e["detail"]["id"] for e in bodies(drain_queue(aws, target))) == sorted(ids)


# --------------------------------------------------------------------------- wiring


def test_a_queue_name_or_arn_instead_of_a_url_is_refused_by_name(tmp_path: Path) -> None:
    for wrong in ("signals.fifo", "arn:aws:sqs:eu-west-1:123456789012:signals"):
        with pytest.raises(ValueError, match="UCF_SINK_SQS must be the queue's URL"):
            Settings.from_env({"UCF_SINK_SQS": wrong}, data_dir=tmp_path)
    with pytest.raises(ValueError, match="UCF_SINK_EVENTBRIDGE"):
        Settings.from_env({"UCF_SINK_EVENTBRIDGE": "my bus"}, data_dir=tmp_path)


def test_every_configured_sink_gets_its_own_queue_in_a_fixed_order(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "UCF_SINK_EVENTBRIDGE": "arn:aws:events:eu-west-1:123456789012:event-bus/signals",
            "UCF_SINK_SQS": "https://sqs.eu-west-1.amazonaws.com/123456789012/s.fifo",
            "UCF_SINK_HTTP": "https://pipeline.example/signals",
            "UCF_SINK_JSONL": str(tmp_path / "s.jsonl"),
        },
        data_dir=tmp_path,
    )
    assert settings.sinks == ("jsonl", "http", "sqs", "eventbridge")


@pytest.mark.serial  # asserts a time bound: `make test` runs it alone
async def test_a_new_signal_reaches_every_sink_through_the_in_process_wake_up(
    tmp_path: Path, aws: Any, moto: str
) -> None:
    """``ucf serve`` and ``ucf worker`` deliver right after an ingest, not at an idle tick.

    The workers here would look at the outbox again only after an hour, so only
    the ingest's wake-up can deliver within the (generous) bound. The latency
    itself is measured by ``bench/delivery.py``.
    """
    queue = new_queue(aws, fifo=True)
    bus, target = new_bus(moto, aws)
    jsonl = tmp_path / "signals.jsonl"
    with FakeServer() as server:
        pipeline = Pipeline(server)
        env = {
            "UCF_SINK_JSONL": str(jsonl),
            "UCF_SINK_HTTP": pipeline.url,
            "UCF_SINK_SQS": queue,
            "UCF_SINK_EVENTBRIDGE": bus,
            "AWS_ENDPOINT_URL_EVENTS": moto,
        }
        async with (
            await open_context(tmp_path, env=env) as context,
            contextlib.AsyncExitStack() as stack,
        ):
            names = context.settings.sinks
            workers = [
                worker(
                    context,
                    name,
                    await stack.enter_async_context(SINKS[name](context.settings)),
                    idle_seconds=3600,
                )
                for name in names
            ]
            tasks = [asyncio.create_task(w.run()) for w in workers]
            try:
                await asyncio.sleep(0.2)  # every worker found the outbox empty and idles
                started = time.monotonic()
                sid = await ingest_one(context, mapped("github-issues", "p1", 1))
                for name in names:
                    await eventually(partial(pending, context, name, 0), what=name, within=15)
                elapsed = time.monotonic() - started
            finally:
                for w in workers:
                    w.stop()
                await asyncio.gather(*tasks)

    assert elapsed < 15
    assert pipeline.signal_ids() == [sid]
    assert json.loads(jsonl.read_text())["id"] == sid
    assert [b["id"] for b in bodies(drain_queue(aws, queue))] == [sid]
    assert [e["detail"]["id"] for e in bodies(drain_queue(aws, target))] == [sid]


async def test_a_signal_with_characters_sqs_forbids_still_arrives_as_the_same_json(
    aws: Any,
) -> None:
    """SQS refuses lone surrogates and U+FFFF in a body; JSON escapes carry them instead."""
    queue = new_queue(aws, fifo=False)
    odd = {"id": "01JN8S7QG0P3Y4WJMXVHYSJ0AB", "summary": "bad \ud800 and \uffff, café"}
    plain = {"id": "01JN8S7QG0P3Y4WJMXVHYSJ0AC", "summary": "café"}
    entries = [
        OutboxEntry(str(n), "sqs", "p1", "sentry", signal, datetime.now(UTC), 1)
        for n, signal in enumerate((odd, plain))
    ]

    await SqsSink(queue, aws_sink_client("sqs", region=None)).deliver(entries)

    received = {json.loads(m["Body"])["id"]: m["Body"] for m in drain_queue(aws, queue)}
    assert json.loads(received[odd["id"]]) == odd
    assert "\\ud800" in received[odd["id"]]
    assert received[plain["id"]] == '{"id":"01JN8S7QG0P3Y4WJMXVHYSJ0AC","summary":"café"}'
