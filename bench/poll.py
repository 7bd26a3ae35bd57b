"""Poll throughput end to end: ucf against a hand-written loop and dlt, same fake, same run.

A fake GitHub ``GET /repos/{o}/{r}/issues`` (the fake kit, on loopback, in this
process) serves 20 000 realistic issues (``github_items.py``), oldest update
first, 100 per page, paged by ``Link`` header. Each contender runs in its own
subprocess and reads every page:

* **ucf** — ``poll_instance`` on a configured instance: lease, the shipped
  ``github-issues`` descriptor's mapping, sanitiser, dedup insert per page and
  the checkpoint compare-and-set after each page, into SQLite. Two descriptor
  settings are changed for the run, both outside the measured work:
  ``rateLimitRpm`` (GitHub's 60/min would pace the poll to minutes) and
  ``maxPages`` (200 pages is past the default per-poll guard). The instance
  starts from a checkpoint before the oldest issue, as after a previous poll.
  Once set up, the process freezes its start-up heap and collects the young
  generation every 20 000 allocations, as ``ucf worker`` and ``ucf serve`` do
  before their first poll (``ucf.runtime.heap``).
* **minimal** — the minimal floor: what an engineer writes when all they want
  is the issues in a table: an httpx loop following ``Link``, a function that
  builds only the eight fields they would map (dedup key, id, number, title,
  state, URL, author, update time), ``INSERT OR IGNORE`` on the dedup key, a
  commit per page. No signal envelope, no sanitiser.
* **floor** — the hand-written floor that builds the very signals ucf builds:
  the same loop with ``bench/mapping.py``'s hand-written mapping (identical
  signals), stored as JSON with ``INSERT OR IGNORE``, a commit per page.
* **dlt** — ``rest_api_source`` with dlt's ``header_link`` paginator, each
  configuration twice: its defaults (raw issues normalised into tables) and
  its fastest documented setup (``add_map`` with the same hand-written mapping,
  ``max_table_nesting=0``, ``loader_file_format="jsonl"``), loaded to dlt's
  local **filesystem** destination, to **duckdb** (a database file) and to
  **SQLite** through dlt's ``sqlalchemy`` destination (the database ucf
  writes; its fastest setup keeps the destination's own ``typed-jsonl``
  format, since its only other one, parquet, needs pyarrow).
* **ucf-jira** — the same ``poll_instance`` over the native Jira connector
  (``ucf.native.jira``: its own JQL paging and normaliser, no descriptor
  mapping) against a Jira search fake serving the same number of issues as the
  Jira fake lays them out (every field the poll asks for, ``expand=changelog``),
  100 a page by ``nextPageToken``. One setting is changed outside the measured
  work: the source's ``rateLimitRpm`` (100/min would pace the poll to minutes).
  No new target: it is reported beside the GitHub run (same shape).

``--loop-lag`` answers another question: how late does ``ucf serve``'s event
loop answer anything else (a webhook delivery) while it polls? It runs the ucf
contender twice more, each with a task that sleeps 1 ms at a time and records
how late it wakes (idle for half a second first, then for the whole poll):
once as shipped, and once with the store's hand-over turned off
(``HAND_OVER_LIMIT = 0``: the loop never waits for a page's statements), so
the lag the hand-over adds is measured beside the lag the mapping itself
causes. The ticker costs the poll a little, so these runs print no targets.

Printed per contender: items/s (20 000 / wall time of the work itself, imports
and set-up excluded), CPU per item, peak RSS of its process (``VmHWM``) (for
ucf's runs, on Linux, that CPU time split between the event loop's thread and
the SQLite store's thread), then
the targets with their verdicts: ucf ≥ 1.5× dlt's fastest configuration of any
destination, ≥ 3× dlt into a database, ≥ 40 % of the minimal floor, peak RSS
≤ 100 MiB.

    make bench-poll        # or: uv run python bench/poll.py [--items N] [--repeat N]
    uv run python bench/poll.py --profile     # where ucf's time goes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from github_items import github_issues, minimal_row
from ucf.fakes import FakeRequest, FakeResponse, FakeServer

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "src/ucf/catalogue/github-issues.json"
OWNER, REPO = "octo", "hello"
TOKEN = "ghp_bench000000000000000000000000000000"
PAGE_SIZE = 100
START_CHECKPOINT = "2023-12-31T00:00:00.000Z"  # before the first issue of github_items


# --------------------------------------------------------------------------- the fake


class Issues:
    """Pre-serialised pages, so the fake's own cost is one dict lookup per request."""

    def __init__(self, count: int) -> None:
        items = sorted(github_issues(count), key=lambda i: (i["updated_at"], i["id"]))
        self.pages = [
            json.dumps(items[start : start + PAGE_SIZE]).encode()
            for start in range(0, len(items), PAGE_SIZE)
        ]
        self.requests = 0

    def __call__(self, request: FakeRequest) -> FakeResponse:
        self.requests += 1
        page = int(request.param("page") or "1")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if page < len(self.pages):
            following = request.url_for(
                f"/repos/{OWNER}/{REPO}/issues?per_page={PAGE_SIZE}&page={page + 1}"
            )
            headers["Link"] = f'<{following}>; rel="next"'
        body = self.pages[page - 1] if 1 <= page <= len(self.pages) else b"[]"
        return FakeResponse(status=200, headers=headers, body=body)


class JiraSearch:
    """``POST /rest/api/3/search/jql`` over pre-serialised pages (``nextPageToken`` = the
    next page's number; the JQL is not interpreted: every issue is in the window)."""

    def __init__(self, count: int) -> None:
        from datetime import UTC, datetime

        from ucf.fakes.jira import Dataset
        from ucf.native.jira.source import FIELDS

        data = Dataset(datetime.now(UTC), ops=count, dev=0)
        issues = sorted(
            (i for i in data.issues.values() if i.updated >= data.issues[10001].updated),
            key=lambda i: (i.updated, i.id),
        )[:count]
        rendered = [i.json(set(FIELDS), changelog=True) for i in issues]
        self.pages: list[bytes] = []
        for start in range(0, len(rendered), PAGE_SIZE):
            number = start // PAGE_SIZE + 1
            last = start + PAGE_SIZE >= len(rendered)
            body: dict[str, Any] = {"issues": rendered[start : start + PAGE_SIZE], "isLast": last}
            if not last:
                body["nextPageToken"] = str(number + 1)
            self.pages.append(json.dumps(body).encode())

    def __call__(self, request: FakeRequest) -> FakeResponse:
        token = request.json().get("nextPageToken")
        page = int(token) if token else 1
        return FakeResponse(
            status=200, headers={"Content-Type": "application/json"}, body=self.pages[page - 1]
        )


def jira_myself(request: FakeRequest) -> FakeResponse:
    from ucf.fakes.jira import ZONE_NAME

    return FakeResponse.json({"accountId": "bench", "timeZone": ZONE_NAME})


# --------------------------------------------------------------------------- contenders


@dataclass
class Outcome:
    items: int
    stored: int
    seconds: float
    cpu_seconds: float = 0.0
    """CPU time of the contender's process (all its threads) over the same window."""
    thread_cpu_seconds: dict[str, float] = field(default_factory=dict)
    """ucf's runs: that CPU time split by thread (see :func:`thread_cpu`)."""
    loop_lag_ms: dict[str, float] = field(default_factory=dict)
    """``--loop-lag`` runs: percentiles of the event loop's lag, idle and while polling."""


class LoopLag:
    """How late a 1 ms sleep wakes, over and over: the event loop's lag.

    Whatever else the loop serves (a webhook delivery arriving mid-poll) waits
    about as long before its first line runs.
    """

    PERIOD = 0.001

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.PERIOD
            await asyncio.sleep(self.PERIOD)
            self.lags.append(loop.time() - due)

    def start(self) -> None:
        self.lags = []
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> dict[str, float]:
        """p50, p99 and the largest lag since :meth:`start`, in ms."""
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        lags = sorted(self.lags) or [0.0]

        def at(quantile: float) -> float:
            return lags[min(len(lags) - 1, int(quantile * len(lags)))] * 1000

        return {"p50": at(0.50), "p99": at(0.99), "max": lags[-1] * 1000}


def thread_cpu() -> dict[int, tuple[str, int]]:
    """Each live Python thread of this process: its name and the CPU time it has run, in ns.

    Linux's per-task ``schedstat`` (nanoseconds, unlike ``stat``'s clock ticks),
    found by the thread's native id; empty elsewhere. Read before and after a
    poll, it splits the process's CPU time between the event loop and the
    store's thread without touching either.
    """
    found: dict[int, tuple[str, int]] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        if tid is None:
            continue
        try:
            ran = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile, or no schedstat here
        found[tid] = (thread.name, ran)
    return found


def thread_split(before: dict[int, tuple[str, int]], main: int) -> dict[str, float]:
    """CPU seconds per kind of thread since ``before``: the event loop, the SQLite store's
    thread, everything else (the secrets store, the executor's other threads)."""
    if not before:  # not Linux: nothing to split
        return {}
    split = {"event loop": 0.0, "store": 0.0, "other": 0.0}
    for tid, (name, ran) in thread_cpu().items():
        seconds = (ran - before.get(tid, (name, 0))[1]) / 1e9
        kind = (
            "event loop" if tid == main else "store" if name.startswith("ucf-sqlite") else "other"
        )
        split[kind] += seconds
    return split


def first_url(base: str) -> str:
    return (
        f"{base}/repos/{OWNER}/{REPO}/issues?state=all&sort=updated&direction=asc"
        f"&per_page={PAGE_SIZE}"
    )


def run_floor(base: str, workdir: Path) -> Outcome:
    import sqlite3

    import httpx

    from mapping import hand_written

    db = sqlite3.connect(workdir / "floor.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE signals (dedup_key TEXT PRIMARY KEY, id TEXT, signal TEXT)")
    items = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        url: str | None = first_url(base)
        while url:
            response = client.get(url)
            response.raise_for_status()
            page = response.json()
            items += len(page)
            rows = []
            for item in page:
                mapped = hand_written(item, "github-issues", "bench")
                rows.append((mapped.dedup_key, mapped.wire["id"], json.dumps(mapped.wire)))
            db.executemany("INSERT OR IGNORE INTO signals VALUES (?, ?, ?)", rows)
            db.commit()
            url = response.links.get("next", {}).get("url")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stored = db.execute("SELECT count(*) FROM signals").fetchone()[0]
    db.close()
    return Outcome(items, stored, seconds, cpu)


def run_minimal(base: str, workdir: Path) -> Outcome:
    """The minimal floor: httpx, eight fields per issue, ``INSERT OR IGNORE``, a commit per page."""
    import sqlite3

    import httpx

    db = sqlite3.connect(workdir / "minimal.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE issues (dedup_key TEXT PRIMARY KEY, id INTEGER, number INTEGER,"
        " title TEXT, state TEXT, url TEXT, author TEXT, updated_at TEXT)"
    )
    items = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        url: str | None = first_url(base)
        while url:
            response = client.get(url)
            response.raise_for_status()
            page = response.json()
            items += len(page)
            db.executemany(
                "INSERT OR IGNORE INTO issues VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [minimal_row(item) for item in page],
            )
            db.commit()
            url = response.links.get("next", {}).get("url")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stored = db.execute("SELECT count(*) FROM issues").fetchone()[0]
    db.close()
    return Outcome(items, stored, seconds, cpu)


async def _ucf(base: str, workdir: Path, profile: bool, hand_over: bool | None = None) -> Outcome:
    """``hand_over``: None for the measured run; True or False for a ``--loop-lag`` run
    (False turns the store's hand-over off)."""
    import dataclasses
    from datetime import UTC, datetime

    if hand_over is False:
        from ucf.stores.sqlite import database

        database.HAND_OVER_LIMIT = 0  # the loop never waits for a page (a Final, patched here)

    from ucf.runtime.heap import freeze_startup_heap, serve_with_fewer_collections
    from ucf.service.context import UcfContext
    from ucf.service.poll import poll_instance
    from ucf.service.settings import Settings

    settings = Settings.from_env({"UCF_ALLOW_HOSTS": "127.0.0.1"}, data_dir=workdir)
    settings = dataclasses.replace(settings, max_concurrent_polls=1)
    async with await UcfContext.open(settings) as context:
        descriptor = copy.deepcopy(json.loads(CATALOGUE.read_text()))
        polling = descriptor["ingestion"]["polling"]
        polling["rateLimitRpm"] = 1_000_000
        polling["pagination"]["maxPages"] = 10_000
        await context.connectors.edit("github-issues", descriptor)
        await context.instances.create(
            "bench",
            "github-issues",
            credentials={"token": TOKEN},
            config={"baseUrl": base, "owner": OWNER, "repo": REPO},
        )
        await context.store.checkpoints.compare_and_set(
            "bench",
            "github-issues",
            expected_version=0,
            value=START_CHECKPOINT,
            now=datetime.now(UTC),
        )
        freeze_startup_heap()  # as ucf worker and ucf serve do once started
        serve_with_fewer_collections()  # likewise
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        ticker, lag = LoopLag(), {}
        if hand_over is not None:
            ticker.start()
            await asyncio.sleep(0.5)
            lag = {f"idle {k}": v for k, v in (await ticker.stop()).items()}
            ticker.start()
        threads = thread_cpu()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = await poll_instance(context, "bench", "github-issues")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if hand_over is not None:
            lag |= {f"polling {k}": v for k, v in (await ticker.stop()).items()}
        split = thread_split(threads, threading.get_native_id())
        if profiler is not None:
            import pstats

            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
        if result.status != "ok":
            raise SystemExit(f"ucf poll failed: {result.error}")
        counts = await context.store.signals.counts("bench", "github-issues", now=datetime.now(UTC))
    return Outcome(result.items, counts.last_24h, seconds, cpu, split, lag)


def run_ucf(base: str, workdir: Path, profile: bool = False) -> Outcome:
    return asyncio.run(_ucf(base, workdir, profile))


async def _ucf_jira(base: str, workdir: Path) -> Outcome:
    import dataclasses
    from datetime import UTC, datetime

    from ucf.fakes.jira import JiraScenario
    from ucf.native.jira.source import JiraSource
    from ucf.runtime.heap import freeze_startup_heap, serve_with_fewer_collections
    from ucf.service.context import UcfContext
    from ucf.service.poll import poll_instance
    from ucf.service.settings import Settings

    JiraSource.schedule = dataclasses.replace(JiraSource.schedule, rate_limit_rpm=1_000_000)
    settings = Settings.from_env({"UCF_ALLOW_HOSTS": "127.0.0.1"}, data_dir=workdir)
    settings = dataclasses.replace(settings, max_concurrent_polls=1)
    async with await UcfContext.open(settings) as context:
        scenario = JiraScenario()
        await context.instances.create(
            "bench", "jira", credentials=scenario.credentials(), config={"siteUrl": base}
        )
        freeze_startup_heap()  # as ucf worker and ucf serve do once started
        serve_with_fewer_collections()  # likewise
        threads = thread_cpu()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = await poll_instance(context, "bench", "jira")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        split = thread_split(threads, threading.get_native_id())
        if result.status != "ok":
            raise SystemExit(f"ucf jira poll failed: {result.error}")
        counts = await context.store.signals.counts("bench", "jira", now=datetime.now(UTC))
    return Outcome(result.items, counts.last_24h, seconds, cpu, split)


def run_ucf_jira(base: str, workdir: Path) -> Outcome:
    return asyncio.run(_ucf_jira(base, workdir))


def _files(workdir: Path) -> Any:
    import dlt

    return dlt.destinations.filesystem(bucket_url=str(workdir / "lake"))


def _duckdb(workdir: Path) -> Any:
    import dlt

    return dlt.destinations.duckdb(str(workdir / "bench.duckdb"))


def _sqlite(workdir: Path) -> Any:
    """SQLite through dlt's sqlalchemy destination: the database ucf itself writes."""
    import dlt

    return dlt.destinations.sqlalchemy(f"sqlite:///{workdir / 'bench.sqlite'}")


_FAST_FORMATS: dict[Callable[[Path], Any], str | None] = {
    _files: "jsonl",
    _duckdb: "jsonl",
    _sqlite: None,  # its preferred typed-jsonl; its only other rows format, parquet, needs pyarrow
}


def _dlt(
    base: str, workdir: Path, *, fast: bool, destination: Callable[[Path], Any] = _files
) -> Outcome:
    """dlt's REST API source into ``destination`` (local files by default)."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.rest_api import rest_api_source

    from mapping import hand_written

    source = rest_api_source(
        {
            "client": {
                "base_url": f"{base}/",
                "auth": {"type": "bearer", "token": TOKEN},
                "paginator": "header_link",
            },
            "resources": [
                {
                    "name": "issues",
                    "endpoint": {
                        "path": f"repos/{OWNER}/{REPO}/issues",
                        "params": {
                            "state": "all",
                            "sort": "updated",
                            "direction": "asc",
                            "per_page": PAGE_SIZE,
                        },
                        "data_selector": "$",
                    },
                }
            ],
        },
        max_table_nesting=0 if fast else None,
    )
    counted = {"items": 0}

    def count(item: dict[str, Any]) -> dict[str, Any]:
        counted["items"] += 1
        return item

    def to_signal(item: dict[str, Any]) -> dict[str, Any]:
        mapped = hand_written(item, "github-issues", "bench")
        return {"dedup_key": mapped.dedup_key, **mapped.wire}

    resource = source.resources["issues"]
    resource.add_map(count)
    if fast:
        resource.add_map(to_signal)
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{'fast' if fast else 'default'}",
        pipelines_dir=str(workdir / "pipelines"),
        destination=destination(workdir),
        dataset_name="github",
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    info = pipeline.run(source, loader_file_format=_FAST_FORMATS[destination] if fast else None)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("issues", 0)
    return Outcome(counted["items"], rows, seconds, cpu)


CONTENDERS: dict[str, Callable[[str, Path], Outcome]] = {
    "minimal": run_minimal,
    "floor": run_floor,
    "ucf": run_ucf,
    "ucf-jira": run_ucf_jira,
    "dlt-default": lambda base, workdir: _dlt(base, workdir, fast=False),
    "dlt-fast": lambda base, workdir: _dlt(base, workdir, fast=True),
    "dlt-duckdb-default": lambda base, workdir: _dlt(
        base, workdir, fast=False, destination=_duckdb
    ),
    "dlt-duckdb-fast": lambda base, workdir: _dlt(base, workdir, fast=True, destination=_duckdb),
    "dlt-sqlite-default": lambda base, workdir: _dlt(
        base, workdir, fast=False, destination=_sqlite
    ),
    "dlt-sqlite-fast": lambda base, workdir: _dlt(base, workdir, fast=True, destination=_sqlite),
}
LAG_CONTENDERS: dict[str, Callable[[str, Path], Outcome]] = {
    "ucf-lag": lambda base, workdir: asyncio.run(_ucf(base, workdir, False, hand_over=True)),
    "ucf-lag-no-hand-over": lambda base, workdir: asyncio.run(
        _ucf(base, workdir, False, hand_over=False)
    ),
}
LABELS = {
    "minimal": "minimal floor: httpx, 8 fields, sqlite3",
    "floor": "hand-written full signals + sqlite3",
    "ucf": "ucf poll_instance",
    "ucf-jira": "ucf poll_instance, native Jira",
    "dlt-default": "dlt rest_api, defaults",
    "dlt-fast": "dlt rest_api, add_map + jsonl",
    "dlt-duckdb-default": "dlt rest_api → duckdb, defaults",
    "dlt-duckdb-fast": "dlt rest_api → duckdb, add_map + jsonl",
    "dlt-sqlite-default": "dlt rest_api → SQLite (sqlalchemy), defaults",
    "dlt-sqlite-fast": "dlt rest_api → SQLite (sqlalchemy), add_map",
    "ucf-lag": "ucf poll_instance + 1 ms ticker",
    "ucf-lag-no-hand-over": "the same, hand-over off",
}


# --------------------------------------------------------------------------- parent


@dataclass
class Measured:
    rate: float
    rss_mib: float
    outcome: Outcome


def measure(name: str, base: str, *, profile: bool) -> Measured:
    """One contender in a fresh process: its own timing, the kernel's peak RSS."""
    with tempfile.TemporaryDirectory(prefix=f"ucf-bench-{name}-") as workdir:
        command = [sys.executable, __file__, "--child", name, "--base", base, "--workdir", workdir]
        if profile:
            command.append("--profile")
        env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
        errors = Path(workdir) / "stderr.txt"
        with errors.open("wb") as stderr:
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
            assert child.stdout is not None
            out = child.stdout.read()
            _, status, usage = os.wait4(child.pid, 0)
        err = errors.read_bytes()
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            sys.stderr.write(err.decode(errors="replace"))
            raise SystemExit(f"{name} failed (exit {child.returncode})")
        if profile:
            sys.stderr.write(err.decode(errors="replace"))
        data = json.loads(out.decode().strip().splitlines()[-1])
    peak_kib = data.pop("peak_kib") or usage.ru_maxrss
    outcome = Outcome(**data)
    return Measured(outcome.items / outcome.seconds, peak_kib / 1024, outcome)


def peak_rss_kib() -> int | None:
    """This process image's peak RSS (Linux ``VmHWM``).

    ``wait4``'s ``ru_maxrss`` would be the obvious source, but Linux carries the
    pre-``exec`` high-water mark of the forked parent (this script with 20 000
    issues and the fake loaded) into the child's figure, so every contender
    would report the parent's size.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def child_main(name: str, base: str, workdir: str, profile: bool) -> None:
    if name == "ucf":
        outcome = run_ucf(base, Path(workdir), profile)
    else:
        outcome = {**CONTENDERS, **LAG_CONTENDERS}[name](base, Path(workdir))
    print(json.dumps({**outcome.__dict__, "peak_kib": peak_rss_kib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs per contender")
    parser.add_argument("--only", nargs="*", choices=sorted(CONTENDERS), default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile the ucf run")
    parser.add_argument(
        "--loop-lag",
        action="store_true",
        help="the event loop's lag while ucf polls, with and without the store's hand-over",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.base, args.workdir, args.profile)
        return

    names = args.only or list(CONTENDERS)
    if args.profile:
        names = ["ucf"]
    if args.loop_lag:
        names = list(LAG_CONTENDERS)
    issues = Issues(args.items)
    server = FakeServer()
    server.add_route("GET", "/repos/{owner}/{repo}/issues", issues)
    if "ucf-jira" in names:
        server.add_route("POST", "/rest/api/3/search/jql", JiraSearch(args.items))
        server.add_route("GET", "/rest/api/3/myself", jira_myself)
    results: dict[str, Measured] = {}
    print(
        f"polling {args.items:,} GitHub issues, {len(issues.pages)} pages of {PAGE_SIZE}"
        f" (best of {args.repeat}; each contender in its own process)"
    )
    runs: dict[str, list[Measured]] = {name: [] for name in names}
    with server:
        for _ in range(args.repeat):  # interleaved, so every contender sees the same load
            for name in names:
                runs[name].append(measure(name, server.base_url, profile=args.profile))
    for name in names:
        best = max(runs[name], key=lambda m: m.rate)
        best.rss_mib = max(m.rss_mib for m in runs[name])
        results[name] = best
        o = best.outcome
        print(
            f"  {LABELS[name]:<46} {best.rate:>9,.0f} items/s  {best.rss_mib:>6.0f} MiB peak"
            f"  {o.cpu_seconds * 1e6 / max(o.items, 1):>5.0f} µs CPU/item"
            f"   ({o.items:,} items, {o.stored:,} stored, {o.seconds:.2f} s)"
        )
        if o.thread_cpu_seconds:
            per_item = {k: v * 1e6 / max(o.items, 1) for k, v in o.thread_cpu_seconds.items()}
            print(
                f"  {'':<46} CPU/item by thread: "
                + ", ".join(f"{kind} {us:.0f} µs" for kind, us in per_item.items())
            )
        if o.loop_lag_ms:
            print(
                f"  {'':<46} event loop lag (ms): "
                + ", ".join(f"{k} {v:.2f}" for k, v in o.loop_lag_ms.items())
            )
        if o.items != args.items:
            raise SystemExit(f"{name} read {o.items} items, not {args.items}")
    if "ucf-jira" in results:
        jira = results["ucf-jira"]
        line = f"  native Jira poll: {jira.rate:,.0f} items/s, {jira.rss_mib:.0f} MiB peak"
        if "ucf" in results:
            line += f" ({jira.rate / results['ucf'].rate:.0%} of ucf's GitHub rate"
            if "floor" in results:
                line += f", {jira.rate / results['floor'].rate:.0%} of the GitHub floor"
            line += ")"
        print(line)
    if "ucf" not in results:
        return
    print_targets(results)


FILE_PEERS = ("dlt-default", "dlt-fast")
DATABASE_PEERS = ("dlt-duckdb-default", "dlt-duckdb-fast", "dlt-sqlite-default", "dlt-sqlite-fast")


def print_targets(results: dict[str, Measured]) -> None:
    """The issue's targets, each with its verdict (a benchmark reports; it never fails a build)."""
    ucf = results["ucf"]

    def check(label: str, met: bool, detail: str) -> None:
        print(f"  {'✔' if met else '✘'} {label}: {detail}")

    print("targets:")
    peers = [n for n in (*FILE_PEERS, *DATABASE_PEERS) if n in results]
    if peers:
        fastest = max(peers, key=lambda n: results[n].rate)
        ratio = ucf.rate / results[fastest].rate
        check(
            "≥ 1.5× dlt's fastest configuration, any destination",
            ratio >= 1.5,
            f"{ratio:.2f}× ({LABELS[fastest]}, {results[fastest].rate:,.0f}/s)",
        )
    databases = [n for n in DATABASE_PEERS if n in results]
    if databases:
        fastest = max(databases, key=lambda n: results[n].rate)
        ratio = ucf.rate / results[fastest].rate
        check(
            "≥ 3× dlt into a database",
            ratio >= 3,
            f"{ratio:.2f}× ({LABELS[fastest]}, {results[fastest].rate:,.0f}/s)",
        )
    if "minimal" in results:
        ratio = ucf.rate / results["minimal"].rate
        check("≥ 40 % of the minimal floor", ratio >= 0.40, f"{ratio:.0%}")
    if "floor" in results:  # for reference: the floor that builds the same signals as ucf
        print(f"    (ucf / hand-written full signals: {ucf.rate / results['floor'].rate:.0%})")
    check("peak RSS ≤ 100 MiB", ucf.rss_mib <= 100, f"{ucf.rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
