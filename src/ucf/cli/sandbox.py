"""``ucf sandbox``: the whole of ucf against fakes of the catalogue APIs, offline.

A newcomer's first command: it starts a faithful fake of every catalogue API
with live activity, a real ``ucf serve`` with an instance of every connector
pointed at them, and prints where to look. Ctrl-C stops everything and exits 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ucf.cli.errors import fail


def sandbox(
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Port of the sandbox's ucf serve (0: a free one; a busy port falls back to one).",
        ),
    ] = 8080,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Keep the sandbox's store, secrets and server log here; default: a temporary "
            "directory removed on exit.",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            min=0,
            help="Stop by itself after this many seconds of activity; default: run until Ctrl-C.",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        float, typer.Option("--every", min=0.05, help="Seconds between two sandbox events.")
    ] = 1.5,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            min=0.5,
            max=3600,
            help="Seconds between two polls of an instance (the catalogue's own are minutes).",
        ),
    ] = 5.0,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Seed of the random activity, to replay a run.", show_default=False
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Only where to look and the summary; no live lines."),
    ] = False,
) -> None:
    """Run ucf against local fakes of every catalogue API, with live activity."""
    from ucf.sandbox.console import Reporter
    from ucf.sandbox.session import SandboxError, SandboxOptions, run_sandbox

    options = SandboxOptions(
        port=port,
        data_dir=data_dir.expanduser() if data_dir is not None else None,
        duration=duration,
        every=every,
        poll_interval=poll_interval,
        quiet=quiet,
        seed=seed,
    )
    try:
        run_sandbox(options, Reporter(quiet=quiet))
    except SandboxError as error:
        raise fail(str(error), 1) from None
    except KeyboardInterrupt:  # only before the sandbox took over Ctrl-C: nothing is running yet
        raise typer.Exit(0) from None
