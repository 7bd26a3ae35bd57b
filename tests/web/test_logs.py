"""The JSON log line: what a log shipper receives for each request."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from ucf.runtime.redaction import SECRETS
from ucf.web.logs import (
    MAX_TEMPLATE_MILLISECONDS,
    REQUEST_ID,
    JsonFormatter,
    _two_places,
    configure_logging,
)
from ucf.web.metrics import Metrics
from ucf.web.request_log import RequestIds, _direct, new_request_id, record_request


@contextmanager
def logging_to(out: TextIO) -> Iterator[None]:
    """ucf's logging configured onto ``out``; the root logger as it was afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), list(root.filters), root.level)
    flags = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    configure_logging(logging.INFO, stream=out)
    try:
        yield
    finally:
        root.handlers[:], root.filters[:] = saved[0], saved[1]
        root.setLevel(saved[2])
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = flags


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    with logging_to(out):
        yield out


@pytest.mark.parametrize(
    "created",
    [1_764_950_400.0, 1_764_950_400.0004999, 1_764_950_400.0015, 1_764_950_400.9999996, 1.5],
)
def test_the_timestamp_is_the_records_time_in_utc_to_the_millisecond(created: float) -> None:
    formatter = JsonFormatter()
    formatter.format(logging.makeLogRecord({"created": created - 7.0, "msg": "warm"}))
    record = logging.makeLogRecord({"created": created, "msg": "x", "name": "t"})

    line = json.loads(formatter.format(record))

    assert line["ts"] == datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


def test_a_line_formatted_while_another_moves_to_the_next_second_keeps_its_own() -> None:
    """The access line is formatted on the event loop outside the handler's lock, while
    any other thread formats its records inside it: the once-a-second prefix must be
    read and replaced whole. Here the other thread runs at the worst moment, right
    after the formatter first stores anything for a new second."""

    class Interleaved(JsonFormatter):
        other: float | None = None
        seen: list[str]

        def __setattr__(self, name: str, value: object) -> None:
            super().__setattr__(name, value)
            other = self.other
            if other is not None:
                object.__setattr__(self, "other", None)
                self.seen.append(self._timestamp(other))

    second = 1_764_950_400.0
    formatter = Interleaved()
    formatter._timestamp(second + 0.25)  # the prefix of that second, made and kept
    formatter.seen = []
    object.__setattr__(formatter, "other", second + 0.5)  # another thread's, a second before

    mine = formatter._timestamp(second + 1.25)

    def iso(created: float) -> str:
        return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")

    assert formatter.seen == [iso(second + 0.5)]
    assert mine == iso(second + 1.25)
    assert formatter._timestamp(second + 1.75) == iso(second + 1.75)


def test_the_access_line_has_its_fields_and_the_request_id(stream: io.StringIO) -> None:
    token = REQUEST_ID.set("req-7")
    try:
        record_request(Metrics(), "POST", "/api/webhooks/{connectorId}/{projectId}", 202, 0.01234)
    finally:
        REQUEST_ID.reset(token)

    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line.pop("ts")
    assert line == {
        "level": "info",
        "logger": "ucf.web.access",
        "message": "POST /api/webhooks/{connectorId}/{projectId} 202",
        "requestId": "req-7",
        "method": "POST",
        "route": "/api/webhooks/{connectorId}/{projectId}",
        "status": 202,
        "durationMs": 12.34,
    }


def test_other_lines_are_still_redacted(stream: io.StringIO) -> None:
    secret = "sk_live_" + "q" * 24
    SECRETS.add(secret)
    logging.getLogger("ucf.web").warning("the upstream refused %s", secret)

    assert secret not in stream.getvalue()
    assert "the upstream refused" in stream.getvalue()


def test_request_ids_are_ulids_of_now_unique_and_in_the_order_they_were_made() -> None:
    ids = RequestIds()
    before = datetime.now(UTC)
    made = [ids() for _ in range(5000)]
    after = datetime.now(UTC)
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    for text in (made[0], made[-1]):
        moment = ULID.from_str(text).datetime  # a valid ULID: 26 Crockford characters
        assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= moment <= after


def _ulid_text(millisecond: int, node: int, count: int) -> str:
    """A request id as its parts say, written out bit by bit (the reference)."""
    value = ((millisecond & (2**48 - 1)) << 80) | (node << 40) | count
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -5, -5))


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def test_request_ids_are_their_millisecond_node_and_counter_across_every_boundary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each id is made of parts kept between ids (the millisecond's, the node's, the
    counter's upper bits): across a new millisecond, a carry out of the counter's low
    10 bits, its wrap past 2**40 and a reseed, each id is still exactly its parts."""
    ids = RequestIds()
    clock = [1_764_950_400_000_000_000]
    monkeypatch.setattr("ucf.web.request_log.time.time_ns", lambda: clock[0])
    for start in (1020, 2**40 - 3, 5 * 1024 - 1):
        ids._counter = start
        node = _node_of(ids)
        for step in range(8):
            if step == 4:
                clock[0] += 1_000_000  # the next millisecond
            made = ids()
            count = (start + step + 1) % 2**40
            assert made == _ulid_text(clock[0] // 1_000_000, node, count)
        count = ids._counter
        ids.reseed()  # a new node, the counter put back where it was: same upper bits
        ids._counter = count
        assert ids() == _ulid_text(clock[0] // 1_000_000, _node_of(ids), count + 1)


def _node_of(ids: RequestIds) -> int:
    return sum(_CROCKFORD.index(c) << (5 * (7 - i)) for i, c in enumerate(ids._node))


def test_each_process_and_each_reseed_draws_its_own_node() -> None:
    first, second = RequestIds(), RequestIds()
    assert first()[10:18] != second()[10:18]
    node = first()[10:18]
    first.reseed()  # what a forked child does before its first id
    assert first()[10:18] != node


@pytest.mark.parametrize(
    "fields",
    [
        {"route": "/api/x", "status": 200, "durationMs": 1.25, "note": "é ✓"},
        {"huge": 2**70, "when": datetime(2026, 1, 2, tzinfo=UTC)},  # orjson refuses the int
        {"keys": {1: "a"}, "odd": "\ud800"},  # non-str key, lone surrogate
    ],
)
def test_a_line_is_compact_json_whichever_writer_takes_it(fields: dict[str, object]) -> None:
    record = logging.makeLogRecord({"msg": "x", "name": "t", "created": 1.0, "ucf_fields": fields})
    record.levelname = "INFO"
    line = JsonFormatter().format(record)
    expected: dict[str, object] = {"ts": "1970-01-01T00:00:01.000+00:00", "level": "info"}
    expected["logger"] = "t"
    expected |= {"message": "x", **fields}
    assert line == json.dumps(expected, ensure_ascii=False, default=str, separators=(",", ":"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_makes_request_ids_of_its_own() -> None:
    """A pre-forking server's workers share the parent's memory: the module's generator
    draws a new node in each child (its fork hook), so no two workers hand out one id."""
    parent = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id to the parent, then out without pytest's teardown
        try:
            os.write(write, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child) == 26, child
    assert child[10:18] != parent[10:18]
    assert new_request_id()[10:18] == parent[10:18]  # the parent keeps its own


@dataclasses.dataclass(frozen=True)
class _Reached:
    """A value whose repr leaves its secret out, as ucf's contexts do (``repr=False``)."""

    url: str
    credential: str = dataclasses.field(repr=False)


def test_a_field_is_written_as_its_str_whichever_writer_takes_it() -> None:
    """A dataclass or a datetime in ``ucf_fields`` is written as ``str()`` writes it, as
    json.dumps(default=str) always did: orjson's own dataclass writer would put every
    field in the line, ``repr=False`` secrets included, and its datetimes differ."""
    fields = {
        "reached": _Reached("https://acme.test", "s3cret-token"),
        "when": datetime(2026, 1, 2, tzinfo=UTC),
    }
    record = logging.makeLogRecord({"msg": "x", "name": "t", "created": 1.0, "ucf_fields": fields})
    record.levelname = "INFO"
    line = JsonFormatter().format(record)
    assert "s3cret-token" not in line
    assert json.loads(line)["reached"] == "_Reached(url='https://acme.test')"
    assert json.loads(line)["when"] == "2026-01-02 00:00:00+00:00"


_ROUTE = "/api/webhooks/{connectorId}/{projectId}"


def _access_line() -> None:
    token = REQUEST_ID.set("req-9")
    try:
        record_request(Metrics(), "POST", _ROUTE, 200, 0.002)
    finally:
        REQUEST_ID.reset(token)


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("where", ["ucf", "ucf.web", "ucf.web.access", ""])
def test_a_handler_a_user_adds_gets_the_access_line_and_so_does_ucfs(
    stream: io.StringIO, where: str
) -> None:
    """The access line skips ``logging``'s record machinery only while ucf's own handler
    is the one place it would go: a handler added on the way, on the root included, gets
    the record, and ucf's handler writes the same line either way."""
    _access_line()
    kept = _Kept()
    logging.getLogger(where or None).addHandler(kept)
    try:
        _access_line()
    finally:
        logging.getLogger(where or None).removeHandler(kept)
    [record] = kept.records
    assert record.getMessage() == f"POST {_ROUTE} 200"
    direct, through_logging = (json.loads(text) for text in stream.getvalue().splitlines())
    assert direct.pop("ts")
    assert through_logging.pop("ts")
    assert direct == through_logging
    assert direct["requestId"] == "req-9"
    assert direct["durationMs"] == 2.0


def test_a_filter_level_or_formatter_a_user_sets_is_honoured(stream: io.StringIO) -> None:
    access = logging.getLogger("ucf.web.access")
    ucf_handler = next(h for h in logging.getLogger().handlers if h.__dict__.get("_ucf_json"))

    access.addFilter(lambda record: False)
    _access_line()
    access.filters.clear()
    assert stream.getvalue() == ""

    ucf_handler.addFilter(refuse := (lambda record: False))
    _access_line()
    ucf_handler.removeFilter(refuse)
    assert stream.getvalue() == ""

    ucf_handler.setLevel(logging.WARNING)
    _access_line()
    ucf_handler.setLevel(logging.NOTSET)
    assert stream.getvalue() == ""

    logging.disable(logging.INFO)
    try:
        _access_line()
    finally:
        logging.disable(logging.NOTSET)
    assert stream.getvalue() == ""

    ucf_handler.setFormatter(logging.Formatter("plain %(message)s"))
    _access_line()
    assert stream.getvalue() == f"plain POST {_ROUTE} 200\n"


@pytest.mark.parametrize(
    "request_id", [None, "req-7", "01JEXAMPLE", 'a"quote', "back\\slash", "tab\there", "ünï", ""]
)
@pytest.mark.parametrize(
    ("method", "route", "status", "duration_ms"),
    [
        ("POST", _ROUTE, 200, 12.34),
        ("OTHER", "unmatched", 404, 0.0),
        ("GET", '/odd/"route"\\ü\n', 500, 0.01),
        ("PATCH", "/x", 201, 123456789.12),
        ("POST", "/x", 200, 1e-05),
        ("POST", "/x", 200, 1e20),
        ("POST", "/x", 200, float("nan")),
        ("POST", "/x", 200, 12.345),
        ("POST", "/x", 200, 0.004),
        ("POST", "/x", 200, 0.005),
        ("POST", "/x", 200, 2.0),
        ("POST", "/x", 200, 12.3),
        ("POST", "/x", 200, 999_999_999_999.99),
        ("POST", "/x", 200, -0.5),
    ],
)
def test_the_access_line_template_writes_what_line_writes(
    request_id: str | None, method: str, route: str, status: int, duration_ms: float
) -> None:
    """The access line is written into a template made once per route and status: the
    same text as the generic line, whatever the request id, route or duration (rounded
    to two places in both)."""
    formatter = JsonFormatter()
    created = 1_764_950_400.0123
    rounded = round(duration_ms, 2)  # the line's durationMs
    fields = {"method": method, "route": route, "status": status, "durationMs": rounded}
    token = REQUEST_ID.set(request_id)
    try:
        for _ in range(2):  # the first line makes the template, the second is written into it
            expected = formatter.line(
                created, "info", "ucf.web.access", f"{method} {route} {status}", fields
            )
            written = formatter.access_line(
                created, "ucf.web.access", method, route, status, duration_ms
            )
            assert written == expected
    finally:
        REQUEST_ID.reset(token)


@given(
    st.floats(min_value=0.0, max_value=MAX_TEMPLATE_MILLISECONDS, exclude_max=True)
    | st.integers(min_value=0, max_value=10**9).map(lambda n: n / 1000)
    | st.integers(min_value=0, max_value=10**9).map(lambda n: n / 100 + 0.005)
)
def test_a_duration_is_written_as_repr_of_its_rounding(milliseconds: float) -> None:
    """The template writes a duration with one formatting pass: the text ``repr`` writes
    of it rounded to two places (halves and thousandths included), over the whole range
    the template takes."""
    assert _two_places(milliseconds) == repr(round(milliseconds, 2))


@contextmanager
def only_ucfs_handler() -> Iterator[None]:
    """The root logger with ucf's handler alone, as in ``ucf serve``: pytest adds its
    capture handlers to the root for each test, and the access line is then logged
    through ``logging`` instead of written directly."""
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers[:] = [h for h in saved if h.__dict__.get("_ucf_json")]
    try:
        assert _direct._sole_handler() is not None  # the direct path is the one taken
        yield
    finally:
        root.handlers[:] = saved


@pytest.fixture
def buffered() -> Iterator[io.BytesIO]:
    """ucf's handler on a block-buffered text stream: a line stays in the buffer unless
    the handler flushes it."""
    raw = io.BytesIO()
    text = io.TextIOWrapper(io.BufferedWriter(raw, buffer_size=1 << 16), encoding="utf-8")
    with logging_to(text):
        yield raw


def test_the_access_line_written_directly_is_flushed_as_the_handler_flushes_a_record(
    buffered: io.BytesIO,
) -> None:
    with only_ucfs_handler():
        record_request(Metrics(), "POST", _ROUTE, 200, 0.002)

    [line] = [json.loads(text) for text in buffered.getvalue().splitlines()]
    assert line["message"] == f"POST {_ROUTE} 200"


def test_an_access_line_the_stream_refuses_is_reported_as_the_handler_reports_it(
    stream: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    """``StreamHandler.emit``'s error handling: ``handleError`` names the line, and the
    request goes on (a closed stream does not raise into it)."""
    stream.close()
    with only_ucfs_handler():
        record_request(Metrics(), "POST", _ROUTE, 200, 0.002)

    reported = capsys.readouterr().err
    assert "--- Logging error ---" in reported
    assert f"POST {_ROUTE} 200" in reported
