"""The SNS side of SES inbound mail: verify, confirm the subscription, map notifications.

ucf is the HTTPS subscription of the SNS topic an SES receipt rule publishes
to (``POST /api/webhooks/ses/{projectId}``). SNS posts three kinds of message
(https://docs.aws.amazon.com/sns/latest/dg/SendMessageToHttp.prepare.html):

- ``SubscriptionConfirmation``: confirmed by a GET on its ``SubscribeURL`` —
  only once its signature verifies and the URL is on an SNS host — then
  answered 200 (a :class:`~ucf.native.Handshake`);
- ``Notification``: verified, then its ``Message`` (the SES notification
  JSON) becomes an ``email_received`` signal;
- ``UnsubscribeConfirmation``: verified and acknowledged (202, nothing
  stored); ucf never re-subscribes by itself.

Every check is :mod:`ucf.native.ses.sns`; refusals are 401 without detail for
the sender, with the reason in the log (and in ``ucf webhooks verify``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from ucf.native import (
    Handshake,
    HandshakeResponse,
    Malformed,
    MappingResult,
    Refused,
    Unhandled,
    Verdict,
    Verified,
    WebhookContext,
    WebhookRequest,
    loads_strict,
)
from ucf.native.ses.notification import Received, normalise_notifications
from ucf.native.ses.s3 import S3MailStore
from ucf.native.ses.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    CertificateSource,
    EndpointRule,
    FetchedCertificates,
    PinnedCertificate,
    SnsMessage,
    SnsRejected,
    SnsVerifier,
)

__all__ = ["SesWebhooks", "SubscriptionConfirmer"]

log = logging.getLogger("ucf.native.ses")

MESSAGE_TYPE_HEADER = "x-amz-sns-message-type"


class SubscriptionConfirmer:
    """Confirms a verified subscription: GET ``SubscribeURL`` through the instance's
    SSRF-guarded client, no redirects. SNS answers 200 with a
    ``ConfirmSubscriptionResponse`` document."""

    async def confirm(self, url: str, context: WebhookContext) -> None:
        upstream: Any = await context.upstream()
        client: httpx.AsyncClient = upstream.client
        try:
            response = await client.get(url, follow_redirects=False)
        except httpx.HTTPError as error:
            raise SnsRejected(
                "confirmation_failed",
                f"confirming the subscription failed: {type(error).__name__}",
            ) from None
        if response.status_code != 200:
            raise SnsRejected(
                "confirmation_failed",
                f"confirming the subscription failed: SNS answered HTTP {response.status_code}",
            )


class WouldConfirm(SubscriptionConfirmer):
    """Offline checks (``ucf webhooks verify``): say what would happen, send nothing."""

    async def confirm(self, url: str, context: WebhookContext) -> None:
        return None


@dataclass(frozen=True)
class SesWebhooks:
    """The :class:`~ucf.native.WebhookHandler` of the ``ses`` connector."""

    endpoints: EndpointRule
    certificates: CertificateSource
    confirmer: SubscriptionConfirmer

    @classmethod
    def for_endpoints(cls, endpoints: EndpointRule) -> SesWebhooks:
        return cls(endpoints, FetchedCertificates(), SubscriptionConfirmer())

    def offline(self, signing_certificate: bytes | None = None) -> SesWebhooks:
        """This handler for ``ucf webhooks verify``: confirms nothing, and verifies with
        ``signing_certificate`` (PEM) instead of fetching it when one is given."""
        certificates = (
            PinnedCertificate(signing_certificate)
            if signing_certificate is not None
            else self.certificates
        )
        return SesWebhooks(self.endpoints, certificates, WouldConfirm())

    # -- verification

    async def check(self, request: WebhookRequest, context: WebhookContext) -> SnsMessage:
        """The message, verified for this instance; :class:`SnsRejected` says why not."""
        message = SnsMessage.parse(request.body)
        declared = request.header(MESSAGE_TYPE_HEADER)
        if declared is not None and declared != message.type:
            raise SnsRejected(
                "type_mismatch",
                f"{MESSAGE_TYPE_HEADER} says {declared!r} but the message is a {message.type}",
            )
        verifier = SnsVerifier(self.endpoints, self.certificates)
        await verifier.verify(
            message, topic_arn=context.config.get("topicArn", ""), context=context
        )
        return message

    async def verify(self, request: WebhookRequest, context: WebhookContext) -> Verdict:
        if request.method.upper() != "POST":
            return Refused("method", f"SNS posts its messages; got {request.method}")
        try:
            message = await self.check(request, context)
            if message.type == SUBSCRIPTION_CONFIRMATION:
                return await self._confirm(message, context)
        except SnsRejected as rejected:
            return Refused(rejected.code, rejected.message)
        return Verified()

    async def _confirm(self, message: SnsMessage, context: WebhookContext) -> Verdict:
        url = message.subscribe_url or ""
        problem = self.endpoints.subscribe_url_problem(url)
        if problem is not None:
            raise SnsRejected("subscribe_url", problem)
        await self.confirmer.confirm(url, context)
        log.info(
            "confirmed the SNS subscription of %s to %s for %s/%s",
            context.connector_id,
            message.topic_arn,
            context.connector_id,
            context.project_id,
        )
        return Handshake(HandshakeResponse(kind="sns_subscription_confirmed", status=200))

    # -- signals

    async def signals(
        self, request: WebhookRequest, context: WebhookContext
    ) -> MappingResult | Unhandled:
        message = SnsMessage.parse(request.body)  # verify() has checked it already
        if message.type != NOTIFICATION:
            log.info(
                "SNS %s for %s/%s (topic %s): acknowledged, nothing stored",
                message.type,
                context.connector_id,
                context.project_id,
                message.topic_arn,
            )
            return Unhandled(message.type)
        try:
            notification = loads_strict(message.message)
        except ValueError:  # not standard JSON, or nested too deep to read
            raise Malformed("the SNS Message is not an SES notification (not JSON)") from None
        if not isinstance(notification, dict):
            raise Malformed("the SNS Message is not an SES notification (not a JSON object)")
        kind = notification.get("notificationType")
        if kind != "Received":
            return Unhandled(str(kind or "unknown"))
        received = await self._with_stored_content(notification, context)
        result = normalise_notifications(
            [received],
            connector_id=context.connector_id,
            project_id=context.project_id,
            now=context.now,
        )
        if result.errors and not result.signals:
            raise Malformed("; ".join(error.reason for error in result.errors))
        return result

    async def _with_stored_content(
        self, notification: dict[str, Any], context: WebhookContext
    ) -> Received:
        """The notification, with the message read from S3 when SES left it there and the
        instance names its bucket."""
        if isinstance(notification.get("content"), str):
            return Received(notification)
        receipt = notification.get("receipt")
        action = receipt.get("action") if isinstance(receipt, dict) else None
        if not isinstance(action, dict) or action.get("type") != "S3":
            return Received(notification)
        bucket = context.config.get("s3Bucket", "").strip()
        if not bucket:
            return Received(notification)
        mail = notification.get("mail")
        message_id = mail.get("messageId") if isinstance(mail, dict) else None
        store = S3MailStore(
            bucket, region=context.config.get("region"), credentials=context.credentials
        )
        fetched = await store.fetch(action, message_id if isinstance(message_id, str) else None)
        return Received(notification, fetched=fetched.body, content_note=fetched.note)
