"""Ingest-to-sink latency under ``ucf serve`` / ``ucf worker``: woken deliverers beside idle-tick ones.

The promise: a new signal reaches every configured sink within 2 s. This runs
the real in-process delivery services (:func:`ucf.service.delivery.start_delivery`,
default settings) on an embedded ucf (SQLite, a fresh data directory) with all
four sinks configured at once, each on a real server on loopback:

- ``jsonl``: a file in the data directory;
- ``http``: a pipeline fake (``ucf.fakes``) answering ``POST /signals``;
- ``sqs``: a FIFO queue on moto's standalone server;
- ``eventbridge``: a bus on the same moto server.

Signals are ingested one at a time, ``--gap`` seconds apart (a webhook
arriving now and then, the common case), and for each one the time from the
end of its ingest until each sink's outbox entry is acknowledged (the sink
confirmed receipt) is recorded, watched every millisecond.

The peer, in the same run: the same services with the ingest wake-up switched
off, i.e. the deliverers find new entries only at their idle tick (0.5 s), as
they did before delivery was woken by ingest. Prints p50 / p95 / max per sink
for both. Target: every signal at every sink within 2 s (max < 2 s);
exit status 1 when it is missed.

    uv run python bench/delivery.py [--signals 40] [--gap 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import boto3

from ucf.core.mapping import MappedSignal
from ucf.core.signal import NormalisedSignal, dedup_key, iso_utc, signal_id
from ucf.fakes import FakeServer
from ucf.service.context import UcfContext
from ucf.service.delivery import start_delivery, stop_delivery
from ucf.service.settings import Settings
from ucf.stores.models import epoch_ms

TARGET_SECONDS = 2.0
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    # Its werkzeug server logs every request on stderr, between the figures.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_destinations(moto: str) -> tuple[str, str]:
    """A FIFO queue and an event bus (with a rule to a queue, so events go somewhere)."""
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto)
    events = boto3.client("events", region_name="us-east-1", endpoint_url=moto)
    suffix = uuid.uuid4().hex[:8]
    queue: str = sqs.create_queue(
        QueueName=f"bench-{suffix}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    bus = f"bench-{suffix}"
    events.create_event_bus(Name=bus)
    target = sqs.create_queue(QueueName=f"bench-bus-{suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="all", EventBusName=bus, EventPattern='{"source":["ucf"]}')
    events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    sqs.close()
    events.close()
    return queue, bus


def item(number: int) -> MappedSignal:
    key = dedup_key("github-issues", "bench", str(number), "v1")
    moment = datetime.now(UTC)
    signal = NormalisedSignal(
        id=signal_id(key, epoch_ms(moment)),
        source="github-issues",
        timestamp=iso_utc(moment),
        type="issue_created",
        summary=f"Issue {number}",
        raw={"number": number, "title": f"Issue {number}", "body": "x" * 2000},
        project_id="bench",
    )
    return MappedSignal.of(signal, dedup_key=key, item_id=str(number), version="v1")


async def measure(
    env: dict[str, str], data_dir: Path, signals: int, gap: float, *, wake: bool
) -> dict[str, list[float]]:
    settings = Settings.from_env({"UCF_ALLOW_HOSTS": "127.0.0.1", **env}, data_dir=data_dir)
    latencies: dict[str, list[float]] = {name: [] for name in settings.sinks}
    async with await UcfContext.open(settings) as context:
        if not wake:  # the peer: deliverers that only look at their idle tick
            context.ingestor.subscribe = lambda listener: lambda: None  # type: ignore[method-assign]
        tasks = start_delivery(context)
        try:
            await asyncio.sleep(1.0)  # every deliverer started, found nothing, idles
            for number in range(signals):
                outcome = await context.ingestor.ingest(
                    [item(number)],
                    project_id="bench",
                    connector_id="github-issues",
                    received_at=datetime.now(UTC),
                )
                assert outcome.inserted == 1
                stored = time.perf_counter()
                waiting = set(settings.sinks)
                while waiting:
                    for name in list(waiting):
                        lag = await context.store.outbox.lag(name, now=context.clock())
                        if lag.pending == 0:
                            latencies[name].append(time.perf_counter() - stored)
                            waiting.discard(name)
                    if time.perf_counter() - stored > 30:
                        raise SystemExit(f"signal {number} still pending at {sorted(waiting)}")
                    await asyncio.sleep(0.001)
                await asyncio.sleep(gap)
        finally:
            await stop_delivery(tasks)
    return latencies


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"  {name:<12} p50 {statistics.median(ordered) * 1000:7.1f} ms   "
        f"p95 {p95 * 1000:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms"
    )


async def main(arguments: argparse.Namespace) -> int:
    import os

    os.environ.update(DUMMY_AWS)
    results: dict[str, dict[str, list[float]]] = {}
    with moto_server() as moto, FakeServer() as server, tempfile.TemporaryDirectory() as scratch:
        os.environ["AWS_ENDPOINT_URL_SQS"] = moto
        os.environ["AWS_ENDPOINT_URL_EVENTBRIDGE"] = moto
        server.add_route("POST", "/signals", lambda request: {"ok": True})
        for label, wake in (("woken by ingest (ucf now)", True), ("idle tick only (peer)", False)):
            queue, bus = aws_destinations(moto)
            directory = Path(scratch) / label.split()[0]
            env = {
                "UCF_SINK_JSONL": str(directory / "signals.jsonl"),
                "UCF_SINK_HTTP": server.url("/signals"),
                "UCF_SINK_SQS": queue,
                "UCF_SINK_EVENTBRIDGE": bus,
            }
            results[label] = await measure(
                env, directory, arguments.signals, arguments.gap, wake=wake
            )
    print(
        f"ingest → acknowledged by the sink, {arguments.signals} signals one at a time, "
        f"{arguments.gap:g} s apart (all four sinks configured at once)"
    )
    for label, latencies in results.items():
        print(label)
        for name, values in latencies.items():
            print(row(name, values))
    worst = max(max(values) for values in results["woken by ingest (ucf now)"].values())
    verdict = "met" if worst < TARGET_SECONDS else "MISSED"
    print(f"target: every sink within {TARGET_SECONDS:g} s — {verdict} (worst {worst:.3f} s)")
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between ingests")
    sys.exit(asyncio.run(main(parser.parse_args())))
