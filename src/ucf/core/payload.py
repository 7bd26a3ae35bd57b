"""Strict JSON for everything that arrives from outside (API responses, webhook bodies).

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity``; they are not
JSON, cannot be stored or forwarded as JSON, and no signal may carry them. One
parser refuses them everywhere. A number too large for a float (``1e400``) is
valid JSON and parses to infinity, as with ``json``; the stores write it as
``null`` (:mod:`ucf.stores.signal_text`).
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core

from ucf.core.missing import MISSING


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads_strict(data: bytes | str) -> Any:
    """Parse standard JSON; raises ``ValueError`` (incl. ``JSONDecodeError``) otherwise.

    pydantic-core's parser (Rust, already a dependency) reads every polled page
    about 1.4x faster than ``json``; whatever it refuses — errors, but also
    what ``json`` alone accepts (UTF-16 bodies, lone surrogate escapes) — is
    read again by ``json``, so what is accepted and every error message are
    exactly ``json``'s.

    Only keys go through pydantic-core's string cache, as ``json`` memoises
    only keys: a poll's pages repeat their keys, but nearly every value is new
    (titles, ids, times), and looking those up and storing them in the cache
    cost more than it saved. Measured on 200 distinct pages of GitHub issues:
    4.1-4.2 -> 3.65-3.8 µs per item timed alone, 5.75 -> 4.45 µs of the
    parse's own CPU inside ``bench/poll.py`` (three runs each). Parsing the
    same page over and over hides this: every value is then a cache hit.
    """
    try:
        return pydantic_core.from_json(data, allow_inf_nan=False, cache_strings="keys")
    except (ValueError, TypeError):  # TypeError: a str it cannot encode (a lone surrogate)
        return json.loads(data, parse_constant=_refuse_constant)


def payload_or_missing(body: bytes) -> Any:
    """A webhook body as JSON, or ``MISSING`` when it is empty or not standard JSON."""
    if not body.strip():
        return MISSING
    try:
        return loads_strict(body)
    except (ValueError, RecursionError):
        return MISSING
