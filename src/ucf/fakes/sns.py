"""A fake Amazon SNS for the ``ses`` connector: signed messages carrying SES mail.

SNS signs each HTTP(S) message with a private key whose certificate it serves
at ``SigningCertURL`` (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html).
This fake makes a test RSA key and a self-signed certificate when it is built,
serves the certificate at ``/SimpleNotificationService-<id>.pem``, signs
``Notification``, ``SubscriptionConfirmation`` and ``UnsubscribeConfirmation``
messages exactly as SNS does (SignatureVersion 1: SHA1withRSA, 2:
SHA256withRSA, over the per-type canonical string), and answers the
confirmation GET on ``/?Action=ConfirmSubscription&TopicArn=…&Token=…`` with
SNS's XML, recording each confirmation.

Its notifications carry SES ``Received`` notifications
(https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-examples.html)
with real MIME content built by the standard library, base64 or UTF-8 encoded
as the receipt rule's *Encoding* option says.

The production host rule only trusts ``sns.<region>.amazonaws.com``; the
connector trusts this fake only where :data:`ucf.native.ses.sns.TEST_ORIGIN_ENV`
names its loopback origin (tests and ``ucf sandbox`` set it).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Final, Literal
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ucf.core.signal import iso_utc
from ucf.fakes.kit import FakeRequest, FakeResponse, Fault
from ucf.fakes.scenario import (
    Activity,
    DeliveryVerification,
    MetadataExpectation,
    ProviderFake,
    Scenario,
    WebhookDelivery,
    WebhookSample,
)

__all__ = [
    "ACCOUNT",
    "REGION",
    "TOPIC_ARN",
    "Confirmation",
    "Mail",
    "SesScenario",
    "SnsFake",
    "SnsSigner",
    "received_notification",
    "scenario",
]

REGION: Final = "eu-west-1"
ACCOUNT: Final = "123456789012"
TOPIC_ARN: Final = f"arn:aws:sns:{REGION}:{ACCOUNT}:inbound-mail"
CERT_PATH: Final = "/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
SUBJECT: Final = "Amazon SES Email Receipt Notification"
SignatureVersion = Literal["1", "2"]
_HASHES: Final = {"1": hashes.SHA1, "2": hashes.SHA256}
_SIGNED: Final = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}


# --------------------------------------------------------------------------- signing


class SnsSigner:
    """A test key and self-signed certificate (CN ``sns.amazonaws.com``, as AWS's is)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, fields: Mapping[str, str], version: SignatureVersion = "1") -> str:
        signed = "".join(
            f"{key}\n{fields[key]}\n" for key in _SIGNED[fields["Type"]] if key in fields
        ).encode("utf-8")
        signature = self.key.sign(signed, padding.PKCS1v15(), _HASHES[version]())
        return base64.b64encode(signature).decode("ascii")


# --------------------------------------------------------------------------- SES mail


@dataclass(frozen=True, slots=True)
class Mail:
    """One email as its sender wrote it, for :func:`received_notification`."""

    subject: str
    sender: str = "Jane Doe <jane@customer.example>"
    to: tuple[str, ...] = ("support@acme.example",)
    cc: tuple[str, ...] = ()
    text: str | None = "Hello,\n\nthe export fails since this morning.\n\nJane"
    html: str | None = None
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def mime(self, date: dt.datetime) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        if self.cc:
            message["Cc"] = ", ".join(self.cc)
        message["Subject"] = self.subject
        message["Date"] = format_datetime(date)
        message["Message-ID"] = make_msgid(domain="customer.example")
        for name, value in self.headers.items():
            message[name] = value
        if self.text is not None:
            message.set_content(self.text)
            if self.html is not None:
                message.add_alternative(self.html, subtype="html")
        elif self.html is not None:
            message.set_content(self.html, subtype="html")
        for filename, media_type, data in self.attachments:
            maintype, subtype = media_type.split("/", 1)
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return message


def received_notification(
    mail: Mail,
    *,
    message_id: str,
    at: dt.datetime,
    encoding: Literal["UTF8", "BASE64"] | None = "BASE64",
    verdicts: Mapping[str, str] | None = None,
    topic_arn: str = TOPIC_ARN,
    stored_in: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """An SES ``Received`` notification: content included (SNS action, ``encoding``), or
    stored by an S3 action in ``stored_in`` = (bucket, key) and left out."""
    mime = mail.mime(at)
    raw = mime.as_bytes()
    status = {"spam": "PASS", "virus": "PASS", "spf": "PASS", "dkim": "PASS", "dmarc": "PASS"}
    status.update(verdicts or {})
    common: dict[str, Any] = {
        "returnPath": "bounces@customer.example",
        "from": [mail.sender],
        "date": mime["Date"],
        "to": list(mail.to),
        "messageId": mime["Message-ID"],
        "subject": mail.subject,
    }
    if mail.cc:
        common["cc"] = list(mail.cc)
    action: dict[str, Any]
    if stored_in is None:
        action = {"type": "SNS", "topicArn": topic_arn}
        if encoding is not None:
            action["encoding"] = encoding
    else:
        action = {
            "type": "S3",
            "topicArn": topic_arn,
            "bucketName": stored_in[0],
            "objectKey": stored_in[1],
        }
    receipt: dict[str, Any] = {
        "timestamp": iso_utc(at),
        "processingTimeMillis": 420,
        "recipients": list(mail.to),
        **{f"{name}Verdict": {"status": value} for name, value in status.items()},
        "action": action,
    }
    if status["dmarc"] == "FAIL":
        receipt["dmarcPolicy"] = "reject"
    notification: dict[str, Any] = {
        "notificationType": "Received",
        "mail": {
            "timestamp": iso_utc(at),
            "source": "bounces@customer.example",
            "messageId": message_id,
            "destination": [*mail.to, *mail.cc],
            "headersTruncated": False,
            "headers": [{"name": k, "value": str(v)} for k, v in mime.items()],
            "commonHeaders": common,
        },
        "receipt": receipt,
    }
    if stored_in is None:
        notification["content"] = (
            base64.b64encode(raw).decode("ascii")
            if encoding == "BASE64"
            else raw.decode("utf-8", "surrogateescape")
        )
    return notification


# --------------------------------------------------------------------------- the fake


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A ``ConfirmSubscription`` call the fake received."""

    topic_arn: str
    token: str


class SnsFake(ProviderFake):
    """SNS's side of an HTTPS subscription: the signing certificate, the confirmation
    endpoint, and signed messages addressed to a subscriber URL."""

    poll_route = "/"  # nothing is polled; the route exists for the battery's contract

    def __init__(self, now: dt.datetime, *, topic_arn: str = TOPIC_ARN) -> None:
        super().__init__()
        self.now = now
        self.topic_arn = topic_arn
        self.signer = SnsSigner()
        self.confirmations: list[Confirmation] = []
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self.server.add_route("GET", CERT_PATH, self._certificate)
        self.server.add_route("GET", "/", self._action)

    # -- routes

    def _certificate(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(200, {"Content-Type": "application/x-x509-ca-cert"}, self.signer.pem)

    def _action(self, request: FakeRequest) -> FakeResponse:
        if request.param("Action") != "ConfirmSubscription":
            return _sns_error(400, "InvalidAction", "only ConfirmSubscription is faked")
        topic, token = request.param("TopicArn", ""), request.param("Token", "")
        with self._lock:
            known = token in self._tokens
            if known:
                self.confirmations.append(Confirmation(topic or "", token or ""))
        if not known or topic != self.topic_arn:
            return _sns_error(400, "InvalidParameter", "Invalid token")
        arn = f"{self.topic_arn}:{uuid.uuid5(uuid.NAMESPACE_URL, token or '')}"
        body = (
            '<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<ConfirmSubscriptionResult><SubscriptionArn>{arn}</SubscriptionArn>"
            "</ConfirmSubscriptionResult><ResponseMetadata><RequestId>"
            f"{uuid.uuid4()}</RequestId></ResponseMetadata></ConfirmSubscriptionResponse>"
        )
        return FakeResponse(200, {"Content-Type": "text/xml"}, body.encode())

    # -- messages

    @property
    def certificate_url(self) -> str:
        return self.server.url(CERT_PATH)

    def _envelope(
        self,
        fields: dict[str, str],
        *,
        version: SignatureVersion,
    ) -> dict[str, str]:
        fields = {**fields, "SignatureVersion": version, "SigningCertURL": self.certificate_url}
        fields["Signature"] = self.signer.sign(fields, version)
        return fields

    def notification(
        self,
        message: str,
        *,
        at: dt.datetime,
        message_id: str | None = None,
        subject: str | None = SUBJECT,
        version: SignatureVersion = "1",
        topic_arn: str | None = None,
    ) -> dict[str, str]:
        """A signed ``Notification`` (the JSON SNS posts), ``message`` as its Message."""
        fields = {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic_arn or self.topic_arn,
            "Message": message,
            "Timestamp": iso_utc(at),
            "UnsubscribeURL": self.server.url(
                f"/?Action=Unsubscribe&SubscriptionArn={quote(self.topic_arn)}:sub"
            ),
        }
        if subject is not None:
            fields["Subject"] = subject
        return self._envelope(fields, version=version)

    def confirmation(
        self,
        *,
        at: dt.datetime,
        kind: Literal["SubscriptionConfirmation", "UnsubscribeConfirmation"] = (
            "SubscriptionConfirmation"
        ),
        version: SignatureVersion = "1",
        subscribe_url: str | None = None,
    ) -> dict[str, str]:
        """A signed (un)subscription confirmation whose SubscribeURL points at this fake."""
        token = uuid.uuid4().hex * 2
        with self._lock:
            self._tokens.add(token)
        url = subscribe_url or self.server.url(
            f"/?Action=ConfirmSubscription&TopicArn={quote(self.topic_arn)}&Token={token}"
        )
        verb = "subscribe to" if kind == "SubscriptionConfirmation" else "unsubscribed from"
        fields = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": self.topic_arn,
            "Message": f"You have chosen to {verb} the topic {self.topic_arn}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": url,
            "Timestamp": iso_utc(at),
        }
        return self._envelope(fields, version=version)

    def delivery(self, message: Mapping[str, str], url: str, name: str = "sns") -> WebhookDelivery:
        """``message`` as SNS posts it to ``url``: text/plain JSON and the x-amz-sns headers."""
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
            "x-amz-sns-message-type": message["Type"],
            "x-amz-sns-message-id": message["MessageId"],
            "x-amz-sns-topic-arn": message["TopicArn"],
        }
        if message["Type"] != "SubscriptionConfirmation":
            headers["x-amz-sns-subscription-arn"] = f"{message['TopicArn']}:sub"
        body = json.dumps(message, indent=2).encode()
        return WebhookDelivery(name, url, body, headers)

    # -- ProviderFake: SES pushes, nothing is polled

    def add_activity(self, now: dt.datetime) -> Activity:
        return Activity(frozenset())

    def ids_changed_since(self, moment: dt.datetime) -> frozenset[str]:
        return frozenset()

    def rate_limit_fault(self, retry_after: int) -> Fault:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
            "<Message>Rate exceeded</Message></Error></ErrorResponse>"
        )
        return Fault.respond(
            FakeResponse(
                400, {"Content-Type": "text/xml", "Retry-After": str(retry_after)}, body.encode()
            ),
            "rate_limited",
        )


def _sns_error(status: int, code: str, message: str) -> FakeResponse:
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error></ErrorResponse>"
    )
    return FakeResponse(status, {"Content-Type": "text/xml"}, body.encode())


# --------------------------------------------------------------------------- scenario

MAILS: Final[Sequence[tuple[str, Mail, Mapping[str, str]]]] = (
    (
        "support request",
        Mail(
            subject="Export fails for ACME-142 (see #77)",
            headers={"X-Priority": "1 (Highest)"},
            attachments=(("export.log", "text/plain", b"ERROR export timed out\n" * 40),),
        ),
        {},
    ),
    (
        "newsletter in HTML only",
        Mail(
            subject="Your weekly digest",
            sender="News <news@digest.example>",
            text=None,
            html="<html><body><h1>Digest</h1><p>Five things <b>this week</b>.</p></body></html>",
            headers={"Importance": "low"},
        ),
        {},
    ),
    (
        "spam with a virus",
        Mail(
            subject="You won a prize",
            sender="Winner <prize@spam.example>",
            attachments=(("prize.exe", "application/octet-stream", b"MZ" + b"\0" * 512),),
        ),
        {"spam": "FAIL", "virus": "FAIL", "spf": "FAIL", "dkim": "GRAY", "dmarc": "FAIL"},
    ),
)


class SesScenario(Scenario):
    """The ``ses`` connector against :class:`SnsFake`: SES mail signed by the fake SNS."""

    connector_id = "ses"
    webhook_signal_types = frozenset({"email_received"})
    # SNS signs each message's canonical fields with AWS's key (checked against the
    # certificate at SigningCertURL, no credential of the instance). A retry keeps the
    # message's original Timestamp, so the handler keeps no window: the MessageId dedups.
    webhook_verification = DeliveryVerification(None, signs_body=True)

    def __init__(self) -> None:
        self._fake: SnsFake | None = None
        self._rounds = 0
        self.metadata = (
            MetadataExpectation(
                item_id="ses-support-request",
                priority="high",
                participants=("jane@customer.example", "support@acme.example"),
                tags=("attachments",),
                related_tickets=("ACME-142", "#77"),
            ),
        )

    def fake(self, now: dt.datetime) -> SnsFake:
        self._fake = SnsFake(now)
        return self._fake

    def _current(self) -> SnsFake:
        if self._fake is None:
            raise RuntimeError("start the scenario's fake before signing deliveries")
        return self._fake

    def config(self, base_url: str) -> dict[str, str]:
        return {"topicArn": TOPIC_ARN}

    def credentials(self) -> dict[str, str]:
        return {}

    def bad_credentials(self) -> dict[str, str]:
        return {}

    @property
    def webhook_secret(self) -> str:
        return ""

    def server_environment(self, fake: ProviderFake) -> dict[str, str]:
        """The ``ucf serve`` setting that trusts this fake's certificates (loopback only)."""
        from ucf.native.ses.sns import TEST_ORIGIN_ENV

        return {TEST_ORIGIN_ENV: fake.base_url}

    def webhook_samples(self) -> list[WebhookSample]:
        """One sample per mail. The first round's support request has the id the metadata
        expectation names; every other sample is a new email (a fresh SES message id), so
        the sandbox's live deliveries keep adding signals."""
        samples = []
        self._rounds += 1
        for name, mail, verdicts in MAILS:
            stable = self._rounds == 1 and name == "support request"
            message_id = "ses-support-request" if stable else f"ses-{uuid.uuid4().hex}"
            notification = received_notification(
                mail,
                message_id=message_id,
                at=dt.datetime.now(dt.UTC).replace(microsecond=0),
                verdicts=verdicts,
            )
            samples.append(WebhookSample.of(name, notification, expected_types=("email_received",)))
        return samples

    def unknown_event_sample(self) -> WebhookSample | None:
        return WebhookSample.of(
            "SES set-up notification", {"notificationType": "AMAZON_SES_SETUP_NOTIFICATION"}
        )

    def sign(self, sample: WebhookSample, *, url: str, at: dt.datetime) -> WebhookDelivery:
        fake = self._current()
        message = fake.notification(sample.body.decode("utf-8"), at=at)
        return replace(
            fake.delivery(message, url, sample.name), expected_types=sample.expected_types
        )

    def tamper(self, delivery: WebhookDelivery) -> WebhookDelivery:
        """Change a signed field (the Message): SNS signs only its canonical fields, so a key
        added beside them is not tampering (SNS itself may add keys such as MessageAttributes)."""
        payload = json.loads(delivery.body)
        payload["Message"] = payload["Message"].replace("Received", "Received ", 1)
        return replace(delivery, body=json.dumps(payload, indent=2).encode())


def scenario(connector_id: str) -> Scenario:
    return SesScenario()
