"""Every item type of the single table: its key pattern, in one place.

The brief fixes the first two (descriptors and instances, with GSI2 for "all
instances of a connector"); the rest follow the same conventions. Each
function's docstring names the access pattern the key serves; ``docs/storage.md``
has the same table for humans.

Ids are embedded in keys with ``#`` and ``%`` percent-encoded (:func:`part`), so
no id can forge another item's key ("a#b" cannot pose as connector "a" plus
suffix "b"). Ids without those characters appear verbatim, exactly as in the
brief. Numbers in sort keys are fixed-width (:func:`sortable_ms`) so that string
order is numeric order.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from ucf.stores.errors import InvalidRecord

Key = dict[str, dict[str, str]]

# Epoch milliseconds shifted so that every datetime (years 1..9999) is a
# non-negative 15-digit number: string order is then time order.
_MS_OFFSET = 10**14
_MS_WIDTH = 15


def part(value: str) -> str:
    """An id as it appears inside a key: ``%`` and ``#`` percent-encoded."""
    return value.replace("%", "%25").replace("#", "%23")


def sortable_ms(ms: int) -> str:
    shifted = ms + _MS_OFFSET
    if not 0 <= shifted < 10**_MS_WIDTH:
        raise InvalidRecord(f"time {ms} ms since the epoch is out of range", "use a real date")
    return f"{shifted:0{_MS_WIDTH}d}"


def ms_from_sortable(text: str) -> int:
    return int(text) - _MS_OFFSET


def key(pk: str, sk: str) -> Key:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


# --- registry (the brief's §5.1) ------------------------------------------------------

DESCRIPTORS_GSI2PK = "DESCRIPTORS"


def descriptor(connector_id: str) -> Key:
    """``CONNECTOR#{id} / DESCRIPTOR``: get/put/delete one descriptor.

    GSI2 ``DESCRIPTORS / CONNECTOR#{id}`` lists them all in id order.
    """
    return key(f"CONNECTOR#{part(connector_id)}", "DESCRIPTOR")


VERSION_PREFIX = "VERSION#"


def descriptor_version(connector_id: str, saved_at: str) -> Key:
    """``CONNECTOR#{id} / VERSION#{savedAt}``: a descriptor an edit replaced, beside the
    current one; a connector's all, newest first, by a Query on the prefix. Not in GSI2,
    so the catalogue's listing never sees them."""
    return key(f"CONNECTOR#{part(connector_id)}", VERSION_PREFIX + saved_at)


def project_pk(project_id: str) -> str:
    return f"PROJECT#{part(project_id)}"


INSTANCE_PREFIX = "CONNECTOR_INSTANCE#"


def instance(project_id: str, connector_id: str) -> Key:
    """``PROJECT#{p} / CONNECTOR_INSTANCE#{c}``: one instance; a project's in id order.

    GSI2 ``CONNECTOR#{c} / PROJECT#{p}``: every project's instance of a connector.
    """
    return key(project_pk(project_id), f"{INSTANCE_PREFIX}{part(connector_id)}")


def instance_gsi2(project_id: str, connector_id: str) -> dict[str, dict[str, str]]:
    return {
        "GSI2PK": {"S": f"CONNECTOR#{part(connector_id)}"},
        "GSI2SK": {"S": project_pk(project_id)},
    }


PROJECTS_PK = "PROJECTS"


def project_directory(project_id: str) -> Key:
    """``PROJECTS / PROJECT#{p}``: which projects have instances (for "all enabled")."""
    return key(PROJECTS_PK, project_pk(project_id))


# --- checkpoints ----------------------------------------------------------------------


def checkpoint_prefix(connector_id: str) -> str:
    return f"CHECKPOINT#{part(connector_id)}#"


def checkpoint(project_id: str, connector_id: str, name: str) -> Key:
    """``PROJECT#{p} / CHECKPOINT#{c}#{key}``: CAS on ``version``; an instance's all by prefix."""
    return key(project_pk(project_id), checkpoint_prefix(connector_id) + part(name))


# --- signals --------------------------------------------------------------------------

PENDING_INGEST_GSI2PK = "INGEST#PENDING"


def dedup(dedup_key: str) -> Key:
    """``DEDUP#{dedupKey} / DEDUP``: the commit point of an ingest (conditional put).

    While its derived items are being written it carries the whole record and
    sits in GSI2 under ``INGEST#PENDING / {receivedMs}#{dedupKey}``, so an ingest
    cut short by a crash is finished by whoever finds it (a re-delivery, or the
    sweep in ``Outbox.claim``).
    """
    return key(f"DEDUP#{part(dedup_key)}", "DEDUP")


def signals_pk(project_id: str) -> str:
    return f"PROJECT#{part(project_id)}#SIGNALS"


def signal_sk(ts_ms: int, signal_id: str) -> str:
    return f"SIGNAL#{sortable_ms(ts_ms)}#{part(signal_id)}"


def signal(project_id: str, ts_ms: int, signal_id: str) -> Key:
    """``PROJECT#{p}#SIGNALS / SIGNAL#{tsMs}#{id}``: a project's signals, newest first.

    GSI2 ``PROJECT#{p}#CONNECTOR#{c}#RECEIVED / {receivedMs}#{dedupKey}``: the
    24 h / 7 d counts per instance, by receive time.
    """
    return key(signals_pk(project_id), signal_sk(ts_ms, signal_id))


def received_gsi2pk(project_id: str, connector_id: str) -> str:
    return f"PROJECT#{part(project_id)}#CONNECTOR#{part(connector_id)}#RECEIVED"


def signal_pointer(project_id: str, signal_id: str) -> Key:
    """``PROJECT#{p}#SIGNAL#{id} / SIGNAL``: find a signal by id (holds its sort key)."""
    return key(f"PROJECT#{part(project_id)}#SIGNAL#{part(signal_id)}", "SIGNAL")


# --- outbox ---------------------------------------------------------------------------


def outbox_pk(sink: str) -> str:
    return f"OUTBOX#{part(sink)}"


ENTRY_PREFIX = "ENTRY#"


def outbox_entry_id(received_ms: int, seq: int, dedup_key: str) -> str:
    """Opaque to callers; sorts in enqueue order (receive time, then ingest order)."""
    return f"{sortable_ms(received_ms)}.{seq:012d}.{part(dedup_key)}"


def outbox_entry(sink: str, entry_id: str) -> Key:
    """``OUTBOX#{sink} / ENTRY#{receivedMs}.{seq}.{dedupKey}``: one sink's queue, oldest first."""
    return key(outbox_pk(sink), ENTRY_PREFIX + entry_id)


def parked_pk(sink: str) -> str:
    return f"PARKED#{part(sink)}"


def parked_entry(sink: str, entry_id: str) -> Key:
    """``PARKED#{sink} / ENTRY#…``: entries the sink refused, outside the queue's partition
    so claims never read past them."""
    return key(parked_pk(sink), ENTRY_PREFIX + entry_id)


# --- coordination ---------------------------------------------------------------------


def lease(name: str) -> Key:
    """``LEASE#{name} / LEASE``: conditional writes on owner and expiry."""
    return key(f"LEASE#{part(name)}", "LEASE")


def rate_bucket(bucket_key: str) -> Key:
    """``RATE#{bucketKey} / BUCKET``: a token bucket, read-then-conditional-write on ``rev``."""
    return key(f"RATE#{part(bucket_key)}", "BUCKET")


def record(name: str) -> Key:
    """``RECORD#{key} / RECORD``: a small JSON value, with ``expiresAt`` when it expires."""
    return key(f"RECORD#{part(name)}", "RECORD")


SECRET_LEASES_GSI2PK = "SECRET_LEASES"  # noqa: S105 - a key, not a secret


def secret_lease(ref: str) -> Key:
    """``SECRET_LEASE#{ref} / SECRET_LEASE``: a short-lived secret's ref and its time.

    GSI2 ``SECRET_LEASES / {untilMs}#{ref}``: those past their time, earliest first. No
    TTL: the item must outlive its secret, which the upkeep deletes first.
    """
    return key(f"SECRET_LEASE#{part(ref)}", "SECRET_LEASE")


# --- attribute values -----------------------------------------------------------------


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRecord(f"{value} cannot be stored as a number", "pass a finite number")
        # Plain positional notation: repr() may say "1e-05", which is not ours to gamble on.
        return {"N": format(Decimal(repr(value)), "f")}
    return {"N": str(value)}


def b(value: bool) -> dict[str, bool]:
    return {"BOOL": value}


def get_s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def get_n(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return None if value is None else int(value["N"])


def get_f(item: dict[str, Any], name: str) -> float | None:
    value = item.get(name)
    return None if value is None else float(value["N"])


def get_b(item: dict[str, Any], name: str) -> bool | None:
    value = item.get(name)
    return None if value is None else bool(value["BOOL"])


def dump_json(value: Any, *, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidRecord(f"{what} is not JSON ({err})", "pass JSON-compatible values") from None
