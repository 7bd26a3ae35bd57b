"""Records of what a store gives back when read: signals and outbox entries.

Kept apart from :mod:`ucf.stores.models` (which still exports every name, see
its ``__getattr__``) because a poll only writes: a Lambda poll worker's cold
start does not build these dataclasses (~0.5 ms each on Python 3.11). The API,
the dashboard and delivery import them on their first read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ucf.core.records import datarecord

__all__ = ["OutboxEntry", "OutboxLag", "ParkedEntry", "SignalCounts", "SignalPage", "StoredSignal"]


@datarecord
class StoredSignal:
    signal: dict[str, Any]
    dedup_key: str
    project_id: str
    connector_id: str
    received_at: datetime
    expires_at: datetime

    @property
    def signal_id(self) -> str:
        return str(self.signal["id"])


@datarecord
class SignalPage:
    """Newest first. ``next_cursor`` is opaque; None when there is nothing more."""

    items: tuple[StoredSignal, ...]
    next_cursor: str | None


@datarecord
class SignalCounts:
    """Signals received (by ``received_at``) in the windows the dashboard shows."""

    last_24h: int
    last_7d: int


# --- outbox --------------------------------------------------------------------------


@datarecord
class OutboxEntry:
    """A stored signal awaiting delivery to one sink; ack it once delivered."""

    entry_id: str
    sink: str
    project_id: str
    connector_id: str
    signal: dict[str, Any]
    enqueued_at: datetime
    attempts: int
    """Times this entry has been claimed, this claim included (1 on first delivery)."""


@datarecord
class ParkedEntry:
    """An outbox entry the sink refused for good, set aside so the ones after it can go."""

    entry: OutboxEntry
    reason: str
    """Secret-free: what the sink answered (e.g. "HTTP 422")."""
    parked_at: datetime


@datarecord
class OutboxLag:
    pending: int
    oldest_age_seconds: float | None
    """Age of the oldest entry not yet acknowledged; None when nothing is pending."""
    parked: int = 0
    """Entries the sink refused for good (not pending; see ``Outbox.park``)."""
