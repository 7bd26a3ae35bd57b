"""Options every store-using command takes, written once so their help never drifts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store URL (sqlite:///…, dynamodb://TABLE?region=…); default: $UCF_STORE, "
        "else SQLite in the data directory",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the SQLite file, master key, secrets and API token live; default: "
        "$UCF_DATA_DIR, else ~/.local/share/ucf",
        show_default=False,
    ),
]
