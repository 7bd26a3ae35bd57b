"""``ucf signals tail`` and ``ucf signals list`` run as a user runs them: the real console
script reading a SQLite store that the test writes to at the same time."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ucf.core.signal import NormalisedSignal, dedup_key, iso_utc, signal_id
from ucf.stores import open_store
from ucf.stores.models import SignalWrite, epoch_ms

UCF = str(Path(sys.executable).parent / "ucf")
NOW = datetime.now(UTC).replace(microsecond=0)


def write(project: str, number: int, *, at: datetime, summary: str | None = None) -> SignalWrite:
    key = dedup_key("github-issues", project, str(number), iso_utc(at))
    signal = NormalisedSignal(
        id=signal_id(key, epoch_ms(at)),
        source="github-issues",
        timestamp=iso_utc(at),
        type="issue.opened",
        summary=summary or f"Issue {number}",
        raw={"number": number},
        project_id=project,
    )
    return SignalWrite.of(signal, dedup_key=key, received_at=datetime.now(UTC))


def store_signals(url: str, writes: list[SignalWrite], *, instances: tuple[str, ...] = ()) -> None:
    async def run() -> None:
        async with open_store(url) as store:
            for project in instances:
                await store.instances.create(project, "github-issues", config={}, now=NOW)
            for item in writes:  # one write each: arrival order is list order
                await store.signals.ingest([item])

    asyncio.run(run())


def ucf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [UCF, *args], capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ)
    )


class Tail:
    """A running ``ucf signals tail``, its stdout read line by line in the background."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [UCF, "signals", "tail", "--interval", "0.1", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)
            if line.startswith("following "):
                self._ready.set()  # the backlog is read: what is stored from now on is new

    def wait_ready(self) -> None:
        assert self._ready.wait(30), "".join(self._stderr)

    def lines(self, count: int, within: float = 15.0) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + within
        while len(got) < count:
            try:
                got.append(self._lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"only {len(got)} of {count} lines: {got}") from None
        return got

    def quiet_for(self, seconds: float) -> list[str]:
        """Lines printed during the next ``seconds`` (there should be none)."""
        time.sleep(seconds)
        extra = []
        while not self._lines.empty():
            extra.append(self._lines.get())
        return extra

    def interrupt(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=15)
        finally:
            self.process.kill()
        time.sleep(0.05)  # let the reader thread take the last of stderr
        return code, "".join(self._stderr)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{(tmp_path / 'ucf.db').as_posix().lstrip('/')}"
    store_signals(url, [])
    return url


@pytest.fixture
def tail_process() -> Iterator[list[Tail]]:
    started: list[Tail] = []
    yield started
    for tail in started:
        if tail.process.poll() is None:
            tail.process.kill()
            tail.process.wait()


def test_tail_prints_the_newest_then_every_new_signal_once_and_stops_on_ctrl_c(
    store_url: str, tail_process: list[Tail]
) -> None:
    old = [write("p1", n, at=NOW - timedelta(minutes=30 - n)) for n in range(12)]
    store_signals(store_url, old)
    tail = Tail("--project", "p1", "--store", store_url, "-n", "3", "--sweep", "0.3")
    tail_process.append(tail)

    first = tail.lines(3)
    tail.wait_ready()
    assert [line.split("  ")[-1] for line in first] == ["Issue 9", "Issue 10", "Issue 11"]

    fresh = [write("p1", n, at=NOW + timedelta(seconds=n)) for n in range(100, 104)]
    late = write("p1", 200, at=NOW - timedelta(hours=3))  # polled item, old timestamp
    elsewhere = write("p2", 300, at=NOW)
    store_signals(store_url, [*fresh[:2], late, *fresh[2:], elsewhere])

    shown = tail.lines(5)
    summaries = [line.split("  ")[-1] for line in shown]
    assert sorted(summaries) == sorted(
        ["Issue 100", "Issue 101", "Issue 102", "Issue 103", "Issue 200"]
    )
    assert (
        summaries.index("Issue 100") < summaries.index("Issue 101") < summaries.index("Issue 103")
    )
    assert tail.quiet_for(0.8) == [], "a signal was printed twice, or another project's leaked"
    first_line = shown[summaries.index("Issue 100")]
    assert first_line.split("  ")[:3] == [
        iso_utc(NOW + timedelta(seconds=100)),
        "github-issues",
        "issue.opened",
    ]

    code, stderr = tail.interrupt()
    assert code == 0
    assert "Traceback" not in stderr
    assert "following p1" in stderr


def test_tail_without_a_project_follows_every_project_as_wire_json(
    store_url: str, tail_process: list[Tail]
) -> None:
    store_signals(store_url, [], instances=("alpha", "beta"))
    tail = Tail("--store", store_url, "--json", "-n", "0")
    tail_process.append(tail)
    tail.wait_ready()

    store_signals(
        store_url, [write("alpha", 1, at=NOW), write("beta", 2, at=NOW + timedelta(seconds=1))]
    )

    received = [json.loads(line) for line in tail.lines(2)]
    assert [(s["projectId"], s["summary"]) for s in received] == [
        ("alpha", "Issue 1"),
        ("beta", "Issue 2"),
    ]
    assert set(received[0]) >= {"id", "source", "timestamp", "type", "summary", "raw", "projectId"}
    code, stderr = tail.interrupt()
    assert (code, "Traceback" in stderr) == (0, False)


def test_tail_filters_by_source_and_type_and_since(
    store_url: str, tail_process: list[Tail]
) -> None:
    store_signals(
        store_url,
        [
            write("p1", 1, at=NOW - timedelta(hours=5)),
            write("p1", 2, at=NOW - timedelta(hours=1)),
            write("p1", 3, at=NOW - timedelta(minutes=1)),
        ],
    )
    tail = Tail("-p", "p1", "--store", store_url, "--since", "2h", "--type", "issue.opened")
    tail_process.append(tail)

    assert [line.split("  ")[-1] for line in tail.lines(2)] == ["Issue 2", "Issue 3"]
    assert tail.quiet_for(0.3) == []
    other = Tail("-p", "p1", "--store", store_url, "--source", "jira", "-n", "5")
    tail_process.append(other)
    other.wait_ready()
    assert other.quiet_for(0.3) == []
    tail.interrupt()
    other.interrupt()


def test_a_summary_cannot_drive_the_terminal(store_url: str) -> None:
    store_signals(
        store_url, [write("p1", 1, at=NOW, summary="Fix \x1b[2J\x1b]0;pwned\x07 now\u202e")]
    )

    result = ucf("signals", "list", "--project", "p1", "--store", store_url)

    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "\u202e" not in result.stdout
    assert "Fix" in result.stdout
    assert "now" in result.stdout


def test_list_pages_newest_first_and_says_how_to_continue(store_url: str) -> None:
    store_signals(store_url, [write("p1", n, at=NOW + timedelta(seconds=n)) for n in range(5)])

    first = ucf("signals", "list", "-p", "p1", "--store", store_url, "--limit", "3")
    assert first.returncode == 0, first.stderr
    assert [line.split("  ")[-1] for line in first.stdout.splitlines()] == [
        "Issue 4",
        "Issue 3",
        "Issue 2",
    ]
    cursor = first.stderr.split("--cursor ")[1].strip()
    rest = ucf("signals", "list", "-p", "p1", "--store", store_url, "--cursor", cursor, "--json")
    assert [json.loads(line)["summary"] for line in rest.stdout.splitlines()] == [
        "Issue 1",
        "Issue 0",
    ]
    assert rest.stderr == ""


def test_list_of_a_project_without_an_instance_names_the_projects_there(store_url: str) -> None:
    """``--project sandbx``: a misspelt project printed nothing, as a project with no
    signals yet does; it says no instance belongs to it and names the projects that have
    one. A project that has one but no signals yet, or none matching, prints nothing."""
    store_signals(store_url, [write("p1", 1, at=NOW)], instances=("p1", "p2"))
    typo = ucf("signals", "list", "-p", "p3", "--store", store_url)
    assert (typo.returncode, typo.stdout) == (0, "")
    assert typo.stderr.startswith("no signals: project 'p3' has no connector instance in ")
    assert typo.stderr.endswith("(projects with one: p1, p2)\n")
    for quiet in (["-p", "p2"], ["-p", "p1", "--type", "issue.closed"]):
        empty = ucf("signals", "list", *quiet, "--store", store_url)
        assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "")


def test_bad_input_is_one_line_not_a_traceback(tmp_path: Path, store_url: str) -> None:
    missing = ucf("signals", "tail", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no ucf store at")
    assert not (tmp_path / "nowhere").exists(), "reading must not create a store"

    for args, fragment in (
        (("--since", "yesterday"), "--since: 'yesterday' is neither"),
        (("--window", "forever"), "--window: 'forever' is not a duration"),
        # past what a datetime holds: OverflowError tracebacks, on tail and list alike
        (("--since", "99999999d"), "--since: '99999999d' is longer than a thousand years"),
        (("--window", "9000000d"), "--window: '9000000d' is longer than a thousand years"),
        (("--since", "9" * 20 + "w"), "longer than a thousand years"),
        (("--since", "9999-12-31T23:59-23:59"), "is outside the years 1-9999 in UTC"),
    ):
        result = ucf("signals", "tail", "--store", store_url, *args)
        assert result.returncode == 2
        assert fragment in result.stderr
        assert "Traceback" not in result.stderr

    too_far = ucf("signals", "list", "-p", "p1", "--store", store_url, "--since", "99999999d")
    assert too_far.returncode == 2
    assert "Traceback" not in too_far.stderr

    bad_cursor = ucf("signals", "list", "-p", "p1", "--store", store_url, "--cursor", "zzz")
    assert bad_cursor.returncode == 1
    assert "Traceback" not in bad_cursor.stderr
    assert bad_cursor.stderr.startswith("error:")
