"""Graph change notifications for Outlook mail
(https://learn.microsoft.com/graph/change-notifications-delivery-webhooks).

* Validation: when a subscription is created Graph POSTs to
  ``{notificationUrl}?validationToken={token}``; the answer is ``200``,
  ``Content-Type: text/plain`` and the decoded token, within 10 seconds.
* Notifications are unsigned: each carries the subscription's ``clientState``,
  a per-instance random value ucf chose and keeps in the secret store. Every
  notification of a delivery must carry it (compared in constant time), else
  the whole delivery is refused.
* A basic notification names the message (``resourceData.id``); the message
  is fetched with the same ``$select`` as the delta poll, so the notification
  and the next poll make the same signal and the store keeps one.
* Lifecycle notifications (https://learn.microsoft.com/graph/change-notifications-lifecycle-events):
  ``reauthorizationRequired`` renews the subscription at once; ``missed``
  (Graph dropped notifications) and ``subscriptionRemoved`` (none will come
  until the subscription is recreated) request a delta poll at once
  (:attr:`WebhookContext.request_poll`), which catches up on what the
  notifications did not bring; the subscription maintenance recreates a
  removed subscription.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ucf.native import (
    Handshake,
    HandshakeResponse,
    Malformed,
    MappingResult,
    Refused,
    Unhandled,
    UpstreamCalls,
    Verdict,
    Verified,
    WebhookContext,
    WebhookRequest,
    loads_strict,
    parse_json,
)
from ucf.native.outlook.messages import to_signals

if TYPE_CHECKING:
    from ucf.native.outlook.source import OutlookSource

__all__ = ["CLIENT_STATE_KEY", "OutlookNotifications"]

log = logging.getLogger("ucf.native.outlook")

CLIENT_STATE_KEY: Final = "clientState"
MAX_VALIDATION_TOKEN: Final = 4096
FETCHED: Final = frozenset({"created", "updated"})
CATCH_UP: Final = frozenset({"missed", "subscriptionRemoved"})
"""Lifecycle events after which only a delta poll finds what changed."""


def _notifications(body: bytes) -> list[dict[str, Any]] | None:
    try:
        payload = loads_strict(body)
    except ValueError:  # not standard JSON, or nested too deep to read
        return None
    value = payload.get("value") if isinstance(payload, dict) else None
    if not isinstance(value, list) or not value or not all(isinstance(n, dict) for n in value):
        return None
    return value


class OutlookNotifications:
    """The push side of :class:`~ucf.native.outlook.source.OutlookSource`."""

    def __init__(self, source: OutlookSource) -> None:
        self._source = source

    async def verify(self, request: WebhookRequest, context: WebhookContext) -> Verdict:
        token = request.query.get("validationToken")
        if token is not None:
            if not token or len(token) > MAX_VALIDATION_TOKEN:
                return Refused("bad_encoding", "the validationToken is empty or too long")
            return Handshake(
                HandshakeResponse(
                    kind="graph_validation",
                    status=200,
                    body=token.encode("utf-8"),
                    media_type="text/plain",
                )
            )
        expected = context.credentials.get(CLIENT_STATE_KEY, "")
        if not expected:
            return Refused(
                "missing_secret", "the instance has no clientState: no subscription was created"
            )
        notifications = _notifications(request.body)
        if notifications is None:
            return Refused("missing_header", "the body is not a list of change notifications")
        want = expected.encode("utf-8")
        for notification in notifications:
            given = notification.get("clientState")
            given_bytes = given.encode("utf-8") if isinstance(given, str) else b""
            if not hmac.compare_digest(given_bytes, want):
                return Refused("token_mismatch", "a notification's clientState does not match")
        return Verified()

    async def signals(
        self, request: WebhookRequest, context: WebhookContext
    ) -> MappingResult | Unhandled:
        notifications = _notifications(request.body)
        if notifications is None:
            raise Malformed("the body is not a list of change notifications")
        message_ids: list[str] = []
        events: list[str] = []
        for notification in notifications:
            lifecycle = notification.get("lifecycleEvent")
            if isinstance(lifecycle, str):
                events.append(f"lifecycle:{lifecycle}")
                await self._lifecycle(lifecycle, notification, context)
                continue
            change = notification.get("changeType")
            data = notification.get("resourceData")
            message_id = data.get("id") if isinstance(data, dict) else None
            if not isinstance(change, str):
                raise Malformed("a change notification has no changeType")
            events.append(change)
            if change in FETCHED and isinstance(message_id, str) and message_id:
                message_ids.append(message_id)
        if not message_ids:
            return Unhandled(",".join(dict.fromkeys(events)))
        messages = await self._fetch(list(dict.fromkeys(message_ids)), context)
        return to_signals(messages, project_id=context.project_id)

    async def _fetch(self, message_ids: list[str], context: WebhookContext) -> list[Any]:
        """Each named message as the delta poll selects it; one deleted since is skipped."""
        upstream = await context.upstream()
        mailbox = self._source.mailbox(upstream.config)
        calls = UpstreamCalls(upstream)
        found: list[Any] = []
        for message_id in message_ids:
            response = await calls.send("GET", mailbox.message_url(message_id), accept=(404,))
            if response.status_code == 404:
                continue
            found.append(parse_json(response))
        return found

    async def _lifecycle(
        self, event: str, notification: Mapping[str, Any], context: WebhookContext
    ) -> None:
        if event in CATCH_UP:
            await context.request_poll(f"Graph lifecycle notification {event!r}: catching up")
            return
        if event != "reauthorizationRequired":
            log.info("outlook %s: lifecycle event %s ignored", context.project_id, event)
            return
        from ucf.native.outlook.subscriptions import renew

        subscription_id = notification.get("subscriptionId")
        if isinstance(subscription_id, str) and subscription_id:
            upstream = await context.upstream()
            await renew(
                UpstreamCalls(upstream),
                self._source.mailbox(upstream.config),
                subscription_id,
                now=context.now,
            )
