"""Delivery to the downstream pipeline: what a consumer of the JSONL file or the HTTP
endpoint would notice if the outbox loop broke.

Real parts only: a SQLite store and local secrets in a temporary directory, the
pipeline as a real HTTP server on loopback (the fake kit) that fails on cue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.store_gates import AnswerLate
from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault
from ucf.fakes.kit import CallNext
from ucf.runtime.http import HttpSettings
from ucf.service.context import UcfContext
from ucf.service.delivery import (
    MIN_SEND_SECONDS,
    SINKS,
    Backoff,
    DeliveryFailed,
    DeliveryWorker,
    HttpPostSink,
    JsonlFileSink,
    delivery_services,
    idempotency_key,
    outbox_lag,
    start_delivery,
    stop_delivery,
)
from ucf.stores.models import OutboxEntry

from .delivery_support import (
    BASE,
    Gate,
    Pipeline,
    eventually,
    ingest_one,
    mapped,
    open_context,
    order_violation,
)

FAST = HttpSettings(
    connect_timeout=1,
    read_timeout=0.3,
    max_retries=1,
    backoff_base=0.01,
    max_total_retry_wait=0.1,
    follow_redirects=False,
)
"""One quick retry inside a batch; anything slower goes back to the outbox."""

QUICK = Backoff(base=0.05, cap=2.0)


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    with FakeServer() as server:
        yield Pipeline(server)


@pytest_asyncio.fixture(loop_scope="function")
async def http_context(tmp_path: Path, pipeline: Pipeline) -> AsyncIterator[UcfContext]:
    async with await open_context(tmp_path, UCF_SINK_HTTP=pipeline.url) as context:
        yield context


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


def http_worker(
    context: UcfContext,
    pipeline: Pipeline,
    client: httpx.AsyncClient,
    *,
    http: HttpSettings = FAST,
    **options: object,
) -> DeliveryWorker:
    sink = HttpPostSink(pipeline.url, client, settings=http)
    defaults: dict[str, object] = {
        "batch_size": 3,
        "lease": timedelta(seconds=4),
        "idle_seconds": 0.02,
        "standby_seconds": 0.05,
        "backoff": QUICK,
    }
    return DeliveryWorker(context, "http", sink, **{**defaults, **options})  # type: ignore[arg-type]


async def ingest_interleaved(
    context: UcfContext, per_instance: int
) -> dict[tuple[str, str], list[str]]:
    """Two instances' signals, alternating, one write each: the outbox interleaves them."""
    ingested: dict[tuple[str, str], list[str]] = {("p1", "github-issues"): [], ("p2", "sentry"): []}
    for number in range(per_instance):
        for project, source in ingested:
            ingested[(project, source)].append(
                await ingest_one(context, mapped(source, project, number))
            )
    return ingested


async def drained(context: UcfContext, sink: str = "http") -> bool:
    return (await context.store.outbox.lag(sink, now=context.clock())).pending == 0


async def test_every_signal_reaches_the_pipeline_in_order_through_500s_429s_and_timeouts(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    ingested = await ingest_interleaved(http_context, 8)
    server = pipeline.server
    server.inject(Fault.status(500), path="/signals", times=2)  # one batch, retried, released
    server.inject(Fault.rate_limited(retry_after=0.5), path="/signals")  # past the batch budget
    server.inject(Fault.slow(1.0), path="/signals")  # read timeout: received, answer lost
    worker = http_worker(http_context, pipeline, client)

    task = asyncio.create_task(worker.run())
    await eventually(lambda: drained(http_context), what="the outbox to drain")
    worker.stop()
    await task

    assert order_violation(pipeline.batches(), ingested) is None
    assert worker.stats.failures == 2  # the 500s, then the 429; the timeout retried in-batch
    # 500, 500 (batch released), 429 (released until Retry-After), timeout, success.
    requests = server.requests_to("/signals")
    waited = requests[3].received_at - requests[2].received_at
    assert waited >= 0.5, "the pipeline's Retry-After was not honoured"
    keys = [r.headers["idempotency-key"] for r in requests]
    assert len(set(keys[:5])) == 1, "a retried batch must keep its idempotency key"
    assert len(set(keys)) == len(pipeline.accepted) - 1  # the timed-out POST came twice
    assert (
        await http_context.store.outbox.claim(
            "http", limit=100, lease=timedelta(seconds=1), now=http_context.clock()
        )
        == []
    )


async def test_acked_entries_are_gone_and_lag_reports_what_is_pending(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    await ingest_interleaved(http_context, 3)
    lag = (await outbox_lag(http_context))["http"]
    assert lag.pending == 6
    assert lag.oldest_age_seconds is not None

    delivered = await http_worker(http_context, pipeline, client, batch_size=4).run_once()

    assert delivered == 6
    assert len(pipeline.accepted) == 2
    assert (await outbox_lag(http_context))["http"].pending == 0
    lease = await http_context.store.leases.get("delivery:http", now=http_context.clock())
    assert lease is None, "a worker with nothing outstanding must hand the sink over"


async def test_a_signal_the_pipeline_refuses_is_parked_and_the_rest_still_flow_in_order(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    ids = []
    for number in range(7):
        raw = {"number": number, "poison": number in (1, 4)}
        ids.append(await ingest_one(http_context, mapped("github-issues", "p1", number, raw=raw)))
    pipeline.refuse_signal = lambda signal: bool(signal["raw"]["poison"])
    worker = http_worker(http_context, pipeline, client, batch_size=3)

    task = asyncio.create_task(worker.run())
    await eventually(lambda: drained(http_context), what="the outbox to drain")
    worker.stop()
    await task

    good = [sid for n, sid in enumerate(ids) if n not in (1, 4)]
    assert pipeline.signal_ids() == good, "everything else arrives, in order, once"
    assert worker.stats.parked == 2
    lag = (await outbox_lag(http_context))["http"]
    assert (lag.pending, lag.parked) == (0, 2)
    parked = await http_context.store.outbox.parked("http", limit=10)
    assert [p.entry.signal["id"] for p in parked] == [ids[1], ids[4]]
    assert all("HTTP 422" in p.reason for p in parked)

    # The pipeline is fixed; the operator requeues; the parked signals arrive.
    pipeline.refuse_signal = None
    assert await http_context.store.outbox.requeue_parked("http", now=http_context.clock()) == 2
    assert await http_worker(http_context, pipeline, client).run_once() == 2
    assert pipeline.signal_ids() == [*good, ids[1], ids[4]]
    assert (await outbox_lag(http_context))["http"].parked == 0


async def test_sorting_out_a_refused_batch_stops_in_time_and_the_rest_is_claimed_again(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    """Lease 1 s: single sends may start until 0.5 s after the claim (each may take 0.5 s).

    With 0.2 s per answer the batch and two singles take 0.6 s, so the last
    two signals go back to the queue and come in the next round: never sent
    after the claim that hid them could have lapsed.
    """
    ids = []
    for number in range(4):
        raw = {"number": number, "poison": number < 2}
        ids.append(await ingest_one(http_context, mapped("github-issues", "p1", number, raw=raw)))
    pipeline.refuse_signal = lambda signal: bool(signal["raw"]["poison"])
    pipeline.delay = 0.2
    worker = http_worker(http_context, pipeline, client, batch_size=4, lease=timedelta(seconds=1))

    task = asyncio.create_task(worker.run())
    await eventually(lambda: drained(http_context), what="the outbox to drain", within=20)
    worker.stop()
    await task

    assert pipeline.signal_ids() == ids[2:]
    assert worker.stats.parked == 2
    assert worker.stats.batches >= 2, "the sort-out ran past its time instead of giving back"


async def test_a_worker_too_near_its_deadline_for_a_send_claims_nothing(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    """With less than a send's time left (``MIN_SEND_SECONDS``) before the deadline, a
    refused batch is not sorted out, it is given back: and a worker not yet stopped (its
    budget's timer fires after a cold start's set-up, or a lease under 4 s leaves less
    than that after the budget) claimed it again at once, sent it whole, was refused and
    gave it back, round after round until the deadline, then counted a failure ("no
    answer within 0 s"). Nothing is claimed that could not be sent."""
    for number in range(2):
        raw = {"number": number, "poison": number == 0}
        await ingest_one(http_context, mapped("github-issues", "p1", number, raw=raw))
    pipeline.refuse_signal = lambda signal: bool(signal["raw"]["poison"])
    deadline = asyncio.get_running_loop().time() + MIN_SEND_SECONDS / 2
    worker = http_worker(http_context, pipeline, client, deadline=deadline)

    assert await worker.run_once() == 0

    assert pipeline.server.requests_to("/signals") == []
    assert worker.stats.failures == 0
    assert worker.stopping, "nothing more fits: the worker stops"
    assert (await outbox_lag(http_context))["http"].pending == 2
    claimable = await http_context.store.outbox.claim(
        "http", limit=5, lease=timedelta(seconds=1), now=http_context.clock()
    )
    assert len(claimable) == 2, "nothing is hidden by a claim of its"


async def test_an_unauthorised_pipeline_parks_nothing_the_queue_waits(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """401 is the configuration's fault, not the signals': nothing may be set aside."""
    with FakeServer() as server:
        pipeline = Pipeline(server, bearer="expected-" + secrets.token_hex(8))
        async with await open_context(tmp_path, UCF_SINK_HTTP=pipeline.url) as context:
            await ingest_one(context, mapped("sentry", "p1", 1))
            worker = http_worker(context, pipeline, client)
            assert await worker.run_once() == 0
            lag = (await outbox_lag(context))["http"]
            assert (lag.pending, lag.parked, worker.stats.parked) == (1, 0, 0)


async def test_a_failing_batch_holds_back_the_rest_of_its_instance(
    tmp_path: Path, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    # The store's clock, not the wall's: on a busy machine the 0.3 s backoff could end
    # before the second look, which would then rightly deliver.
    now = [datetime.now(UTC)]
    async with await open_context(
        tmp_path, clock=lambda: now[0], UCF_SINK_HTTP=pipeline.url
    ) as context:
        ingested = await ingest_interleaved(context, 3)
        now[0] = datetime.now(UTC)  # every signal is due (ingested on the wall clock)
        pipeline.server.inject(Fault.status(503), path="/signals", times=2)
        worker = http_worker(context, pipeline, client, backoff=Backoff(base=0.3, cap=1))

        assert await worker.run_once() == 0  # first batch failed: nothing later is attempted
        assert len(pipeline.server.requests_to("/signals")) == 2  # tried, and retried once
        assert pipeline.accepted == []
        now[0] += timedelta(seconds=0.29)
        assert await worker.run_once() == 0, "a released batch was retried before its backoff"
        now[0] += timedelta(seconds=0.02)
        assert await worker.run_once() == 6

    assert order_violation(pipeline.batches(), ingested) is None
    assert [len(b) for b in pipeline.batches()] == [3, 3]


async def test_a_worker_that_dies_after_claiming_is_redelivered_after_the_lease_in_order(
    tmp_path: Path, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    async with await open_context(tmp_path, UCF_SINK_HTTP=pipeline.url) as context:
        ingested = await ingest_interleaved(context, 3)
    # Another process claims the first batch, then is killed before it acks.
    script = tmp_path / "doomed.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys, time
            from datetime import timedelta
            from pathlib import Path
            from ucf.service.context import UcfContext
            from ucf.service.delivery import DeliveryWorker
            from ucf.service.settings import Settings

            class Hang:
                async def deliver(self, entries):
                    print("claimed", len(entries), time.time(), flush=True)
                    await asyncio.Event().wait()

            async def main():
                settings = Settings.from_env({{}}, data_dir=Path({str(tmp_path)!r}))
                async with await UcfContext.open(settings) as context:
                    worker = DeliveryWorker(
                        context, "http", Hang(), batch_size=3, lease=timedelta(seconds=1)
                    )
                    await worker.run()

            asyncio.run(main())
            """
        )
    )
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert doomed.stdout is not None
        line = await asyncio.wait_for(doomed.stdout.readline(), 30)
        said, count, at = line.decode().split()
        assert (said, count) == ("claimed", "3")
        claimed_at = float(at)  # not when the kill landed: that can lag on a busy machine
    finally:
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()

    async with await open_context(tmp_path, UCF_SINK_HTTP=pipeline.url) as context:
        worker = http_worker(context, pipeline, client, lease=timedelta(seconds=1))
        task = asyncio.create_task(worker.run())
        await eventually(lambda: drained(context), what="redelivery")
        worker.stop()
        await task
        first = pipeline.accepted[0]

    assert order_violation(pipeline.batches(), ingested) is None
    # The dead worker's batch comes first, once its claim lapsed; nothing overtook it.
    assert [s["id"] for s in pipeline.batches()[0]] == [
        ingested[("p1", "github-issues")][0],
        ingested[("p2", "sentry")][0],
        ingested[("p1", "github-issues")][1],
    ]
    assert first.received_at - claimed_at >= 0.5, "redelivered before the dead claim lapsed"


async def test_stop_finishes_the_batch_in_flight_and_hands_the_sink_over_at_once(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    ingested = await ingest_interleaved(http_context, 3)
    # Held until the stop, not for a fixed time: on a busy machine a slow answer could
    # end before the test stops the worker, and a second batch would go out.
    gate = Gate()
    pipeline.server.inject(gate, path="/signals")
    worker = http_worker(http_context, pipeline, client, http=HttpSettings(read_timeout=2))

    task = asyncio.create_task(worker.run())
    await eventually(lambda: received(pipeline), what="the first POST")
    worker.stop()
    gate.opened.set()
    await task

    assert len(pipeline.accepted) == 1
    assert worker.stats.delivered == 3, "the batch in flight was not finished"
    assert (await outbox_lag(http_context))["http"].pending == 3
    assert await http_context.store.leases.get("delivery:http", now=http_context.clock()) is None
    successor = http_worker(http_context, pipeline, client)
    assert await successor.run_once() == 3  # no wait for a lease to lapse
    assert order_violation(pipeline.batches(), ingested) is None


async def test_cancelling_mid_batch_gives_the_batch_back_for_the_next_worker(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    ingested = await ingest_interleaved(http_context, 2)
    pipeline.server.inject(Fault.slow(5), path="/signals")
    worker = http_worker(
        http_context, pipeline, client, http=HttpSettings(read_timeout=10), stop_grace=0.1
    )

    task = asyncio.create_task(worker.run())
    await eventually(lambda: received(pipeline), what="the first POST")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (await outbox_lag(http_context))["http"].pending == 4
    successor = http_worker(http_context, pipeline, client)
    assert await successor.run_once() == 4  # released at once, sink handed over at once
    assert order_violation(pipeline.batches(), ingested) is None


@pytest.mark.parametrize("step", ["outbox.claim", "leases.acquire"])
async def test_cancelled_inside_a_store_step_the_worker_still_hands_everything_over(
    http_context: UcfContext,
    pipeline: Pipeline,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    """The cancellation lands after the store claimed (or took the sink) but before the
    worker heard back: the next worker must not wait for either to lapse."""
    ingested = await ingest_interleaved(http_context, 2)
    part_name, method = step.split(".")
    part = getattr(http_context.store, part_name)
    gate = AnswerLate(monkeypatch, part, method)
    worker = http_worker(http_context, pipeline, client)
    task = asyncio.create_task(worker.run())
    await gate.cancel_in_between(task)

    assert not await received(pipeline)
    assert await http_context.store.leases.get("delivery:http", now=http_context.clock()) is None
    successor = http_worker(http_context, pipeline, client, batch_size=4)
    assert await successor.run_once() == 4  # nothing hidden, no lease to wait out
    assert order_violation(pipeline.batches(), ingested) is None


async def test_cancelled_while_the_store_acknowledges_a_batch_the_sink_is_handed_over(
    http_context: UcfContext,
    pipeline: Pipeline,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch was delivered and the store removed it, but the stop landed before the
    worker heard back (what start_delivery's stop does when it cancels right after the
    outbox drained): the next worker must not wait for the sink lease to lapse."""
    ingested = await ingest_interleaved(http_context, 1)
    outbox = http_context.store.outbox
    gate = AnswerLate(monkeypatch, outbox, "ack")
    worker = http_worker(http_context, pipeline, client)
    task = asyncio.create_task(worker.run())
    await gate.cancel_in_between(task)

    assert await drained(http_context)
    assert worker.stats.delivered == 2
    assert await http_context.store.leases.get("delivery:http", now=http_context.clock()) is None
    assert order_violation(pipeline.batches(), ingested) is None
    assert len(pipeline.accepted) == 1, "the batch was delivered twice"


class RefusesTheFirst:
    """A sink that knows per entry (SQS, EventBridge): it took every signal of a batch
    but the first, which it refused for good."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    async def deliver(self, entries: Sequence[OutboxEntry]) -> None:
        first, *rest = entries
        self.taken += [entry.entry_id for entry in rest]
        raise DeliveryFailed("refused one", refused={first.entry_id: "too large"})


async def test_cancelled_while_parking_a_refused_signal_the_batch_is_still_settled(
    http_context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop lands while the store parks the one signal the sink refused: the signals
    it took must still be acknowledged (not sent again after the claim lapses) and the
    sink handed over (not left to lapse)."""
    await ingest_interleaved(http_context, 2)
    outbox = http_context.store.outbox
    gate = AnswerLate(monkeypatch, outbox, "park")
    sink = RefusesTheFirst()
    worker = DeliveryWorker(http_context, "http", sink, batch_size=4, idle_seconds=0.02)
    task = asyncio.create_task(worker.run())
    await gate.cancel_in_between(task)

    lag = (await outbox_lag(http_context))["http"]
    assert (lag.pending, lag.parked) == (0, 1), "what the sink took waits to be sent again"
    assert len(sink.taken) == 3
    assert await http_context.store.leases.get("delivery:http", now=http_context.clock()) is None


async def received(pipeline: Pipeline) -> bool:
    return bool(pipeline.server.requests_to("/signals"))


async def test_two_workers_on_one_sink_deliver_one_at_a_time_in_order(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    ingested = await ingest_interleaved(http_context, 10)
    workers = [http_worker(http_context, pipeline, client) for _ in range(2)]

    tasks = [asyncio.create_task(w.run()) for w in workers]
    await eventually(lambda: drained(http_context), what="the outbox to drain")
    for worker in workers:
        worker.stop()
    await asyncio.gather(*tasks)

    assert order_violation(pipeline.batches(), ingested) is None
    assert sorted(w.stats.delivered for w in workers) == [0, 20]


async def test_a_redirect_is_a_failed_delivery_not_a_lost_batch(
    http_context: UcfContext, pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    await ingest_one(http_context, mapped("github-issues", "p1", 1))
    pipeline.server.inject(Fault.redirect(pipeline.server.url("/elsewhere")), path="/signals")
    worker = http_worker(http_context, pipeline, client)

    assert await worker.run_once() == 0
    assert worker.stats.last_error is not None
    assert "302" in worker.stats.last_error
    assert (await outbox_lag(http_context))["http"].pending == 1


def _accepted_then(answer: FakeResponse) -> Fault:
    """The pipeline takes the batch (it is recorded), then answers with ``answer``'s
    status, headers and body."""

    class AcceptedThen(Fault):
        name = "accepted_then"

        async def apply(self, request: FakeRequest, call_next: CallNext) -> FakeResponse:
            await call_next()
            return answer

    return AcceptedThen()


@pytest.mark.parametrize(
    "answer",
    [
        FakeResponse(200, {"Content-Type": "application/json"}, b'{"ok": tr', declared_length=64),
        FakeResponse(200, {"Content-Encoding": "gzip"}, b'{"ok": true} is not gzip'),
        FakeResponse(
            202, {"Content-Type": "text/plain"}, b"x" * (80 * 1024), declared_length=11 * 1024**2
        ),
        FakeResponse(200, {"Content-Type": "text/plain"}, iter(lambda: b"taken, " * 1024, None)),
    ],
    ids=["cut short", "not its content-encoding", "declared over the size cap", "endless"],
)
async def test_a_2xx_answer_is_a_delivery_whatever_its_body_says(
    http_context: UcfContext, pipeline: Pipeline, answer: FakeResponse
) -> None:
    """docs/pipeline.md: "Answer 2xx once you have durably taken the batch". The status is
    the answer; a body ucf cannot read must not make it send the batch again, and again."""
    ingested = [await ingest_one(http_context, mapped("github-issues", "p1", n)) for n in range(3)]
    pipeline.server.inject(_accepted_then(answer), path="/signals")
    async with SINKS["http"](http_context.settings) as sink:
        worker = DeliveryWorker(http_context, "http", sink, lease=timedelta(seconds=4))
        delivered = await worker.run_once()

    assert worker.stats.last_error is None
    assert delivered == 3
    assert pipeline.signal_ids() == ingested
    assert len(pipeline.server.requests_to("/signals")) == 1, "sent again after a 2xx"
    assert (await outbox_lag(http_context))["http"].pending == 0


async def test_the_jsonl_file_holds_every_signal_once_per_line_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out" / "signals.jsonl"
    async with await open_context(tmp_path, UCF_SINK_JSONL=str(path)) as context:
        ids = [await ingest_one(context, mapped("github-issues", "p1", n)) for n in range(250)]
        worker = DeliveryWorker(context, "jsonl", JsonlFileSink(path), batch_size=100)

        assert await worker.run_once() == 250
        assert (await outbox_lag(context))["jsonl"].pending == 0

    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids
    assert json.loads(lines[0])["summary"] == "Issue 0 in p1"
    assert path.stat().st_mode & 0o777 == 0o600


async def test_a_line_torn_by_a_crash_does_not_swallow_the_next_signal(tmp_path: Path) -> None:
    path = tmp_path / "signals.jsonl"
    path.write_bytes(b'{"id":"01OLD"}\n{"id":"01TORN","summ')
    async with await open_context(tmp_path, UCF_SINK_JSONL=str(path)) as context:
        sid = await ingest_one(context, mapped("github-issues", "p1", 1))
        await DeliveryWorker(context, "jsonl", JsonlFileSink(path)).run_once()

    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ['{"id":"01OLD"}', '{"id":"01TORN","summ']
    assert json.loads(lines[2])["id"] == sid


async def test_an_unwritable_jsonl_path_is_retried_with_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = blocker / "signals.jsonl"
    async with await open_context(tmp_path, UCF_SINK_JSONL=str(path)) as context:
        await ingest_one(context, mapped("github-issues", "p1", 1))
        worker = DeliveryWorker(context, "jsonl", JsonlFileSink(path), backoff=QUICK)

        assert await worker.run_once() == 0
        assert worker.stats.last_error is not None
        assert str(path) in worker.stats.last_error
        assert (await outbox_lag(context))["jsonl"].pending == 1


async def test_delivered_signals_carry_secrets_redacted_never_the_token(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
    path = tmp_path / "signals.jsonl"
    env = {"UCF_SINK_HTTP": pipeline.url, "UCF_SINK_JSONL": str(path)}
    async with await open_context(tmp_path, env=env) as context:
        raw = {"number": 7, "body": f"CI failed, my token is {token} please rotate"}
        await ingest_one(context, mapped("github-issues", "p1", 7, raw=raw))
        tasks = start_delivery(context)
        await eventually(lambda: drained(context, "http"), what="HTTP delivery")
        await eventually(lambda: drained(context, "jsonl"), what="JSONL delivery")
        await stop_delivery(tasks)

    posted = pipeline.accepted[0].body.decode()
    written = path.read_text(encoding="utf-8")
    for payload in (posted, written):
        assert token not in payload
        assert "[REDACTED:github_token]" in payload


async def test_start_delivery_runs_one_worker_per_configured_sink_and_stops_cleanly(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    path = tmp_path / "signals.jsonl"
    env = {"UCF_SINK_HTTP": pipeline.url, "UCF_SINK_JSONL": str(path)}
    async with await open_context(tmp_path, env=env) as context:
        ids = [await ingest_one(context, mapped("github-issues", "p1", n)) for n in range(5)]
        tasks = start_delivery(context)
        assert sorted(t.get_name() for t in tasks) == ["delivery:http", "delivery:jsonl"]
        await eventually(lambda: drained(context, "http"), what="HTTP delivery")
        await eventually(lambda: drained(context, "jsonl"), what="JSONL delivery")
        await stop_delivery(tasks)

        assert all(task.done() for task in tasks)
        for sink in ("http", "jsonl"):
            assert await context.store.leases.get(f"delivery:{sink}", now=context.clock()) is None
        assert set(await outbox_lag(context)) == {"http", "jsonl"}

    assert pipeline.signal_ids() == ids
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ids


async def test_delivery_services_run_until_stopped_like_the_apps_background_services(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async with await open_context(tmp_path, UCF_SINK_HTTP=pipeline.url) as context:
        services = delivery_services(context)
        assert [s.sink_name for s in services] == ["http"]
        tasks = [asyncio.create_task(s.run()) for s in services]
        ids = [await ingest_one(context, mapped("sentry", "p9", n)) for n in range(4)]
        for service in services:
            service.wake()
        await eventually(lambda: drained(context), what="delivery")
        for service in services:
            service.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)

        assert pipeline.signal_ids() == ids
        assert services[0].stats is not None
        assert services[0].stats.delivered == 4
        assert await context.store.leases.get("delivery:http", now=context.clock()) is None


async def test_a_pipeline_behind_a_bearer_token_gets_it_and_no_log_line_shows_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "pipe-" + secrets.token_urlsafe(24)
    with FakeServer() as server:
        pipeline = Pipeline(server, bearer=token)
        env = {"UCF_SINK_HTTP": pipeline.url, "UCF_SINK_HTTP_TOKEN": token}
        async with await open_context(tmp_path, env=env) as context:
            ids = [await ingest_one(context, mapped("sentry", "p3", n)) for n in range(3)]
            tasks = start_delivery(context)
            await eventually(lambda: drained(context), what="delivery")
            await stop_delivery(tasks)
        assert pipeline.signal_ids() == ids
        assert pipeline.refused == 0
        assert repr(context.settings).count(token) == 0

        # The wrong token: the pipeline refuses, nothing is acknowledged, the log says
        # what failed without the token.
        wrong = "pipe-" + secrets.token_urlsafe(24)
        env = {"UCF_SINK_HTTP": pipeline.url, "UCF_SINK_HTTP_TOKEN": wrong}
        async with await open_context(tmp_path / "second", env=env) as context:
            await ingest_one(context, mapped("sentry", "p3", 99))
            tasks = start_delivery(context)
            # Until the worker has logged the refusal, not just until the pipeline sent it:
            # stopping in between (a loaded machine) would cancel the log line.
            await eventually(
                lambda: asyncio.sleep(0, pipeline.refused > 0 and "401" in caplog.text),
                what="a refused batch, logged",
            )
            await stop_delivery(tasks)
            assert (await outbox_lag(context))["http"].pending == 1
    assert pipeline.signal_ids() == ids
    assert "401" in caplog.text  # the failure is logged...
    assert wrong not in caplog.text
    assert token not in caplog.text


async def test_a_pipeline_named_by_host_name_is_delivered_to(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    """The sink's URL is resolved by its own client (not the SSRF guard): ``localhost``
    answers ::1 and 127.0.0.1, the fake listens on the second only."""
    url = pipeline.url.replace("127.0.0.1", "localhost")
    async with await open_context(tmp_path, UCF_SINK_HTTP=url) as context:
        ids = [await ingest_one(context, mapped("sentry", "p4", n)) for n in range(2)]
        tasks = start_delivery(context)
        await eventually(lambda: drained(context), what="delivery")
        await stop_delivery(tasks)

    assert pipeline.signal_ids() == ids


async def test_no_sink_configured_means_no_delivery_task(tmp_path: Path) -> None:
    async with await open_context(tmp_path) as context:
        assert start_delivery(context) == []
        assert await outbox_lag(context) == {}


async def test_a_sink_url_that_cannot_be_posted_to_fails_at_start_up(tmp_path: Path) -> None:
    """Refused with the settings (``ucf serve``: one line, before its port is bound), and
    by the deliverer of settings made some other way."""
    wrong = "ftp://user:hunter2@pipeline/x"
    with pytest.raises(ValueError, match="http:// or https://") as refused:
        await open_context(tmp_path, UCF_SINK_HTTP=wrong)
    assert "hunter2" not in str(refused.value)
    async with await open_context(tmp_path, UCF_SINK_HTTP="https://pipeline/x") as ctx:
        ctx.settings = dataclasses.replace(ctx.settings, http_sink=wrong)
        with pytest.raises(ValueError, match="http:// or https://") as error:
            start_delivery(ctx)
    assert "hunter2" not in str(error.value)


async def test_a_sink_urls_path_is_in_no_failure_message(client: httpx.AsyncClient) -> None:
    """A Slack-style hook URL carries its credential in the path: a refusal or a dropped
    connection names the host (logs, delivery health, the delivery function's result)."""
    secret_path = "/services/T0001/B0002/" + secrets.token_urlsafe(18)
    entries = [OutboxEntry("1", "http", "p1", "c", {"id": "s1"}, BASE, 1)]
    with FakeServer() as server:
        server.add_route("POST", secret_path, lambda _: FakeResponse(status=403, body=b"{}"))
        server.add_route("POST", secret_path + "/old", lambda _: FakeResponse(status=302, body=b""))
        refused = HttpPostSink(server.url(secret_path), client, settings=FAST)
        with pytest.raises(DeliveryFailed) as answered:
            await refused.deliver(entries)
        moved = HttpPostSink(server.url(secret_path + "/old"), client, settings=FAST)
        with pytest.raises(DeliveryFailed) as redirected:  # answered, not raised, by the retries
            await moved.deliver(entries)
        port = server.url("/").split(":")[-1].rstrip("/")
    with pytest.raises(DeliveryFailed) as unreachable:  # the server is gone
        await HttpPostSink(f"http://127.0.0.1:{port}{secret_path}", client, settings=FAST).deliver(
            entries
        )

    for failure in (answered.value, redirected.value, unreachable.value):
        message = str(failure)
        assert f"POST 127.0.0.1:{port} (UCF_SINK_HTTP" in message, message
        assert "services" not in message, message
        assert failure.__cause__ is None  # a traceback would print the original message
    assert "(HTTP 403)" in str(answered.value)
    assert "answered HTTP 302, not 2xx" in str(redirected.value)


def test_the_idempotency_key_names_the_signals_not_the_queue_positions() -> None:
    from ucf.stores.models import OutboxEntry

    def entry(entry_id: str, sid: str) -> OutboxEntry:
        return OutboxEntry(entry_id, "http", "p1", "c", {"id": sid}, BASE, 1)

    same = idempotency_key([entry("1", "A"), entry("2", "B")])
    assert idempotency_key([entry("7", "A"), entry("8", "B")]) == same
    assert idempotency_key([entry("1", "A"), entry("2", "C")]) != same
    assert idempotency_key([entry("1", "B"), entry("2", "A")]) != same


def test_backoff_doubles_to_its_cap_and_obeys_retry_after() -> None:
    backoff = Backoff(base=1, cap=10)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    assert backoff.delay(1, asked=3.5) == 3.5
    assert backoff.delay(1, asked=99) == 10
