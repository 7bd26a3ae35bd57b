"""Sources: the one small interface every connector runs behind, generic or native.

A :class:`Source` fetches what changed since a checkpoint, page by page, turns
a page's items into signals (:meth:`Source.normalise`), checks that the
upstream answers, and declares what it does: ``schedule`` (it polls, this
often) and ``webhooks`` (a native push handler). :class:`GenericSource` does
all of it from a descriptor (the polling engine, the ``fieldMapping``, the
``healthCheck``). Tools a descriptor cannot describe (Jira's JQL paging,
Outlook, SES) are native connectors: Python packages registered under the
``ucf.native_sources`` entry-point group (see :mod:`ucf.runtime.native` and
the public API :mod:`ucf.native`).

:func:`source_for` picks the right one, so the scheduler, the gateway and the
CLI never care which kind they run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx

from ucf.core.descriptor_view import ConnectorView, connector_view
from ucf.core.mapping import CompiledMapping, MappingResult, compile_mapping
from ucf.core.records import datarecord
from ucf.core.template import compile_template, render_url
from ucf.runtime.http import (
    UNAVAILABLE_STATUSES,
    AttemptTimedOut,
    AuthFailed,
    HttpSettings,
    RateLimited,
    UpstreamError,
    body_error,
    describe,
    fetch,
    status_said,
    transport_failure_message,
)
from ucf.runtime.native_errors import NativeLoadError
from ucf.runtime.poll_schedule import PollSchedule, declared_schedule
from ucf.runtime.polling import (
    ConfigError,
    JsonBody,
    NotPollable,
    Page,
    PollPlan,
    RateGate,
    resolve_config,
)
from ucf.runtime.response_errors import ResponseErrorCheck, classifier_for
from ucf.runtime.ssrf import EgressDenied

if TYPE_CHECKING:
    from ucf.core.descriptor import ConnectorDescriptor
    from ucf.runtime.native import ENTRY_POINT_GROUP, WebhookHandler
else:

    def __getattr__(name: str) -> Any:
        """``ENTRY_POINT_GROUP``, re-exported from :mod:`ucf.runtime.native` when asked for.

        The native registry (its dataclasses, protocols and entry-point
        machinery: ~4 ms of a cold start) is loaded only for a native connector;
        a descriptor connector's poll never needs it (PEP 562).
        """
        if name == "ENTRY_POINT_GROUP":
            from ucf.runtime.native import ENTRY_POINT_GROUP

            return ENTRY_POINT_GROUP
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENTRY_POINT_GROUP",
    "GenericSource",
    "HealthCheckPlan",
    "HealthFailure",
    "HealthResult",
    "NativeSourceMissing",
    "PollSchedule",
    "Source",
    "SourceContext",
    "run_health_check",
    "source_for",
]

NativeSourceMissing = NativeLoadError
"""A ``kind: native`` descriptor whose implementation is not installed, broken or blocked."""


HealthFailure = Literal["rejected", "rate_limited", "unavailable", "failed"]
"""Why a check failed, for the health state machine: refused credentials are an
error at once, a rate limit is a slow-down, the rest counts towards degraded."""


@datarecord
class HealthResult:
    """One health check: did the upstream answer as expected, and how fast.

    ``status`` is None when no HTTP answer came back; ``error`` is secret-free.
    """

    ok: bool
    status: int | None
    latency_ms: float
    error: str | None = None
    failure: HealthFailure | None = None
    """Why it failed, when it did; ``rejected`` also for an auth code in a 200 body."""


@datarecord
class SourceContext:
    """What a source needs from its caller to talk to one instance's upstream."""

    client: httpx.AsyncClient
    auth: httpx.Auth
    config: Mapping[str, str]
    settings: HttpSettings = field(default_factory=HttpSettings)
    rate_gate: RateGate | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic


class Source(Protocol):
    """A connector's runtime: generic (descriptor-driven) or native (a package)."""

    @property
    def descriptor(self) -> ConnectorDescriptor | ConnectorView:
        """The connector's descriptor: a native source's model, or a generic source's view
        (:mod:`ucf.core.descriptor_view`; a stored descriptor is run without the models)."""

    def fetch_delta(
        self,
        context: SourceContext,
        checkpoint: str | None,
        *,
        now: datetime,
        max_pages: int | None = None,
    ) -> AsyncIterator[Page]:
        """Pages of what changed since ``checkpoint``; each page's checkpoint is safe
        to store once its signals are stored."""
        ...

    async def health_check(self, context: SourceContext) -> HealthResult:
        """One request to the upstream, reported, never raised."""
        ...

    def normalise(self, items: Sequence[Any], *, project_id: str, now: datetime) -> MappingResult:
        """A page's items as signals (and per-item errors); never raises on bad items."""
        ...

    @property
    def schedule(self) -> PollSchedule | None:
        """How often it polls; None when it only receives webhooks."""
        ...

    @property
    def webhooks(self) -> WebhookHandler | None:
        """A native push handler; None for generic sources (the gateway reads their
        descriptor) and for native sources that only poll."""
        ...


class GenericSource:
    """A descriptor-driven connector: the polling plan plus the descriptor's health check."""

    def __init__(
        self,
        descriptor: ConnectorDescriptor | ConnectorView,
        mapping: CompiledMapping | None = None,
    ) -> None:
        descriptor = connector_view(descriptor)
        self._descriptor = descriptor
        polling = descriptor.polling
        self._plan = PollPlan.compile(descriptor) if polling is not None else None
        self._schedule = declared_schedule(descriptor)
        self._health = HealthCheckPlan.compile(descriptor)
        if mapping is None and descriptor.field_mapping is not None:
            mapping = compile_mapping(descriptor.field_mapping)
        self._mapping = mapping

    @property
    def descriptor(self) -> ConnectorView:
        return self._descriptor

    @property
    def plan(self) -> PollPlan | None:
        return self._plan

    @property
    def schedule(self) -> PollSchedule | None:
        return self._schedule

    @property
    def webhooks(self) -> WebhookHandler | None:
        return None

    def normalise(self, items: Sequence[Any], *, project_id: str, now: datetime) -> MappingResult:
        if self._mapping is None:
            raise NotPollable(
                f"{self._descriptor.id} has no fieldMapping, so its items cannot be signals"
            )
        return self._mapping.map_items(items, self._descriptor.id, project_id)

    def fetch_delta(
        self,
        context: SourceContext,
        checkpoint: str | None,
        *,
        now: datetime,
        max_pages: int | None = None,
    ) -> AsyncIterator[Page]:
        if self._plan is None:
            raise NotPollable(
                f"{self._descriptor.id} receives webhooks only; there is nothing to poll"
            )
        return self._plan.pages(
            context.client,
            context.auth,
            config=context.config,
            checkpoint=checkpoint,
            now=now,
            max_pages=max_pages,
            rate_gate=context.rate_gate,
            settings=context.settings,
            sleep=context.sleep,
            clock=context.clock,
        )

    async def health_check(self, context: SourceContext) -> HealthResult:
        return await self._health.run(context)


def _failure_of(error: UpstreamError) -> HealthFailure:
    if isinstance(error, AuthFailed):
        return "rejected"
    if isinstance(error, RateLimited):
        return "rate_limited"
    return "unavailable" if error.retryable else "failed"


def _failure_of_status(status: int) -> HealthFailure:
    if status in (401, 403):
        return "rejected"
    if status == 429:
        return "rate_limited"
    return "unavailable" if status in UNAVAILABLE_STATUSES else "failed"


class HealthCheckPlan:
    """A descriptor's ``healthCheck``, planned once: endpoint and body templates,
    its timeout, and how the API reports failures in a body (``responseErrors``)."""

    def __init__(self, descriptor: ConnectorDescriptor | ConnectorView) -> None:
        descriptor = connector_view(descriptor)  # a native source's model, converted
        check = descriptor.health_check
        self.descriptor = descriptor
        self._check = check
        self._endpoint = compile_template(check.endpoint)
        # Linear's GraphQL endpoint only answers a POSTed query: '{ viewer { id } }'.
        self._body = JsonBody.compile(check.body) if check.method == "POST" else None
        self._timeout = httpx.Timeout(check.timeout_ms / 1000)
        self.response_errors: ResponseErrorCheck | None = classifier_for(descriptor)

    @classmethod
    def compile(cls, descriptor: ConnectorDescriptor | ConnectorView) -> HealthCheckPlan:
        return cls(descriptor)

    def _request(
        self, context: SourceContext, config: Mapping[str, str]
    ) -> httpx.Request | HealthResult:
        def resolve(name: str) -> str | None:
            return config.get(name.removeprefix("config."))

        text = render_url(self._endpoint, resolve)
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            return _unhealthy(
                f"{self.descriptor.id}: the health check endpoint does not render to an"
                " http(s) URL",
            )
        headers: dict[str, str] = {}
        content: bytes | None = None
        if self._body is not None:
            content = self._body.render(resolve)
            headers["Content-Type"] = "application/json"
        return context.client.build_request(
            self._check.method, url, headers=headers, content=content, timeout=self._timeout
        )

    async def run(self, context: SourceContext) -> HealthResult:
        """One attempt, auth applied, its own timeout; reported, never raised.

        ``timeoutMs`` bounds the whole attempt (redirects and body included), and
        the answer goes through the same size cap and redirect rules as a poll.

        No retries: a health check measures the upstream as it is right now, and
        the health state machine decides what repeated failures mean. Healthy
        means the expected status *and* a body that reports no failure: Slack's
        ``auth.test`` answers a revoked token with HTTP 200 and ``ok: false``.
        """
        check = self._check
        try:
            config = resolve_config(self.descriptor, context.config)
        except ConfigError as error:
            return _unhealthy(str(error))
        request = self._request(context, config)
        if isinstance(request, HealthResult):
            return request
        started = context.clock()

        def elapsed_ms() -> float:
            return (context.clock() - started) * 1000

        try:
            response = await fetch(
                context.client,
                request,
                settings=context.settings,
                auth=context.auth,
                deadline=check.timeout_ms / 1000,
            )
        except EgressDenied as error:
            return _unhealthy(str(error), latency_ms=elapsed_ms())
        except AttemptTimedOut:
            message = f"{describe(request)}: no answer within {check.timeout_ms} ms"
            return _unhealthy(message, latency_ms=elapsed_ms(), failure="unavailable")
        except UpstreamError as error:
            return _unhealthy(
                str(error), status=error.status, latency_ms=elapsed_ms(), failure=_failure_of(error)
            )
        except httpx.TimeoutException:
            message = f"{describe(request)}: no answer within {check.timeout_ms} ms"
            return _unhealthy(message, latency_ms=elapsed_ms(), failure="unavailable")
        except httpx.TransportError as error:
            message = transport_failure_message(request, error)
            return _unhealthy(message, latency_ms=elapsed_ms(), failure="unavailable")
        latency = elapsed_ms()
        status = response.status_code
        reported = body_error(response, time.time(), self.response_errors)
        if reported is not None:
            return _unhealthy(
                str(reported), status=status, latency_ms=latency, failure=_failure_of(reported)
            )
        if status == check.expect_status:
            return HealthResult(ok=True, status=status, latency_ms=latency)
        said = status_said(response)
        message = (
            f"{describe(request)}: credentials rejected ({said})"
            if status in (401, 403)
            else f"{describe(request)}: expected HTTP {check.expect_status}, got {said}"
        )
        return _unhealthy(
            message,
            status=status,
            latency_ms=latency,
            failure=_failure_of_status(status),
        )


def _unhealthy(
    error: str,
    *,
    status: int | None = None,
    latency_ms: float = 0.0,
    failure: HealthFailure = "failed",
) -> HealthResult:
    return HealthResult(
        ok=False, status=status, latency_ms=latency_ms, error=error, failure=failure
    )


async def run_health_check(descriptor: ConnectorDescriptor, context: SourceContext) -> HealthResult:
    """The descriptor's ``healthCheck`` (see :meth:`HealthCheckPlan.run`), planned on the spot.

    Sources that check repeatedly keep a :class:`HealthCheckPlan` instead.
    """
    return await HealthCheckPlan(descriptor).run(context)


# --------------------------------------------------------------------------- choosing


def source_for(descriptor: ConnectorDescriptor) -> Source:
    """The runtime of any descriptor: generic from the descriptor, native from its package.

    Raises :class:`NativeSourceMissing` for a native connector that is not
    installed, failed to load, was blocked or does not implement :class:`Source`.
    """
    if descriptor.kind == "native":
        from ucf.runtime.native import native_registry

        source: Source = native_registry().source(descriptor)
        return source
    return GenericSource(descriptor)
