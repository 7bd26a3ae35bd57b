"""How every command fails: one line on stderr and a non-zero exit, never a traceback.

Kept free of heavy imports: every command module uses it, and ``ucf --help``
should not pay for the descriptor models or the stores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """A one-line error on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def read_json_file(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise fail(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise fail(
            f"{what} {path} is not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
