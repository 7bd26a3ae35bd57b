"""What identifies a signal and bounds its fields, without the signal models.

The dedup key, the signal id, the timestamp format and the contract's limits
and priorities (re-exported by :mod:`ucf.core.signal`, the contract's models).
Kept apart from the pydantic models so that the mapper and the sanitiser,
which build and check signals as plain wire objects on their fast paths, load
neither pydantic nor the models until something needs a model: a Lambda API
function's first webhook delivery builds none (``bench/coldstart.py``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

Priority = Literal["critical", "high", "medium", "low"]
PRIORITIES: tuple[Priority, ...] = ("critical", "high", "medium", "low")

SUMMARY_MAX_CHARS = 500
SIGNAL_TYPE_MAX_CHARS = 128
"""A descriptor's signal types (``then``, ``defaultType``): every signal carries its
type whole, and a store keeps a signal only so large (DynamoDB: 400 KB an item)."""
UNKNOWN_SIGNAL_TYPE = "unknown"


def dedup_key(source: str, project_id: str, item_id: str, version: str) -> str:
    """The identity of one version of one item (or of one webhook delivery).

    Sources deliver at least once; stores insert-if-absent on this key, so the
    signal store holds each item version exactly once. ``version`` is read from the
    item itself on both channels (its version field, else its update time), so a
    poll and a webhook of one change agree; only a webhook item that carries
    neither falls back to a signed delivery id or the body's hash
    (docs/security.md, "Signal identity and dedup"). Components are length-prefixed so no choice of ids can make two keys collide
    by concatenation.
    """
    material = (
        f"{len(source)}:{source}\x1f{len(project_id)}:{project_id}"
        f"\x1f{len(item_id)}:{item_id}\x1f{len(version)}:{version}"
    )
    # surrogatepass: an id parsed from JSON may hold a lone surrogate ("\\ud800"), which
    # strict UTF-8 refuses; the key of every other text is unchanged.
    return hashlib.blake2b(material.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Every 10-bit value as its two Crockford base32 characters: 13 lookups make a ULID.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)


_ULID_TIME_MAX = (1 << 48) - 1


def signal_id(key: str, timestamp_ms: int) -> str:
    """A ULID whose time part is the event time and whose random part is the dedup key.

    Deterministic ids make polls reproducible (a re-run after a crash yields the
    very same records) while keeping ULID's property that ids sort by time.
    """
    ts = timestamp_ms
    if not 0 <= ts <= _ULID_TIME_MAX:  # outside 1970..10889: min()/max() cost more than this
        ts = 0 if ts < 0 else _ULID_TIME_MAX
    # A ULID is the 130-bit big-endian base32 of the 128-bit value: 13 chunks of 10 bits,
    # five of the time (48 bits under two zero bits) and eight of the key's first 80 bits,
    # read as two 40-bit halves so that no step needs a big integer.
    high, low = int(key[:10], 16), int(key[10:20], 16)
    p = _PAIRS
    return "".join(
        (
            p[ts >> 40],
            p[(ts >> 30) & 1023],
            p[(ts >> 20) & 1023],
            p[(ts >> 10) & 1023],
            p[ts & 1023],
            p[high >> 30],
            p[(high >> 20) & 1023],
            p[(high >> 10) & 1023],
            p[high & 1023],
            p[low >> 30],
            p[(low >> 20) & 1023],
            p[(low >> 10) & 1023],
            p[low & 1023],
        )
    )


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z`` suffix."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is C and always writes four year digits (strftime's %Y may not);
    # in UTC it ends "+00:00", which becomes "Z".
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
