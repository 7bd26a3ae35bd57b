"""An Outlook message as a signal: pure functions, no I/O.

Graph describes a message (https://learn.microsoft.com/graph/api/resources/message)
with ``receivedDateTime``, ``createdDateTime`` and ``lastModifiedDateTime``,
``importance`` (``low``, ``normal``, ``high``), ``categories``,
``flag.flagStatus`` (``notFlagged``, ``complete``, ``flagged``), ``isRead``,
``from``/``toRecipients``/``ccRecipients`` as ``{"emailAddress": {"name",
"address"}}`` and ``bodyPreview``: the first 255 characters of the body as
plain text. The delta query and a change notification's follow-up ``GET``
select the same fields (:data:`SELECTED`), so both paths build the same signal.

Identity is the message ``id`` plus its version. The type follows from the
message alone, so both paths agree on it: a message not modified since it
arrived (within :data:`SETTLING`: Exchange touches a new message while it
files it) is ``email_received``; anything later is ``email_updated``. A
received message's version is :data:`RECEIVED`, whatever its
``lastModifiedDateTime`` says: the notification fetches it at once, often
before the filing touch, the delta poll after it, and the user may read it
within the window; each of those sightings is the one arrival, one signal.
A later change (read, flagged, categorised once settled) is versioned by its
``lastModifiedDateTime``: a notification and the next delta poll of it are
one signal, the next change another.

A message first seen once settled (a poll-only instance polling less often
than every 5 minutes, a notification missed) was only ever ``email_updated``:
the agent never heard it arrive. Every sighting of a message within
:data:`RECEIVED_HORIZON` of its arrival therefore also names its arrival
(version :data:`RECEIVED`): the first one stores it, whichever path sees the
message first, and every later one is a duplicate the store drops.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ucf.native import ItemError, MappedSignal, MappingResult, Priority, build_signal

__all__ = [
    "RECEIVED",
    "RECEIVED_HORIZON",
    "SELECTED",
    "SETTLING",
    "ticket_keys",
    "to_signals",
]

SELECTED: Final = (
    "id",
    "subject",
    "bodyPreview",
    "importance",
    "from",
    "toRecipients",
    "ccRecipients",
    "categories",
    "flag",
    "isRead",
    "receivedDateTime",
    "createdDateTime",
    "lastModifiedDateTime",
    "conversationId",
    "internetMessageId",
    "webLink",
)
"""The ``$select`` of every request: what the signal maps and ``raw`` keeps, nothing more."""

SETTLING: Final = timedelta(minutes=5)
"""How long after its arrival a message still counts as just received."""

RECEIVED: Final = "received"
"""The version of a message still settling: its arrival, however often it is touched."""

RECEIVED_HORIZON: Final = timedelta(days=7)
"""How long after its arrival a change of a message still names its arrival too: the
delta poll's first window (a message the instance never saw is announced if it arrived
within it), well within the store's default 30-day retention of the key that dedupes it."""

SOURCE: Final = "outlook"

_PRIORITY: Final[Mapping[str, Priority]] = {"high": "high", "low": "low"}

# Jira-style keys (ABC-123) and GitHub-style references (#123), as whole words.
_TICKET: Final = re.compile(r"(?<![\w#-])(?:[A-Z][A-Z0-9]{1,9}-[1-9]\d{0,8}|#\d{1,9})(?![\w-])")


def ticket_keys(text: str) -> list[str]:
    """Ticket references in a subject: ``ABC-123`` and ``#123``, in order, once each."""
    return list(dict.fromkeys(_TICKET.findall(text)))


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 lies before datetime's first day in UTC
        return None


def _addresses(message: Mapping[str, Any], *keys: str) -> list[str]:
    found: list[str] = []
    for key in keys:
        value = message.get(key)
        recipients = [value] if isinstance(value, dict) else value
        if not isinstance(recipients, list):
            continue
        for recipient in recipients:
            email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
            address = email.get("address") if isinstance(email, dict) else None
            if isinstance(address, str) and address:
                found.append(address.lower())
    return found


def _tags(message: Mapping[str, Any]) -> list[str]:
    categories = message.get("categories")
    tags = (
        [c for c in categories if isinstance(c, str) and c] if isinstance(categories, list) else []
    )
    flag = message.get("flag")
    if isinstance(flag, dict) and flag.get("flagStatus") == "flagged":
        tags.append("flagged")
    return tags


def _signals(message: Mapping[str, Any], project_id: str) -> list[MappedSignal] | str:
    """The message's signals (its arrival, then its change once settled), or why it cannot
    be one."""
    message_id = message.get("id")
    if not isinstance(message_id, str) or not message_id:
        return "the message has no id"
    modified = _moment(message.get("lastModifiedDateTime"))
    if modified is None:
        return "the message has no usable lastModifiedDateTime"
    received = _moment(message.get("receivedDateTime")) or _moment(message.get("createdDateTime"))
    arrived = _moment(message.get("createdDateTime")) or received
    fresh = arrived is not None and modified - arrived <= SETTLING
    subject = message.get("subject")
    subject = subject.strip() if isinstance(subject, str) else ""
    preview = message.get("bodyPreview")
    raw = {key: value for key, value in message.items() if not key.startswith("@odata.")}
    raw["text"] = preview if isinstance(preview, str) else ""
    importance = message.get("importance")
    priority = _PRIORITY.get(importance.lower()) if isinstance(importance, str) else None
    participants = _addresses(message, "from", "toRecipients", "ccRecipients")

    def signal(version: str, timestamp: datetime, signal_type: str) -> MappedSignal:
        return build_signal(
            source=SOURCE,
            project_id=project_id,
            item_id=message_id,
            version=version,
            timestamp=timestamp,
            signal_type=signal_type,
            summary=subject or "(no subject)",
            raw=raw,
            priority=priority,
            participants=participants,
            related_tickets=ticket_keys(subject),
            tags=_tags(message),
        )

    arrival = signal(RECEIVED, received or modified, "email_received")
    if fresh:
        return [arrival]
    change = signal(message["lastModifiedDateTime"], modified, "email_updated")
    if arrived is not None and modified - arrived <= RECEIVED_HORIZON:
        return [arrival, change]
    return [change]


def to_signals(items: Sequence[Any], *, project_id: str) -> MappingResult:
    """A page of messages as signals. ``@removed`` entries (deleted or moved out of the
    folder) are skipped: a message leaving the folder is not news for triage."""
    result = MappingResult()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            result.errors.append(ItemError(index, "the item is not a JSON object"))
            continue
        if "@removed" in item:
            result.skipped += 1
            continue
        signals = _signals(item, project_id)
        if isinstance(signals, str):
            item_id = item.get("id")
            result.errors.append(
                ItemError(index, signals, item_id if isinstance(item_id, str) else None)
            )
        else:
            result.signals.extend(signals)
    return result
