"""``ucf poll --store URL``: the same poll, written to a store like a worker would.

Signals are sanitised and stored exactly once (with their outbox entries) and
the checkpoint under ``(project, connector id)`` is resumed from and advanced
page by page with the same lease and compare-and-set as ``ucf worker`` — it is
:func:`ucf.service.poll.poll_job`, so a later worker continues where this left
off. stdout still gets the signals as JSON lines; stderr says what was stored.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ucf.cli.errors import fail

if TYPE_CHECKING:
    from ucf.cli.poll import _Tally
    from ucf.core.descriptor import ConnectorDescriptor


async def poll_into_store(
    descriptor: ConnectorDescriptor,
    *,
    store_url: str,
    data_dir: Path | None,
    config: dict[str, str],
    credentials: dict[str, str],
    checkpoint: str | None,
    project: str,
    max_pages: int | None,
) -> _Tally:
    from ucf.cli.poll import _Progress, _Tally
    from ucf.runtime.redaction import redact
    from ucf.service.connectors import Connector
    from ucf.service.context import UcfContext
    from ucf.service.poll import PageReport, PollJob, StartAt, poll_job
    from ucf.service.settings import Settings
    from ucf.stores.errors import StoreError

    tally = _Tally()
    progress = _Progress(f"polling {descriptor.id} into the store")

    def on_page(report: PageReport) -> None:
        tally.add(report.page)
        tally.checkpoint = report.checkpoint
        lines = [
            json.dumps(mapped.wire, ensure_ascii=False) + "\n" for mapped in report.mapped.signals
        ]
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
        tally.signals += len(report.mapped.signals)
        tally.item_errors += len(report.mapped.errors)
        for error in report.mapped.errors:
            ident = f" (id {error.item_id})" if error.item_id else ""
            typer.echo(
                f"page {report.page.number} item {error.index}{ident}: {error.reason}", err=True
            )
        progress.update(tally)

    now = datetime.now(UTC)
    job = PollJob(
        project_id=project,
        connector=Connector(descriptor, built_in=False, created_at=now, updated_at=now),
        config=config,
        credentials=credentials,
    )
    try:
        settings = Settings.from_env(data_dir=data_dir, store_url=store_url)
    except (StoreError, ValueError) as error:
        raise fail(redact(str(error)), 1) from None
    try:
        try:
            # On demand: the poll's credentials come from the command line and no rotation
            # is kept (no instance holds them), so the secret store is never called. Opened
            # now, it made a master key in the data directory that nothing used, or failed
            # the poll where the worker's secrets are sealed under a key not at hand here.
            opened = await UcfContext.open(settings, on_demand=True)
        except OSError as error:  # the data directory or its master key, as ucf worker says
            raise fail(
                f"cannot use the data directory {settings.data_dir}: {error.strerror or error}", 1
            ) from None
        async with opened as context:
            with progress.running():
                result = await poll_job(
                    context,
                    job,
                    start_at=StartAt(checkpoint) if checkpoint is not None else None,
                    max_pages=max_pages,
                    on_page=on_page,
                )
            where = context.store.description
    except (StoreError, ValueError) as error:
        raise fail(redact(str(error)), 1) from None
    if result.status == "skipped":
        raise fail(f"{project}/{descriptor.id} is being polled by a worker right now; try later", 1)
    if result.status != "ok":
        raise fail(result.error or f"the poll ended as {result.status}", 1)
    tally.checkpoint = result.checkpoint
    typer.echo(
        f"stored in {where}: {result.inserted} new signal(s), {result.duplicates} already stored",
        err=True,
    )
    return tally
