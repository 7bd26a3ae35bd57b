"""Is this webhook delivery really from the provider? One verifier for gateway and CLI.

A descriptor's ``webhook`` part says how its provider proves a delivery is
genuine (each provider's signing page is linked under Sources in
docs/connectors/<id>.md; the generic scheme is the Standard Webhooks spec,
https://github.com/standard-webhooks/standard-webhooks/blob/HEAD/spec/standard-webhooks.md);
:func:`compile_verifier` turns that into a :class:`Verifier` once, and ``verify``
answers per request with a :class:`VerificationResult`. The gateway answers 401
with no detail; ``ucf webhooks verify`` prints the reason. Both run this code, so a user
debugging a rejected delivery sees exactly why the gateway refused it.

What every scheme gets right, because each is a classic way to get it wrong:

* **Raw bytes.** The MAC is computed over the exact bytes received, fed to
  ``hmac`` piece by piece (``v0:`` + timestamp + ``:`` + body for Slack), never
  over re-serialised JSON: a parser that reorders keys or drops a space breaks
  every signature (the Standard Webhooks spec calls it "a very common failure
  mode").
* **Constant time, on the MAC bytes.** The received signature is decoded
  (hex in any case, strict base64) and compared with ``hmac.compare_digest``
  against the computed digest, so neither timing nor hex letter case matters.
* **Secret rotation.** PagerDuty (``v1=…,v1=…``) and Standard Webhooks
  (``v1,… v1a,…``) send several signatures in one header; any entry with the
  scheme's prefix may match, entries of other versions are ignored.
* **Replay windows in both directions.** A timestamp (Slack header, Linear
  ``webhookTimestamp`` in ms) more than the tolerance *older or newer* than
  ``now`` is refused, as the Standard Webhooks reference verifier does.
* **Never raises on garbage.** Anything a client can send ends in a
  :class:`Rejection`; only a descriptor that cannot verify anything raises, and
  it does so at compile time (:class:`WebhookConfigError`).

Handshakes — the set-up requests providers send before real deliveries (Slack
``url_verification``, Trello's HEAD, Asana's ``X-Hook-Secret``, MS Graph's
``validationToken``, Notion's ``verification_token``) — are matched by
:func:`match_handshake`; :func:`check_delivery` puts the two together in the
order the providers need: an unsigned handshake is answered without
verification, a signed one (Slack) only after it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from ucf.core.descriptor_view import (
    ConnectorView,
    HandshakeView,
    SignatureTimestampView,
    SignatureView,
    TokenView,
    WebhookView,
    connector_view,
    webhook_view,
)
from ucf.core.jsonpath import MISSING, CompiledPath, PathSyntaxError, compile_path
from ucf.core.payload import payload_or_missing
from ucf.core.records import datarecord
from ucf.core.template import compile_template
from ucf.core.webhook import folded_of, header

if TYPE_CHECKING:
    from ucf.core import descriptor as d

__all__ = [
    "Admission",
    "HandshakeResponse",
    "NoVerification",
    "RejectCode",
    "Rejection",
    "SignatureVerifier",
    "SigningCredentials",
    "TokenVerifier",
    "VerificationResult",
    "Verifier",
    "WebhookConfigError",
    "check_delivery",
    "compile_verifier",
    "match_handshake",
    "sign_delivery",
]


class WebhookConfigError(ValueError):
    """The descriptor cannot verify deliveries (e.g. 'signature' with no scheme)."""


class RejectCode(StrEnum):
    """Why a delivery was refused; stable, for metrics and tests."""

    MISSING_HEADER = "missing_header"
    """The signature or token is absent (header, query parameter or body field)."""
    BAD_ENCODING = "bad_encoding"
    """The signature is not in the scheme's format (prefix, hex/base64, length)."""
    TIMESTAMP_MISSING = "timestamp_missing"
    """The scheme needs a timestamp and the request has no usable one."""
    TIMESTAMP_OUTSIDE_WINDOW = "timestamp_outside_window"
    """Too old (a replay) or too far in the future."""
    SIGNATURE_MISMATCH = "signature_mismatch"
    MISSING_SECRET = "missing_secret"  # noqa: S105 - a code, not a secret
    """The instance has no (usable) secret to verify with: a set-up problem."""
    TOKEN_MISMATCH = "token_mismatch"  # noqa: S105 - a code, not a secret


@datarecord
class Rejection:
    """A machine-readable code and a sentence for a person; never contains a secret."""

    code: RejectCode
    message: str
    skew_seconds: float | None = None
    """For ``timestamp_outside_window``: how old the request is (negative: in the future)."""

    def __str__(self) -> str:
        return self.message


@datarecord
class VerificationResult:
    reason: Rejection | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


VALID: Final = VerificationResult()


def _reject(code: RejectCode, message: str, skew: float | None = None) -> VerificationResult:
    return VerificationResult(Rejection(code, message, skew))


class Verifier(Protocol):
    """A compiled verification scheme; immutable and safe to share between requests."""

    @property
    def description(self) -> str:
        """The scheme in words, for people ("HMAC-SHA256, hex, of '{{body}}' in …")."""

    @property
    def secret_credential(self) -> str | None:
        """The credential the scheme is keyed with (what ``--secret`` fills); None for 'none'."""

    @property
    def needs_url(self) -> bool:
        """The signed bytes include the registered URL (Trello)."""

    def verify(
        self,
        *,
        body: bytes,
        headers: Mapping[str, str],
        url: str,
        query: Mapping[str, str],
        credentials: Mapping[str, str],
        now: datetime,
    ) -> VerificationResult:
        """Check one request. ``headers`` are matched case-insensitively; ``url`` is the
        URL the provider was given when the webhook was registered (the instance's
        public webhook URL), used by schemes that sign it."""

    def sign(
        self, *, body: bytes, credentials: Mapping[str, str], url: str, now: datetime
    ) -> dict[str, str]:
        """Headers that make ``body`` pass :meth:`verify`, for previews (never real traffic);
        raises :class:`WebhookConfigError` when a body and a secret cannot produce them."""


# --------------------------------------------------------------------------- helpers


def _lower(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Header names folded to lower case; the first of repeated headers wins."""
    already = folded_of(headers)
    if already is not None:
        return already  # folded once by the server that decoded them
    folded: dict[str, str] = {}
    for name, value in headers.items():
        folded.setdefault(name.lower(), value)
    return folded


def _wire_bytes(text: str) -> bytes:
    """A header value back as the bytes that were sent.

    ASGI servers decode header bytes as latin-1, so encoding back as latin-1
    restores them exactly; text outside latin-1 (typed at a terminal) is UTF-8.
    """
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def _seconds(value: float) -> str:
    """Whole seconds, plus a tenth where it matters (near Linear's 60 s window)."""
    rounded = round(value)
    return str(rounded) if abs(value) >= 100 or abs(value - rounded) < 0.05 else f"{value:.1f}"


def _utc(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- secrets


def _utf8_secret(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _base64_secret(text: str) -> bytes:
    """Padding-tolerant, like the Standard Webhooks reference (``b64decode(s + '==')``)."""
    compact = "".join(text.split())
    return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)


def _whsec_secret(text: str) -> bytes:
    """Standard Webhooks: ``whsec_`` + base64; the prefix is optional, as in the reference."""
    return _base64_secret(text.strip().removeprefix("whsec_"))


_SECRET_DECODERS: Final[dict[str, Callable[[str], bytes]]] = {
    "utf8": _utf8_secret,
    "base64": _base64_secret,
    "whsec": _whsec_secret,
}


def _secret(
    credentials: Mapping[str, str], key: str, decode: Callable[[str], bytes]
) -> bytes | VerificationResult:
    text = credentials.get(key)
    if not text:
        return _reject(RejectCode.MISSING_SECRET, f"no {key!r} credential to verify with")
    try:
        secret = decode(text)
    except (binascii.Error, ValueError):
        return _reject(
            RejectCode.MISSING_SECRET, f"the {key!r} credential is not a usable secret (bad base64)"
        )
    if not secret:
        return _reject(RejectCode.MISSING_SECRET, f"the {key!r} credential is empty")
    return secret


# --------------------------------------------------------------------------- signature header


def _hex(text: str) -> bytes:
    return binascii.a2b_hex(text)  # any letter case; unlike bytes.fromhex, no spaces


def _base64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


_DECODERS: Final[dict[str, Callable[[str], bytes]]] = {"hex": _hex, "base64": _base64}
_ENCODERS: Final[dict[str, Callable[[bytes], str]]] = {
    "hex": bytes.hex,
    "base64": lambda mac: base64.b64encode(mac).decode("ascii"),
}
_ALGORITHMS: Final[dict[str, str]] = {"hmac-sha256": "sha256", "hmac-sha1": "sha1"}


class _SignatureHeader:
    """Reads the candidate MACs out of the signature header.

    One value (GitHub ``sha256=<hex>``, Trello bare base64) or, with a
    separator, a list where only entries carrying the prefix count (PagerDuty
    ``v1=a,v1=b``; Standard Webhooks ``v1,x v1a,y`` — ``v1a`` is ignored).
    """

    def __init__(
        self, scheme: SignatureView, digest_size: int, optional_prefix: str | None
    ) -> None:
        self.name = scheme.header
        self.key = scheme.header.lower()
        self.prefix = scheme.prefix
        self.separator = scheme.separator
        self.encoding = scheme.encoding
        self.decode = _DECODERS[scheme.encoding]
        self.digest_size = digest_size
        self.optional_prefix = optional_prefix
        self.shape = f"{scheme.prefix}<{scheme.encoding}>"

    def candidates(self, headers: Mapping[str, str]) -> list[bytes] | VerificationResult:
        raw = headers.get(self.key, "").strip()
        if not raw:
            return _reject(RejectCode.MISSING_HEADER, f"missing header {self.name}")
        if self.separator is None:  # one value (GitHub's): without the list comprehensions
            prefixed = [raw] if raw.startswith(self.prefix) else []
        else:
            entries = [e.strip() for e in raw.split(self.separator) if e.strip()]
            prefixed = [e for e in entries if e.startswith(self.prefix)]
        if not prefixed:
            where = "an entry" if self.separator is not None else "a value"
            return _reject(
                RejectCode.BAD_ENCODING,
                f"header {self.name} has no {where} starting with {self.prefix!r} "
                f"(expected {self.shape})",
            )
        macs: list[bytes] = []
        problem = ""
        for entry in prefixed:
            text = entry[len(self.prefix) :]
            if self.optional_prefix and text.startswith(self.optional_prefix):
                text = text[len(self.optional_prefix) :]
            try:
                mac = self.decode(text)
            except (binascii.Error, ValueError):
                problem = f"is not valid {self.encoding}"
                continue
            if len(mac) != self.digest_size:
                unit = "byte" if len(mac) == 1 else "bytes"
                problem = f"is {len(mac)} {unit} long; the HMAC is {self.digest_size}"
                continue
            macs.append(mac)
        if not macs:
            return _reject(
                RejectCode.BAD_ENCODING,
                f"the signature in header {self.name} {problem} (expected {self.shape})",
            )
        return macs


# --------------------------------------------------------------------------- timestamp

_UNIX_TIME: Final = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?")


class _Timestamp:
    """When the provider says it sent the request; checked against a window both ways."""

    def __init__(self, spec: SignatureTimestampView) -> None:
        self.header = spec.header.lower() if spec.header else None
        self.header_name = spec.header
        self.path: CompiledPath | None = compile_path(spec.body_path) if spec.body_path else None
        self.body_path = spec.body_path
        self.scale = 1000.0 if spec.unit == "ms" else 1.0
        self.tolerance = spec.tolerance_seconds
        self.unit = spec.unit

    @property
    def source(self) -> str:
        if self.header_name is not None:
            return f"header {self.header_name}"
        return f"body field {self.body_path}"

    def read(self, headers: Mapping[str, str], body: bytes) -> str | VerificationResult:
        """The timestamp as sent (the exact text a signed payload contains)."""
        if self.header is not None:
            text = headers.get(self.header, "").strip()
        else:
            assert self.path is not None
            value = self.path.first(payload_or_missing(body))
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                text = ""
            else:
                text = str(value).strip()
        if not text:
            return _reject(RejectCode.TIMESTAMP_MISSING, f"missing timestamp ({self.source})")
        if not _UNIX_TIME.fullmatch(text):
            return _reject(
                RejectCode.TIMESTAMP_MISSING,
                f"timestamp {_shown(text)} ({self.source}) is not a Unix time in {self.unit}",
            )
        return text

    def check(self, text: str, now: datetime) -> VerificationResult:
        age = _utc(now).timestamp() - float(text) / self.scale
        if abs(age) <= self.tolerance:
            return VALID
        when = f"{_seconds(age)} s old" if age > 0 else f"{_seconds(-age)} s in the future"
        return _reject(
            RejectCode.TIMESTAMP_OUTSIDE_WINDOW,
            f"timestamp outside the {self.tolerance} s window (request is {when})",
            age,
        )


# --------------------------------------------------------------------------- signed payload

_SIGNED_VARIABLES: Final = frozenset({"body", "timestamp", "id", "url"})


class _SignedPayload:
    """``signedPayload`` as literal bytes and variables, fed to the MAC without copying the body."""

    def __init__(self, source: str) -> None:
        template = compile_template(source)
        unknown = template.variables - _SIGNED_VARIABLES
        if unknown:
            raise WebhookConfigError(
                f"signedPayload {source!r} uses {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_SIGNED_VARIABLES))}"
            )
        parts: list[bytes | str] = []
        for literal, placeholder in zip(template.literals, template.placeholders, strict=False):
            parts += [literal.encode("utf-8"), placeholder.name]
        parts.append(template.literals[-1].encode("utf-8"))
        self.parts: tuple[bytes | str, ...] = tuple(p for p in parts if p != b"")
        self.variables = template.variables
        self.source = source

    def feed(self, mac: Any, values: Mapping[str, bytes]) -> None:
        for part in self.parts:
            mac.update(part if isinstance(part, bytes) else values[part])

    def mac(
        self,
        secret: bytes,
        digest: str,
        values: Mapping[str, bytes],
        credentials: Mapping[str, str] | None = None,
    ) -> bytes:
        """The HMAC of this payload; from a copy of an HMAC keyed once per secret when
        ``credentials`` (where ``secret`` comes from) keep one (:class:`SigningCredentials`)."""
        if isinstance(credentials, SigningCredentials):
            kept = credentials.keyed
            keyed = kept.get((secret, digest))
            if keyed is None:
                keyed = kept[secret, digest] = hmac.new(secret, digestmod=digest)
            mac = keyed.copy()
        else:
            mac = hmac.new(secret, digestmod=digest)
        if self.parts == ("body",):  # GitHub, Jira, Asana…: no feeding loop
            mac.update(values["body"])
        else:
            self.feed(mac, values)
        return mac.digest()


class SigningCredentials(dict[str, str]):
    """Credentials that keep beside them the HMACs keyed with their secrets.

    Every delivery of an instance is checked with the same secret. ``hmac.digest`` keyed
    it each time, and OpenSSL's one-shot MAC looked the MAC and the digest up by name
    each time too: about 17 000 instructions a delivery on top of hashing the body
    (``bench/webhook_instructions.py``); a copy of the keyed HMAC costs far less. Keyed
    hash states written out by hand (RFC 2104's inner and outer pads) would save ~0.5 µs
    more a delivery (3.1 against 3.6 µs for a 4.4 KB body), not worth MAC code of our own.

    Kept here rather than in a module cache (which held up to 64 secrets, without a
    TTL: a rotated or deleted secret stayed in memory, keyed, until 64 others came by),
    a keyed HMAC lives exactly as long as the credentials it was keyed from: the
    gateway's cache of an instance's secrets, re-read when the instance changes and
    dropped when it is deleted. Plain mappings key an HMAC for each MAC.
    """

    __slots__ = ("keyed",)

    def __init__(self, credentials: Mapping[str, str]) -> None:
        super().__init__(credentials)
        self.keyed: dict[tuple[bytes, str], hmac.HMAC] = {}


# --------------------------------------------------------------------------- verifiers


class SignatureVerifier:
    """HMAC schemes: GitHub, Slack, Linear, PagerDuty, Sentry, Trello, Notion, Asana,
    Jira, Standard Webhooks — whatever a :class:`~ucf.core.descriptor.SignatureVerification`
    describes (read as its :class:`~ucf.core.descriptor_view.SignatureView`)."""

    def __init__(self, scheme: SignatureView, *, brief_form: bool = False) -> None:
        self._digest = _ALGORITHMS[scheme.algorithm]
        size = hashlib.new(self._digest).digest_size
        # The brief's auth.webhook_secret cannot name a prefix, yet GitHub and Jira send
        # 'sha256=<hex>' in exactly the header it names: accept that spelling too.
        optional = f"{self._digest}=" if brief_form and not scheme.prefix else None
        self._header = _SignatureHeader(scheme, size, optional)
        self._payload = _SignedPayload(scheme.signed_payload)
        self._timestamp = _Timestamp(scheme.timestamp) if scheme.timestamp else None
        if "timestamp" in self._payload.variables and self._timestamp is None:
            raise WebhookConfigError("signedPayload uses {{timestamp}} but no timestamp is set")
        self._id_header = scheme.id_header
        self._encode = _ENCODERS[scheme.encoding]
        if "id" in self._payload.variables and self._id_header is None:
            raise WebhookConfigError("signedPayload uses {{id}} but idHeader is not set")
        self._secret_key = scheme.secret_credential
        self._decode_secret = _SECRET_DECODERS[scheme.secret_encoding]
        self.description = (
            f"HMAC-{self._digest.upper()} of {scheme.signed_payload!r} keyed with "
            f"{scheme.secret_credential!r}, {scheme.prefix}<{scheme.encoding}> in header "
            f"{scheme.header}"
            + (f" ({self._timestamp.tolerance} s window)" if self._timestamp else "")
        )

    @property
    def secret_credential(self) -> str:
        return self._secret_key

    @property
    def needs_url(self) -> bool:
        return "url" in self._payload.variables

    def verify(
        self,
        *,
        body: bytes,
        headers: Mapping[str, str],
        url: str,
        query: Mapping[str, str],
        credentials: Mapping[str, str],
        now: datetime,
    ) -> VerificationResult:
        secret = _secret(credentials, self._secret_key, self._decode_secret)
        if isinstance(secret, VerificationResult):
            return secret
        folded = _lower(headers)
        macs = self._header.candidates(folded)
        if isinstance(macs, VerificationResult):
            return macs
        values: dict[str, bytes] = {"body": body}
        if "url" in self._payload.variables:
            values["url"] = url.encode("utf-8", "surrogatepass")
        if self._id_header is not None:
            ident = folded.get(self._id_header.lower(), "").strip()
            if not ident:
                return _reject(RejectCode.MISSING_HEADER, f"missing header {self._id_header}")
            values["id"] = _wire_bytes(ident)
        if self._timestamp is not None:
            stamp = self._timestamp.read(folded, body)
            if isinstance(stamp, VerificationResult):
                return stamp
            in_window = self._timestamp.check(stamp, now)
            if not in_window.ok:
                return in_window
            values["timestamp"] = _wire_bytes(stamp)
        expected = self._payload.mac(secret, self._digest, values, credentials)
        for candidate in macs:  # the first that matches, as any() did, without its generator
            if hmac.compare_digest(expected, candidate):
                return VALID
        which = "no signature" if len(macs) > 1 else "the signature"
        verb = "matches" if len(macs) > 1 else "does not match"
        return _reject(
            RejectCode.SIGNATURE_MISMATCH,
            f"{which} in header {self._header.name} {verb} the HMAC-{self._digest.upper()} "
            f"of {self._payload.source!r} keyed with the {self._secret_key!r} secret",
        )

    def sign(
        self, *, body: bytes, credentials: Mapping[str, str], url: str, now: datetime
    ) -> dict[str, str]:
        """The headers a provider would send with ``body`` (what the dashboard's preview
        adds when an author asks it to sign a pasted payload).

        The MAC is fed by the same :class:`_SignedPayload` and keyed by the same secret
        decoding as :meth:`verify`, so what is signed here is what the gateway checks.
        A timestamp read from a header is ``now``; one read from the body stays the
        body's. Raises :class:`WebhookConfigError` when the secret or body cannot sign.
        """
        secret = _secret(credentials, self._secret_key, self._decode_secret)
        if isinstance(secret, VerificationResult):
            raise WebhookConfigError(str(secret.reason))
        headers: dict[str, str] = {}
        values: dict[str, bytes] = {"body": body, "url": url.encode("utf-8", "surrogatepass")}
        if self._id_header is not None:
            headers[self._id_header] = "msg_preview"
            values["id"] = b"msg_preview"
        if self._timestamp is not None:
            if self._timestamp.header_name is not None:
                stamp = str(int(_utc(now).timestamp() * self._timestamp.scale))
                headers[self._timestamp.header_name] = stamp
            else:
                read = self._timestamp.read({}, body)
                if isinstance(read, VerificationResult):
                    raise WebhookConfigError(str(read.reason))
                stamp = read
            values["timestamp"] = stamp.encode("ascii")
        mac = hmac.new(secret, digestmod=self._digest)
        self._payload.feed(mac, values)
        headers[self._header.name] = self._header.prefix + self._encode(mac.digest())
        return headers


class _TokenSource(Protocol):
    @property
    def description(self) -> str: ...

    def read(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> list[str] | None: ...


@datarecord
class _HeaderToken:
    name: str

    @property
    def description(self) -> str:
        return f"header {self.name}"

    def read(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> list[str] | None:
        value = (header(headers, self.name) or "").strip()
        return [value] if value else None


@datarecord
class _QueryToken:
    name: str

    @property
    def description(self) -> str:
        return f"query parameter {self.name}"

    def read(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> list[str] | None:
        value = query.get(self.name)
        return [value] if value else None


@datarecord
class _BodyToken:
    """MS Graph batches notifications; every ``value[*].clientState`` must carry the token."""

    expression: str
    path: CompiledPath

    @property
    def description(self) -> str:
        return f"body field {self.expression}"

    def read(
        self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> list[str] | None:
        found = self.path.values(payload_or_missing(body))
        return [v if isinstance(v, str) else "\x00not-a-string" for v in found] or None


def _digest_equal(a: str, b: str) -> bool:
    """Constant time, and the length of the expected token does not leak either."""
    return hmac.compare_digest(
        hashlib.sha256(a.encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(b.encode("utf-8", "surrogatepass")).digest(),
    )


class TokenVerifier:
    """A shared token sent as is: Datadog custom header, MS Graph ``clientState``."""

    def __init__(self, spec: TokenView) -> None:
        self._source: _TokenSource
        if spec.header is not None:
            self._source = _HeaderToken(spec.header)
        elif spec.query_param is not None:
            self._source = _QueryToken(spec.query_param)
        else:
            assert spec.body_path is not None
            self._source = _BodyToken(spec.body_path, compile_path(spec.body_path))
        self._prefix = spec.value_prefix
        self._secret_key = spec.secret_credential
        self.description = f"token {self._secret_key!r} in {self._source.description}" + (
            f" after {spec.value_prefix!r}" if spec.value_prefix else ""
        )

    @property
    def secret_credential(self) -> str:
        return self._secret_key

    @property
    def needs_url(self) -> bool:
        return False

    def verify(
        self,
        *,
        body: bytes,
        headers: Mapping[str, str],
        url: str,
        query: Mapping[str, str],
        credentials: Mapping[str, str],
        now: datetime,
    ) -> VerificationResult:
        expected = credentials.get(self._secret_key)
        if not expected:
            return _reject(
                RejectCode.MISSING_SECRET, f"no {self._secret_key!r} credential to verify with"
            )
        found = self._source.read(headers, query, body)
        if found is None:
            return _reject(RejectCode.MISSING_HEADER, f"missing token ({self._source.description})")
        want = self._prefix + expected
        if all(_digest_equal(value, want) for value in found):
            return VALID
        return _reject(
            RejectCode.TOKEN_MISMATCH,
            f"the token in {self._source.description} does not match {self._secret_key!r}",
        )

    def sign(
        self, *, body: bytes, credentials: Mapping[str, str], url: str, now: datetime
    ) -> dict[str, str]:
        """The token header a provider would send; only a header-borne token can be added."""
        expected = credentials.get(self._secret_key)
        if not expected:
            raise WebhookConfigError(f"no {self._secret_key!r} credential to sign with")
        if not isinstance(self._source, _HeaderToken):
            raise WebhookConfigError(
                f"the token is read from {self._source.description}: put it there yourself"
            )
        return {self._source.name: self._prefix + expected}


class NoVerification:
    """``verification: none`` — only ever built when the descriptor says so."""

    def sign(
        self, *, body: bytes, credentials: Mapping[str, str], url: str, now: datetime
    ) -> dict[str, str]:
        raise WebhookConfigError("this connector does not verify deliveries: nothing to sign")

    description = "none (the descriptor does not verify deliveries)"
    secret_credential: str | None = None
    needs_url = False

    def verify(
        self,
        *,
        body: bytes,
        headers: Mapping[str, str],
        url: str,
        query: Mapping[str, str],
        credentials: Mapping[str, str],
        now: datetime,
    ) -> VerificationResult:
        return VALID


def compile_verifier(descriptor: d.ConnectorDescriptor | ConnectorView) -> Verifier:
    """The descriptor's verification scheme, compiled once; raises :class:`WebhookConfigError`.

    Reads the descriptor's view: the gateway's, loaded from the stored JSON without the
    models, or a model's (a preview, the CLI) converted."""
    descriptor = connector_view(descriptor)
    webhook = descriptor.webhook
    if webhook is None:
        raise WebhookConfigError(f"{descriptor.id} receives no webhooks")
    if webhook.verification == "none":
        return NoVerification()
    if webhook.verification == "token":
        if webhook.token is None:
            raise WebhookConfigError("verification is 'token' but 'token' is not configured")
        return TokenVerifier(webhook.token)
    scheme = descriptor.signature_verification()
    if scheme is None:
        raise WebhookConfigError(
            "verification is 'signature' but there is no 'signature' object and auth is not "
            "'webhook_secret'"
        )
    return SignatureVerifier(scheme, brief_form=webhook.signature is None)


def sign_delivery(
    verifier: Verifier, *, body: bytes, credentials: Mapping[str, str], now: datetime
) -> dict[str, str]:
    """Headers that make ``body`` pass ``verifier``, for previews; never used on real traffic.

    The URL is empty, as the preview verifies with an empty URL. Raises
    :class:`WebhookConfigError` when the scheme verifies nothing or cannot be produced
    from a body and a secret alone.
    """
    return verifier.sign(body=body, credentials=credentials, url="", now=now)


# --------------------------------------------------------------------------- handshakes


@datarecord
class HandshakeResponse:
    """What to answer a provider's set-up request with.

    ``signed``: the request must pass verification before this is sent (Slack);
    otherwise it is answered as is (Trello's HEAD carries no signature).
    ``captured_secret``: the handshake handed over the signing secret of later
    deliveries (Asana, Notion; ``capturesSecret``). Because such handshakes are
    unsigned, anyone who knows the URL can send one: keep the secret only while
    the instance has none, never replace an existing one. Neither it nor the
    echoed header appears in ``repr``.
    """

    kind: str
    status: int = 200
    body: bytes = b""
    media_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    signed: bool = False
    captured_secret: str | None = field(default=None, repr=False)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    if value is MISSING:
        return None
    return str(value)


def _condition_holds(handshake: HandshakeView, payload: Any) -> tuple[bool, str | None]:
    """Whether ``whenPath`` (and ``equals``) hold; also the value found there."""
    if handshake.when_path is None:
        return True, None
    try:
        value = compile_path(handshake.when_path).first(payload)
    except PathSyntaxError:  # an unvalidated descriptor's bad path matches nothing
        return False, None
    text = _text(value)
    if text is None:
        return False, None
    if handshake.equals is not None and text != handshake.equals:
        return False, None
    return True, text


def _answer(
    handshake: HandshakeView,
    method: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    payload: Any,
) -> HandshakeResponse | None:
    kind = handshake.type
    if (kind == "head_ok") != (method.upper() == "HEAD"):
        return None
    holds, at_path = _condition_holds(handshake, payload)
    if not holds:
        return None
    signed = handshake.signed
    if kind == "head_ok":
        return HandshakeResponse(kind, signed=signed)
    if kind == "challenge":
        if handshake.respond_path is None:
            return None
        try:
            challenge = _text(compile_path(handshake.respond_path).first(payload))
        except PathSyntaxError:
            return None
        if challenge is None:
            return None
        return HandshakeResponse(
            kind,
            body=json.dumps({"challenge": challenge}).encode(),
            media_type="application/json",
            signed=signed,
            captured_secret=challenge if handshake.captures_secret else None,
        )
    if kind == "echo_header":
        if handshake.header is None:
            return None
        value = (header(headers, handshake.header) or "").strip()
        if not value:
            return None
        return HandshakeResponse(
            kind,
            headers={handshake.header: value},
            signed=signed,
            captured_secret=value if handshake.captures_secret else None,
        )
    if kind == "echo_query":
        if handshake.query_param is None:
            return None
        token = query.get(handshake.query_param)
        if not token:
            return None
        return HandshakeResponse(
            kind,
            body=token.encode("utf-8", "surrogatepass"),
            media_type="text/plain; charset=utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
            signed=signed,
            captured_secret=token if handshake.captures_secret else None,
        )
    # acknowledge
    return HandshakeResponse(
        kind, signed=signed, captured_secret=at_path if handshake.captures_secret else None
    )


def match_handshake(
    spec: d.ConnectorDescriptor | d.WebhookSpec | ConnectorView | WebhookView,
    *,
    method: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    payload: Any,
) -> HandshakeResponse | None:
    """The first of the descriptor's handshakes this request is, or None.

    ``payload`` is the parsed JSON body (``None`` or ``MISSING`` when there is
    none or it is not JSON). Never raises on request data.
    """
    webhook = webhook_view(spec)
    if webhook is None:
        return None
    for handshake in webhook.handshakes:
        response = _answer(handshake, method, headers, query, payload)
        if response is not None:
            return response
    return None


_UNPARSED: Final[Any] = object()
"""The body was not parsed (yet): no handshake of the connector reads it."""


@datarecord
class Admission:
    """Verdict on one request: refuse (``result``), answer a ``handshake``, or ingest."""

    result: VerificationResult
    handshake: HandshakeResponse | None = None
    payload: Any = _UNPARSED

    @property
    def ok(self) -> bool:
        return self.result.ok

    def parsed(self, body: bytes) -> Any:
        """The JSON body (``MISSING`` when it is none), parsed once whoever needed it first."""
        return payload_or_missing(body) if self.payload is _UNPARSED else self.payload


def check_delivery(
    verifier: Verifier,
    spec: d.ConnectorDescriptor | d.WebhookSpec | ConnectorView | WebhookView,
    *,
    method: str,
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    query: Mapping[str, str],
    credentials: Mapping[str, str],
    now: datetime,
    payload: Any = _UNPARSED,
) -> Admission:
    """Handshake or delivery, in the order providers need.

    An unsigned handshake (Trello HEAD, Asana, MS Graph, Notion) is answered
    without verification — it cannot carry a signature yet. Everything else,
    a signed handshake (Slack's challenge) included, is verified first.

    The body is parsed before verification only for a connector with handshakes
    to recognise (``payload``, when given, is that parse done already); for the
    others a stranger's bytes reach no parser: a flood of unsigned bodies costs
    the HMAC alone. :meth:`Admission.parsed` gives the payload either way.
    """
    webhook = webhook_view(spec)
    if payload is _UNPARSED and webhook is not None and webhook.handshakes:
        payload = payload_or_missing(body)
    handshake = (
        None
        if payload is _UNPARSED or webhook is None
        else match_handshake(webhook, method=method, headers=headers, query=query, payload=payload)
    )
    if handshake is not None and not handshake.signed:
        return Admission(VALID, handshake, payload)
    result = verifier.verify(
        body=body, headers=headers, url=url, query=query, credentials=credentials, now=now
    )
    return Admission(result, handshake if result.ok else None, payload)
