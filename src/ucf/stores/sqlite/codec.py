"""How values cross into SQLite columns and back."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
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


@functools.cache
def _plain_json() -> Callable[[Any], bytes]:
    """orjson's writer, refusing (TypeError) anything but plain JSON data, the rest left to
    pydantic-core. Imported on first use: ~15 ms a process that stores no signal skips."""
    import orjson  # on first use: see the docstring

    option = (
        orjson.OPT_PASSTHROUGH_SUBCLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
    )
    return functools.partial(orjson.dumps, option=option)


def dump_signal(value: Any, *, signal_id: str) -> str:
    """Signal bodies are the hot path: orjson writes one ~3x faster than pydantic-core's
    encoder (itself ~2.5x ``json.dumps``), with the very same compact text.

    orjson takes only plain JSON data (str, int within 64 bits, float, bool, None,
    list, tuple, dict with str keys); on anything else it raises — integers beyond
    64 bits, non-str keys, lone surrogates, subclasses, sets, datetimes — and
    pydantic-core writes the value as it always did (laxer at the edges: a set
    becomes a list, NaN becomes null, as orjson writes NaN too). A test holds both
    paths to one output.
    """
    try:
        return _plain_json()(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        pass
    try:
        return pydantic_core.to_json(value, inf_nan_mode="null").decode()
    except (pydantic_core.PydanticSerializationError, TypeError) as err:
        raise InvalidRecord(
            f"signal {signal_id} is not JSON ({err})", "pass JSON-compatible values"
        ) from None


def load_signal(text: str) -> Any:
    return pydantic_core.from_json(text)
