"""Strict JSON for everything that arrives from outside (API responses, webhook bodies).

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity``; they are not
JSON, cannot be stored or forwarded as JSON, and no signal may carry them. One
parser refuses them everywhere. A number too large for a float (``1e400``) is
valid JSON and parses to infinity, as with ``json``; the stores write it as
``null`` (:mod:`ucf.stores.signal_text`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, Final

from ucf.core.missing import MISSING

# How much a process reads with ``json`` before it imports pydantic-core's parser.
# The import costs 8-20 ms of CPU (pydantic_core.core_schema alone: most of a cold
# start's third-party import time after botocore's), and pydantic-core saves about
# 0.3-1.5 ms per MiB over ``json`` (GitHub issue pages: a 21-issue page of 72 KiB
# 0.5 -> 0.2 ms, a 100-issue one of 350 KiB 2.0 -> 1.75 ms); a webhook body, a cold
# start's first page or a small poll never repays the import, a long one does.
JSON_FIRST_BYTES: Final = 8 * 1024 * 1024


def encodes_as_utf8(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form, as a store, a log, RE2 or a request needs.

    JSON's ``"\\ud800"`` escape parses to a lone surrogate, which strict UTF-8 refuses
    wherever the text goes next (a 500 where it was saved, a log line that raised):
    settings, credentials, descriptors and masked values are checked with this."""
    if text.isascii():  # nearly every text, and a flag lookup
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _json_loads(data: bytes | str) -> Any:
    """``json.loads``, refusing NaN/Infinity; a document nested deeper than ``json``'s
    recursion can go (about a thousand levels: 2 KiB of ``[]``) is a ``ValueError`` too,
    not the ``RecursionError`` ``json`` raises: every caller handles ``ValueError``, and
    an upstream's page or a stranger's webhook body must not escape as ucf's own crash."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply to read") from None


class StrictJson:
    """Standard JSON only, ``json``'s answers and errors; pydantic-core's speed once it pays.

    pydantic-core's parser (Rust, already a dependency) reads every polled page
    about 1.4x faster than ``json``; whatever it refuses — errors, but also
    what ``json`` alone accepts (UTF-16 bodies, lone surrogate escapes) — is
    read again by ``json``, so what is accepted and every error message are
    exactly ``json``'s. It is imported only after ``json_first`` bytes were
    read (:data:`JSON_FIRST_BYTES`): a Lambda cold start or a webhook
    delivery never pays its import.

    Only keys go through pydantic-core's string cache, as ``json`` memoises
    only keys: a poll's pages repeat their keys, but nearly every value is new
    (titles, ids, times), and looking those up and storing them in the cache
    cost more than it saved. Measured on 200 distinct pages of GitHub issues:
    4.1-4.2 -> 3.65-3.8 µs per item timed alone, 5.75 -> 4.45 µs of the
    parse's own CPU inside ``bench/poll.py`` (three runs each). Parsing the
    same page over and over hides this: every value is then a cache hit.

    A process that has imported pydantic-core already (``ucf serve`` with FastAPI;
    ``bench/poll.py``'s poll process before its first page, through the models it
    used) has nothing left to save by waiting: it takes the fast parser from its
    first document (``bench/poll.py`` read its first 8 MiB, 55 of its 200 pages,
    with ``json``: 9-11.5 µs per item against 5.0, timed alone on the bench's
    pages). ``loaded_at_once=False`` waits for ``json_first`` bytes whatever was
    imported (the tests of ``json``'s path).
    """

    __slots__ = ("_fast", "_json_left", "_loaded_at_once")

    def __init__(self, json_first: int = JSON_FIRST_BYTES, *, loaded_at_once: bool = True) -> None:
        self._json_left = json_first
        self._loaded_at_once = loaded_at_once
        self._fast: Callable[..., Any] | None = None

    def loads(self, data: bytes | str) -> Any:
        """Parse standard JSON; raises ``ValueError`` (incl. ``JSONDecodeError``) otherwise."""
        fast = self._fast
        if fast is None:
            # racing threads may read a little more with json: harmless
            if self._json_left > 0 and not (
                self._loaded_at_once and "pydantic_core" in sys.modules
            ):
                self._json_left -= len(data)
                return _json_loads(data)
            from pydantic_core import from_json

            self._fast = fast = from_json
        try:
            return fast(data, allow_inf_nan=False, cache_strings="keys")
        except (ValueError, TypeError):  # TypeError: a str it cannot encode (a lone surrogate)
            return _json_loads(data)


_PROCESS_PARSER: Final = StrictJson()


def loads_strict(data: bytes | str) -> Any:
    """Parse standard JSON with the process's :class:`StrictJson`; ``ValueError`` otherwise."""
    return _PROCESS_PARSER.loads(data)


def payload_or_missing(body: bytes) -> Any:
    """A webhook body as JSON, or ``MISSING`` when it is empty or not standard JSON."""
    if not body.strip():
        return MISSING
    try:
        return loads_strict(body)
    except (ValueError, RecursionError):
        return MISSING
