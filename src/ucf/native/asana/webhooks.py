"""Asana's webhooks: the ``X-Hook-Secret`` handshake, signed deliveries, compact events.

From Asana's webhooks guide (https://developers.asana.com/docs/webhooks-guide):

* While ``POST /webhooks`` is in flight, Asana POSTs to the target with an
  ``X-Hook-Secret`` header; the target answers ``200`` (or ``204``) echoing
  the same header. "This is the only time it will be transmitted": the
  secret is handed to the gateway, which keeps it only while the instance has
  none (an unsigned handshake must not be able to replace a secret).
* Every delivery after that carries ``X-Hook-Signature``: the SHA-256 HMAC of
  the request body keyed with that secret, lowercase hex. It is checked on the
  raw bytes, in constant time.
* The body is ``{"events": [...]}`` of compact events; an empty list is a
  heartbeat (at the handshake, then every eight hours) and stores nothing.
  The events name tasks and comments, which are fetched in full through the
  instance's own upstream before they become signals, exactly as a poll does.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Final

from ucf.native import (
    Handshake,
    HandshakeResponse,
    Malformed,
    MappingResult,
    Refused,
    UpstreamCalls,
    Verdict,
    Verified,
    WebhookContext,
    WebhookRequest,
    loads_strict,
)
from ucf.native.asana.source import normalise, resolve_events

if TYPE_CHECKING:
    from ucf.native.asana.source import AsanaSource

__all__ = ["SECRET_HEADER", "SECRET_KEY", "SIGNATURE_HEADER", "AsanaWebhooks", "signature"]

SECRET_HEADER: Final = "X-Hook-Secret"  # noqa: S105 - a header name
SIGNATURE_HEADER: Final = "X-Hook-Signature"
SECRET_KEY: Final = "webhookSecret"  # noqa: S105 - the credential's key
"""The credential the handshake's secret is kept under."""


def signature(secret: str, body: bytes) -> str:
    """What Asana puts in ``X-Hook-Signature``: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AsanaWebhooks:
    """The push side of :class:`~ucf.native.asana.source.AsanaSource`."""

    def __init__(self, source: AsanaSource) -> None:
        self._source = source

    async def verify(self, request: WebhookRequest, context: WebhookContext) -> Verdict:
        offered = request.header(SECRET_HEADER)
        if offered is not None:
            secret = offered.strip()
            if not secret:
                return Refused("missing_header", "a handshake with an empty X-Hook-Secret")
            answer = HandshakeResponse("echo_header", headers={SECRET_HEADER: secret})
            return Handshake(answer, keep={SECRET_KEY: secret})
        stored = context.credentials.get(SECRET_KEY)
        if not stored:
            return Refused(
                "missing_secret",
                "no X-Hook-Secret has been received for this instance: create the webhook "
                "(POST /webhooks) so that Asana's handshake reaches this URL",
            )
        sent = request.header(SIGNATURE_HEADER)
        if not sent:
            return Refused("missing_header", "the delivery has no X-Hook-Signature")
        expected = signature(stored, request.body).encode()
        if not hmac.compare_digest(expected, sent.strip().lower().encode("utf-8", "replace")):
            return Refused("signature_mismatch", "X-Hook-Signature does not match the body")
        return Verified()

    async def signals(self, request: WebhookRequest, context: WebhookContext) -> MappingResult:
        try:
            payload = loads_strict(request.body)
        except ValueError:  # not standard JSON, or nested too deep to read
            raise Malformed("the body is not JSON") from None
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list):
            raise Malformed("the body has no 'events' list")
        if not events:
            return MappingResult()  # a heartbeat: 200, nothing stored
        # Events that name no task or comment (sections, the project) are a 200 that
        # stores nothing, never a 202: Asana counts only 200 and 204 as delivered.
        upstream = await context.upstream()
        base, project = self._source.settings(upstream.config)
        calls = UpstreamCalls(upstream)
        changes, _gone = await resolve_events(calls, base, events, project)
        return normalise(changes, context.project_id)
