"""What a crash test's forked children run (see ``crash_support.Zygote``).

Each function is the body of a process that is about to be SIGKILLed: it runs
after the zygote's imports, with the job's environment, and returns an exit code.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

WORKER_ID = "crash-test-worker"  # reused, so a killed run's lease is taken back at once


def poll_once(directory: str) -> int:
    """What ``ucf worker --once`` runs: every due poll, once; 0 if all of them were ok."""
    from ucf.service.context import UcfContext
    from ucf.service.scheduler import Scheduler
    from ucf.service.settings import Settings

    async def main() -> int:
        settings = Settings.from_env(data_dir=Path(directory))
        async with await UcfContext.open(settings) as context:
            results = await Scheduler(context, WORKER_ID, 1).run_once()
        return 0 if all(r.status == "ok" for r in results) else 1

    return asyncio.run(main())


KILL_POINTS = ("before-commit", "after-commit", "mid-ingest", "before-sink", "after-sink")
"""Where ``serve`` can SIGKILL itself, at its n-th ingest: when the gateway hands a verified,
mapped delivery to the ingest (before any store write); when that ingest has returned
(committed, the 200 not yet written); on DynamoDB, between the conditional put that
commits the signal and the batch writes that derive its signal, pointer and outbox items.
``before-sink`` and ``after-sink`` count JSONL sink batches instead: the process dies
as the n-th is handed to the sink (claimed, nothing written), or once it is written
and fsynced, before the outbox hears of it (the ack)."""

DELIVERY_LEASE_ENV = "CRASH_DELIVERY_LEASE_SECONDS"
"""Read by the child, not by ucf: the claim lease of its deliverer (60 s otherwise), so a
batch a killed server claimed is claimable again within the test's patience."""


def serve(directory: str, port: str, kill_point: str = "", nth: str = "0") -> int:
    """``ucf serve --port PORT --data-dir DIRECTORY``, as the console script runs it.

    With a ``kill_point``, the process SIGKILLs itself at that point of its
    ``nth`` ingest (counting from its start): the only way to land a kill
    between two statements every time, rather than by luck.
    """
    from ucf.cli.main import app

    if kill_point:
        _kill_at(kill_point, int(nth))
    if os.environ.get(DELIVERY_LEASE_ENV):
        _lease_of_delivery(float(os.environ[DELIVERY_LEASE_ENV]))
    app(["serve", "--port", port, "--data-dir", directory], prog_name="ucf")
    return 0


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _lease_of_delivery(seconds: float) -> None:
    from datetime import timedelta

    from ucf.service.delivery import DeliveryWorker

    init = DeliveryWorker.__init__

    def short_lease(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["lease"] = timedelta(seconds=seconds)
        init(self, *args, **kwargs)

    DeliveryWorker.__init__ = short_lease  # type: ignore[method-assign]


def _kill_at(point: str, nth: int) -> None:
    from ucf.service.delivery import JsonlFileSink
    from ucf.service.ingest import SignalIngestor
    from ucf.stores.dynamodb.signals import DynamoSignalStore

    seen = 0

    def nth_call() -> bool:
        nonlocal seen
        seen += 1
        return seen == nth

    if point in ("before-sink", "after-sink"):
        deliver: Callable[..., Awaitable[None]] = JsonlFileSink.deliver

        async def deliver_or_die(self: Any, entries: Sequence[Any]) -> None:
            last = bool(entries) and nth_call()
            if point == "before-sink" and last:
                _die()
            await deliver(self, entries)
            if point == "after-sink" and last:
                _die()

        JsonlFileSink.deliver = deliver_or_die  # type: ignore[method-assign]
        return
    if point == "mid-ingest":
        finish: Callable[..., Awaitable[None]] = DynamoSignalStore._finish

        async def finish_or_die(self: Any, records: Sequence[Any]) -> None:
            if records and nth_call():
                _die()
            await finish(self, records)

        DynamoSignalStore._finish = finish_or_die  # type: ignore[method-assign]
        return
    assert point in KILL_POINTS, point
    ingest: Callable[..., Awaitable[Any]] = SignalIngestor.ingest

    async def ingest_or_die(self: Any, mapped: Sequence[Any], **kwargs: Any) -> Any:
        last = nth_call()
        if point == "before-commit" and last:
            _die()
        outcome = await ingest(self, mapped, **kwargs)
        if point == "after-commit" and last:
            _die()
        return outcome

    SignalIngestor.ingest = ingest_or_die  # type: ignore[method-assign]
