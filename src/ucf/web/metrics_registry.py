"""The metrics themselves: ``prometheus_client``'s counters, histograms and gauges.

Imported by :class:`ucf.web.metrics.Metrics` on the first scrape, not before
(see that module for why). One registry per :class:`MetricFamilies` (not the
process-global one), so several apps in one test process never share counters.

Counted in plain numbers, written into the library's metrics at each scrape.
A counter's ``inc`` and a histogram's ``observe`` take a lock per value they
touch (the histogram two: its sum and its bucket) behind a few checks and
calls each, and every request made both, a delivery one more for its
signals: several µs of a loaded server's CPU per delivery (``bench/webhook.py``).
Every update is made on the event loop's thread (the web front, the
middleware, the scheduler's and the gateway's callbacks are all async code),
so a :class:`_Count` or :class:`_Observations` per label set adds its number
without a lock, in the order and with the float operations the library would
use, and :meth:`MetricFamilies.render` sets each child's values to them just
before ``generate_latest``: the library still builds every child (its
``_created`` time included, at the first observation as before) and writes the
text format, and a test holds a scrape equal, byte for byte, to metrics the
library counted live.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

REQUEST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
POLL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

_INF: Final = float("inf")


class _Count:
    """A counter child's total, counted here and written into the child at a scrape."""

    __slots__ = ("child", "value")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.value = 0.0

    def add(self, amount: float) -> None:
        if amount < 0:  # the library's own refusal, before anything is counted
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount

    def write(self) -> None:
        self.child._value.set(self.value)


class _Observations:
    """A histogram child's sum and (non-cumulative) bucket counts, as ``observe`` keeps
    them: the sum takes every value, the first bucket whose bound is at least the value
    counts it (a NaN: none)."""

    __slots__ = ("bounds", "child", "counts", "sum")

    def __init__(self, child: Any, bounds: list[float]) -> None:
        self.child = child
        self.bounds = tuple(bounds)  # the library's, +Inf last
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0

    def add(self, amount: float) -> None:
        self.sum += amount
        if amount <= _INF:  # not NaN
            self.counts[bisect_left(self.bounds, amount)] += 1

    def write(self) -> None:
        child = self.child
        child._sum.set(self.sum)
        for bucket, count in zip(child._buckets, self.counts, strict=True):
            bucket.set(count)


class _Level:
    """A gauge child's last value."""

    __slots__ = ("child", "value")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.value = 0.0

    def add(self, value: float) -> None:
        self.value = value

    def write(self) -> None:
        self.child.set(self.value)


Tally = _Count | _Observations | _Level


class MetricFamilies:
    """Every metric of one app, by the attribute name :class:`~ucf.web.metrics.Metrics` counts in."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._tallies: dict[tuple[str, tuple[str, ...]], Tally] = {}
        """Each label set's numbers, written into its child by :meth:`render`."""
        self._requests: dict[tuple[str, str, int], tuple[_Count, _Observations]] = {}
        """:meth:`observe_request`'s two tallies by method, route and status."""
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
        self.webhook_give_backs_failed = Counter(
            "ucf_webhook_give_backs_failed",
            "Rate-limit tokens of deliveries the store failed that did not go back to the "
            "instance's bucket (the store failed again, or others kept changing the bucket).",
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
        tally = self._tallies.get((family, labels))
        if tally is None:  # label sets are bounded (see ucf.web.metrics)
            tally = self._tally(family, labels, created)
        tally.add(value)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """``update("requests", (method, route, str(status)), 1)`` and
        ``update("request_seconds", (route,), seconds)``, both tallies found by one key."""
        pair = self._requests.get((method, route, status))
        if pair is None:
            count = self._tally("requests", (method, route, str(status)), None)
            observations = self._tally("request_seconds", (route,), None)
            assert isinstance(count, _Count)
            assert isinstance(observations, _Observations)
            pair = self._requests[(method, route, status)] = (count, observations)
        count, observations = pair
        count.value += 1
        observations.add(seconds)

    def _tally(self, family: str, labels: tuple[str, ...], created: float | None) -> Tally:
        """The label set's tally, made with the library's child at its first update."""
        tally = self._tallies.get((family, labels))
        if tally is not None:
            return tally
        metric = getattr(self, family)
        child = metric.labels(*labels)
        if created is not None and hasattr(child, "_created"):
            child._created = created  # the library keeps a label set's creation time here
        tally = self._tallies[(family, labels)] = (
            _Count(child)
            if isinstance(metric, Counter)
            else _Observations(child, metric._upper_bounds)
            if isinstance(metric, Histogram)
            else _Level(child)
        )
        return tally

    def render(self) -> bytes:
        for tally in self._tallies.values():
            tally.write()
        return generate_latest(self.registry)
