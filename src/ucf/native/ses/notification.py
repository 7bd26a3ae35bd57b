"""An SES ``Received`` notification as one ``email_received`` signal.

The notification is the JSON SES publishes for each email a receipt rule
accepts (https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-contents.html):
``mail`` (envelope, ``commonHeaders``, up to 10 KB of headers), ``receipt``
(the spam, virus, SPF, DKIM and DMARC verdicts, the action that published it)
and, for an SNS action only, ``content``: the raw message. Mail over SNS's
size limit is stored by an S3 action instead and arrives without ``content``;
the signal then says so (and carries the body when the instance could fetch
it from its bucket).

Identity: the SES ``mail.messageId`` with the receipt time as version, so an
SNS redelivery (same message, new or same SNS ``MessageId``) is one signal.
Nothing is dropped for its verdicts: spam and viruses become tags, so triage
sees them and decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import getaddresses
from typing import Any, Final

from ucf.native import (
    ItemError,
    MappedSignal,
    MappingResult,
    Priority,
    build_signal,
    parse_timestamp,
)
from ucf.native.ses.mail import ContentUnreadable, MailBody, decode_content, read_mail

__all__ = [
    "SIGNAL_TYPE",
    "ContentState",
    "Received",
    "normalise_notifications",
    "related_tickets",
]

SIGNAL_TYPE: Final = "email_received"
VERDICTS: Final = ("spam", "virus", "spf", "dkim", "dmarc")
VERDICT_TAGS: Final[Mapping[str, str]] = {
    "spam": "spam",
    "virus": "virus",
    "spf": "spf-fail",
    "dkim": "dkim-fail",
    "dmarc": "dmarc-fail",
}
TICKET_KEY: Final = re.compile(
    r"(?<![A-Za-z0-9_-])([A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8})(?![A-Za-z0-9])"
)
"""Jira-style keys (``ABC-123``) in a subject."""
TICKET_NUMBER: Final = re.compile(r"(?<![&A-Za-z0-9])#([1-9][0-9]{0,8})(?![A-Za-z0-9])")
"""GitHub/Linear-style references (``#123``) in a subject."""
X_PRIORITY: Final[Mapping[str, Priority]] = {
    "1": "high",
    "2": "high",
    "3": "medium",
    "4": "low",
    "5": "low",
}
IMPORTANCE: Final[Mapping[str, Priority]] = {"high": "high", "normal": "medium", "low": "low"}
RFC2156_PRIORITY: Final[Mapping[str, Priority]] = {
    "urgent": "high",
    "normal": "medium",
    "non-urgent": "low",
}


class ContentState:
    """Where the body of a notification came from (``raw.content`` of the signal)."""

    INCLUDED: Final = "included"
    FROM_S3: Final = "fetched_from_s3"
    NOT_INCLUDED: Final = "not_included"
    UNREADABLE: Final = "unreadable"


def related_tickets(subject: str) -> list[str]:
    """Ticket keys a subject names: ``ABC-123`` as is, ``#123`` with its hash."""
    keys = [match.group(1) for match in TICKET_KEY.finditer(subject)]
    keys += [f"#{match.group(1)}" for match in TICKET_NUMBER.finditer(subject)]
    return keys


def _addresses(values: Any) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return []
    pairs = getaddresses([str(v) for v in values if isinstance(v, str)])
    return [address.lower() for _, address in pairs if "@" in address]


def _priority(headers: Mapping[str, str]) -> Priority | None:
    value = headers.get("x-priority", "").strip()
    if value[:1] in X_PRIORITY:
        return X_PRIORITY[value[:1]]
    for name, table in (("importance", IMPORTANCE), ("priority", RFC2156_PRIORITY)):
        found = table.get(headers.get(name, "").strip().lower())
        if found is not None:
            return found
    return None


def _verdict(receipt: Mapping[str, Any], name: str) -> str | None:
    verdict = receipt.get(f"{name}Verdict")
    status = verdict.get("status") if isinstance(verdict, dict) else None
    return status.upper() if isinstance(status, str) else None


def _timestamp(value: Any) -> datetime | None:
    """An SES time (ISO 8601; without an offset, UTC) in UTC; None for anything else,
    a time outside datetime's range in UTC included."""
    return parse_timestamp(value, "iso8601")


@dataclass(frozen=True, slots=True)
class Received:
    """One ``Received`` notification, with the raw message if it was obtained elsewhere
    (an S3 object) and a note on why the body is missing, if it is."""

    notification: Mapping[str, Any]
    fetched: bytes | None = None
    content_note: str | None = None

    @property
    def mail(self) -> Mapping[str, Any]:
        mail = self.notification.get("mail")
        return mail if isinstance(mail, dict) else {}

    @property
    def receipt(self) -> Mapping[str, Any]:
        receipt = self.notification.get("receipt")
        return receipt if isinstance(receipt, dict) else {}

    @property
    def action(self) -> Mapping[str, Any]:
        action = self.receipt.get("action")
        return action if isinstance(action, dict) else {}

    @property
    def message_id(self) -> str | None:
        value = self.mail.get("messageId")
        return value if isinstance(value, str) and value else None

    def body(self) -> tuple[MailBody | None, str, str | None]:
        """The parsed body, where it came from, and a note when it is missing."""
        content = self.notification.get("content")
        raw: bytes | None = None
        state = ContentState.NOT_INCLUDED
        note = self.content_note
        if isinstance(content, str):
            try:
                raw = decode_content(content, self.action.get("encoding"))
                state = ContentState.INCLUDED
            except ContentUnreadable as error:
                state, note = ContentState.UNREADABLE, str(error)
        elif self.fetched is not None:
            raw, state = self.fetched, ContentState.FROM_S3
        elif note is None:
            note = (
                "SES sent no content: the message was delivered by an S3 action "
                "(mail over SNS's size limit); configure the instance's s3Bucket to read it"
                if self.action.get("type") == "S3"
                else "SES sent no content with this notification"
            )
        return (read_mail(raw) if raw is not None else None), state, note

    def to_signal(self, *, connector_id: str, project_id: str, now: datetime) -> MappedSignal:
        mail, receipt = self.mail, self.receipt
        message_id = self.message_id
        if message_id is None:
            raise ValueError("the notification has no mail.messageId")
        common = mail.get("commonHeaders")
        common = common if isinstance(common, dict) else {}
        body, state, note = self.body()
        headers = _header_map(mail.get("headers"))
        if body is not None:
            headers = {**body.headers, **headers}
        subject = common.get("subject")
        subject = subject if isinstance(subject, str) else headers.get("subject", "")
        verdicts = {name: _verdict(receipt, name) for name in VERDICTS}
        tags = [VERDICT_TAGS[name] for name, status in verdicts.items() if status == "FAIL"]
        if body is not None and body.attachments:
            tags.append("attachments")
        if body is None:
            tags.append("content-missing")
        senders = _addresses(common.get("from")) or _addresses(mail.get("source"))
        recipients = _addresses(common.get("to")) + _addresses(common.get("cc"))
        received_at = _timestamp(mail.get("timestamp")) or _timestamp(receipt.get("timestamp"))
        raw: dict[str, Any] = {
            "messageId": message_id,
            "receivedAt": mail.get("timestamp"),
            "subject": subject,
            "from": common.get("from", []),
            "to": common.get("to", []),
            "cc": common.get("cc", []),
            "replyTo": common.get("replyTo", []),
            "date": common.get("date"),
            "headerMessageId": common.get("messageId"),
            "envelopeFrom": mail.get("source"),
            "recipients": receipt.get("recipients", []),
            "verdicts": {name: status for name, status in verdicts.items() if status},
            "action": {k: v for k, v in self.action.items() if k != "encoding"},
            "content": state,
            "bodyFormat": body.body_format if body is not None else "none",
            "text": body.text if body is not None else "",
            "attachments": [a.to_json() for a in body.attachments] if body is not None else [],
        }
        if note is not None:
            raw["contentNote"] = note
        if body is not None and body.truncated:
            raw["textTruncated"] = True
        if "dmarcPolicy" in receipt:
            raw["dmarcPolicy"] = receipt["dmarcPolicy"]
        if mail.get("headersTruncated") is True:
            raw["headersTruncated"] = True
        return build_signal(
            source=connector_id,
            project_id=project_id,
            item_id=message_id,
            version=str(mail.get("timestamp") or message_id),
            timestamp=received_at or now,
            signal_type=SIGNAL_TYPE,
            summary=subject.strip() or "(no subject)",
            raw=raw,
            priority=_priority(headers),
            participants=[*senders, *recipients],
            related_tickets=related_tickets(subject),
            tags=tags,
        )


def _header_map(headers: Any) -> dict[str, str]:
    """``mail.headers`` (a list of ``{name, value}``) by lower-cased name, first one wins."""
    found: dict[str, str] = {}
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict):
                name, value = header.get("name"), header.get("value")
                if isinstance(name, str) and isinstance(value, str):
                    found.setdefault(name.lower(), value)
    return found


def normalise_notifications(
    items: Sequence[Received] | Iterable[Received],
    *,
    connector_id: str,
    project_id: str,
    now: datetime,
) -> MappingResult:
    """Signals of ``Received`` notifications; an unreadable one is an item error, never a raise."""
    result = MappingResult()
    for index, item in enumerate(items):
        try:
            result.signals.append(
                item.to_signal(connector_id=connector_id, project_id=project_id, now=now)
            )
        except (ValueError, TypeError, LookupError) as error:
            result.errors.append(ItemError(index, str(error), item.message_id))
    return result
