"""How values cross into SQLite columns and back (signal bodies: :mod:`ucf.stores.signal_text`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pydantic_core

from ucf.stores.errors import InvalidRecord
from ucf.stores.models import text_time
from ucf.stores.signal_text import dump_signal

__all__ = [
    "dump_json",
    "dump_signal",
    "load_json",
    "load_signal",
    "opt_time",
    "parse_time",
    "text_time",
]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def opt_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def dump_json(value: Any, *, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidRecord(f"{what} is not JSON ({err})", "pass JSON-compatible values") from None


def load_json(text: str) -> Any:
    return json.loads(text)


def load_signal(text: str) -> Any:
    return pydantic_core.from_json(text)
