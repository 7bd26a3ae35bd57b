"""How values cross into SQLite columns and back."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pydantic_core

from ucf.stores.errors import InvalidRecord
from ucf.stores.models import text_time

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


def dump_signal(value: Any, *, what: str) -> str:
    """Signal bodies are the hot path: pydantic-core's encoder is ~2.5x json.dumps.

    For JSON data its output is the same compact text. It is laxer at the edges
    (a set becomes a list, NaN becomes null) and refuses values with no JSON form.
    """
    try:
        return pydantic_core.to_json(value, inf_nan_mode="null").decode()
    except (pydantic_core.PydanticSerializationError, TypeError) as err:
        raise InvalidRecord(f"{what} is not JSON ({err})", "pass JSON-compatible values") from None


def load_signal(text: str) -> Any:
    return pydantic_core.from_json(text)
