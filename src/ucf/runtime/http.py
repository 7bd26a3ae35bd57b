"""One HTTP client per process, and the only retry loop ucf has.

Every outbound request of a descriptor (polls, health checks, token refresh)
goes through :func:`create_client`'s client and :func:`fetch`, so every
request gets the SSRF guard, explicit timeouts, a deadline for the whole
attempt, a response size cap checked while the body is decompressed
(:mod:`ucf.runtime.decoding`), redirects that never carry credentials to
another origin (:mod:`ucf.runtime.redirects`) and the same User-Agent.
:func:`send_with_retries` is the one place that decides whether to try again
and for how long to wait: it honours what the upstream says (``Retry-After``,
then the provider's reset headers, as each provider's rate-limit page under
Sources in docs/connectors/<id>.md describes them) and falls back to
exponential backoff with full jitter. It is bounded twice, by attempts and by
total waiting, so a poll never hangs on a sulking API: if the server asks for
more patience than is left, it fails at once with :class:`RateLimited` and the
caller reschedules.

Errors are typed and secret-free: messages name the method, host and path,
never the query string, headers or body.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import field
from datetime import datetime
from typing import Any, Final, Literal

import httpx
from httpx._client import UseClientDefault

from ucf.core.records import datarecord
from ucf.runtime.decoding import (
    ACCEPT_ENCODING,
    DecodeFailed,
    EncodingRefused,
    Inflater,
    inflater_for,
)
from ucf.runtime.http_settings import DEFAULT_USER_AGENT as DEFAULT_USER_AGENT
from ucf.runtime.http_settings import HttpSettings as HttpSettings
from ucf.runtime.redaction import redact
from ucf.runtime.redirects import REDIRECT_STATUSES, Origin, RedirectRefused, next_hop
from ucf.runtime.response_errors import BodyError, BodyErrorKind, ResponseErrorCheck
from ucf.runtime.ssrf import EgressPolicy, GuardedTransport, Resolver, system_resolver


def _loads(content: bytes) -> Any:
    """Strict JSON (:func:`ucf.core.payload.loads_strict`), its parser loaded on first use.

    A process that sends without reading JSON bodies (a Lambda delivering to
    an HTTP sink) never loads pydantic-core for it (``bench/coldstart.py``).
    """
    from ucf.core.payload import loads_strict

    return loads_strict(content)


# --------------------------------------------------------------------------- errors


class UpstreamError(Exception):
    """The upstream API did not give a usable answer.

    ``status`` is the HTTP status when there was one; ``retryable`` says whether
    trying later may help; ``retry_after`` is how long the upstream asked us to
    wait, when it said so.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after


class AuthFailed(UpstreamError):
    """401/403 that is not a rate limit: the credentials are wrong or lack scope."""


class RateLimited(UpstreamError):
    """The upstream throttled us; ``retry_after`` says when to come back, if known."""

    retryable = True


class UpstreamUnavailable(UpstreamError):
    """5xx, timeouts, refused or dropped connections: the API is having a bad moment."""

    retryable = True


class MalformedResponse(UpstreamError):
    """The body is not what the API documents (e.g. not JSON)."""


class ResponseTooLarge(UpstreamError):
    """The body exceeded ``HttpSettings.max_response_bytes``; reading stopped there."""


def describe(request: httpx.Request) -> str:
    """``GET api.example.com/path``: enough to debug, no query string, no credentials.

    The path is shown as sent: GitLab's ``projects/group%2Fproject`` keeps its
    ``%2F``, or an author cannot tell an encoded slash from a wrong path.
    """
    url = request.url
    port = f":{url.port}" if url.port is not None else ""
    path = url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    return redact(f"{request.method} {url.host}{port}{path}")


_PROVIDER_MESSAGE_MAX: Final = 200


def provider_message(response: httpx.Response) -> str | None:
    """The provider's own words about a failed request, one short secret-free line.

    GitHub ``{"message": "Bad credentials"}``, GitLab ``{"message": "404 Project
    Not Found"}``, OAuth ``{"error_description": …}``, GraphQL ``{"errors":
    [{"message": …}]}``: a status alone does not say which of several 404s it is.
    """
    try:
        body = _loads(response.content) if response.content else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    for value in (
        body.get("message"),
        body.get("error_description"),
        body.get("error"),
        body.get("detail"),
        first.get("message") if isinstance(first, dict) else first,
    ):
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            if len(text) > _PROVIDER_MESSAGE_MAX:
                text = text[: _PROVIDER_MESSAGE_MAX - 1] + "…"
            return redact(text)
    return None


def status_said(response: httpx.Response) -> str:
    """``HTTP 404: 404 Project Not Found``: the status with the provider's message, if any."""
    message = provider_message(response)
    return f"HTTP {response.status_code}: {message}" if message else f"HTTP {response.status_code}"


# --------------------------------------------------------------------------- size cap


class _CappedStream(httpx.AsyncByteStream):
    """Stops reading the wire once the body passes the cap, raw or decoded.

    The decoded count is checked after every :data:`~ucf.runtime.decoding.DECODE_STEP`
    bytes of output, so a compressed body cannot inflate past the cap in memory
    before anyone looks (a decompression bomb); the raw count stops a body
    that is endless on the wire.
    """

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        limit: int,
        request: httpx.Request,
        inflater: Inflater | None,
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._request = request
        self._inflater = inflater

    async def __aiter__(self) -> AsyncIterator[bytes]:
        limit = self._limit
        inflater = self._inflater
        seen = 0
        decoded = 0
        try:
            async for chunk in self._inner:
                seen += len(chunk)
                if seen > limit:
                    raise _too_large(self._request, limit)
                if inflater is None:
                    yield chunk
                    continue
                for piece in inflater.feed(chunk):
                    decoded += len(piece)
                    if decoded > limit:
                        raise _too_large(self._request, limit, inflater.coding)
                    yield piece
            if inflater is not None:
                for piece in inflater.finish():
                    decoded += len(piece)
                    if decoded > limit:
                        raise _too_large(self._request, limit, inflater.coding)
                    yield piece
        except DecodeFailed as exc:
            assert inflater is not None
            raise MalformedResponse(
                f"{describe(self._request)}: body does not match its Content-Encoding ({exc})"
            ) from None

    async def aclose(self) -> None:
        await self._inner.aclose()


def _too_large(request: httpx.Request, limit: int, coding: str | None = None) -> ResponseTooLarge:
    decoded = f" once {coding}-decoded" if coding else ""
    return ResponseTooLarge(
        f"{describe(request)}: response too large (body exceeds {limit} bytes{decoded})"
    )


_ENCODED_HEADERS: Final = ("content-encoding", "content-length")


class CappedTransport(httpx.AsyncBaseTransport):
    """Caps and decodes every response body, including ones read by auth flows.

    Decoding happens here, bounded (:mod:`ucf.runtime.decoding`), rather than
    in httpx's unbounded decoders: the response handed up carries the decoded
    body and no ``Content-Encoding`` (nor the encoded ``Content-Length``), so
    httpx passes it through as it is. Stacked and unknown codings are refused
    before any of the body is read.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        headers = response.headers
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            await response.aclose()
            raise _too_large(request, self._max_bytes)
        inflater: Inflater | None = None
        if "content-encoding" in headers:
            try:
                inflater = inflater_for(headers.get_list("content-encoding"))
            except EncodingRefused as exc:
                await response.aclose()
                raise MalformedResponse(f"{describe(request)}: {exc}") from None
            if inflater is not None:
                headers = httpx.Headers(
                    [(k, v) for k, v in headers.multi_items() if k.lower() not in _ENCODED_HEADERS]
                )
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=headers,
            stream=_CappedStream(response.stream, self._max_bytes, request, inflater),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _NoCookies(httpx.Cookies):
    """A jar that never takes a cookie: ``Set-Cookie`` answers are not even read.

    httpx reads every response's ``Set-Cookie`` through ``urllib``'s cookie
    machinery (a ``urllib.request.Request`` built per response, ~10 µs each),
    only for a jar whose policy refused everything anyway.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    """One client serves every instance of every project: a cookie one tenant's
    upstream sets must never ride along on another tenant's request to that host,
    so this client keeps none (and spends nothing reading them)."""

    def __init__(self, *, expect: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()
        self._expect = expect

    def expect(self, url: str) -> None:
        """A request to ``url`` is coming (:func:`expect_request`)."""
        if self._expect is not None:
            self._expect(url)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: httpx._types.CookieTypes) -> None:
        raise TypeError("ucf's HTTP client keeps no cookies")


def create_client(
    settings: HttpSettings,
    policy: EgressPolicy,
    *,
    resolver: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
    load_ca_now: bool = True,
) -> httpx.AsyncClient:
    """The process's client: SSRF-guarded, size-capped, timed out, identified.

    ``verify`` takes an ``ssl.SSLContext`` (tests trust their own CA with it).
    Environment proxies are ignored on purpose: they would bypass the guard.
    With ``load_ca_now=False`` the CA bundle (:mod:`ucf.runtime.trust`) loads once
    :func:`expect_request` names an ``https`` URL, or at the first ``https`` request:
    a client that only ever speaks plain ``http`` never loads it.
    """
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
    )
    guarded = GuardedTransport(
        policy, verify=verify, limits=limits, resolver=resolver, load_now=load_ca_now
    )
    return _CookielessClient(
        expect=guarded.expect,
        transport=CappedTransport(guarded, settings.max_response_bytes),
        timeout=settings.timeout(),
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        follow_redirects=False,  # ucf follows them itself: see fetch() and ucf.runtime.redirects
        trust_env=False,
    )


def expect_request(client: httpx.AsyncClient, url: str) -> None:
    """Tell ``client`` a request to ``url`` is coming, so that what it needs for it
    (the CA bundle of an ``https`` one) is ready by then; a no-op for other clients."""
    expect = getattr(client, "expect", None)
    if callable(expect):
        expect(url)


# --------------------------------------------------------------------------- waiting


def _number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def retry_after_seconds(value: str, now: float) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def reset_seconds(value: str, now: float) -> float | None:
    """Seconds until a reset header's moment, whatever convention the provider chose.

    Providers disagree on units, so the magnitude decides: ≥ 1e12 is epoch
    milliseconds (Linear), ≥ 1e9 epoch seconds (GitHub, Sentry), anything
    smaller seconds-until-reset (Datadog, PagerDuty). Non-numbers are ISO 8601
    (Atlassian's ``2024-01-01T10:00Z``) or HTTP-dates.
    """
    number = _number(value)
    if number is not None:
        if number >= 1e12:
            return max(0.0, number / 1000 - now)
        if number >= 1e9:
            return max(0.0, number - now)
        return max(0.0, number)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return retry_after_seconds(value, now)
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


@datarecord
class ResetHeader:
    """A header announcing when one rate-limit budget refills.

    ``remaining`` names the header counting what is left of that budget: while it
    is above zero this budget is not the one that throttled us (Linear sends a
    requests budget and a complexity budget side by side).
    """

    name: str
    remaining: str


RESET_HEADERS: Final = (
    ResetHeader("x-ratelimit-reset", "x-ratelimit-remaining"),  # GitHub, Datadog, Atlassian
    ResetHeader("x-ratelimit-requests-reset", "x-ratelimit-requests-remaining"),  # Linear
    ResetHeader("x-ratelimit-complexity-reset", "x-ratelimit-complexity-remaining"),  # Linear
    ResetHeader("ratelimit-reset", "ratelimit-remaining"),  # PagerDuty
    ResetHeader("x-sentry-rate-limit-reset", "x-sentry-rate-limit-remaining"),  # Sentry
)

GITHUB_SECONDARY_LIMIT_WAIT: Final = 60.0


def upstream_wait(headers: httpx.Headers, now: float) -> float | None:
    """How long the upstream asked us to wait, or None if it did not say.

    ``Retry-After`` wins; otherwise the latest reset among exhausted budgets.
    """
    if "retry-after" in headers:
        seconds = retry_after_seconds(headers["retry-after"], now)
        if seconds is not None:
            return seconds
    waits: list[float] = []
    for reset in RESET_HEADERS:
        if reset.name not in headers:
            continue
        left = _number(headers.get(reset.remaining, ""))
        if left is not None and left > 0:
            continue
        seconds = reset_seconds(headers[reset.name], now)
        if seconds is not None:
            waits.append(seconds)
    return max(waits) if waits else None


# --------------------------------------------------------------------------- classification


def _github_secondary_limit(response: httpx.Response) -> bool:
    return b"secondary rate limit" in response.content.lower()


def _is_rate_limited(response: httpx.Response) -> bool:
    status = response.status_code
    if status == 429:
        return True
    if status == 403:
        return (
            response.headers.get("x-ratelimit-remaining") == "0"
            or "retry-after" in response.headers
            or _github_secondary_limit(response)
        )
    return False  # a rate limit said in the body (Linear's 400 RATELIMITED): see responseErrors


UNAVAILABLE_STATUSES: Final = frozenset({408, 500, 502, 503, 504, 529})
"""Worth another try: 529 is Notion's ``service_overload``."""

RetryReason = Literal["rate_limited", "unavailable", "timeout", "connection", "rejected"]


@datarecord
class _Failure:
    error: UpstreamError
    reason: RetryReason
    wait: float | None = None  # what the upstream asked for, if anything


def _status_failure(response: httpx.Response, now: float) -> _Failure | None:
    """What the status line and headers alone say."""
    status = response.status_code
    if status < 400:
        return None
    where = describe(response.request)
    if _is_rate_limited(response):
        wait = upstream_wait(response.headers, now)
        if wait is None and _github_secondary_limit(response):
            wait = GITHUB_SECONDARY_LIMIT_WAIT
        error: UpstreamError = RateLimited(f"{where}: rate limited (HTTP {status})", status=status)
        return _Failure(error, "rate_limited", wait)
    if status in (401, 403):
        withheld = ""
        if response.extensions.get(CREDENTIALS_WITHHELD):
            withheld = (
                f" after being redirected to another origin ({response.request.url.host}),"
                " where ucf sends no credentials; point the connector at the new address"
            )
        return _Failure(
            AuthFailed(
                f"{where}: credentials rejected ({status_said(response)}){withheld}",
                status=status,
            ),
            "rejected",
        )
    if status in UNAVAILABLE_STATUSES:
        wait = None
        if "retry-after" in response.headers:
            wait = retry_after_seconds(response.headers["retry-after"], now)
        error = UpstreamUnavailable(f"{where}: upstream unavailable (HTTP {status})", status=status)
        return _Failure(error, "unavailable", wait)
    return _Failure(UpstreamError(f"{where}: {status_said(response)}", status=status), "rejected")


def _body_failure(response: httpx.Response, verdict: BodyError, now: float) -> _Failure:
    """What the codes in the body say (``responseErrors``), as one of our typed errors."""
    where = describe(response.request)
    status = response.status_code
    said = f"{verdict.summary}, HTTP {status}"
    if verdict.kind is BodyErrorKind.AUTH:
        return _Failure(
            AuthFailed(f"{where}: credentials rejected ({said})", status=status), "rejected"
        )
    if verdict.kind is BodyErrorKind.RATE_LIMITED:
        error: UpstreamError = RateLimited(f"{where}: rate limited ({said})", status=status)
        return _Failure(error, "rate_limited", upstream_wait(response.headers, now))
    error = UpstreamError(f"{where}: upstream error ({said})", status=status)
    return _Failure(error, "rejected")


def _body_verdict(response: httpx.Response, check: ResponseErrorCheck | None) -> BodyError | None:
    if check is None or not response.content:
        return None
    try:
        body = _loads(response.content)
    except (
        ValueError,
        RecursionError,
    ):  # not JSON: the status decides, and parse_json reports it later
        return None
    return check.classify(body)


def body_error(
    response: httpx.Response, now: float, response_errors: ResponseErrorCheck | None
) -> UpstreamError | None:
    """The typed error the codes in a read body amount to (``responseErrors``), if any.

    For callers that judge the status themselves, like a health check with its
    own ``expectStatus``; :func:`send_with_retries` weighs both on its own.
    """
    verdict = _body_verdict(response, response_errors)
    if verdict is None:
        return None
    failure = _body_failure(response, verdict, now)
    failure.error.retry_after = failure.wait
    return failure.error


def _classify(
    response: httpx.Response, now: float, check: ResponseErrorCheck | None = None
) -> _Failure | None:
    """Status and body together.

    The body's codes outrank the status for credentials and rate limits — Slack
    says both with HTTP 200, Linear with 400. Any other body code fails a
    response the status would accept, and names itself in place of a bare
    "HTTP 400"; it never makes a retryable status (5xx) final, nor hides a 401/403.
    """
    verdict = _body_verdict(response, check)
    if verdict is not None and verdict.kind is not BodyErrorKind.FAILED:
        return _body_failure(response, verdict, now)
    by_status = _status_failure(response, now)
    if verdict is None:
        return by_status
    if by_status is None or not (
        by_status.error.retryable or isinstance(by_status.error, AuthFailed)
    ):
        return _body_failure(response, verdict, now)
    return by_status


def _transport_failure(request: httpx.Request, exc: httpx.TransportError) -> _Failure:
    where = describe(request)
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.removesuffix("Timeout").lower() or "request"
        return _Failure(UpstreamUnavailable(f"{where}: {kind} timed out"), "timeout")
    if isinstance(exc, httpx.RemoteProtocolError):
        message = f"{where}: connection closed mid-response"
    elif isinstance(exc, httpx.ConnectError):
        detail = redact(str(exc))  # refused / unresolvable: names the host at most
        message = f"{where}: could not connect" + (f" ({detail})" if detail else "")
    else:
        message = f"{where}: connection failed ({type(exc).__name__})"
    return _Failure(UpstreamUnavailable(message), "connection")


def transport_failure_message(request: httpx.Request, exc: httpx.TransportError) -> str:
    """Why ``request`` got no HTTP answer, in the words a poll's error uses.

    ``GET host/path: could not connect (Connection refused)`` or ``(could not
    resolve host: …)``: a health check's or a try's one attempt says the same as
    the poll that retried, not just the exception's class (``ConnectError``).
    """
    return str(_transport_failure(request, exc).error)


# --------------------------------------------------------------------------- the loop


@datarecord
class RetryWait:
    """One pause before another attempt, reported to ``on_wait``."""

    attempt: int  # the attempt that failed, 1-based
    seconds: float
    reason: RetryReason
    status: int | None
    asked_by_upstream: bool


@datarecord(frozen=False, slots=False)
class RetryStats:
    """Collects :class:`RetryWait` events; pass it as ``on_wait`` and print it after."""

    waits: list[RetryWait] = field(default_factory=list)

    def __call__(self, wait: RetryWait) -> None:
        self.waits.append(wait)

    @property
    def rate_limit_waits(self) -> int:
        return sum(1 for w in self.waits if w.reason == "rate_limited")

    @property
    def rate_limit_seconds(self) -> float:
        return sum(w.seconds for w in self.waits if w.reason == "rate_limited")

    @property
    def total_seconds(self) -> float:
        return sum(w.seconds for w in self.waits)


RequestSource = httpx.Request | Callable[[], httpx.Request]


async def _read_capped(response: httpx.Response, limit: int) -> None:
    """Read the (decoded) body, refusing to inflate past the cap."""
    chunks: list[bytes] = []
    seen = 0
    async for chunk in response.aiter_bytes():
        seen += len(chunk)
        if seen > limit:
            raise _too_large(response.request, limit)
        chunks.append(chunk)
    # What Response.aread() itself does once the stream is consumed.
    response._content = b"".join(chunks)
    if response.is_closed:
        # httpx's bound stream points back at its response: a reference cycle that
        # only the garbage collector frees, holding the whole body until it runs (a
        # poll with fewer young collections kept ~30 MiB of pages alive). Read and
        # closed, the response no longer needs it: freed as soon as it is dropped.
        response.stream = httpx.ByteStream(response._content)


CREDENTIALS_WITHHELD: Final = "ucf.credentials_withheld"
"""Response extension: the answer came from another origin, sent no credentials."""

_NO_AUTH: Final = httpx.Auth()
"""Sends a request as it is: for hops to another origin, where no credential may go."""


def _redirect_error(request: httpx.Request, message: str) -> UpstreamError:
    return UpstreamError(f"{describe(request)}: {message}")


async def _follow(
    client: httpx.AsyncClient,
    request: httpx.Request,
    settings: HttpSettings,
    auth: httpx.Auth | None,
) -> httpx.Response:
    """Send ``request`` and follow its redirects (:mod:`ucf.runtime.redirects`), body read."""
    origin = Origin.of(request)  # before the auth flow edits the request
    credentials: httpx.Auth | UseClientDefault = httpx.USE_CLIENT_DEFAULT if auth is None else auth
    hop_auth = credentials
    current = request
    for hops in range(settings.max_redirects + 1):
        response = await client.send(current, stream=True, auth=hop_auth, follow_redirects=False)
        try:
            if not (
                settings.follow_redirects
                and response.status_code in REDIRECT_STATUSES
                and "location" in response.headers
            ):
                await _read_capped(response, settings.max_response_bytes)
                if hop_auth is _NO_AUTH:
                    response.extensions[CREDENTIALS_WITHHELD] = True
                return response
        finally:
            await response.aclose()
        if hops == settings.max_redirects:
            break
        try:
            hop = next_hop(origin, current, response)
        except RedirectRefused as refused:
            raise _redirect_error(current, str(refused)) from None
        current = client.build_request(
            hop.method,
            hop.url,
            headers=hop.headers,
            content=hop.content,
            extensions=request.extensions,
        )
        hop_auth = credentials if hop.credentials else _NO_AUTH
    raise _redirect_error(request, f"more than {settings.max_redirects} redirects")


class AttemptTimedOut(UpstreamUnavailable):
    """One attempt (connection, redirects and the whole body) outlasted its deadline.

    Per-read timeouts alone let a server that drips one byte every few seconds
    hold a request, and the poll slot it runs in, for as long as it likes.
    """


async def fetch(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    settings: HttpSettings,
    auth: httpx.Auth | None = None,
    deadline: float | None = None,
) -> httpx.Response:
    """One attempt: send, follow redirects ucf's way, read the capped body, in time.

    Everything that talks to an upstream goes through here (each try of
    :func:`send_with_retries`, health checks), so all of them get the same
    redirect rules, size cap and deadline. ``deadline`` (seconds) overrides
    ``settings.attempt_timeout``. Raises :class:`AttemptTimedOut` when it
    passes, and whatever the transport raises otherwise.
    """
    limit = settings.attempt_timeout if deadline is None else deadline
    try:
        async with asyncio.timeout(limit):
            return await _follow(client, request, settings, auth)
    except TimeoutError:
        raise AttemptTimedOut(
            f"{describe(request)}: no complete answer within {limit:g} s"
        ) from None


async def send_with_retries(
    client: httpx.AsyncClient,
    request: RequestSource,
    *,
    settings: HttpSettings,
    auth: httpx.Auth | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_wait: Callable[[RetryWait], None] | None = None,
    clock: Callable[[], float] = time.time,
    jitter: Callable[[], float] = random.random,
    response_errors: ResponseErrorCheck | None = None,
    accept: Collection[int] = (),
) -> httpx.Response:
    """Send ``request`` until it succeeds (status < 400), with bounded patience.

    ``request`` may be a factory, called once per attempt, for requests that
    must be rebuilt (fresh signatures, streamed bodies). The returned response
    is fully read. ``response_errors`` reads failures the API reports in the
    body (a descriptor's ``responseErrors``): an auth code fails at once like
    a 401, a rate-limit code waits and retries like a 429. Raises :class:`AuthFailed` at once, :class:`RateLimited`,
    :class:`UpstreamUnavailable` or :class:`UpstreamError` once patience runs out,
    :class:`ResponseTooLarge` for oversized bodies, and lets
    :class:`~ucf.runtime.ssrf.EgressDenied` through untouched. Statuses in
    ``accept`` are answers, not failures: Asana's events endpoint hands out a
    fresh sync token in a ``412``, and a task deleted since its event is a ``404``.
    """
    build: Callable[[], httpx.Request] = request if callable(request) else (lambda: request)
    waited = 0.0
    attempt = 0
    while True:
        attempt += 1
        outgoing = build()
        cause: BaseException | None = None
        try:
            response = await fetch(client, outgoing, settings=settings, auth=auth)
        except AttemptTimedOut as exc:
            failure = _Failure(exc, "timeout")
        except httpx.DecodingError as exc:
            raise MalformedResponse(
                f"{describe(outgoing)}: body does not match its Content-Encoding"
            ) from exc
        except httpx.TransportError as exc:
            failure = _transport_failure(outgoing, exc)
            cause = exc
        else:
            if response.status_code in accept:
                return response
            classified = _classify(response, clock(), response_errors)
            if classified is None:
                return response
            failure = classified

        error = failure.error
        error.retry_after = failure.wait
        budget = settings.max_total_retry_wait - waited
        if not error.retryable or attempt > settings.max_retries or budget <= 0:
            raise error from cause
        if failure.wait is not None:
            if failure.wait > budget:
                raise error from cause  # fail fast: the caller reschedules after retry_after
            delay = failure.wait
        else:
            ceiling = min(settings.backoff_cap, settings.backoff_base * 2 ** (attempt - 1))
            delay = min(budget, jitter() * ceiling)
        if on_wait is not None:
            on_wait(
                RetryWait(
                    attempt=attempt,
                    seconds=delay,
                    reason=failure.reason,
                    status=error.status,
                    asked_by_upstream=failure.wait is not None,
                )
            )
        await sleep(delay)
        waited += delay


OFF_LOOP_BYTES: Final = 256 * 1024
"""A body this large is parsed in a worker thread (see :func:`read_json`)."""


async def read_json(response: httpx.Response) -> Any:
    """:func:`parse_json`, off the event loop for a large body: parsing megabytes of JSON
    holds the loop, and every webhook delivery and health probe waiting on it."""
    if len(response.content) < OFF_LOOP_BYTES:
        return parse_json(response)
    return await asyncio.to_thread(parse_json, response)


def parse_json(response: httpx.Response) -> Any:
    """The body as JSON, or :class:`MalformedResponse` that names where, never what."""
    try:
        return _loads(response.content)
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # NaN / Infinity: not JSON, and no signal may carry them
        detail = str(exc)
    except UnicodeDecodeError:
        detail = "body is not valid UTF-8"
    raise MalformedResponse(
        f"{describe(response.request)}: response is not valid JSON ({detail})",
        status=response.status_code,
    ) from None
