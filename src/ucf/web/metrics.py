"""``/metrics``: what an operator graphs and alerts on, in Prometheus' text format.

One :class:`Metrics` per app with its own registry (not the process-global
one), so several apps in one test process never share counters. Labels are
bounded on purpose: routes are templates (``/api/projects/{projectId}/…``),
connectors are registered ids (a request for an unknown connector is a 404
before anything is counted under its name), never project ids or paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from ucf.service.context import UcfContext
    from ucf.service.poll import PollResult

REQUEST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
POLL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Every metric of one app; also the gateway's :class:`GatewayObserver`."""

    content_type: Final = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        """Label lookups of every request, done once per (method, route, status)."""
        self._signal_children: dict[tuple[Counter, str, str], Counter] = {}
        """Label lookups of every ingest (each delivery counts its signal), done once per
        counter, connector and source; a child is made when first counted, as before."""
        self.requests = Counter(
            "ucf_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "ucf_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.verification_failures = Counter(
            "ucf_webhook_verification_failures",
            "Webhook deliveries refused by verification, by connector and reason.",
            ["connector", "reason"],
            registry=r,
        )
        self.webhooks_rate_limited = Counter(
            "ucf_webhook_rate_limited",
            "Webhook deliveries refused with 429 by the per-instance limit.",
            ["connector"],
            registry=r,
        )
        self.webhooks_ignored = Counter(
            "ucf_webhook_ignored_events",
            "Verified deliveries of event types the connector does not handle (202).",
            ["connector"],
            registry=r,
        )
        self.signals_ingested = Counter(
            "ucf_signals_ingested",
            "Signals newly stored, by connector and how they arrived (webhook, poll).",
            ["connector", "via"],
            registry=r,
        )
        self.signal_duplicates = Counter(
            "ucf_signal_duplicates",
            "Signals already stored (redeliveries, overlapping polls), by connector and route.",
            ["connector", "via"],
            registry=r,
        )
        self.polls = Counter(
            "ucf_polls",
            "Polls by connector and status (ok, failed, skipped, stopped, conflict).",
            ["connector", "status"],
            registry=r,
        )
        self.polls_truncated = Counter(
            "ucf_polls_truncated",
            "Polls that maxPages cut short with more waiting (the next poll goes on from "
            "there), by connector.",
            ["connector"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "ucf_poll_duration_seconds",
            "Wall time of a poll, all pages, by connector.",
            ["connector"],
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.poll_upstream_latency = Histogram(
            "ucf_poll_upstream_latency_seconds",
            "Mean upstream response time of a poll's requests, by connector.",
            ["connector"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "ucf_outbox_pending",
            "Signals waiting in the outbox, by sink.",
            ["sink"],
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "ucf_outbox_oldest_age_seconds",
            "Age of the oldest undelivered outbox entry, by sink (0 when empty).",
            ["sink"],
            registry=r,
        )
        self.outbox_parked = Gauge(
            "ucf_outbox_parked",
            "Signals a sink refused for good, set aside until requeued, by sink.",
            ["sink"],
            registry=r,
        )

    # -- HTTP

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:  # the registry keeps a child per label set anyway
            children = self._request_children[key] = (
                self.requests.labels(method, route, str(status)),
                self.request_seconds.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    # -- the gateway (GatewayObserver)

    def rate_limited(self, connector_id: str) -> None:
        self.webhooks_rate_limited.labels(connector_id).inc()

    def verification_failed(self, connector_id: str, reason: str) -> None:
        self.verification_failures.labels(connector_id, reason).inc()

    def ignored(self, connector_id: str, event_type: str) -> None:
        self.webhooks_ignored.labels(connector_id).inc()

    def ingested(self, connector_id: str, inserted: int, duplicates: int) -> None:
        self._count_signals(connector_id, "webhook", inserted, duplicates)

    # -- polls (the scheduler's ``on_result`` and "poll now")

    def observe_poll(self, result: PollResult) -> None:
        connector = result.connector_id
        self.polls.labels(connector, result.status).inc()
        if result.status == "skipped":
            return
        self.poll_seconds.labels(connector).observe(result.duration_seconds)
        if result.truncated:
            self.polls_truncated.labels(connector).inc()
        if result.latency_ms is not None:
            self.poll_upstream_latency.labels(connector).observe(result.latency_ms / 1000)
        self._count_signals(connector, "poll", result.inserted, result.duplicates)

    def _count_signals(self, connector: str, via: str, inserted: int, duplicates: int) -> None:
        if inserted:
            self._signal_child(self.signals_ingested, connector, via).inc(inserted)
        if duplicates:
            self._signal_child(self.signal_duplicates, connector, via).inc(duplicates)

    def _signal_child(self, counter: Counter, connector: str, via: str) -> Counter:
        key = (counter, connector, via)
        child = self._signal_children.get(key)
        if child is None:  # connectors a poll or the gateway found: a bounded set
            child = self._signal_children[key] = counter.labels(connector, via)
        return child

    # -- exposition

    async def refresh(self, context: UcfContext) -> None:
        """Read the gauges that live in the store (outbox lag) just before a scrape."""
        now = context.clock()
        for sink in context.ingestor.sinks:
            lag = await context.store.outbox.lag(sink, now=now)
            self.outbox_pending.labels(sink).set(lag.pending)
            self.outbox_oldest_age.labels(sink).set(lag.oldest_age_seconds or 0.0)
            self.outbox_parked.labels(sink).set(lag.parked)

    def render(self) -> bytes:
        return generate_latest(self.registry)
