"""Sources: the one small interface every connector runs behind, generic or native.

A :class:`Source` fetches what changed since a checkpoint, page by page, and
checks that the upstream answers. :class:`GenericSource` does both from a
descriptor (the polling engine and the descriptor's ``healthCheck``). Tools a
descriptor cannot describe (Jira's JQL paging quirks, Outlook, SES) ship as
Python packages that register a factory under the ``ucf.native_sources``
entry-point group, named by connector id::

    [project.entry-points."ucf.native_sources"]
    jira = "ucf_jira:JiraSource"

:func:`source_for` picks the right one, so the scheduler and the CLI never
care which kind they run.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

import httpx

from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.template import compile_template
from ucf.runtime.http import HttpSettings, UpstreamError, describe
from ucf.runtime.polling import (
    ConfigError,
    NotPollable,
    Page,
    PollPlan,
    RateGate,
    resolve_config,
    url_escape,
)
from ucf.runtime.ssrf import EgressDenied

__all__ = [
    "ENTRY_POINT_GROUP",
    "GenericSource",
    "HealthResult",
    "NativeSourceMissing",
    "Source",
    "SourceContext",
    "load_native_source",
    "run_health_check",
    "source_for",
]

ENTRY_POINT_GROUP: Final = "ucf.native_sources"


@dataclass(frozen=True, slots=True)
class HealthResult:
    """One health check: did the upstream answer as expected, and how fast.

    ``status`` is None when no HTTP answer came back; ``error`` is secret-free.
    """

    ok: bool
    status: int | None
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
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
    def descriptor(self) -> ConnectorDescriptor: ...

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


class GenericSource:
    """A descriptor-driven connector: the polling plan plus the descriptor's health check."""

    def __init__(self, descriptor: ConnectorDescriptor) -> None:
        self._descriptor = descriptor
        self._plan = PollPlan.compile(descriptor) if descriptor.polling is not None else None

    @property
    def descriptor(self) -> ConnectorDescriptor:
        return self._descriptor

    @property
    def plan(self) -> PollPlan | None:
        return self._plan

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
        return await run_health_check(self._descriptor, context)


async def run_health_check(descriptor: ConnectorDescriptor, context: SourceContext) -> HealthResult:
    """The descriptor's ``healthCheck``: one attempt, auth applied, its own timeout.

    No retries: a health check measures the upstream as it is right now, and
    the health state machine decides what repeated failures mean.
    """
    check = descriptor.health_check
    try:
        config = resolve_config(descriptor, context.config)
    except ConfigError as error:
        return HealthResult(ok=False, status=None, latency_ms=0.0, error=str(error))
    template = compile_template(check.endpoint)
    text = template.render(lambda name: config.get(name.removeprefix("config.")), url_escape)
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        return HealthResult(
            ok=False,
            status=None,
            latency_ms=0.0,
            error=f"{descriptor.id}: the health check endpoint does not render to an http(s) URL",
        )
    request = context.client.build_request(
        check.method, url, timeout=httpx.Timeout(check.timeout_ms / 1000)
    )
    started = context.clock()

    def elapsed_ms() -> float:
        return (context.clock() - started) * 1000

    try:
        response = await context.client.send(request, auth=context.auth)
    except (EgressDenied, UpstreamError) as error:
        status = error.status if isinstance(error, UpstreamError) else None
        return HealthResult(ok=False, status=status, latency_ms=elapsed_ms(), error=str(error))
    except httpx.TimeoutException:
        message = f"{describe(request)}: no answer within {check.timeout_ms} ms"
        return HealthResult(ok=False, status=None, latency_ms=elapsed_ms(), error=message)
    except httpx.TransportError as error:
        message = f"{describe(request)}: connection failed ({type(error).__name__})"
        return HealthResult(ok=False, status=None, latency_ms=elapsed_ms(), error=message)
    latency = elapsed_ms()
    if response.status_code == check.expect_status:
        return HealthResult(ok=True, status=response.status_code, latency_ms=latency)
    return HealthResult(
        ok=False,
        status=response.status_code,
        latency_ms=latency,
        error=(
            f"{describe(request)}: expected HTTP {check.expect_status}, got {response.status_code}"
        ),
    )


# --------------------------------------------------------------------------- native


class NativeSourceMissing(LookupError):
    """A ``kind: native`` descriptor whose implementation is not installed (or broken)."""


SourceFactory = Callable[[ConnectorDescriptor], Source]


def load_native_source(descriptor: ConnectorDescriptor) -> Source:
    """The installed native implementation of ``descriptor``, by its entry point.

    The entry point named ``descriptor.id`` in the ``ucf.native_sources`` group
    must load to a callable taking the descriptor and returning a :class:`Source`.
    """
    available = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    chosen = next((ep for ep in available if ep.name == descriptor.id), None)
    if chosen is None:
        installed = ", ".join(sorted({ep.name for ep in available})) or "none"
        raise NativeSourceMissing(
            f"connector {descriptor.id!r} is native, but no installed package provides it "
            f"(entry point {descriptor.id!r} in group {ENTRY_POINT_GROUP!r}; installed: {installed})"
        )
    try:
        factory: SourceFactory = chosen.load()
        source = factory(descriptor)
    except Exception as error:
        raise NativeSourceMissing(
            f"native source {descriptor.id!r} ({chosen.value}) failed to load: "
            f"{type(error).__name__}: {error}"
        ) from error
    if not callable(getattr(source, "fetch_delta", None)) or not callable(
        getattr(source, "health_check", None)
    ):
        raise NativeSourceMissing(
            f"native source {descriptor.id!r} ({chosen.value}) does not implement "
            "fetch_delta and health_check"
        )
    return source


def source_for(descriptor: ConnectorDescriptor) -> Source:
    """The runtime of any descriptor: generic from the descriptor, native from its package."""
    if descriptor.kind == "native":
        return load_native_source(descriptor)
    return GenericSource(descriptor)
