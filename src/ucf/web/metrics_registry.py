"""The metrics themselves: ``prometheus_client``'s counters, histograms and gauges.

Imported by :class:`ucf.web.metrics.Metrics` on the first scrape, not before
(see that module for why). One registry per :class:`MetricFamilies` (not the
process-global one), so several apps in one test process never share counters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

REQUEST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
POLL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

Update = Callable[[float], None]


class MetricFamilies:
    """Every metric of one app, by the attribute name :class:`~ucf.web.metrics.Metrics` counts in."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._updates: dict[tuple[str, tuple[str, ...]], Update] = {}
        """Each label set's ``inc``, ``observe`` or ``set``, looked up once (the registry
        keeps a child per label set anyway)."""
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

    def update(
        self, family: str, labels: tuple[str, ...], value: float, created: float | None = None
    ) -> None:
        """Count ``value`` in ``family``'s child for ``labels``: a counter's ``inc``, a
        histogram's ``observe``, a gauge's ``set``.

        ``created``: when a label set first seen here was really first counted (a
        replayed observation); its ``_created`` sample says that time, not the replay's.
        """
        key = (family, labels)
        update = self._updates.get(key)
        if update is None:  # label sets are bounded (see ucf.web.metrics)
            metric = getattr(self, family)
            child = metric.labels(*labels)
            if created is not None and hasattr(child, "_created"):
                child._created = created  # the library keeps a label set's creation time here
            update = self._updates[key] = (
                child.inc
                if isinstance(metric, Counter)
                else child.observe
                if isinstance(metric, Histogram)
                else child.set
            )
        update(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
