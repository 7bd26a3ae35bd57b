"""``/metrics`` counts before the first scrape without ``prometheus_client``.

:class:`ucf.web.metrics.Metrics` writes each update down until a scrape (or
its journal limit) builds ``prometheus_client``'s metrics and replays them.
These tests hold a scrape after that replay equal, byte for byte and
``_created`` times included, to one from metrics that counted live from the
start, and check that counting alone never imports the library.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import Counter
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ucf.service.poll import PollResult
from ucf.web import metrics as metrics_module
from ucf.web.metrics import COUNTERS, JOURNAL_LIMIT, Family, Metrics
from ucf.web.metrics_registry import MetricFamilies

Call = Callable[[Metrics], None]


@dataclass(frozen=True)
class Step:
    """One observation, made at ``when`` (the clock both versions read)."""

    call: Call
    when: float


names = st.sampled_from(["github", "jira", 'a"b\\c\nd', "", "ünï"])
seconds = st.floats(min_value=0, max_value=1e6) | st.sampled_from([0.001, 0.0025, 10, 300])
counts = st.integers(min_value=0, max_value=10**6)


def _request(method: str, route: str, status: int, took: float) -> Call:
    return lambda m: m.observe_request(method, route, status, took)


def _poll(connector: str, status: str, took: float, truncated: bool, latency: float | None,
          inserted: int, duplicates: int) -> Call:  # fmt: skip
    result = PollResult(
        project_id="p",
        connector_id=connector,
        status=status,  # type: ignore[arg-type]
        duration_seconds=took,
        truncated=truncated,
        latency_ms=latency,
        inserted=inserted,
        duplicates=duplicates,
    )
    return lambda m: m.observe_poll(result)


calls: st.SearchStrategy[tuple[Call, str]] = st.one_of(
    st.builds(
        lambda *a: (_request(*a), "request"),
        st.sampled_from(["GET", "POST"]),
        st.sampled_from(["/api/webhooks/{connectorId}/{projectId}", "/healthz", 'a"b\\c']),
        st.sampled_from([200, 202, 401, 404, 500]),
        seconds,
    ),
    st.builds(lambda c: ((lambda m: m.rate_limited(c)), "rate_limited"), names),
    st.builds(
        lambda c, r: ((lambda m: m.verification_failed(c, r)), "verification_failed"),
        names,
        st.sampled_from(["signature", "timestamp"]),
    ),
    st.builds(lambda c: ((lambda m: m.ignored(c, "ping")), "ignored"), names),
    st.builds(lambda c, i, d: ((lambda m: m.ingested(c, i, d)), "ingested"), names, counts, counts),
    st.builds(
        lambda *a: (_poll(*a), "poll"),
        names,
        st.sampled_from(["ok", "failed", "skipped", "stopped", "conflict"]),
        seconds,
        st.booleans(),
        st.none() | seconds,
        counts,
        counts,
    ),
)
steps = st.lists(
    st.builds(
        lambda call, when: Step(call[0], when),
        calls,
        st.floats(min_value=1.7e9, max_value=1.8e9),
    ),
    max_size=40,
)


@contextmanager
def clock() -> Iterator[Callable[[float], None]]:
    """``time.time`` (which prometheus_client and the journal read) set by the test."""
    now = [0.0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: now[0])
        yield lambda when: now.__setitem__(0, when)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_a_scrape_after_the_replay_reads_what_counting_live_would_have(run: list[Step]) -> None:
    live, deferred = Metrics(), Metrics()
    with clock() as set_clock:
        live.render()  # built before anything is counted: prometheus_client counts live
        for step in run:
            set_clock(step.when)
            step.call(live)
            step.call(deferred)
        set_clock(2e9)  # the scrape is later than every observation
        assert deferred.render() == live.render()


def test_each_family_named_in_the_journal_is_one_of_the_libraries_metrics() -> None:
    families = MetricFamilies()
    for family in get_args(Family):
        kind = type(getattr(families, family)).__name__
        assert (kind == "Counter") == (family in COUNTERS), family
        assert kind in ("Counter", "Histogram"), family


def test_the_journal_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "JOURNAL_LIMIT", 4)
    metrics = Metrics()
    metrics.observe_request("POST", "/r", 200, 0.01)
    metrics.ingested("github", 1, 0)
    assert metrics._families is None
    metrics.ingested("github", 0, 2)  # the fourth update: built, the journal replayed
    assert metrics._families is not None
    assert metrics._journal == []
    metrics.ingested("github", 3, 0)
    text = metrics.render().decode()
    assert 'ucf_signals_ingested_total{connector="github",via="webhook"} 4.0' in text
    assert 'ucf_signal_duplicates_total{connector="github",via="webhook"} 2.0' in text
    assert 'ucf_http_requests_total{method="POST",route="/r",status="200"} 1.0' in text
    assert JOURNAL_LIMIT >= 1024


def test_a_counter_refuses_to_go_down_before_and_after_the_first_scrape() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="non-negative"):
        metrics.ingested("github", -1, 0)
    metrics.render()
    with pytest.raises(ValueError, match="non-negative"):
        metrics.ingested("github", -1, 0)


def test_the_content_type_is_prometheus_clients() -> None:
    assert Metrics.content_type == CONTENT_TYPE_LATEST


def test_counting_does_not_import_prometheus_client() -> None:
    probe = (
        "import sys\n"
        "from ucf.web.metrics import Metrics\n"
        "m = Metrics()\n"
        "m.observe_request('POST', '/r', 200, 0.01)\n"
        "m.ingested('github', 1, 1)\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "assert b'ucf_signals_ingested_total' in m.render()\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)


class LibraryCounted(Metrics):
    """The reference: every update made at once with prometheus_client's own ``inc``,
    ``observe`` or ``set`` on a child of the same families (what ucf counted with before
    it kept its own tallies)."""

    def __init__(self) -> None:
        super().__init__()
        self.library = MetricFamilies()

    def _update(self, family: Family, labels: tuple[str, ...], value: float = 1) -> None:
        metric = getattr(self.library, family)
        child = metric.labels(*labels)
        if isinstance(metric, Counter):
            child.inc(value)
        else:
            child.observe(value)

    def render(self) -> bytes:
        return generate_latest(self.library.registry)


odd_seconds = seconds | st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(
    steps,
    st.lists(st.tuples(st.sampled_from(["/a", "/b"]), st.sampled_from([200, 500]), odd_seconds)),
)
def test_a_scrape_reads_what_prometheus_clients_own_counting_would_have(
    run: list[Step], requests: list[tuple[str, int, float]]
) -> None:
    library, tallied, journaled = LibraryCounted(), Metrics(), Metrics()
    with clock() as set_clock:
        tallied.render()  # built first: every update goes to the tallies
        for step in run:
            set_clock(step.when)
            for metrics in (library, tallied, journaled):
                step.call(metrics)
        for number, (route, status, took) in enumerate(requests):
            set_clock(1.9e9 + number)
            for metrics in (library, tallied, journaled):
                metrics.observe_request("POST", route, status, took)
        set_clock(2e9)
        expected = library.render()
        assert tallied.render() == expected
        assert journaled.render() == expected
        tallied.ingested("github", 2, 1)  # counted on after a scrape, scraped again
        library.ingested("github", 2, 1)
        assert tallied.render() == library.render()


def test_a_request_counts_in_the_same_tallies_as_the_generic_update() -> None:
    metrics = Metrics()
    metrics.render()
    metrics.observe_request("POST", "/r", 200, 0.003)
    metrics._update("requests", ("POST", "/r", "200"))
    metrics._update("request_seconds", ("/r",), 0.02)
    metrics.observe_request("POST", "/r", 200, 7.0)
    text = metrics.render().decode()
    assert 'ucf_http_requests_total{method="POST",route="/r",status="200"} 3.0' in text
    assert 'ucf_http_request_duration_seconds_count{route="/r"} 3.0' in text
    assert 'ucf_http_request_duration_seconds_bucket{le="0.005",route="/r"} 1.0' in text
    assert 'ucf_http_request_duration_seconds_sum{route="/r"} 7.023' in text
