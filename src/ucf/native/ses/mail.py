"""An email's raw MIME as what triage reads: its text, and its attachments by name only.

SES puts the raw message in the notification's ``content`` (SNS actions only),
either as UTF-8 text or base64, as the receipt rule's *Encoding* says
(https://docs.aws.amazon.com/ses/latest/dg/receiving-email-action-sns.html).
It is parsed with the standard library's ``email`` package under
``policy.default`` (RFC 5322/6532 headers, ``get_body``), which copes with
malformed mail by recording defects instead of raising.

The text part is preferred; a message with only HTML is converted to text the
way the sanitiser converts HTML. Attachments are listed (file name, media
type, decoded size) and never stored: an email's attachments are not a
signal's business, and they are where malware travels.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any, Final

from ucf.native import html_to_text

__all__ = ["TEXT_LIMIT", "Attachment", "MailBody", "decode_content", "read_mail"]

TEXT_LIMIT: Final = 16_000
"""Characters of body text kept in a signal (the rest is marked as cut)."""


class ContentUnreadable(ValueError):
    """``content`` does not decode as its encoding says."""


def decode_content(content: str, encoding: str | None) -> bytes:
    """The raw message bytes of ``content`` under ``receipt.action.encoding``.

    AWS's API spells the rule option ``UTF-8`` / ``Base64``; notifications carry
    ``UTF8`` / ``BASE64``. Both are read, case and dashes ignored; absent means UTF-8
    (the rule's default).
    """
    name = (encoding or "UTF8").upper().replace("-", "")
    if name == "BASE64":
        try:
            return base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError):
            raise ContentUnreadable("content is not valid base64") from None
    if name == "UTF8":
        return content.encode("utf-8", "surrogateescape")
    raise ContentUnreadable(f"unknown content encoding {encoding!r}")


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "contentType": self.content_type, "size": self.size}


@dataclass(frozen=True, slots=True)
class MailBody:
    """What a message says: ``text`` (from ``text/plain``, else converted from
    ``text/html``), which part it came from, and the attachments it carries."""

    text: str
    body_format: str  # "text", "html" or "none"
    attachments: tuple[Attachment, ...]
    headers: dict[str, str]
    truncated: bool = False


def _content(part: Message) -> str:
    """A text part's content, decoded by its charset; unknown charsets read as UTF-8 with
    replacement characters rather than failing the whole message."""
    try:
        value = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, AssertionError):
        payload = part.get_payload(decode=True)
        value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return value if isinstance(value, str) else ""


def _attachments(message: EmailMessage) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if not (part.is_attachment() or filename):
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        found.append(
            Attachment(
                filename=str(filename or "(unnamed)"),
                content_type=part.get_content_type(),
                size=size,
            )
        )
    return tuple(found)


def read_mail(raw: bytes) -> MailBody:
    """The body text and attachment list of a raw MIME message."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage objects
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        text, body_format = "", "none"
    elif part.get_content_type() == "text/html":
        text, body_format = html_to_text(_content(part)), "html"
    else:
        text, body_format = _content(part).strip(), "text"
    truncated = len(text) > TEXT_LIMIT
    if truncated:
        text = text[: TEXT_LIMIT - 1] + "…"
    headers = {name.lower(): str(value) for name, value in message.items()}
    return MailBody(text, body_format, _attachments(message), headers, truncated)
