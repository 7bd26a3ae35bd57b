"""Webhook gateway throughput: ``ucf serve`` against a bare endpoint that only checks the HMAC.

The load comes from ``wrk`` (a C load generator: one thread, 32 keep-alive
connections, on a core of its own with ``taskset``), so the client is not the
bottleneck it was when a Python generator shared the two cores with the
server. Each server runs pinned to the other core, started the same way
(uvicorn, one worker, the options ``ucf serve`` uses, a socket bound first):

- **bare**: a Starlette route that reads the body, checks its
  ``X-Hub-Signature-256`` HMAC and answers 200 — the floor of what uvicorn,
  the HTTP parsing and the verification cost;
- **minimal** (no target; it says how much of the gap is the work itself): the
  bare check, then what a team hand-writes to keep these deliveries and
  nothing else — ``json.loads``, the eight fields the poll bench's minimal
  floor keeps, ``INSERT OR IGNORE`` into SQLite (WAL, ``synchronous=NORMAL``:
  no fsync per delivery, unlike ucf's acknowledged group commit);
- **ucf**: a real ``ucf serve`` (SQLite in a fresh data directory, scheduler
  off, no sink) with a ``github-issues`` instance created through the API, its
  ``webhookSecret`` among the credentials. ``UCF_WEBHOOK_RPM`` is raised so
  the per-instance rate limit (100/min by default) does not turn the run into
  a rate-limit test; the limiter itself still runs for every delivery.

The deliveries are GitHub ``issues.opened`` webhooks as GitHub documents them
(``X-GitHub-Event``, a unique ``X-GitHub-Delivery``, ``X-Hub-Signature-256:
sha256=…`` over a 3-6 KB payload: the issue, the repository, the sender), each
its own issue with its own ``updated_at``, so every one is a new signal and
none is a duplicate. They are built and signed before the clock starts; a Lua
script hands them to wrk one after the other and stops wrk when the last has
been answered. ``--warmup`` deliveries go first, unmeasured.

Printed for both: req/s, p50 and p99 latency (wrk's), the server's CPU per
delivery (user + system of its process over the measured run, from /proc), and
the targets: ucf p99 < 50 ms, ucf ≥ 50 % of bare req/s, ucf server CPU per
delivery ≤ 3× bare's. Checks that every delivery got a 2xx and that the store
holds one signal per delivery; exit status 1 when a check fails (targets only
report). Each server runs ``--repeat`` times (2 by default), in turn, every run
from a fresh start and an empty store, and the run with the least CPU per
delivery stands for it (every run is listed): the machine's other work only
ever slows a run, and it shifts from minute to minute, so a single run of each
could compare one server's quiet minute with another's busy one. ``--client httpx`` uses the former Python load generator instead of
wrk (for a machine without wrk; it shares the cores with the server and bounds
both figures, so its numbers are labelled as such).

    make bench-webhook      # or: uv run python bench/webhook.py [--deliveries 20000] [--repeat 2]
    uv run python bench/webhook.py --profile DIR    # ucf serve under py-spy

``scripts/bootstrap --bench`` installs wrk (Debian package ``wrk``) when it is
missing and it can (root and apt-get).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from github_items import USERS, github_issue
from ucf.fakes.github import repository, user

HERE = Path(__file__).resolve()
UCF = str(Path(sys.executable).parent / "ucf")
PROJECT = "bench"
CONNECTOR = "github-issues"
SECRET = "bench-webhook-secret-7f3a9c"  # a throwaway secret for a local run
API_TOKEN = "ucf_bench_" + "x" * 32
RPM = 1_000_000_000
TARGET_P99_MS = 50.0
TARGET_RATIO = 0.50
TARGET_CPU_FACTOR = 3.0
START = datetime(2025, 3, 1, tzinfo=UTC)
WEBHOOK_PATH = f"/api/webhooks/{CONNECTOR}/{PROJECT}"


# --------------------------------------------------------------------------- payloads


def deliveries(first: int, count: int, seed: int = 11) -> Iterator[tuple[dict[str, str], bytes]]:
    """Signed ``issues.opened`` deliveries ``first`` … ``first+count-1`` (headers, body)."""
    rng = random.Random(seed + first)
    repo = repository()  # the fake's documented webhook object, about 3 KB
    for index in range(first, first + count):
        issue = github_issue(index + 1, rng, START)
        moment = START + timedelta(seconds=index)
        issue["created_at"] = issue["updated_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        issue["closed_at"], issue["state"], issue["state_reason"] = None, "open", None
        payload = {
            "action": "opened",
            "issue": issue,
            "repository": repo,
            "sender": user(rng.choice(USERS)),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/bench",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature-256": "sha256=" + signature,
        }
        yield headers, body


# --------------------------------------------------------------------------- wrk

# One wrk thread; its requests are the pre-signed deliveries of a file, each sent
# once (a connection that finds none left sends the first one again, and wrk stops
# as soon as the last new one is answered, so at most `connections - 1` repeats are
# in flight and none of them is counted). Statuses are tallied per class.
WRK_SCRIPT = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } ucf_timespec;
int clock_gettime(int clock, ucf_timespec *now);
int kill(int pid, int sig);
int getpid(void);
]]
local clock = ffi.new("ucf_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local first, count = tonumber(args[2]), tonumber(args[3])
  requests, sent, answered, ok, client_errors, server_errors = {}, 0, 0, 0, 0, 0
  started_us, finished_us = 0, 0
  local index = 0
  for line in file:lines() do
    if index >= first + count then break end
    if index >= first then
      local delivery, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["User-Agent"] = "GitHub-Hookshot/bench",
        ["X-GitHub-Event"] = "issues",
        ["X-GitHub-Delivery"] = delivery,
        ["X-GitHub-Hook-ID"] = "1",
        ["X-Hub-Signature-256"] = "sha256=" .. signature,
      }, body)
    end
    index = index + 1
  end
  file:close()
  total = #requests
end

function request()
  if sent == 0 then started_us = now_us() end
  sent = sent + 1
  return requests[((sent - 1) % total) + 1]
end

function response(status, headers, body)
  answered = answered + 1
  if status < 300 then ok = ok + 1
  elseif status < 500 then client_errors = client_errors + 1
  else server_errors = server_errors + 1 end
  if answered == total then
    finished_us = now_us()
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2)  -- SIGINT: wrk's main thread stops waiting for -d
  end
end

function done(summary, latency, requests)
  local t = threads[1]
  local e = summary.errors
  io.write(string.format(
    '{"duration_us":%d,"requests":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"answered":%d,"ok":%d,"client_errors":%d,"server_errors":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    t:get("finished_us") - t:get("started_us"), summary.requests, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, t:get("answered"), t:get("ok"),
    t:get("client_errors"), t:get("server_errors"), e.connect, e.read, e.write, e.timeout))
end
"""


def write_deliveries(path: Path, count: int) -> list[int]:
    """``count`` signed deliveries, one per line: delivery id, signature, body (tab-separated).

    Compact JSON has no raw tab or newline, so a line is one delivery. Returns the
    body sizes."""
    sizes: list[int] = []
    with path.open("wb") as out:
        for headers, body in deliveries(0, count):
            signature = headers["X-Hub-Signature-256"].removeprefix("sha256=")
            out.write(f"{headers['X-GitHub-Delivery']}\t{signature}\t".encode() + body + b"\n")
            sizes.append(len(body))
    return sizes


def _taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []


def run_wrk(
    url: str, script: Path, bodies: Path, first: int, count: int, args: argparse.Namespace
) -> dict[str, Any]:
    command = [
        *_taskset(args.client_cpus),
        "wrk",
        "-t1",
        f"-c{args.concurrency}",
        "-d600s",  # an upper bound: the script stops wrk after the last delivery
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
        "--",
        str(bodies),
        str(first),
        str(count),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --------------------------------------------------------------------------- the Python client


def _cache_missing_sniffio() -> None:
    """httpcore tries ``import sniffio`` several times per request; when it is not
    installed every try searches ``sys.path`` again (about 1 ms of CPU per request
    here). Recording the miss once keeps the client from dominating the figures."""
    if importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


async def _load(url: str, first: int, count: int, concurrency: int) -> dict[str, Any]:
    """``--client httpx``: the same deliveries from an httpx.AsyncClient (the old generator)."""
    _cache_missing_sniffio()
    prepared = list(deliveries(first, count))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:
        position = 0

        async def worker(items: Sequence[tuple[dict[str, str], bytes]]) -> None:
            nonlocal position
            while position < len(items):
                headers, body = items[position]
                position += 1
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker(prepared) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    ok = sum(n for status, n in statuses.items() if status < 300)
    return {
        "duration_us": elapsed * 1e6,
        "requests": len(latencies),
        "p50_us": _percentile(latencies, 0.50) * 1e6,
        "p90_us": _percentile(latencies, 0.90) * 1e6,
        "p99_us": _percentile(latencies, 0.99) * 1e6,
        "max_us": (latencies[-1] if latencies else 0) * 1e6,
        "answered": len(latencies),
        "ok": ok,
        "client_errors": sum(n for status, n in statuses.items() if 400 <= status < 500),
        "server_errors": sum(n for status, n in statuses.items() if status >= 500),
        "connect": 0,
        "read": sum(errors.values()),
        "write": 0,
        "timeout": 0,
    }


def run_httpx(url: str, first: int, count: int, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(tempfile.mkstemp(prefix="ucf-bench-load-", suffix=".json")[1])
    try:
        subprocess.run(
            [
                *_taskset(args.client_cpus),
                sys.executable,
                str(HERE),
                "--load",
                url,
                "--out",
                str(out),
                "--first",
                str(first),
                "--deliveries",
                str(count),
                "--concurrency",
                str(args.concurrency),
            ],
            check=True,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    finally:
        out.unlink(missing_ok=True)


def _percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- bare server


def _bare_handler(key: bytes, directory: Path) -> Any:
    """The floor: read the body, check its HMAC, answer 200."""
    from starlette.requests import Request
    from starlette.responses import Response

    async def receive(request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
            return Response(b'{"error":"bad signature"}', 401, media_type="application/json")
        return Response(b'{"status":"ok"}', media_type="application/json")

    return receive


def _minimal_handler(key: bytes, directory: Path) -> Any:
    """What a team hand-writes to keep these deliveries and nothing else: the bare check,
    then ``json.loads``, the eight fields the poll bench's minimal floor keeps
    (``bench/poll.py``'s ``minimal_row``), ``INSERT OR IGNORE`` and a commit, on the
    event loop. SQLite in WAL mode with ``synchronous=NORMAL``: no fsync per commit
    (durable against the process dying, not the machine), where ucf answers only after
    its group commit's fsync — so this peer does less than ucf, not more."""
    import sqlite3

    from starlette.requests import Request
    from starlette.responses import Response

    from github_items import minimal_row

    db = sqlite3.connect(directory / "minimal.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE issues (dedup_key TEXT PRIMARY KEY, id INTEGER, number INTEGER,"
        " title TEXT, state TEXT, url TEXT, author TEXT, updated_at TEXT)"
    )

    async def receive(request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
            return Response(b'{"error":"bad signature"}', 401, media_type="application/json")
        payload = json.loads(body)
        db.execute(
            "INSERT OR IGNORE INTO issues VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            minimal_row(payload["issue"]),
        )
        return Response(b'{"status":"ok"}', media_type="application/json")

    return receive


PEERS = {"bare": _bare_handler, "minimal": _minimal_handler}
"""The hand-written servers ucf is measured against, each in a process of its own."""


def _serve_peer(name: str, port_file: Path) -> None:
    """A peer under the same uvicorn set-up as ``ucf serve`` (socket bound first, loop and
    options alike), one route."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route
    from uvicorn.loops.auto import auto_loop_factory

    handler = PEERS[name](SECRET.encode(), port_file.parent)
    app = Starlette(
        routes=[Route("/api/webhooks/{connector}/{project}", handler, methods=["POST"])]
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    port_file.write_text(str(sock.getsockname()[1]))
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=auto_loop_factory()) as runner,
    ):
        runner.run(uvicorn.Server(config).serve(sockets=[sock]))


# --------------------------------------------------------------------------- orchestration


@dataclass
class Result:
    name: str
    load: dict[str, Any]
    server_cpu_s: float
    thread_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the measured run by the server's thread names (several threads of
    one name summed)."""
    system_s: float = 0.0
    """Of :attr:`server_cpu_s`, the kernel's (system time): syscalls, fsync, sockets."""

    @property
    def answered(self) -> int:
        return int(self.load["answered"])

    @property
    def rps(self) -> float:
        return float(self.answered / (self.load["duration_us"] / 1e6))

    @property
    def p50_ms(self) -> float:
        return float(self.load["p50_us"]) / 1000

    @property
    def p99_ms(self) -> float:
        return float(self.load["p99_us"]) / 1000

    @property
    def server_cpu_us(self) -> float:
        return self.server_cpu_s / max(self.answered, 1) * 1e6

    @property
    def split(self) -> str:
        """CPU per delivery of each server thread that used any, busiest first; then the
        whole process's user and system (kernel) time per delivery."""
        per = {name: s / max(self.answered, 1) * 1e6 for name, s in self.thread_cpu_s.items()}
        threads = ", ".join(
            f"{name} {us:.0f} µs"
            for name, us in sorted(per.items(), key=lambda kv: -kv[1])
            if us >= 1
        )
        system = self.system_s / max(self.answered, 1) * 1e6
        return f"{threads}; user {self.server_cpu_us - system:.0f} µs, system {system:.0f} µs"

    @property
    def busy(self) -> float:
        """Share of one core the server spent on CPU while the load ran."""
        return self.server_cpu_s / (self.load["duration_us"] / 1e6)

    @property
    def failures(self) -> str | None:
        load = self.load
        errors = {
            k: load[k]
            for k in ("client_errors", "server_errors", "connect", "read", "write", "timeout")
            if load[k]
        }
        return f"{load['ok']} of {self.answered} answered 2xx; {errors}" if errors else None


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far (Linux /proc)."""
    return sum(_user_system_seconds(pid))


def _user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU of a process and its threads so far, apart (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """User + system CPU of each live thread of a process so far: tid -> (label, seconds)."""
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            name, fields = task.joinpath("stat").read_text().rsplit(")", 1)
            ticks = int(fields.split()[11]) + int(fields.split()[12])
            tid = int(task.name)
            # Python (before 3.14) gives its threads no OS name: the main thread (the event
            # loop's) is told by its id, the others by theirs.
            label = "main thread" if tid == pid else f"{name.split('(', 1)[1]} thread {tid}"
            threads[tid] = (label, ticks / os.sysconf("SC_CLK_TCK"))
    return threads


def _thread_split(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    split: dict[str, float] = {}
    for tid, (name, seconds) in after.items():
        split[name] = split.get(name, 0.0) + seconds - before.get(tid, (name, 0.0))[1]
    return split


class Load:
    """Drives one server: the warm-up, then the measured deliveries, with its CPU sampled."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.total = args.warmup + args.deliveries
        self.bodies = workdir / "deliveries.tsv"
        self.script = workdir / "deliveries.lua"
        self.sizes: list[int] = []
        if args.client == "wrk":
            self.sizes = write_deliveries(self.bodies, self.total)
            self.script.write_text(WRK_SCRIPT)

    def run(self, name: str, url: str, server_pid: int) -> Result:
        """The same deliveries for every server (each starts with an empty store)."""
        args = self.args
        if args.warmup:
            self._send(url, 0, args.warmup)
        before, threads = _user_system_seconds(server_pid), _thread_cpu_seconds(server_pid)
        load = self._send(url, args.warmup, args.deliveries)
        after = _user_system_seconds(server_pid)
        user, system = after[0] - before[0], after[1] - before[1]
        split = _thread_split(threads, _thread_cpu_seconds(server_pid))
        return Result(name, load, user + system, split, system_s=system)

    def _send(self, url: str, first: int, count: int) -> dict[str, Any]:
        if self.args.client == "wrk":
            return run_wrk(url, self.script, self.bodies, first, count, self.args)
        return run_httpx(url, first, count, self.args)


def _wait_for(check: Any, what: str, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def bench_peer(name: str, args: argparse.Namespace, load: Load) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"ucf-bench-{name}-") as directory:
        port_file = Path(directory) / "port"
        server = subprocess.Popen(
            [
                *_taskset(args.server_cpus),
                sys.executable,
                str(HERE),
                "--serve",
                name,
                str(port_file),
            ]
        )
        try:
            port = _wait_for(lambda: port_file.exists() and port_file.read_text(), f"{name} server")
            base = f"http://127.0.0.1:{port}"
            _wait_for(lambda: _answers(base + WEBHOOK_PATH), f"{name} server to answer")
            return load.run(name, base + WEBHOOK_PATH, server.pid)
        finally:
            _stop(server)


def _answers(url: str) -> bool:
    try:
        return httpx.post(url, content=b"{}", timeout=2, trust_env=False).status_code < 500
    except httpx.HTTPError:
        return False


_SERVING = re.compile(r"serving on (http://[0-9.:\[\]a-f]+)")


def bench_ucf(args: argparse.Namespace, load: Load) -> tuple[Result, int]:
    """The real server; also returns how many signals its store holds afterwards."""
    with tempfile.TemporaryDirectory(prefix="ucf-bench-serve-") as directory:
        data_dir = Path(directory)
        log_path = data_dir / "serve.log"
        env = {
            **os.environ,
            "UCF_API_TOKEN": API_TOKEN,
            "UCF_WEBHOOK_RPM": str(RPM),
            "UCF_SCHEDULER": "0",
        }
        for variable in ("UCF_STORE", "UCF_SINK_JSONL", "UCF_SINK_HTTP"):
            env.pop(variable, None)
        command = [UCF, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", directory]
        if args.profile is not None:
            command = _under_py_spy(command, args.profile)
        command = [*_taskset(args.server_cpus), *command]
        with log_path.open("wb") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                base = _wait_for(lambda: _served_at(log_path, server), "ucf serve to start")
                _wait_for(lambda: _healthy(base), "ucf serve to answer /healthz")
                headers = {"Authorization": f"Bearer {API_TOKEN}"}
                with httpx.Client(base_url=base, headers=headers, trust_env=False) as api:
                    created = api.post(
                        f"/api/projects/{PROJECT}/instances",
                        json={
                            "connectorId": CONNECTOR,
                            "credentials": {"token": "ghp_" + "b" * 36, "webhookSecret": SECRET},
                            "config": {"owner": "octo", "repo": "hello"},
                            "enabled": True,
                        },
                    )
                    if created.status_code != 201:
                        raise SystemExit(f"creating the instance failed: {created.text}")
                    webhook_url = created.json()["webhookUrl"] or base + WEBHOOK_PATH
                    pid = _server_pid(server, args.profile is not None)
                    result = load.run("ucf", webhook_url, pid)
                    status = api.get(f"/api/projects/{PROJECT}/instances/{CONNECTOR}/status")
                    stored = int(status.json()["signals"]["last24h"])
            finally:
                _stop(server)
        if server.returncode not in (0, 130, -signal.SIGINT):
            sys.stderr.write(log_path.read_text(errors="replace")[-3000:])
    return result, stored


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _served_at(log_path: Path, server: subprocess.Popen[bytes]) -> str | None:
    if server.poll() is not None:
        raise SystemExit("ucf serve exited:\n" + log_path.read_text(errors="replace")[-3000:])
    match = _SERVING.search(log_path.read_text(errors="replace"))
    return match.group(1) if match else None


def _under_py_spy(command: list[str], directory: Path) -> list[str]:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    directory.mkdir(parents=True, exist_ok=True)
    return [
        spy,
        "record",
        "--gil",  # only the thread running Python: where the CPU goes, not who waits
        "--threads",
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(directory / "ucf-serve.folded"),
        "--",
        *command,
    ]


def _server_pid(server: subprocess.Popen[bytes], profiled: bool) -> int:
    """The ucf process itself (under py-spy, its child)."""
    if not profiled:
        return server.pid
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return int(children[0]) if children else server.pid


# --------------------------------------------------------------------------- report


def _verdict(met: bool) -> str:
    return "✔" if met else "✘"


def _report(
    runs: dict[str, list[Result]], stored: list[int], load: Load, args: argparse.Namespace
) -> bool:
    peers = {name: _best(runs[name]) for name in PEERS}
    ucf = _best(runs["ucf"])
    bare = peers["bare"]
    client = (
        "wrk (C, 1 thread)"
        if args.client == "wrk"
        else "httpx.AsyncClient in Python (shares the bottleneck: figures bound by the client)"
    )
    pinning = (
        f"server on CPU {args.server_cpus}, load generator on CPU {args.client_cpus}"
        if _taskset(args.server_cpus)
        else "no pinning"
    )
    sizes = load.sizes or [0]
    print(
        f"webhook bench: {args.deliveries} signed GitHub issues.opened deliveries, each a new "
        f"signal ({min(sizes) / 1024:.1f}-{max(sizes) / 1024:.1f} KB, median "
        f"{statistics.median(sizes) / 1024:.1f} KB), concurrency {args.concurrency}, after "
        f"{args.warmup} warm-up deliveries; {client}; {pinning}; uvicorn, 1 worker, loopback; "
        f"each server {args.repeat}× in turn, its run with the least CPU per delivery shown"
    )
    print(
        f"ucf serve: SQLite, scheduler off, no sink, UCF_WEBHOOK_RPM={RPM} (raised from 100/min "
        "so the rate limit, still checked per delivery, does not throttle the bench)"
    )
    print()
    print(
        f"{'server':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'server CPU/delivery':>21}"
        f"{'server busy':>13}"
    )
    for result in (*peers.values(), ucf):
        print(
            f"{result.name:<8}{result.rps:>9.0f}{result.p50_ms:>9.1f}{result.p99_ms:>9.1f}"
            f"{result.server_cpu_us:>18.0f} µs{result.busy:>13.0%}"
        )
    print(f"ucf per thread: {ucf.split}")
    if args.repeat > 1:
        for name, results in runs.items():
            each = ", ".join(f"{r.rps:.0f} req/s {r.server_cpu_us:.0f} µs" for r in results)
            print(f"  {name} runs in order: {each}")
    ratio = ucf.rps / bare.rps
    cpu_factor = ucf.server_cpu_us / bare.server_cpu_us
    print()
    print("targets:")
    print(
        f"  ucf p99 {ucf.p99_ms:.1f} ms < {TARGET_P99_MS:.0f} ms "
        f"{_verdict(ucf.p99_ms < TARGET_P99_MS)}"
    )
    print(f"  ucf / bare req/s {ratio:.1%} ≥ {TARGET_RATIO:.0%} {_verdict(ratio >= TARGET_RATIO)}")
    print(
        f"  ucf / bare server CPU per delivery {cpu_factor:.1f}× ≤ {TARGET_CPU_FACTOR:.0f}× "
        f"{_verdict(cpu_factor <= TARGET_CPU_FACTOR)}"
    )
    minimal = peers.get("minimal")
    if minimal is not None:
        print(
            f"  (no target) the minimal receiver costs {minimal.server_cpu_us / bare.server_cpu_us:.1f}× "
            f"bare's CPU; ucf / minimal: {ucf.rps / minimal.rps:.0%} of its req/s, "
            f"{ucf.server_cpu_us / minimal.server_cpu_us:.1f}× its CPU per delivery"
        )
    ok = True
    for result in (result for results in runs.values() for result in results):
        if result.failures:
            print(f"FAIL {result.name}: {result.failures}")
            ok = False
    expected = args.warmup + args.deliveries
    wrong = [held for held in stored if held != expected]
    if wrong:
        print(f"FAIL a store holds {wrong[0]} signals, expected {expected} (one per delivery)")
        ok = False
    else:
        print(
            f"checks: every delivery answered 2xx; each ucf run's store holds {expected} "
            "signals, one per delivery"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each server, in turn (best of N)"
    )
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument(
        "--client", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx"
    )
    parser.add_argument("--server-cpus", default="1", help="taskset CPU list of the server")
    parser.add_argument("--client-cpus", default="0", help="taskset CPU list of the client")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    parser.add_argument("--only", choices=(*PEERS, "ucf"), default=None)
    # internal roles of the same script
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=2, metavar=("PEER", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve is not None:
        _serve_peer(args.serve[0], Path(args.serve[1]))
        return
    if args.load is not None:
        measured = asyncio.run(_load(args.load, args.first, args.deliveries, args.concurrency))
        args.out.write_text(json.dumps(measured))
        return
    if os.cpu_count() == 1:
        args.server_cpus = args.client_cpus = None

    with tempfile.TemporaryDirectory(prefix="ucf-bench-webhook-") as directory:
        load = Load(args, Path(directory))
        if args.only:
            result = (
                bench_ucf(args, load)[0]
                if args.only == "ucf"
                else bench_peer(args.only, args, load)
            )
            print(
                f"{result.name}: {result.rps:.0f} req/s, p50 {result.p50_ms:.1f} ms, "
                f"p99 {result.p99_ms:.1f} ms, server CPU {result.server_cpu_us:.0f} µs/delivery"
                f"{'; ' + result.failures if result.failures else ''}"
            )
            print(f"{result.name} per thread: {result.split}")
            return
        runs: dict[str, list[Result]] = {name: [] for name in (*PEERS, "ucf")}
        stored: list[int] = []
        for _ in range(args.repeat):  # interleaved, so every server meets the same minutes
            for name in PEERS:
                runs[name].append(bench_peer(name, args, load))
                _progress(runs[name][-1])
            result, held = bench_ucf(args, load)
            runs["ucf"].append(result)
            stored.append(held)
            _progress(result)
        if not _report(runs, stored, load, args):
            raise SystemExit(1)


def _progress(result: Result) -> None:
    print(
        f"({result.name} done: {result.rps:.0f} req/s, {result.server_cpu_us:.0f} µs)",
        file=sys.stderr,
        flush=True,
    )


def _best(runs: list[Result]) -> Result:
    """The run with the least server CPU per delivery, the steadier of the two figures: a
    minute the machine spends elsewhere slows a run, never speeds it up."""
    return min(runs, key=lambda result: result.server_cpu_us)


if __name__ == "__main__":
    main()
