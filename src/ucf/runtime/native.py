"""Native connectors: Python packages behind the same interface as descriptors.

A native connector is one object, a :class:`NativeConnector`, published under
the ``ucf.native_sources`` entry-point group (the way pytest finds plug-ins)::

    [project.entry-points."ucf.native_sources"]
    jira = "ucf.native.jira:connector"

It brings its ``kind: "native"`` descriptor (catalogue card, setup form,
credential fields, health check) together with the code that runs it: a
:class:`~ucf.runtime.sources.Source` that fetches pages and turns its items
into signals with its own normaliser, and, for tools that push, a
:class:`WebhookHandler` the gateway calls after its own checks (404, 413, 429).

:class:`NativeRegistry` loads each entry point once, when it is first needed,
checks it against this interface, records the distribution that provides it
and can block one (``UCF_NATIVE_BLOCK=jira,asana``), as pluggy does for pytest
plug-ins. Loading on demand keeps a process that never runs a native connector
(a Lambda polling a GitHub instance) from importing every connector's code.
Packages import only :mod:`ucf.native`, never these internals.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ucf.core.records import datarecord
from ucf.runtime.native_errors import NativeLoadError as NativeLoadError
from ucf.runtime.poll_schedule import PollSchedule as PollSchedule
from ucf.runtime.redaction import redact

if TYPE_CHECKING:
    import httpx

    from ucf.core.descriptor import ConnectorDescriptor
    from ucf.core.mapping import MappingResult
    from ucf.runtime.polling import Page
    from ucf.runtime.sources import SourceContext  # sources.py imports this module
    from ucf.runtime.webhooks import HandshakeResponse

# The HTTP stack, the mapping engine and the descriptor models are imported where a
# source uses them, not here: the catalogue (ucf.service.connectors) reads this
# module's registry and schedule, and a Lambda that only enqueues polls loads none
# of them (bench/coldstart.py).

__all__ = [
    "ENTRY_POINT_GROUP",
    "Handshake",
    "MaintenanceContext",
    "Malformed",
    "NativeConnector",
    "NativeLoadError",
    "NativeRegistry",
    "PollSchedule",
    "Refused",
    "Unhandled",
    "UpstreamCalls",
    "Verdict",
    "Verified",
    "WebhookContext",
    "WebhookHandler",
    "WebhookRequest",
    "native_registry",
    "page_items",
]

log = logging.getLogger("ucf.native")

ENTRY_POINT_GROUP: Final = "ucf.native_sources"
BLOCK_VARIABLE: Final = "UCF_NATIVE_BLOCK"


# --------------------------------------------------------------------------- webhooks


@datarecord
class WebhookRequest:
    """One delivery as the gateway received it: raw bytes, headers as sent."""

    method: str
    body: bytes
    headers: Mapping[str, str] = field(repr=False)
    query: Mapping[str, str] = field(default_factory=dict)
    url: str = ""

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name (the gateway passes a case-insensitive mapping,
        but tests and the CLI may pass a plain dict)."""
        value = self.headers.get(name)
        if value is not None:
            return value
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


@datarecord
class Verified:
    """The delivery is authentic: the gateway charges the instance's budget and asks for signals."""


@datarecord
class Refused:
    """Not authentic: 401 without detail; ``code`` goes to metrics, ``message`` to the log."""

    code: str
    message: str


@datarecord
class Handshake:
    """A provider's set-up request, answered as its documentation says.

    ``keep`` holds credentials the handshake hands over (Asana's
    ``X-Hook-Secret``). Such handshakes are unsigned, so the gateway hears them
    only at the instance's own webhook URL and keeps what they hand over
    *pending* until an operator confirms it (``docs/security.md``).
    """

    response: HandshakeResponse
    keep: Mapping[str, str] = field(default_factory=dict, repr=False)


Verdict = Verified | Refused | Handshake


@datarecord
class Unhandled:
    """An event the connector does not turn into signals: 202, stored nowhere."""

    event_type: str


class Malformed(ValueError):
    """The delivery cannot be read (not JSON, no event type): 400 with this message."""


async def _no_scheduler(reason: str) -> None:
    log.info("a poll was requested (%s), but nothing schedules polls here", reason)


@datarecord(slots=False)
class WebhookContext:
    """What a handler may use: the instance's settings and, on demand, its upstream.

    ``upstream()`` builds the authenticated client context the first time it is
    awaited (Asana's compact events must be fetched in full; a handler that
    needs no request never pays for auth).

    ``request_poll(reason)`` asks for a poll of the instance as soon as a
    scheduler can run one, instead of at its next interval: for a provider
    that says it dropped deliveries (Graph's ``missed`` lifecycle
    notification). The gateway records the request in the store, so whichever
    worker (or Lambda tick) looks next polls the instance, once; ``reason``
    goes to the log. Outside the gateway (``ucf webhooks verify``) it only logs.
    """

    project_id: str
    connector_id: str
    credentials: Mapping[str, str] = field(repr=False)
    config: Mapping[str, str]
    now: datetime
    upstream: Callable[[], Awaitable[Any]]
    request_poll: Callable[[str], Awaitable[None]] = _no_scheduler


@runtime_checkable
class WebhookHandler(Protocol):
    """A native connector's push side. The gateway has already found the instance,
    read the body under its limit and checked the sender's rate; verification
    must compare in constant time on the raw bytes."""

    async def verify(self, request: WebhookRequest, context: WebhookContext) -> Verdict: ...

    async def signals(
        self, request: WebhookRequest, context: WebhookContext
    ) -> MappingResult | Unhandled:
        """The delivery's signals (an empty result is a 200 that stores nothing, e.g. a
        heartbeat). Raise :class:`Malformed` for a body that cannot be read."""
        ...


@datarecord(slots=False)
class MaintenanceContext:
    """What a source's optional ``maintain(context)`` may use, between polls.

    Some upstreams need upkeep that is neither a poll nor a delivery: Graph's
    change-notification subscriptions expire after days and must be created,
    renewed and recreated. The scheduler calls ``maintain`` for every enabled
    instance of a source that has it, soon after the instance is set up and
    then at most every :data:`MAINTENANCE_EVERY`, one worker at a time (a
    lease per instance). ``webhook_url`` is the instance's own public gateway
    URL (``UCF_PUBLIC_URL`` + ``/api/webhooks/{connector}/{project}/{hookId}``,
    the ``webhookUrl`` the dashboard shows), None when ucf is not reachable
    from the internet. ``save_credentials``
    merges values into the instance's secret store (None removes a key).
    """

    project_id: str
    connector_id: str
    config: Mapping[str, str]
    credentials: Mapping[str, str] = field(repr=False)
    upstream: Callable[[], Awaitable[Any]]
    webhook_url: str | None
    save_credentials: Callable[[Mapping[str, str | None]], Awaitable[None]]
    now: datetime


MAINTENANCE_EVERY: Final = 15 * 60
"""Seconds between two ``maintain`` calls of one instance (per scheduler)."""


# --------------------------------------------------------------------------- upstream calls


class UpstreamCalls:
    """Requests of one poll, with the engine's retries, rate gate and statistics.

    A native source sends through this so it gets what a descriptor gets for
    free: the instance's ``rateLimitRpm`` bucket before every request, retries
    honouring ``Retry-After``, the size cap, the SSRF guard (the client's),
    and a :class:`Page` carrying the waits and latency the health state
    machine and metrics read.
    """

    def __init__(self, context: SourceContext) -> None:
        from ucf.runtime.http import RetryStats

        self._context = context
        self._stats = RetryStats()
        self._gate_wait = 0.0
        self._elapsed = 0.0
        self._url = ""
        self._status = 200

    async def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """One request, retried as the engine retries; raises the runtime's typed errors.

        Statuses in ``accept`` come back as responses instead (Asana's ``412``
        carrying a fresh sync token, a ``404`` for an object deleted meanwhile).
        """
        from ucf.runtime.http import send_with_retries

        context = self._context
        if context.rate_gate is not None:
            self._gate_wait += await context.rate_gate.acquire()
        client: httpx.AsyncClient = context.client
        request = client.build_request(method, url, params=params, json=json, headers=headers)

        def fresh() -> httpx.Request:  # auth flows edit the request they are given
            return client.build_request(
                request.method, request.url, headers=request.headers, content=request.content
            )

        started = time.monotonic()
        response = await send_with_retries(
            client,
            fresh,
            settings=context.settings,
            auth=context.auth,
            sleep=context.sleep,
            on_wait=self._stats,
            accept=accept,
        )
        self._elapsed += time.monotonic() - started
        self._url = redact(str(response.request.url))
        self._status = response.status_code
        return response

    async def json(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """:meth:`send`, then the body as strict JSON (a clear error names the request)."""
        from ucf.runtime.http import read_json

        response = await self.send(method, url, params=params, json=json, headers=headers)
        return await read_json(response)

    def page(
        self,
        number: int,
        items: list[Any],
        checkpoint: str | None,
        *,
        last: bool,
        truncated: bool = False,
        dropped: int = 0,
    ) -> Page:
        """A page with the statistics of the requests made since the previous page."""
        from ucf.runtime.http import RetryStats
        from ucf.runtime.polling import Page

        page = Page(
            number=number,
            items=items,
            checkpoint=checkpoint,
            request_url=self._url,
            status=self._status,
            last=last,
            elapsed_seconds=self._elapsed,
            gate_wait_seconds=self._gate_wait,
            rate_limit_waits=self._stats.rate_limit_waits,
            rate_limit_wait_seconds=self._stats.rate_limit_seconds,
            dropped=dropped,
            truncated=truncated,
        )
        self._stats = RetryStats()
        self._gate_wait = self._elapsed = 0.0
        return page


# --------------------------------------------------------------------------- the bundle


@datarecord(slots=False)
class NativeConnector:
    """What a native package publishes: its descriptor and the factory of its source.

    ``descriptor`` is the JSON object of a ``kind: "native"`` descriptor (it
    is validated like every descriptor when the catalogue loads it);
    ``source`` builds the runtime from the parsed descriptor. The source
    declares what it does: ``schedule`` (polls; None: push only) and
    ``webhooks`` (a :class:`WebhookHandler`; None: poll only). ``guide`` is
    the hand-written part of the connector's documentation page (Markdown):
    what its code does that a descriptor cannot say; ``ucf connectors docs``
    appends it to the page generated from the descriptor.
    """

    descriptor: Mapping[str, Any]
    source: Callable[[ConnectorDescriptor], Any]
    guide: str = ""

    @property
    def id(self) -> str:
        return str(self.descriptor.get("id", ""))


@datarecord
class LoadedNative:
    """One entry point, as loaded: where it came from, and the connector or why not."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    connector: NativeConnector | None
    error: str | None = None


def page_items(response: Any, key: str, page: str) -> list[Any]:
    """The items of a saved response page, for a source's ``extract_items`` (``ucf map
    --poll`` and the dashboard's preview): the list under ``key`` of the ``page``
    object a poll reads, or a bare array of items; a ``ValueError`` naming both
    otherwise."""
    if isinstance(response, list):
        return response
    if isinstance(response, dict) and isinstance(response.get(key), list):
        return list(response[key])
    raise ValueError(f"{page} is an object with a {key!r} list; or pass a JSON array of its items")


_REQUIRED_SOURCE_MEMBERS: Final = ("fetch_delta", "health_check", "normalise")


def check_source(source: Any) -> list[str]:
    """What ``source`` lacks of the :class:`~ucf.runtime.sources.Source` interface."""
    problems = [
        f"no callable {name}()"
        for name in _REQUIRED_SOURCE_MEMBERS
        if not callable(getattr(source, name, None))
    ]
    for name in ("schedule", "webhooks", "descriptor"):
        if not hasattr(source, name):
            problems.append(f"no attribute {name!r}")
    hook = getattr(source, "webhooks", None)
    if hook is not None and not isinstance(hook, WebhookHandler):
        problems.append("webhooks does not implement verify() and signals()")
    return problems


class NativeRegistry:
    """Every installed native connector, each loaded once, on first use (see the module doc)."""

    def __init__(
        self,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        *,
        blocked: Iterable[str] = (),
    ) -> None:
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        self.blocked = frozenset(blocked)
        self._entry_points: dict[str, importlib.metadata.EntryPoint] = {}
        for entry_point in entry_points:
            # the first installed wins, as importlib orders them
            self._entry_points.setdefault(entry_point.name, entry_point)
        self._loaded: dict[str, LoadedNative] = {}

    def _entry(self, name: str) -> LoadedNative | None:
        """The entry point ``name``, imported and checked the first time it is asked for."""
        if name not in self._loaded:
            entry_point = self._entry_points.get(name)
            if entry_point is None:
                return None
            self._loaded[name] = self._load(entry_point)
        return self._loaded[name]

    def _load(self, entry_point: importlib.metadata.EntryPoint) -> LoadedNative:
        dist = entry_point.dist
        distribution = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None

        def failed(error: str) -> LoadedNative:
            log.warning("native connector %r (%s): %s", entry_point.name, entry_point.value, error)
            return LoadedNative(
                entry_point.name, entry_point.value, distribution, version, None, error
            )

        if entry_point.name in self.blocked:
            return failed(f"blocked by {BLOCK_VARIABLE}")
        try:
            loaded = entry_point.load()
        except Exception as error:
            return failed(f"failed to import: {type(error).__name__}: {error}")
        if not isinstance(loaded, NativeConnector):
            return failed(f"is a {type(loaded).__name__}, not a ucf.native.NativeConnector")
        if loaded.id != entry_point.name:
            return failed(f"its descriptor's id is {loaded.id!r}, not {entry_point.name!r}")
        return LoadedNative(entry_point.name, entry_point.value, distribution, version, loaded)

    def __iter__(self) -> Iterator[LoadedNative]:
        """Every entry point, loaded (all of them: this is the full listing)."""
        return iter([entry for name in self._entry_points if (entry := self._entry(name))])

    def descriptors(self, *, besides: Collection[str] = ()) -> list[dict[str, Any]]:
        """The descriptors of every usable native connector, for the catalogue.

        Connectors named in ``besides`` (ids the caller already has a descriptor
        for, such as the shipped catalogue's) are neither returned nor loaded.
        """
        entries = (self._entry(name) for name in self._entry_points if name not in besides)
        return [
            dict(entry.connector.descriptor)
            for entry in entries
            if entry is not None and entry.connector is not None
        ]

    def guide(self, connector_id: str) -> str:
        """The hand-written documentation of a native connector ("" when it has none)."""
        entry = self._entry(connector_id)
        return entry.connector.guide if entry is not None and entry.connector is not None else ""

    def _provider(self, connector_id: str) -> NativeConnector | str:
        """The installed connector that runs ``connector_id``, or why there is none."""
        entry = self._entry(connector_id)
        if entry is None:
            installed = ", ".join(sorted(self._entry_points)) or "none"
            return (
                f"connector {connector_id!r} is native, but no installed package provides it "
                f"(entry point {connector_id!r} in group {ENTRY_POINT_GROUP!r}; "
                f"installed: {installed})"
            )
        if entry.connector is None:
            return f"native connector {connector_id!r} ({entry.value}): {entry.error}"
        return entry.connector

    def missing(self, connector_id: str) -> str | None:
        """Why no code runs a ``kind: native`` connector ``connector_id`` here (not installed,
        failed to load, blocked); None when an installed package provides it.

        Asked before such a descriptor is stored, so that one that could never poll is
        refused when it is written rather than found out at its first poll.
        """
        provider = self._provider(connector_id)
        return provider if isinstance(provider, str) else None

    def source(self, descriptor: ConnectorDescriptor) -> Any:
        """The runtime of a ``kind: native`` descriptor, checked against the interface."""
        provider = self._provider(descriptor.id)
        if isinstance(provider, str):
            raise NativeLoadError(provider)
        value = self._entry_points[descriptor.id].value
        try:
            source = provider.source(descriptor)
        except Exception as error:
            raise NativeLoadError(
                f"native connector {descriptor.id!r} ({value}) failed to start: "
                f"{type(error).__name__}: {error}"
            ) from error
        problems = check_source(source)
        if problems:
            raise NativeLoadError(
                f"native connector {descriptor.id!r} ({value}) does not implement the "
                f"source interface: {'; '.join(problems)}"
            )
        return source


_registry: NativeRegistry | None = None


def native_registry() -> NativeRegistry:
    """The process's registry, loaded on first use (entry points are read once)."""
    global _registry
    if _registry is None:
        blocked = [
            name.strip() for name in os.environ.get(BLOCK_VARIABLE, "").split(",") if name.strip()
        ]
        _registry = NativeRegistry(blocked=blocked)
    return _registry


def installed_descriptors(*, besides: Collection[str] = ()) -> Sequence[Mapping[str, Any]]:
    """The installed native connectors' descriptors, except (and without loading) ``besides``."""
    return native_registry().descriptors(besides=besides)
