"""``ucf worker``: the poll scheduler on its own, for as many processes as you like.

Workers share nothing but the store: leases keep any number of them from
polling one instance at once, so scaling out is starting another. SIGTERM or
Ctrl-C stops gracefully (running polls store the page they are on, then stop);
a second Ctrl-C abandons the pages in flight, which is safe too.
``--once`` polls every instance that is due and exits (cron, tests): exit code
1 when any poll failed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ucf.cli.errors import fail
from ucf.cli.options import DataDirOption, StoreOption

if TYPE_CHECKING:
    from ucf.service.poll import PollResult
    from ucf.service.scheduler import Scheduler
    from ucf.service.settings import Settings


def _configure_logging(verbose: bool) -> None:
    from ucf.runtime.redaction import install_redaction

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    install_redaction()


def _install_signals(scheduler: Scheduler) -> None:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if scheduler.stopping:
            logging.getLogger("ucf.worker").warning("stopping now: abandoning pages in flight")
            scheduler.stop(now=True)
        else:
            logging.getLogger("ucf.worker").info(
                "stopping: running polls finish the page they are storing"
            )
            scheduler.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)


async def _work(
    settings: Settings, *, once: bool, concurrency: int | None, worker_id: str | None
) -> list[PollResult]:
    from ucf.runtime.heap import freeze_startup_heap, serve_with_fewer_collections
    from ucf.service.context import UcfContext
    from ucf.service.delivery import start_delivery, stop_delivery
    from ucf.service.scheduler import Scheduler

    async with await UcfContext.open(settings) as context:
        scheduler = Scheduler(context, worker_id, concurrency)
        _install_signals(scheduler)
        freeze_startup_heap()  # the stack is imported and the stores open
        serve_with_fewer_collections()  # a page in flight is thousands of live containers
        if once:
            return await scheduler.run_once()
        # A long-running worker also drains the outbox to the configured sinks.
        deliveries = start_delivery(context, owner=worker_id)
        try:
            await scheduler.run()
        finally:
            await stop_delivery(deliveries)
        return []


def _summary(results: list[PollResult]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    inserted = sum(r.inserted for r in results)
    parts = [f"{n} {status}" for status, n in sorted(counts.items())] or ["nothing was due"]
    return f"{', '.join(parts)}; {inserted} new signal(s)"


def worker(
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="Poll every due instance once, then exit.")
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            help="Polls at once in this worker; default: $UCF_MAX_CONCURRENT_POLLS, else 4",
            show_default=False,
        ),
    ] = None,
    worker_id: Annotated[
        str | None,
        typer.Option(
            "--worker-id",
            help="Lease owner name (default: host:pid); reuse it after a crash to take "
            "the dead worker's leases back at once instead of after they expire",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Poll every enabled connector instance at its interval, until SIGTERM/Ctrl-C."""
    from ucf.service.settings import Settings
    from ucf.stores.errors import StoreError

    try:
        settings = Settings.from_env(data_dir=data_dir, store_url=store)
    except (ValueError, StoreError) as error:
        raise fail(str(error)) from None
    _configure_logging(verbose)
    try:
        results = asyncio.run(
            _work(settings, once=once, concurrency=concurrency, worker_id=worker_id)
        )
    except StoreError as error:
        raise fail(str(error), 1) from None
    except OSError as error:
        raise fail(f"cannot use the data directory {settings.data_dir}: {error}", 1) from None
    if once:
        typer.echo(_summary(results), err=True)
        if any(result.status == "failed" for result in results):
            raise typer.Exit(1)
