"""``ucf outbox``: what waits for delivery, and the signals a sink refused for good.

A sink that answers 400, 413, 415 or 422 (HTTP), or refuses a message or
event for its size or content (SQS, EventBridge), refuses a signal for what it
is, so sending it again cannot succeed; the delivery worker parks such signals
(the rest of the batch still delivered in order) instead of stopping the queue
behind them. Once the pipeline is fixed, ``ucf outbox requeue`` sends
them again, after what is already queued.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from ucf.cli.errors import fail
from ucf.cli.options import DataDirOption, StoreOption
from ucf.cli.signals import open_existing_store, run_store_command

outbox_app = typer.Typer(
    help="Delivery queues: pending and parked signals per sink.", no_args_is_help=True
)

SinkOption = Annotated[
    str,
    typer.Option("--sink", help="Sink name: jsonl, http, sqs or eventbridge (as configured)."),
]


def known_sinks(names: list[str]) -> None:
    """Refuse a sink name ucf does not know, before the store is opened.

    Each sink's queue is named after it, so a mistyped name (``--sink SQS``,
    ``--sink webhook``) reads a queue nothing ever fills: it answered "nothing
    parked" or "requeued 0" with exit 0, as if that sink had nothing waiting.
    """
    from ucf.service.settings import SINK_NAMES

    for name in names:
        if name not in SINK_NAMES:
            raise fail(f"unknown sink {name!r}: one of {', '.join(SINK_NAMES)}")


@outbox_app.command("status")
def status(
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    sinks: Annotated[
        list[str] | None,
        typer.Option("--sink", help="Sink names to report; default: every sink ucf knows."),
    ] = None,
) -> None:
    """Pending, parked and the oldest pending age, per sink."""
    known_sinks(sinks or [])
    opened = open_existing_store(store, data_dir)

    async def report() -> None:
        from ucf.service.settings import SINK_NAMES

        async with opened as handle:
            for sink in sinks or SINK_NAMES:
                lag = await handle.outbox.lag(sink, now=datetime.now(UTC))
                age = "-" if lag.oldest_age_seconds is None else f"{lag.oldest_age_seconds:.0f} s"
                typer.echo(f"{sink}: {lag.pending} pending (oldest {age}), {lag.parked} parked")

    run_store_command(report)


@outbox_app.command("parked")
def parked(
    sink: SinkOption = "http",
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, with the signal.")
    ] = False,
) -> None:
    """The signals a sink refused for good, oldest first, with its answer."""
    known_sinks([sink])
    opened = open_existing_store(store, data_dir)

    async def show() -> None:
        async with opened as handle:
            entries = await handle.outbox.parked(sink, limit=limit)
        for item in entries:
            entry = item.entry
            if as_json:
                line = {
                    "sink": sink,
                    "parkedAt": item.parked_at.isoformat(),
                    "reason": item.reason,
                    "projectId": entry.project_id,
                    "connectorId": entry.connector_id,
                    "attempts": entry.attempts,
                    "signal": entry.signal,
                }
                typer.echo(json.dumps(line, ensure_ascii=False))
            else:
                typer.echo(
                    f"{item.parked_at:%Y-%m-%d %H:%M:%S}  {entry.project_id}/{entry.connector_id}"
                    f"  {entry.signal.get('id')}  {item.reason}"
                )
        if not entries:
            typer.echo(f"nothing parked for {sink}", err=True)

    run_store_command(show)


@outbox_app.command("requeue")
def requeue(
    sink: SinkOption = "http",
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Send every parked signal of a sink again (after fixing what refused them)."""
    known_sinks([sink])
    opened = open_existing_store(store, data_dir)

    async def move() -> None:
        async with opened as handle:
            count = await handle.outbox.requeue_parked(sink, now=datetime.now(UTC))
        typer.echo(f"requeued {count} parked signal(s) for {sink}")

    run_store_command(move)
