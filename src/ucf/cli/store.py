"""``ucf store init``: create or upgrade the configured store, and say what was done."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ucf.cli.errors import fail
from ucf.stores import StoreConfigError, StoreError, open_store
from ucf.stores.models import InitReport

store_app = typer.Typer(help="Create the ucf store and apply its migrations.", no_args_is_help=True)

StoreUrlOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        # No "[…]" here: rich reads it as markup and drops it from --help.
        help="Store URL: sqlite:///abs/path/ucf.db, sqlite:relative.db or "
        "dynamodb://TABLE?region=…&endpoint=…; default: $UCF_STORE, else "
        "ucf.db in $UCF_DATA_DIR, else in ~/.local/share/ucf",
        show_default=False,
    ),
]


async def _init(url: str | None) -> InitReport:
    store = open_store(url)
    try:
        return await store.init()
    finally:
        await store.close()


@store_app.command("init")
def init(store: StoreUrlOption = None) -> None:
    """Create the SQLite file or DynamoDB table (idempotent); apply pending migrations."""
    try:
        report = asyncio.run(_init(store))
    except StoreConfigError as error:
        raise fail(str(error)) from None
    except StoreError as error:
        raise fail(str(error), 1) from None
    if not report.actions:
        typer.echo(f"{report.location}: already initialised, nothing to do")
        return
    typer.echo(f"{report.location}: initialised")
    for action in report.actions:
        typer.echo(f"  - {action}")
