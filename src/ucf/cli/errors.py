"""How every command fails: one line on stderr and a non-zero exit, never a traceback.

Kept free of heavy imports: every command module uses it, and ``ucf --help``
should not pay for the descriptor models or the stores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ucf.core.payload import loads_strict


def fail(message: str, code: int = 2) -> typer.Exit:
    """A one-line error on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def read_json_file(path: Path, what: str) -> Any:
    """The file's JSON, read as the gateway and a poll read theirs (no NaN), or one line.

    Every way ``json`` refuses is that one line: a file that is not UTF-8, JSON nested
    deeper than ``json`` recurses, an integer of over 4300 digits — each was a traceback.
    A leading byte-order mark (Windows editors write one) is dropped, as the API and the
    gateway drop it: it was "not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig)".
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise fail(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise fail(
            f"{what} {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"offset {error.start}): save it as UTF-8"
        ) from None
    try:
        return loads_strict(text)
    except json.JSONDecodeError as error:
        raise fail(
            f"{what} {path} is not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except ValueError as error:  # nested too deeply, NaN, an integer of thousands of digits
        reason = "a number has too many digits" if "digits" in str(error) else str(error)
        raise fail(f"{what} {path} is not JSON ucf reads: {reason}") from None
