"""Amazon SNS message security: the checks AWS's own validators make, in the same order.

SNS delivers to an HTTPS subscription as a ``POST`` whose body is a JSON
document signed with the private key behind an X.509 certificate that SNS
serves at ``SigningCertURL``. Whoever can post to our URL can write any JSON,
so every message is checked the way AWS's official validators
(``aws/aws-php-sns-message-validator``, ``aws/aws-js-sns-message-validator``)
check it, as the SNS developer guide documents
(https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):

1. required keys present (plus ``SubscribeURL`` and ``Token`` for the two
   confirmation types); Lambda-style spellings (``SigningCertUrl``…) are read
   as the canonical names, as both validators do;
2. ``SignatureVersion`` ``1`` (SHA1withRSA) or ``2`` (SHA256withRSA), nothing else;
3. ``SigningCertURL`` is ``https``, ends in ``.pem`` and its host matches
   ``sns.<region>.amazonaws.com`` (``.com.cn`` in China; GovCloud regions
   have the same form) — the validators' own pattern, so a certificate in an
   S3 bucket on ``amazonaws.com`` is not accepted;
4. the certificate, fetched over TLS through ucf's SSRF-guarded client and
   cached by URL, verifies ``Signature`` over the canonical string:
   ``Name\\nValue\\n`` for each signed field in byte order — for a
   ``Notification``: Message, MessageId, Subject (only when present),
   Timestamp, TopicArn, Type; for ``SubscriptionConfirmation`` and
   ``UnsubscribeConfirmation``: Message, MessageId, SubscribeURL, Timestamp,
   Token, TopicArn, Type
   (https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html).

ucf adds one check the validators leave to their caller: the ``TopicArn`` must
be the instance's configured topic, so a message correctly signed by SNS for
somebody else's topic is refused too — and refused before any certificate is
fetched.

Where certificates come from, and which hosts may serve them, are two small
strategies (:class:`EndpointRule`, :class:`CertificateSource`). Production
uses :class:`AwsSnsEndpoints` and :class:`FetchedCertificates`; tests and
``ucf sandbox`` trust their fake through :func:`endpoints_from_environment`
(an operator setting, loopback origins only) and ``ucf webhooks verify
--signing-cert`` uses :class:`PinnedCertificate`. Nothing in a message can
choose a strategy.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ucf.native import WebhookContext, loads_strict

__all__ = [
    "CONFIRMATION_TYPES",
    "TEST_ORIGIN_ENV",
    "AwsSnsEndpoints",
    "CertificateSource",
    "EndpointRule",
    "FetchedCertificates",
    "LoopbackTestEndpoints",
    "PinnedCertificate",
    "SnsMessage",
    "SnsRejected",
    "SnsVerifier",
    "endpoints_from_environment",
    "verify_signature",
]

log = logging.getLogger("ucf.native.ses")

NOTIFICATION: Final = "Notification"
SUBSCRIPTION_CONFIRMATION: Final = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION: Final = "UnsubscribeConfirmation"
CONFIRMATION_TYPES: Final = frozenset({SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION})
MESSAGE_TYPES: Final = frozenset({NOTIFICATION, *CONFIRMATION_TYPES})

REQUIRED_KEYS: Final = (
    "Message",
    "MessageId",
    "Timestamp",
    "TopicArn",
    "Type",
    "Signature",
    "SigningCertURL",
    "SignatureVersion",
)
CONFIRMATION_KEYS: Final = ("SubscribeURL", "Token")
SIGNED_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    UNSUBSCRIBE_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
LAMBDA_NAMES: Final = {
    "SigningCertUrl": "SigningCertURL",
    "SubscribeUrl": "SubscribeURL",
    "UnsubscribeUrl": "UnsubscribeURL",
}
SIGNATURE_HASHES: Final[Mapping[str, type[hashes.HashAlgorithm]]] = {
    "1": hashes.SHA1,  # SNS's default; SHA1 is what AWS signs with, not our choice
    "2": hashes.SHA256,
}
SNS_HOST: Final = re.compile(r"sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?")
"""The host pattern of both official validators (``sns.us-east-2.amazonaws.com``,
``sns.us-gov-west-1.amazonaws.com``, ``sns.cn-north-1.amazonaws.com.cn``)."""

TEST_ORIGIN_ENV: Final = "UCF_SNS_TEST_ORIGIN"
"""Tests and ``ucf sandbox`` only: a loopback origin (``http://127.0.0.1:PORT``) whose
certificates and confirmation URLs are trusted instead of SNS's. Never set in production."""


class SnsRejected(Exception):
    """Why a message is not authentic (or not for us): ``code`` for metrics, ``message``
    for the operator's log and ``ucf webhooks verify``. Never includes a secret.

    Where the gateway's own :class:`~ucf.runtime.webhooks.RejectCode` names the reason
    (``signature_mismatch``, ``bad_encoding``), the code is that name, so one metric
    label counts forged deliveries of every connector."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- the message


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """One SNS HTTP(S) message, its fields as sent (canonical key names)."""

    fields: Mapping[str, str]

    @classmethod
    def parse(cls, body: bytes) -> SnsMessage:
        """The body as an SNS message; :class:`SnsRejected` (``malformed``) if it is not one."""
        try:
            data = loads_strict(body)
        except ValueError:  # not standard JSON, or nested too deep to read
            raise SnsRejected("malformed", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise SnsRejected("malformed", "the body is not a JSON object")
        fields: dict[str, str] = {}
        for key, value in data.items():
            name: str = LAMBDA_NAMES.get(str(key), str(key))
            if value is None:  # the JS validator drops "Subject": null; so does the PHP isset()
                continue
            if isinstance(value, str):
                fields[name] = value
            elif name in REQUIRED_KEYS or name in CONFIRMATION_KEYS or name == "Subject":
                raise SnsRejected("malformed", f"{name} is not a string")
        missing = [key for key in REQUIRED_KEYS if key not in fields]
        if fields.get("Type") in CONFIRMATION_TYPES:
            missing += [key for key in CONFIRMATION_KEYS if key not in fields]
        if missing:
            raise SnsRejected("malformed", f"not an SNS message: missing {', '.join(missing)}")
        if fields["Type"] not in MESSAGE_TYPES:
            raise SnsRejected("unknown_type", f"unknown SNS message type {fields['Type']!r}")
        return cls(fields)

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    @property
    def type(self) -> str:
        return self.fields["Type"]

    @property
    def message_id(self) -> str:
        return self.fields["MessageId"]

    @property
    def topic_arn(self) -> str:
        return self.fields["TopicArn"]

    @property
    def message(self) -> str:
        return self.fields["Message"]

    @property
    def signing_cert_url(self) -> str:
        return self.fields["SigningCertURL"]

    @property
    def signature_version(self) -> str:
        return self.fields["SignatureVersion"]

    @property
    def subscribe_url(self) -> str | None:
        return self.fields.get("SubscribeURL")

    def string_to_sign(self) -> bytes:
        """The canonical string SNS signed (see the module doc), UTF-8 encoded."""
        parts = []
        for key in SIGNED_KEYS[self.type]:
            value = self.fields.get(key)
            if value is not None:
                parts.append(f"{key}\n{value}\n")
        return "".join(parts).encode("utf-8")


def verify_signature(message: SnsMessage, certificate: x509.Certificate) -> None:
    """RSA PKCS#1 v1.5 with SHA1 (version 1) or SHA256 (version 2) over the canonical
    string; :class:`SnsRejected` when it does not verify."""
    algorithm = SIGNATURE_HASHES.get(message.signature_version)
    if algorithm is None:
        raise SnsRejected(
            "signature_version",
            f"SignatureVersion {message.signature_version!r} is not supported (1 or 2)",
        )
    try:
        signature = base64.b64decode(message.fields["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SnsRejected("bad_encoding", "Signature is not base64") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsRejected("bad_certificate", "the signing certificate does not hold an RSA key")
    try:
        key.verify(signature, message.string_to_sign(), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SnsRejected(
            "signature_mismatch",
            f"the signature does not verify (SignatureVersion {message.signature_version}): "
            "the message was changed after SNS signed it, or was not signed by SNS",
        ) from None


# --------------------------------------------------------------------------- where from


class EndpointRule(Protocol):
    """Which URLs in a message ucf may contact: the signing certificate, and the
    ``SubscribeURL`` a confirmation is answered at. Returns the problem, or None."""

    def certificate_url_problem(self, url: str) -> str | None: ...

    def subscribe_url_problem(self, url: str) -> str | None: ...


def _url(url: str) -> httpx.URL | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    return parsed if parsed.host else None


class AwsSnsEndpoints:
    """Production: HTTPS on an SNS regional host, no explicit port (the official pattern)."""

    def _host_problem(self, url: str, what: str) -> str | None:
        parsed = _url(url)
        if parsed is None:
            return f"{what} {url!r} is not a URL"
        if parsed.scheme != "https":
            return f"{what} {url!r} is not https"
        if parsed.port is not None or SNS_HOST.fullmatch(parsed.host) is None:
            return (
                f"{what} host {parsed.host!r} is not an SNS host (sns.<region>.amazonaws.com)"
                + (f" or has a port ({parsed.port})" if parsed.port is not None else "")
            )
        if parsed.userinfo:
            return f"{what} {url!r} carries user information"
        return None

    def certificate_url_problem(self, url: str) -> str | None:
        problem = self._host_problem(url, "SigningCertURL")
        if problem is None and not _names_pem(url):
            return f"SigningCertURL {url!r} does not name a .pem file"
        return problem

    def subscribe_url_problem(self, url: str) -> str | None:
        return self._host_problem(url, "SubscribeURL")


def _names_pem(url: str) -> bool:
    """The URL ends in ``.pem`` (the PHP validator's test) and so does its path (the JS one's)."""
    parsed = _url(url)
    return url.endswith(".pem") and parsed is not None and parsed.path.endswith(".pem")


class LoopbackTestEndpoints:
    """Tests and ``ucf sandbox``: URLs on one loopback origin (a fake SNS) are trusted.

    Built only from :data:`TEST_ORIGIN_ENV`, which only the test suite and the
    sandbox set; it refuses any origin that is not a loopback address, so the
    setting cannot be used to trust a host on the network.
    """

    def __init__(self, origin: str) -> None:
        parsed = _url(origin)
        if parsed is None or parsed.scheme not in ("http", "https"):
            raise ValueError(f"{TEST_ORIGIN_ENV} must be an http(s) origin, got {origin!r}")
        if not _is_loopback(parsed.host):
            raise ValueError(f"{TEST_ORIGIN_ENV} must be a loopback origin, got {origin!r}")
        self.origin = (parsed.scheme, parsed.host, parsed.port)

    def _problem(self, url: str, what: str) -> str | None:
        parsed = _url(url)
        if parsed is None or (parsed.scheme, parsed.host, parsed.port) != self.origin:
            return f"{what} {url!r} is not on the test SNS origin"
        return None

    def certificate_url_problem(self, url: str) -> str | None:
        problem = self._problem(url, "SigningCertURL")
        if problem is None and not _names_pem(url):
            return f"SigningCertURL {url!r} does not name a .pem file"
        return problem

    def subscribe_url_problem(self, url: str) -> str | None:
        return self._problem(url, "SubscribeURL")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoints_from_environment(environ: Mapping[str, str] | None = None) -> EndpointRule:
    """:class:`AwsSnsEndpoints`, unless the operator set :data:`TEST_ORIGIN_ENV`
    (tests and the sandbox); a non-loopback value is ignored with an error logged."""
    origin = (os.environ if environ is None else environ).get(TEST_ORIGIN_ENV, "").strip()
    if not origin:
        return AwsSnsEndpoints()
    try:
        rule = LoopbackTestEndpoints(origin)
    except ValueError as error:
        log.error("%s; SNS messages are checked against AWS's hosts only", error)
        return AwsSnsEndpoints()
    log.warning(
        "%s is set: SNS certificates and confirmations are trusted from %s (tests and "
        "ucf sandbox only)",
        TEST_ORIGIN_ENV,
        origin,
    )
    return rule


# --------------------------------------------------------------------------- certificates


class CertificateSource(Protocol):
    """Where the certificate named by an (already checked) ``SigningCertURL`` comes from."""

    async def certificate(self, url: str, context: WebhookContext) -> x509.Certificate: ...


def load_certificate(pem: bytes, where: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SnsRejected("bad_certificate", f"{where} is not a PEM certificate") from None


class FetchedCertificates:
    """Downloads each certificate once (through the instance's SSRF-guarded client,
    no redirects followed) and keeps it ``ttl_seconds``; at most ``size`` URLs."""

    def __init__(self, *, ttl_seconds: float = 24 * 3600, size: int = 32) -> None:
        self._ttl = ttl_seconds
        self._size = size
        self._cache: OrderedDict[str, tuple[float, x509.Certificate]] = OrderedDict()

    async def certificate(self, url: str, context: WebhookContext) -> x509.Certificate:
        now = time.monotonic()
        cached = self._cache.get(url)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(url)
            return cached[1]
        upstream: Any = await context.upstream()
        client: httpx.AsyncClient = upstream.client
        try:
            response = await client.get(url, follow_redirects=False)
        except httpx.HTTPError as error:
            raise SnsRejected(
                "certificate_unavailable",
                f"cannot fetch the signing certificate {url}: {type(error).__name__}: {error}",
            ) from None
        if response.status_code != 200:
            raise SnsRejected(
                "certificate_unavailable",
                f"cannot fetch the signing certificate {url}: HTTP {response.status_code}",
            )
        certificate = load_certificate(response.content, f"the document at {url}")
        self._cache[url] = (now + self._ttl, certificate)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return certificate


class PinnedCertificate:
    """One certificate given up front (``ucf webhooks verify --signing-cert``): offline."""

    def __init__(self, pem: bytes) -> None:
        self._certificate = load_certificate(pem, "the --signing-cert file")

    async def certificate(self, url: str, context: WebhookContext) -> x509.Certificate:
        return self._certificate


# --------------------------------------------------------------------------- all together


class SnsVerifier:
    """Every check of the module doc, cheapest first; raises :class:`SnsRejected`."""

    def __init__(self, endpoints: EndpointRule, certificates: CertificateSource) -> None:
        self.endpoints = endpoints
        self.certificates = certificates

    async def verify(self, message: SnsMessage, *, topic_arn: str, context: WebhookContext) -> None:
        if not topic_arn:
            raise SnsRejected("no_topic", "the instance has no topicArn configured")
        if message.topic_arn != topic_arn:
            raise SnsRejected(
                "wrong_topic",
                f"TopicArn {message.topic_arn!r} is not the configured topic {topic_arn!r}",
            )
        if message.signature_version not in SIGNATURE_HASHES:
            raise SnsRejected(
                "signature_version",
                f"SignatureVersion {message.signature_version!r} is not supported (1 or 2)",
            )
        problem = self.endpoints.certificate_url_problem(message.signing_cert_url)
        if problem is not None:
            raise SnsRejected("certificate_url", problem)
        certificate = await self.certificates.certificate(message.signing_cert_url, context)
        verify_signature(message, certificate)
