"""The webhook gateway's use case (SPEC §7): one delivery in, its signals durably stored.

The web layer owns the socket, this module owns the decisions, in the order
the gateway promises (each refusal is a :class:`ServiceError` with its status):

1. :meth:`WebhookGateway.target` — an unknown connector, or no *enabled*
   instance of it in the project, is a 404 (one message for both, so a
   stranger cannot probe which projects use which tools); so is a wrong hook
   id on the instance's own URL (``…/{hookId}``).
2. The body limit is enforced by the caller *while reading* (it is the only
   one who can stop a stream), with :func:`read_limited`.
3. Handshake or verification, in the order the provider needs
   (:func:`ucf.runtime.webhooks.check_delivery`): 401 with no detail.
   Whatever proves nothing (a failed verification, an unsigned handshake) is
   charged to a bucket of the sender's address (429 when it is empty).
4. Only a verified delivery draws a token from the instance's bucket in the
   store (429 with ``Retry-After`` when empty), shared by every worker: so
   strangers cannot spend a genuine sender's budget.
5. A handshake is answered as its provider documents. One that hands over a
   signing secret is heard only at the instance's own URL, and the secret stays
   *pending* until an operator confirms it (:meth:`InstanceService.hold_pending`).
6. A body that is not a JSON object is a 400; an event type the connector does
   not handle is a 202 that stores nothing.
7. Map → sanitise → insert-if-new + outbox in one atomic write; only then the
   2xx. A signal is keyed by connector + item id + item version, exactly as a
   poll keys it, so a redelivery, a replay under a fresh delivery id and the
   poll that later lists the same version all answer "already stored"; a
   signed delivery id or the body hash stands in only for a payload that
   carries no version (:func:`ucf.core.webhook.fallback_version`).

Decrypted secrets are cached per instance for a few seconds, keyed by the
instance's ``updatedAt``: any settings or credential change (made by any
worker) is a new key, so a rotated secret is used at once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, Callable, Coroutine, Mapping
from dataclasses import field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol
from urllib.parse import quote

from ucf.core.client_address import client_key
from ucf.core.mapping import CompiledMapping, MappingResult
from ucf.core.records import datarecord
from ucf.core.side_by_side import both
from ucf.core.webhook import map_delivery
from ucf.runtime.webhooks import (
    HandshakeResponse,
    Rejection,
    SigningCredentials,
    Verifier,
    WebhookConfigError,
    check_delivery,
    compile_verifier,
)
from ucf.service.connectors import Connector
from ucf.service.context import UcfContext
from ucf.service.delivery_health import DeliveryReporter
from ucf.service.errors import NotFoundError, ServiceError
from ucf.service.instance_secrets import InstanceSecrets
from ucf.stores.errors import (
    AlreadyExists,
    InvalidCursor,
    InvalidRecord,
    NotFound,
    StoreError,
)
from ucf.stores.models import InstanceRecord, RateDecision
from ucf.stores.secrets.base import UNREADABLE_SECRET

if TYPE_CHECKING:
    from ucf.runtime.native import WebhookHandler
    from ucf.runtime.sources import SourceContext

__all__ = [
    "Accepted",
    "BadDelivery",
    "Delivery",
    "GatewayObserver",
    "HandshakeAnswer",
    "HookUrlRequired",
    "Ignored",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "RateLimitExceeded",
    "Unverified",
    "UpstreamFailed",
    "WebhookGateway",
    "WebhookMisconfigured",
    "WebhookOutcome",
    "WebhookTarget",
    "read_limited",
    "receive_webhook",
    "refuse_declared_length",
    "too_large",
    "webhook_path",
]

log = logging.getLogger("ucf.webhooks")

SECRET_TTL_SECONDS: Final = 30.0
TARGET_TTL_SECONDS: Final = 1.0
MAX_RESERVES: Final = 10_000
"""Token reserves a gateway keeps (instances and unverified senders), least recent dropped."""
RESERVE_SECONDS: Final = 1.0
GIVE_BACK_SECONDS: Final = 1.0
"""How long a failed delivery's answer waits for its token's return to the bucket. The
store that failed the delivery is often the one that keeps the give-back waiting (SQLite
locked by another process: a second ``busy_timeout``, the 503 after 60 s, not 30 s)."""
NOT_HERE: Final = "no webhook endpoint at this URL"
_STORE_REFUSALS: Final = (NotFound, AlreadyExists, InvalidRecord, InvalidCursor)
"""Store errors that refuse what was asked (answered 4xx), unlike its failures (5xx)."""


def webhook_path(connector_id: str, project_id: str, hook_id: str | None = None) -> str:
    """The gateway path of an instance, percent-encoded for a URL; with ``hook_id``, the
    instance's own unguessable one."""
    path = f"/api/webhooks/{quote(connector_id, safe='')}/{quote(project_id, safe='')}"
    return path + f"/{quote(hook_id, safe='')}" if hook_id else path


# --------------------------------------------------------------------------- refusals


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class RateLimitExceeded(ServiceError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message, {"retryAfterSeconds": retry_after_seconds})
        self.retry_after_seconds = retry_after_seconds


class Unverified(ServiceError):
    """401 without detail: the reason is for metrics and server logs only."""

    status = 401
    code = "unauthorized"

    def __init__(self, reason: Rejection | None) -> None:
        super().__init__("the delivery could not be verified")
        self.reason = reason


class BadDelivery(ServiceError):
    status = 400
    code = "bad_request"


class MethodNotAllowed(ServiceError):
    status = 405
    code = "method_not_allowed"


class HookUrlRequired(ServiceError):
    """A handshake that hands over a secret, sent to the shared (guessable) URL."""

    status = 403
    code = "hook_url_required"


class WebhookMisconfigured(ServiceError):
    """The stored descriptor cannot verify deliveries: ucf's problem, not the sender's."""

    status = 503
    code = "webhook_misconfigured"


class UpstreamFailed(ServiceError):
    """A native handler could not fetch what a delivery names (Asana's compact events):
    503, so the provider delivers again later instead of the change being lost."""

    status = 503
    code = "upstream_unavailable"


# --------------------------------------------------------------------------- outcomes


@datarecord
class Accepted:
    """Stored (or already stored): 200 with the counts."""

    received: int
    inserted: int
    duplicates: int
    item_errors: int = 0
    skipped: int = 0

    status = 200

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "received": self.received,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
        }
        if self.item_errors:
            body["itemErrors"] = self.item_errors
        if self.skipped:
            body["skipped"] = self.skipped
        return body


@datarecord
class Ignored:
    """An event type the connector does not map: 202, stored nowhere."""

    event_type: str

    status = 202

    def to_json(self) -> dict[str, Any]:
        return {"received": 0, "ignored": self.event_type}


@datarecord
class HandshakeAnswer:
    """A provider's set-up request, answered as its documentation says."""

    response: HandshakeResponse


WebhookOutcome = Accepted | Ignored | HandshakeAnswer


@datarecord
class Delivery:
    """One request to the gateway, as received (the body read in full, under the limit).

    ``url`` is the URL the provider was given when the webhook was registered
    (the instance's public webhook URL plus any query): Trello signs it. A server
    may leave it empty for a target whose :attr:`WebhookTarget.needs_url` is False.
    """

    method: str
    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    url: str
    client: str | None = None
    """The sender's address: failed verifications are charged to it, not to the instance."""


@datarecord
class WebhookTarget:
    connector: Connector
    record: InstanceRecord
    via_hook: bool = False
    """Reached through the instance's own URL (``…/{hookId}``), which nobody can guess:
    only there does a handshake that hands over a secret get a hearing."""
    needs_url: bool = True
    """Whether :meth:`WebhookGateway.receive` reads the delivery's registered URL: a
    native handler is handed it, a descriptor's verifier reads it only when it signs
    it (Trello). A server works the URL out (the public base, the Host header, the
    path and query) only when it is read, and hands an empty one otherwise."""

    @property
    def connector_id(self) -> str:
        return self.record.connector_id

    @property
    def project_id(self) -> str:
        return self.record.project_id


class GatewayObserver(Protocol):
    """What the gateway reports for metrics; every method must be cheap and never raise."""

    def rate_limited(self, connector_id: str) -> None: ...

    def verification_failed(self, connector_id: str, reason: str) -> None: ...

    def ignored(self, connector_id: str, event_type: str) -> None: ...

    def ingested(self, connector_id: str, inserted: int, duplicates: int) -> None: ...

    def give_back_failed(self, connector_id: str) -> None:
        """A token of a delivery the store failed did not go back to the instance's bucket
        (the store failed again, or other writers kept changing the bucket)."""


class _Silent:
    def rate_limited(self, connector_id: str) -> None:
        return None

    def give_back_failed(self, connector_id: str) -> None:
        return None

    def verification_failed(self, connector_id: str, reason: str) -> None:
        return None

    def ignored(self, connector_id: str, event_type: str) -> None:
        return None

    def ingested(self, connector_id: str, inserted: int, duplicates: int) -> None:
        return None


# --------------------------------------------------------------------------- reading


def refuse_declared_length(limit: int, declared_length: str | None) -> None:
    """413 for a declared ``Content-Length`` over ``limit`` (before a byte is read), 400
    for one that is not a number: digits only (RFC 9110 §8.6, ``1*DIGIT``), not the
    sign, underscores or other digits ``int()`` would take."""
    if declared_length is not None:
        if len(declared_length) < 19 and declared_length.isdigit() and declared_length.isascii():
            if int(declared_length) > limit:  # the usual header, digits alone: one int()
                raise too_large(limit)
            return
        digits = declared_length.strip(" \t")
        if not (digits.isascii() and digits.isdigit()):
            raise BadDelivery("Content-Length is not a number")
        significant = digits.lstrip("0")  # int() refuses thousands of digits: count them
        if len(significant) > len(str(limit)) or int(significant or "0") > limit:
            raise too_large(limit)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {limit} bytes")


async def read_limited(
    chunks: AsyncIterable[bytes], *, limit: int, declared_length: str | None
) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``.

    A declared ``Content-Length`` over the limit is refused before a byte is
    read; a chunked body (or one that lies about its length) is counted as it
    arrives and abandoned at the first byte past the limit.
    """
    refuse_declared_length(limit, declared_length)
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise too_large(limit)
    return bytes(received)


# --------------------------------------------------------------------------- rate limit


@datarecord(frozen=False)
class TokenReserve:
    """Tokens this process drew from an instance's shared bucket ahead of need.

    Every delivery must take a token from the bucket in the store, so that all
    workers share one limit; one store write per delivery is what that costs.
    Under a burst the gateway draws several tokens in one write and spends
    them locally: the batch doubles while reserves run out within
    ``RESERVE_SECONDS`` and halves when they go stale, so a quiet instance
    draws one at a time. Nothing is ever granted that the bucket did not
    grant (a stale reserve is dropped, never used), so the limit holds for
    all workers together; a busy worker may hold up to ``max_batch - 1``
    tokens another worker cannot have.

    One draw at a time: deliveries that find the reserve empty while a draw is
    in flight wait for it (:attr:`drawing`) and take from what it brings, instead
    of each drawing for itself. Under wrk's 32 concurrent deliveries every
    fourth or fifth delivery drew (a store write each, in the next commit
    group) because the reserve was empty for all of them at once; the batch
    never grew past what one delivery used. Waiters of a refused draw are
    refused as well (:attr:`refused_for`): the bucket had no token for it.
    """

    max_batch: int
    tokens: int = 0
    expires: float = 0.0
    batch: int = 1
    drawing: asyncio.Event | None = None
    """Set when the draw in flight is over (None: none is)."""
    refused_for: int | None = None
    """The last draw's refusal: its ``Retry-After`` seconds (None: it was granted)."""

    def take(self, now: float) -> bool:
        if self.tokens > 0 and now < self.expires:
            self.tokens -= 1
            return True
        return False

    def next_batch(self, now: float) -> int:
        if self.tokens > 0 or now >= self.expires:  # went stale: traffic slowed down
            self.batch = max(1, self.batch // 2)
        else:  # used up in time: draw more next time
            self.batch = min(self.max_batch, self.batch * 2)
        self.tokens = 0
        return self.batch

    def refill(self, tokens: int, now: float) -> None:
        self.tokens = tokens
        self.expires = now + RESERVE_SECONDS


# --------------------------------------------------------------------------- the gateway


@datarecord(frozen=False)
class _CachedSecrets:
    updated_at: datetime
    expires: float
    values: InstanceSecrets = field(repr=False)
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    """Drops this entry once its TTL is over, whether or not a delivery comes by."""

    def drop(self) -> None:
        """Let go of the secrets: the timer (which holds this entry) is cancelled, and
        the HMACs keyed with them are dropped now, even if a delivery in flight still
        holds the credentials."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        credentials = self.values.credentials
        if isinstance(credentials, SigningCredentials):
            credentials.keyed.clear()


@datarecord
class _Budget:
    """An instance's rate limit as :meth:`WebhookGateway._take_token` charges it."""

    connector: Connector
    settings: object
    key: str
    rpm: int
    label: str
    refusal: str


def _verifier(connector: Connector) -> Verifier:
    try:
        verifier: Verifier = connector.compiled("verifier", compile_verifier)
    except WebhookConfigError as error:
        raise WebhookMisconfigured(f"{connector.id} cannot verify deliveries: {error}") from None
    return verifier


def _reads_url(connector: Connector) -> bool:
    """:attr:`WebhookTarget.needs_url` of a target of this connector."""
    if connector.kind == "native":
        return True
    try:
        return _verifier(connector).needs_url
    except WebhookMisconfigured:
        return True  # receive() answers why


def _receives_webhooks(connector: Connector) -> bool:
    """Whether the connector takes deliveries; :class:`WebhookMisconfigured` (503) when its
    stored descriptor cannot be read at all.

    The stored JSON was validated when it was written, but one written by a newer
    ucf (a key this one does not know) or edited in the store by hand fails the
    models here (pydantic's ``ValidationError`` is a ``ValueError``): that is
    ucf's problem, not the sender's, and no 500. What is wrong goes to the log,
    not to the sender.
    """
    try:
        return connector.receives_webhooks
    except ValueError as error:
        log.warning("connector %s: its stored descriptor cannot be read: %s", connector.id, error)
        raise WebhookMisconfigured(
            f"{connector.id} cannot receive deliveries: its stored descriptor cannot be read"
        ) from None


def _hooked(hooked: WebhookTarget, secrets: InstanceSecrets, hook_id: str) -> WebhookTarget:
    """``hooked`` if ``hook_id`` is the instance's own (compared in constant time); 404
    otherwise."""
    expected = secrets.hook_id
    given = hook_id.encode("utf-8", "surrogatepass")
    if expected is None or not hmac.compare_digest(given, expected.encode()):
        raise NotFoundError(NOT_HERE)
    return hooked


class WebhookGateway:
    """Receives deliveries for every connector instance of one :class:`UcfContext`."""

    def __init__(
        self,
        context: UcfContext,
        *,
        observer: GatewayObserver | None = None,
        secret_ttl: float = SECRET_TTL_SECONDS,
        target_ttl: float = TARGET_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        max_reserves: int = MAX_RESERVES,
        give_back_seconds: float = GIVE_BACK_SECONDS,
    ) -> None:
        self._context = context
        self._give_back_seconds = give_back_seconds
        self._observer: GatewayObserver = observer or _Silent()
        self._max_reserves = max_reserves
        self._secret_ttl = secret_ttl
        self._target_ttl = target_ttl
        self._monotonic = monotonic
        self._secrets: dict[tuple[str, str], _CachedSecrets] = {}
        self._targets: dict[tuple[str, str], tuple[float, WebhookTarget, WebhookTarget]] = {}
        """(expires, target, the same reached through the instance's own URL)"""
        self._reserves: OrderedDict[str, TokenReserve] = OrderedDict()
        """Least recently charged first; one per instance and per unverified sender."""
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self._deliveries = DeliveryReporter(
            context.store.instances, context.clock, monotonic=monotonic
        )
        self._wakers: list[Callable[[], None]] = []
        # An instance changed or deleted by this process's instance service (any caller,
        # even a request cancelled once the change began) is forgotten at once.
        context.instances.on_change(self.forget)

    def wake_on_poll_request(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when a handler requests a poll (the in-process scheduler's
        :meth:`~ucf.service.scheduler.Scheduler.wake`): the request is in the store for
        every worker; this only saves the local one its rescan wait."""
        self._wakers.append(wake)

    # -- 1. where does it go

    async def target(
        self, connector_id: str, project_id: str, hook_id: str | None = None
    ) -> WebhookTarget:
        """The enabled instance this URL belongs to; 404 otherwise (one message for all).

        With ``hook_id`` (the instance's own URL) it must be the instance's, compared
        in constant time; the secrets it is read from are the ones verification needs
        next, so the check costs no extra store read.

        Found targets are remembered for ``target_ttl`` seconds: a burst of
        deliveries reads the registry once. Changes made through this process
        are seen at once (:meth:`forget`), other workers' within the TTL.
        """
        found = self.cached_target(connector_id, project_id, hook_id)
        if found is not None:
            return found
        key = (project_id, connector_id)
        now = self._monotonic()
        cached = self._targets.get(key)
        if cached is not None and cached[0] > now:
            _, target, hooked = cached
        else:
            try:
                target = await self._find(connector_id, project_id)
            except NotFoundError:
                # Deleted or disabled, perhaps through another worker: its secrets (and
                # the HMACs keyed with them) are not kept for a URL that leads nowhere.
                self.forget(project_id, connector_id)
                raise
            hooked = replace(target, via_hook=True)
            self._targets[key] = (now + self._target_ttl, target, hooked)
        if hook_id is None:
            return target
        secrets = self._cached_secrets(target)
        if secrets is None:
            secrets = await self._instance_secrets(target)
        return _hooked(hooked, secrets, hook_id)

    def cached_target(
        self, connector_id: str, project_id: str, hook_id: str | None = None
    ) -> WebhookTarget | None:
        """:meth:`target`'s answer when everything it needs is cached (nearly every
        delivery), without a coroutine; None when :meth:`target` must read the store.
        Raises what :meth:`target` would (a wrong hook id is a 404)."""
        key = (project_id, connector_id)
        cached = self._targets.get(key)
        if cached is None:
            return None
        now = self._monotonic()
        if cached[0] <= now:
            return None
        if hook_id is None:
            return cached[1]
        # _cached_secrets(cached[1]), with the key and the clock read above
        secrets = self._secrets.get(key)
        if (
            secrets is None
            or secrets.updated_at != cached[1].record.updated_at
            or secrets.expires <= now
        ):
            return None
        return _hooked(cached[2], secrets.values, hook_id)

    async def _find(self, connector_id: str, project_id: str) -> WebhookTarget:
        # The ids come from the URL: one a store cannot even use as a key (DynamoDB's
        # 2 048 bytes) names no endpoint either, and gets the same 404; the catalogue's
        # own errors (a sync it needs first) are not mistaken for one.
        #
        # The connector and the instance are read side by side (on AWS two GetItems,
        # one round trip instead of two on a cold start: bench/coldstart.py), and
        # judged in the order they were read in before: the connector's answer,
        # error included, comes first, so a URL naming no connector is a 404
        # whatever the instance read did.
        connector, record = await asyncio.gather(
            self._context.connectors.find(connector_id),
            self._instance_record(project_id, connector_id),
            return_exceptions=True,
        )
        if isinstance(connector, BaseException):
            raise connector
        if connector is None or not _receives_webhooks(connector):
            raise NotFoundError(NOT_HERE)
        if isinstance(record, BaseException):
            raise record
        if record is None or not record.enabled:
            raise NotFoundError(NOT_HERE)
        return WebhookTarget(connector, record, needs_url=_reads_url(connector))

    async def _instance_record(self, project_id: str, connector_id: str) -> InstanceRecord | None:
        try:
            return await self._context.store.instances.get(project_id, connector_id)
        except InvalidRecord:  # ids a store cannot key name no instance
            return None

    @property
    def max_bytes(self) -> int:
        return self._context.settings.webhook_max_bytes

    def forget(self, project_id: str, connector_id: str) -> None:
        """Drop what is cached of an instance (its settings changed or it is gone)."""
        self._drop_secrets((project_id, connector_id))
        self._targets.pop((project_id, connector_id), None)
        self._budgets.pop((project_id, connector_id), None)

    def _drop_secrets(self, key: tuple[str, str], only: _CachedSecrets | None = None) -> None:
        """Drop the secrets cached for ``key`` (when ``only`` is given: if they are still
        that entry, which its timer asks for, not a newer one)."""
        cached = self._secrets.get(key)
        if cached is not None and (only is None or cached is only):
            del self._secrets[key]
            cached.drop()

    def forget_connector(self, connector_id: str) -> None:
        """Drop what is cached of every instance of a connector whose descriptor changed.

        A target holds the connector it was found with (its verifier, mapping and
        rate limit); without this, an update made through this process would wait
        out the target TTL like another worker's.
        """
        for key in [key for key in self._secrets if key[1] == connector_id]:
            self._drop_secrets(key)
        for cache in (self._targets, self._budgets):
            for key in [key for key in cache if key[1] == connector_id]:
                del cache[key]

    def requests_per_minute(self, target: WebhookTarget) -> int:
        """The descriptor's ``rateLimitPerMinute`` if it sets one, else the server's setting."""
        webhook = target.connector.view.webhook
        if webhook is not None and webhook.rate_limit_set:
            return webhook.rate_limit_per_minute
        return self._context.settings.webhook_requests_per_minute

    # -- 3..7

    async def receive(self, target: WebhookTarget, delivery: Delivery) -> WebhookOutcome:
        connector = target.connector
        if connector.kind == "native":
            return await self._receive_native(target, delivery)
        record = target.record  # its ids read once, not through the target's properties
        connector_id = record.connector_id
        project_id = record.project_id
        descriptor = connector.view
        verifier = _verifier(connector)
        cached = self._cached_secrets(target) if verifier.secret_credential is not None else None
        credentials = (
            cached.credentials if cached is not None else await self._credentials(target, verifier)
        )
        now = self._context.clock()  # the delivery's one moment: checked, then received at
        admission = check_delivery(
            verifier,
            descriptor,
            method=delivery.method,
            body=delivery.body,
            headers=delivery.headers,
            url=delivery.url,
            query=delivery.query,
            credentials=credentials,
            now=now,
        )
        reason = admission.result.reason
        if reason is not None:  # not admission.ok (without its two property calls)
            self._observer.verification_failed(connector_id, reason.code)
            log.info(  # the sender gets no detail; the operator needs it (never a secret)
                "refused a delivery to %s/%s: %s", connector_id, project_id, reason.message
            )
            await self._take_unverified_token(delivery)
            await self._deliveries.failed(project_id, connector_id, reason.message)
            raise Unverified(reason)
        if admission.handshake is not None and not admission.handshake.signed:
            await self._take_unverified_token(delivery)  # anyone can send one
            await self._keep_captured_secret(target, verifier, admission.handshake, delivery)
            return HandshakeAnswer(admission.handshake)
        if not self._took_reserved(target):  # verified: only now the instance's budget
            await self._take_token(target)
        if admission.handshake is not None:
            return HandshakeAnswer(admission.handshake)
        # The verdict may hold the parsed body (a connector with handshakes has it parsed
        # before verification): only the ingest is given it, and the verdict is let go
        # before awaiting, so the ingest can drop the payload before the store's write.
        try:
            post = delivery.method.upper() == "POST"
            if self._deliveries.verified_due(project_id, connector_id):
                if post:
                    ingest = self._ingest(target, delivery, admission.parsed(delivery.body), now)
                    del admission
                    return await self._ingest_reporting(target, ingest)
                await self._deliveries.verified(project_id, connector_id)
            # else verified() would write nothing: not awaited (a coroutine a delivery less)
            if not post:
                raise MethodNotAllowed("webhook deliveries are POST requests")
            ingest = self._ingest(target, delivery, admission.parsed(delivery.body), now)
            del admission
            return await ingest
        except StoreError as error:
            await self._give_token_back(target, error)
            raise

    async def _ingest_reporting(
        self, target: WebhookTarget, ingest: Coroutine[Any, Any, Accepted | Ignored]
    ) -> Accepted | Ignored:
        """The ``ingest`` with the instance's health write beside it, not before it.

        Neither depends on the other, and the write never fails a delivery
        (:class:`DeliveryReporter` logs and drops its errors); both are done
        before the answer, whatever the ingest raises, so a Lambda frozen after
        it leaves no write half done.
        """
        outcome, _ = await both(
            ingest, self._deliveries.verified(target.project_id, target.connector_id)
        )
        return outcome

    async def _give_token_back(self, target: WebhookTarget, error: StoreError) -> None:
        """The token :meth:`_take_token` took for a delivery the store then failed (a 5xx
        its sender retries), given back to the instance's bucket: ucf's trouble must not
        use up the sender's allowance. A refusal of what was asked (not found, an
        invalid record) is no failure of the store; the token stays spent.

        Only this failing path pays for it: one more bucket write. Should that fail too
        (the store is down), the token goes back to this process's reserve while it is
        fresh, for the sender's next delivery; else it is lost, as a stale reserve's are.
        The answer waits :data:`GIVE_BACK_SECONDS` at most for the write: past that it is
        left to land (or fail) on its own, and the reserve gets nothing, as the token may
        yet reach the bucket: given back late, never twice.
        """
        if isinstance(error, _STORE_REFUSALS):
            return
        budget = self._budget(target)
        try:
            async with asyncio.timeout(self._give_back_seconds):
                await self._context.store.rate_limits.give_back(
                    budget.key,
                    capacity=float(budget.rpm),
                    refill_per_second=budget.rpm / 60.0,
                    now=self._context.clock(),
                )
        except TimeoutError:
            log.warning(
                "%s/%s: a delivery's token is still on its way back to its bucket after %.0f s; "
                "the store's failure is answered without waiting for it",
                target.project_id,
                target.connector_id,
                self._give_back_seconds,
            )
        except StoreError as failure:
            self._observer.give_back_failed(target.connector_id)
            log.warning(
                "%s/%s: a delivery's token could not be given back to its bucket: %s",
                target.project_id,
                target.connector_id,
                failure,
            )
            reserve = self._reserves.get(budget.key)
            if reserve is not None and self._monotonic() < reserve.expires:
                reserve.tokens += 1

    async def _take_token(self, target: WebhookTarget) -> None:
        """One delivery of the instance's budget; charged only once a delivery is verified,
        so strangers cannot spend it (GitHub does not redeliver a delivery refused 429)."""
        budget = self._budget(target)
        await self._charge(budget.key, budget.rpm, budget.label, budget.refusal)

    def _took_reserved(self, target: WebhookTarget) -> bool:
        """:meth:`_take_token` done from the instance's reserve, without a coroutine (most
        deliveries under load find a token there); False: :meth:`_take_token` must run."""
        key = self._budget(target).key
        reserve = self._reserves.get(key)
        if reserve is None or not reserve.take(self._monotonic()):
            return False
        self._reserves.move_to_end(key)
        return True

    def _budget(self, target: WebhookTarget) -> _Budget:
        """The instance's bucket key, limit and refusal, worked out once per connector
        object (a changed descriptor is a new one) and settings instead of on every
        delivery."""
        record = target.record
        cached = self._budgets.get((record.project_id, record.connector_id))
        settings = self._context.settings
        if (
            cached is not None
            and cached.connector is target.connector
            and cached.settings is settings
        ):
            return cached
        rpm = self.requests_per_minute(target)
        budget = _Budget(
            target.connector,
            settings,
            f"webhook:{record.connector_id}:{record.project_id}",
            rpm,
            record.connector_id,
            f"more than {rpm} deliveries a minute for this instance; retry later",
        )
        self._budgets[(record.project_id, record.connector_id)] = budget
        return budget

    async def _take_unverified_token(self, delivery: Delivery) -> None:
        """Requests that prove nothing (failed verification, unsigned handshakes) are
        charged to their sender's address, at the server's deliveries-per-minute rate: a
        flood of them meets 429 without touching any instance's budget."""
        rpm = self._context.settings.webhook_requests_per_minute
        await self._charge(
            f"webhook-unverified:{client_key(delivery.client)}",
            rpm,
            "unverified",
            f"more than {rpm} unverified requests a minute from this address; retry later",
        )

    async def _charge(self, key: str, rpm: int, label: str, refusal: str) -> None:
        reserve = self._reserves.get(key)
        if reserve is not None:
            self._reserves.move_to_end(key)
            if reserve.take(self._monotonic()):
                return
        max_batch = max(1, min(64, rpm // 20))
        if reserve is None:
            reserve = self._reserves[key] = TokenReserve(max_batch=max_batch)
            if len(self._reserves) > self._max_reserves:
                # A flood from many addresses must not grow this without end. The
                # evicted reserve's tokens are dropped, never returned (as a stale
                # one's are); a draw in flight keeps its object for its waiters.
                self._reserves.popitem(last=False)
        reserve.max_batch = max_batch  # the descriptor's limit may have changed
        while reserve.drawing is not None:  # one draw at a time (see TokenReserve)
            await reserve.drawing.wait()
            if reserve.take(self._monotonic()):
                return
            if reserve.refused_for is not None:
                self._refuse(label, refusal, reserve.refused_for)
        drawn = reserve.drawing = asyncio.Event()
        reserve.refused_for = None  # a draw that fails (a store error) refuses no waiter
        try:
            seconds = await self._draw_reserve(reserve, key, rpm)
        finally:
            reserve.drawing = None
            drawn.set()
        if seconds is not None:
            self._refuse(label, refusal, seconds)

    async def _draw_reserve(self, reserve: TokenReserve, key: str, rpm: int) -> int | None:
        """Draw the next batch into ``reserve`` and take one token of it; the refusal's
        ``Retry-After`` seconds when the bucket has not even one."""
        batch = reserve.next_batch(self._monotonic())
        decision = await self._draw(key, rpm, batch)
        if not decision.allowed and batch > 1:
            batch = 1
            decision = await self._draw(key, rpm, batch)
        if decision.allowed:
            reserve.refill(batch - 1, self._monotonic())
            return None
        wait = decision.retry_after_seconds
        reserve.refused_for = 60 if not math.isfinite(wait) else max(1, math.ceil(wait))
        return reserve.refused_for

    def _refuse(self, label: str, refusal: str, seconds: int) -> NoReturn:
        self._observer.rate_limited(label)
        raise RateLimitExceeded(refusal, seconds)

    async def _draw(self, key: str, rpm: int, cost: int) -> RateDecision:
        return await self._context.store.rate_limits.try_acquire(
            key,
            capacity=float(rpm),
            refill_per_second=rpm / 60.0,
            now=self._context.clock(),
            cost=float(cost),
        )

    async def _credentials(self, target: WebhookTarget, verifier: Verifier) -> Mapping[str, str]:
        if verifier.secret_credential is None:
            return {}
        return await self._instance_credentials(target)

    async def _instance_credentials(self, target: WebhookTarget) -> Mapping[str, str]:
        return (await self._instance_secrets(target)).credentials

    def _cached_secrets(self, target: WebhookTarget) -> InstanceSecrets | None:
        """The instance's secrets while the cache holds them for its current ``updatedAt``.

        Read without a coroutine: every delivery to the instance's own URL asks twice (its
        hook id, then the signing secret), and nearly always finds them here; only a miss
        awaits :meth:`_instance_secrets`."""
        record = target.record
        cached = self._secrets.get((record.project_id, record.connector_id))
        if (
            cached is not None
            and cached.updated_at == record.updated_at
            and cached.expires > self._monotonic()
        ):
            return cached.values
        return None

    async def _instance_secrets(self, target: WebhookTarget) -> InstanceSecrets:
        cached = self._cached_secrets(target)
        if cached is not None:
            return cached
        now = self._monotonic()
        try:
            values = await self._context.instances.runtime_secrets(target.record, target.connector)
        except UNREADABLE_SECRET as error:
            # Nothing can be verified until the credentials are stored again: ucf's
            # trouble, not the sender's, so a 503 it retries. The log and the
            # instance's health say why (a webhook-only instance is never polled:
            # its deliveries are all its health shows).
            log.error(
                "%s/%s: its secret cannot be read, deliveries are refused: %s",
                target.project_id,
                target.connector_id,
                error,
            )
            await self._deliveries.failed(
                target.project_id,
                target.connector_id,
                f"the instance's secret cannot be read: {error}",
            )
            raise WebhookMisconfigured(
                f"{target.connector_id}: the instance's secret cannot be read"
            ) from None
        # Verification keeps its keyed HMACs with these credentials: they go when this
        # entry is replaced (the instance changed) or dropped (forgotten), never later.
        values = replace(values, credentials=SigningCredentials(values.credentials))
        key = (target.project_id, target.connector_id)
        self._drop_secrets(key)
        entry = _CachedSecrets(target.record.updated_at, now + self._secret_ttl, values)
        # At most the TTL in memory: an expired entry was only ever replaced by the next
        # delivery to the instance, so one that never came (an instance deleted through
        # another worker, a provider that stopped sending) kept its secrets for good.
        entry.timer = asyncio.get_running_loop().call_later(
            self._secret_ttl, self._drop_secrets, key, entry
        )
        self._secrets[key] = entry
        return values

    async def _keep_captured_secret(
        self,
        target: WebhookTarget,
        verifier: Verifier,
        handshake: HandshakeResponse,
        delivery: Delivery,
    ) -> None:
        """Asana/Notion hand over the signing secret in an unsigned handshake."""
        key = verifier.secret_credential
        if handshake.captured_secret is None or key is None:
            return
        await self._hold_handed_over(target, {key: handshake.captured_secret}, delivery)

    async def _hold_handed_over(
        self, target: WebhookTarget, handed: Mapping[str, str], delivery: Delivery
    ) -> None:
        """Secrets an unsigned handshake hands over are only ever *pending*.

        Anyone who knows the URL can send such a handshake, so: it is heard only at
        the instance's own URL (the shared one, guessable from connector and
        project, answers 403), and what it hands over waits on the instance page
        until an operator confirms it; a confirmed secret is never replaced
        silently, and a differing one is flagged there.
        """
        handed = {key: value for key, value in handed.items() if value}
        if not handed:
            return
        if not target.via_hook:
            raise HookUrlRequired(
                "this connector's set-up request hands over a secret, so it is accepted only "
                "at the instance's own webhook URL (shown on its page in the dashboard)"
            )
        for credential, value in handed.items():
            await self._context.instances.hold_pending(
                target.record, credential, value, client=delivery.client
            )

    # -- native connectors

    async def _receive_native(self, target: WebhookTarget, delivery: Delivery) -> WebhookOutcome:
        """A native connector's delivery: its handler verifies and maps, the gateway keeps
        every promise around it. Verification comes before the instance's budget is
        charged, so unsigned requests cannot spend a genuine sender's deliveries."""
        # Only a native connector's delivery can call upstream or ask for a poll: the HTTP
        # client stack and the poll machinery are loaded here, not for every delivery
        # (a descriptor connector's on the Lambda API function never needs them).
        from ucf.runtime.http import UpstreamError
        from ucf.runtime.native import (
            Handshake,
            Malformed,
            Refused,
            Unhandled,
            WebhookContext,
            WebhookRequest,
        )
        from ucf.runtime.polling import ConfigError
        from ucf.runtime.sources import NativeSourceMissing
        from ucf.service.poll import instance_context, rate_gate_for, request_poll, rotation_writer

        connector = target.connector
        try:
            handler: WebhookHandler | None = connector.source.webhooks
        except NativeSourceMissing as error:
            raise WebhookMisconfigured(str(error)) from None
        if handler is None:
            raise NotFoundError(NOT_HERE)
        credentials = await self._instance_credentials(target)
        request = WebhookRequest(
            method=delivery.method,
            body=delivery.body,
            headers=delivery.headers,
            query=delivery.query,
            url=delivery.url,
        )
        upstream: SourceContext | None = None

        async def open_upstream() -> SourceContext:
            nonlocal upstream
            if upstream is None:
                upstream = instance_context(
                    self._context,
                    connector,
                    credentials=credentials,
                    config=config,
                    on_rotate=rotation_writer(self._context, target.record.credential_secret_ref),
                    rate_gate=rate_gate_for(self._context, target.project_id, connector),
                )
            return upstream

        async def poll_soon(reason: str) -> None:
            await request_poll(self._context, target.project_id, connector.id, reason=reason)
            for wake in self._wakers:
                wake()

        config = {key: str(value) for key, value in target.record.config.items()}
        context = WebhookContext(
            project_id=target.project_id,
            connector_id=connector.id,
            credentials=credentials,
            config=config,
            now=self._context.clock(),
            upstream=open_upstream,
            request_poll=poll_soon,
        )
        verdict = await handler.verify(request, context)
        if isinstance(verdict, Refused):
            self._observer.verification_failed(connector.id, verdict.code)
            log.info(
                "refused a delivery to %s/%s: %s", connector.id, target.project_id, verdict.message
            )
            await self._take_unverified_token(delivery)
            await self._deliveries.failed(target.project_id, connector.id, verdict.message)
            raise Unverified(None)
        if isinstance(verdict, Handshake):
            await self._take_unverified_token(delivery)
            await self._hold_handed_over(target, verdict.keep, delivery)
            return HandshakeAnswer(verdict.response)
        await self._deliveries.verified(target.project_id, connector.id)
        await self._take_token(target)
        if delivery.method.upper() != "POST":
            raise MethodNotAllowed("webhook deliveries are POST requests")
        try:
            mapped = await handler.signals(request, context)
        except Malformed as error:
            raise BadDelivery(str(error) or "the delivery could not be read") from None
        except ConfigError as error:
            raise WebhookMisconfigured(f"{connector.id}: {error}") from None
        except UpstreamError as error:
            raise UpstreamFailed(
                f"{connector.id}: fetching what the delivery names failed: {error}"
            ) from None
        except StoreError as error:  # a handler reading the store (a poll request)
            await self._give_token_back(target, error)
            raise
        if isinstance(mapped, Unhandled):
            self._observer.ignored(connector.id, mapped.event_type)
            return Ignored(mapped.event_type)
        try:
            return await self._store(target, mapped, context.now)
        except StoreError as error:
            await self._give_token_back(target, error)
            raise

    async def _store(self, target: WebhookTarget, result: MappingResult, now: datetime) -> Accepted:
        """Signals durably stored (insert-if-new + outbox, one write); only then the 200."""
        if result.errors and not result.signals:
            reasons = "; ".join(sorted({error.reason for error in result.errors}))
            raise BadDelivery(f"the delivery could not be mapped to a signal: {reasons}")
        record = target.record
        outcome = await self._context.ingestor.ingest(
            result.signals,
            project_id=record.project_id,
            connector_id=record.connector_id,
            received_at=now,
        )
        self._observer.ingested(record.connector_id, outcome.inserted, outcome.duplicates)
        return Accepted(  # received, inserted, duplicates, item errors, skipped
            len(result.signals),
            outcome.inserted,
            outcome.duplicates,
            len(result.errors),
            result.skipped,
        )

    # -- generic connectors

    async def _ingest(
        self, target: WebhookTarget, delivery: Delivery, payload: Any, now: datetime
    ) -> Accepted | Ignored:
        """Map, sanitise and store a verified delivery's payload; ``now`` is the moment it
        was verified at (one clock read a delivery), its signals' ``receivedAt``."""
        if not isinstance(payload, dict):
            raise BadDelivery("the body must be a JSON object")
        connector = target.connector
        record = target.record
        webhook = connector.view.webhook
        mapping: CompiledMapping | None = connector.webhook_mapping
        assert webhook is not None  # target() checked both
        assert mapping is not None
        mapped = map_delivery(
            webhook,
            mapping,
            payload,
            headers=delivery.headers,
            body=delivery.body,
            connector_id=record.connector_id,  # connector.id: the target was found by it
            project_id=record.project_id,
            now=now,
        )
        if mapped.event_type is None:
            where = webhook.event_type_header or webhook.event_type_path
            raise BadDelivery(f"the delivery names no event type (expected at {where})")
        if not mapped.handled:
            self._observer.ignored(connector.id, mapped.event_type)
            return Ignored(mapped.event_type)
        result = mapped.result
        # The parsed payload (hundreds of objects) is not needed past the mapping: let it
        # go before the write's await, so 32 deliveries in flight hold their signals'
        # rows, not 32 payloads (the next parse reuses its memory while still cached).
        del payload, mapped
        return await self._store(target, result, now)


async def receive_webhook(
    gateway: WebhookGateway, connector_id: str, project_id: str, delivery: Delivery
) -> WebhookOutcome:
    """The whole use case, for callers handed the body in full (a Lambda behind API Gateway).

    A server reading a socket calls :meth:`WebhookGateway.target`, then
    :func:`read_limited`, then :meth:`WebhookGateway.receive`, so it can stop
    reading an oversized body; this is the same order on a body already read.
    """
    target = await gateway.target(connector_id, project_id)
    limit = gateway.max_bytes
    if len(delivery.body) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    return await gateway.receive(target, delivery)
