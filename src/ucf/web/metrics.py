"""``/metrics``: what an operator graphs and alerts on, in Prometheus' text format.

One :class:`Metrics` per app with its own registry (not the process-global
one), so several apps in one test process never share counters. Labels are
bounded on purpose: routes are templates (``/api/projects/{projectId}/…``),
connectors are registered ids (a request for an unknown connector is a 404
before anything is counted under its name), never project ids or paths.

The metrics are ``prometheus_client``'s (:mod:`ucf.web.metrics_registry`),
but that package loads its whole exposition stack when imported
(``http.server``, ``wsgiref``: ~11 ms of CPU), which a Lambda environment
answering its first webhook delivery should not pay for a scrape that may
never come. So until the first scrape each observation is written down as
the update it stands for, with the time it happened, and the scrape imports
the library, builds the metrics and replays the updates in order, giving each
label set the creation time (``_created``) of its first observation; from
then on they are counted in plain numbers that each scrape writes into the
library's metrics (:mod:`ucf.web.metrics_registry`), and a scrape reads what
the library counting live from the start would have written (tests hold the
two equal). Past :data:`JOURNAL_LIMIT` updates without a
scrape the metrics are built anyway (one ~11 ms import on a warm request), so
the journal's memory stays bounded.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ucf.service.context import UcfContext
    from ucf.service.poll import PollResult
    from ucf.web.metrics_registry import MetricFamilies

CONTENT_TYPE: Final = "text/plain; version=1.0.0; charset=utf-8"
"""``prometheus_client.exposition.CONTENT_TYPE_LATEST``, known without importing it
(a test holds the two equal)."""

JOURNAL_LIMIT: Final = 2048
"""Updates written down before the metrics are built without waiting for a scrape."""

Family = Literal[
    "requests",
    "request_seconds",
    "verification_failures",
    "webhooks_rate_limited",
    "webhooks_ignored",
    "webhook_give_backs_failed",
    "signals_ingested",
    "signal_duplicates",
    "polls",
    "polls_truncated",
    "poll_seconds",
    "poll_upstream_latency",
]
"""The families counted per event (:class:`~ucf.web.metrics_registry.MetricFamilies`'
attributes); the outbox gauges are set by :meth:`Metrics.refresh`, just before a scrape."""

COUNTERS: Final[frozenset[Family]] = frozenset(
    {
        "requests",
        "verification_failures",
        "webhooks_rate_limited",
        "webhooks_ignored",
        "webhook_give_backs_failed",
        "signals_ingested",
        "signal_duplicates",
        "polls",
        "polls_truncated",
    }
)


class Metrics:
    """Every metric of one app; also the gateway's :class:`GatewayObserver`."""

    content_type: Final = CONTENT_TYPE

    def __init__(self) -> None:
        self._families: MetricFamilies | None = None
        self._journal: list[tuple[Family, tuple[str, ...], float, float]] = []
        """(family, label values, value, when) of each update before the first scrape."""
        self._lock = threading.Lock()

    def _update(self, family: Family, labels: tuple[str, ...], value: float = 1) -> None:
        families = self._families
        if families is None:
            if value < 0 and family in COUNTERS:  # refused now, as the counter itself would
                raise ValueError("Counters can only be incremented by non-negative amounts.")
            with self._lock:
                families = self._families
                if families is None:
                    self._journal.append((family, labels, value, time.time()))
                    if len(self._journal) >= JOURNAL_LIMIT:
                        self._built_locked()
                    return
        families.update(family, labels, value)

    def _built(self) -> MetricFamilies:
        families = self._families
        if families is None:
            with self._lock:
                families = self._built_locked()
        return families

    def _built_locked(self) -> MetricFamilies:
        if self._families is None:
            from ucf.web.metrics_registry import MetricFamilies  # see the module docstring

            families = MetricFamilies()
            for family, labels, value, when in self._journal:
                families.update(family, labels, value, created=when)
            self._journal = []
            self._families = families
        return self._families

    # -- HTTP

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        families = self._families
        if families is not None:  # every request once built: one lookup for both updates
            families.observe_request(method, route, status, seconds)
            return
        self._update("requests", (method, route, str(status)))
        self._update("request_seconds", (route,), seconds)

    # -- the gateway (GatewayObserver)

    def rate_limited(self, connector_id: str) -> None:
        self._update("webhooks_rate_limited", (connector_id,))

    def verification_failed(self, connector_id: str, reason: str) -> None:
        self._update("verification_failures", (connector_id, reason))

    def ignored(self, connector_id: str, event_type: str) -> None:
        self._update("webhooks_ignored", (connector_id,))

    def give_back_failed(self, connector_id: str) -> None:
        self._update("webhook_give_backs_failed", (connector_id,))

    def ingested(self, connector_id: str, inserted: int, duplicates: int) -> None:
        self._count_signals(connector_id, "webhook", inserted, duplicates)

    # -- polls (the scheduler's ``on_result`` and "poll now")

    def observe_poll(self, result: PollResult) -> None:
        connector = result.connector_id
        self._update("polls", (connector, result.status))
        if result.status == "skipped":
            return
        self._update("poll_seconds", (connector,), result.duration_seconds)
        if result.truncated:
            self._update("polls_truncated", (connector,))
        if result.latency_ms is not None:
            self._update("poll_upstream_latency", (connector,), result.latency_ms / 1000)
        self._count_signals(connector, "poll", result.inserted, result.duplicates)

    def _count_signals(self, connector: str, via: str, inserted: int, duplicates: int) -> None:
        if inserted:
            self._update("signals_ingested", (connector, via), inserted)
        if duplicates:
            self._update("signal_duplicates", (connector, via), duplicates)

    # -- exposition

    async def refresh(self, context: UcfContext) -> None:
        """Read the gauges that live in the store (outbox lag) just before a scrape."""
        families = self._built()
        now = context.clock()
        for sink in context.ingestor.sinks:
            lag = await context.store.outbox.lag(sink, now=now)
            families.update("outbox_pending", (sink,), lag.pending)
            families.update("outbox_oldest_age", (sink,), lag.oldest_age_seconds or 0.0)
            families.update("outbox_parked", (sink,), lag.parked)

    def render(self) -> bytes:
        """The text format of every metric (the first scrape builds them: see the module)."""
        return self._built().render()
