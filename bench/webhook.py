"""Webhook gateway throughput: ``ucf serve`` against a bare Starlette endpoint, same run.

Sends N signed GitHub ``issues.opened`` deliveries (``X-GitHub-Event: issues``, a
unique ``X-GitHub-Delivery``, ``X-Hub-Signature-256: sha256=…`` over a 3-6 KB
payload shaped like GitHub's, each with its own issue id and ``updated_at``) at
a fixed concurrency to two servers, one after the other, each in its own process
and started the same way (uvicorn, one worker, the options ``ucf serve`` uses,
on a socket bound first):

- **bare**: a Starlette route that reads the body and answers 200 — the floor
  of what uvicorn and the client cost;
- **ucf**: a real ``ucf serve`` (SQLite in a fresh data directory, scheduler
  off) with a ``github-issues`` instance created through the API, its
  ``webhookSecret`` among the credentials. ``UCF_WEBHOOK_RPM`` is raised so
  the per-instance rate limit (100/min by default) does not turn the run into
  a rate-limit test; the limiter itself still runs for every delivery.

The load generator is a third process: an ``httpx.AsyncClient`` with one
keep-alive connection per concurrent task. Bodies and signatures are built
before the clock starts. A warm-up of ``--warmup`` deliveries precedes the timed
ones on the same connections. Prints req/s, p50 and p99 latency for both, the
ratio, and server CPU per request; checks every delivery got a 2xx and that the
store holds one signal per delivery. Targets: ucf ≥ 40 % of bare throughput,
ucf p99 < 50 ms. Exit status 1 when a check fails (targets only warn).

    uv run python bench/webhook.py [--deliveries 20000] [--concurrency 32] [--profile DIR]

``--profile DIR`` runs ``ucf serve`` under ``py-spy record`` (if on PATH) and
leaves a flame graph and a top-functions table in DIR.
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
from dataclasses import dataclass
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
TARGET_RATIO = 0.40
TARGET_P99_MS = 50.0
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


# --------------------------------------------------------------------------- load generator


def _cache_missing_sniffio() -> None:
    """httpcore tries ``import sniffio`` several times per request; when it is not
    installed every try searches ``sys.path`` again (about 1 ms of CPU per request
    here). Recording the miss once keeps the client from dominating the figures."""
    if importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


async def _load(url: str, first: int, warmup: int, count: int, concurrency: int) -> dict[str, Any]:
    _cache_missing_sniffio()
    prepared = list(deliveries(first, warmup + count))
    sizes = [len(body) for _, body in prepared]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:

        async def run(items: Sequence[tuple[dict[str, str], bytes]], record: bool) -> None:
            position = 0

            async def worker() -> None:
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
                    if record:
                        latencies.append(time.perf_counter() - started)
                        statuses[response.status_code] += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await run(prepared[:warmup], record=False)
        cpu_before = os.times()
        began = time.perf_counter()
        await run(prepared[warmup:], record=True)
        elapsed = time.perf_counter() - began
        cpu_after = os.times()
    latencies.sort()
    return {
        "elapsed": elapsed,
        "count": count,
        "latencies": latencies,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
        "body_bytes": [min(sizes), statistics.median(sizes), max(sizes)],
        "client_cpu": (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
    }


# --------------------------------------------------------------------------- bare server


def _serve_bare(port_file: Path) -> None:
    """The floor: the same uvicorn set-up as ``ucf serve`` (socket bound first, loop and
    options alike), a route that reads the body and answers 200."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from uvicorn.loops.auto import auto_loop_factory

    async def receive(request: Request) -> Response:
        await request.body()
        return Response(b'{"status":"ok"}', media_type="application/json")

    app = Starlette(
        routes=[Route("/api/webhooks/{connector}/{project}", receive, methods=["POST"])]
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
    requests: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]
    server_cpu_us: float
    client_cpu_us: float
    body_bytes: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed

    @property
    def busy(self) -> float:
        """Share of one core the server spent on CPU while the load ran."""
        return self.server_cpu_us * self.rps / 1e6

    @property
    def all_2xx(self) -> bool:
        answered = sum(n for status, n in self.statuses.items() if status.startswith("2"))
        return answered == self.requests and not self.errors


def _percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_load(name: str, url: str, server_pid: int, args: argparse.Namespace, first: int) -> Result:
    out = Path(tempfile.mkstemp(prefix=f"ucf-bench-{name}-", suffix=".json")[1])
    try:
        cpu_before = _cpu_seconds(server_pid)
        subprocess.run(
            [
                sys.executable,
                str(HERE),
                "--load",
                url,
                "--out",
                str(out),
                "--first",
                str(first),
                "--warmup",
                str(args.warmup),
                "--deliveries",
                str(args.deliveries),
                "--concurrency",
                str(args.concurrency),
            ],
            check=True,
        )
        cpu = _cpu_seconds(server_pid) - cpu_before
        data = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    latencies = data["latencies"]
    total = args.warmup + args.deliveries
    return Result(
        name=name,
        requests=data["count"],
        elapsed=data["elapsed"],
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        statuses=data["statuses"],
        errors=data["errors"],
        server_cpu_us=cpu / total * 1e6,  # includes the warm-up's share, per request
        client_cpu_us=data["client_cpu"] / args.deliveries * 1e6,
        body_bytes=data["body_bytes"],
    )


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


def bench_bare(args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="ucf-bench-bare-") as directory:
        port_file = Path(directory) / "port"
        server = subprocess.Popen([sys.executable, str(HERE), "--serve-bare", str(port_file)])
        try:
            port = _wait_for(lambda: port_file.exists() and port_file.read_text(), "bare server")
            base = f"http://127.0.0.1:{port}"
            _wait_for(lambda: _answers(base + WEBHOOK_PATH), "bare server to answer")
            return _run_load("bare", base + WEBHOOK_PATH, server.pid, args, first=0)
        finally:
            _stop(server)


def _answers(url: str) -> bool:
    try:
        return httpx.post(url, content=b"{}", timeout=2, trust_env=False).status_code < 500
    except httpx.HTTPError:
        return False


_SERVING = re.compile(r"serving on (http://[0-9.:\[\]a-f]+)")


def bench_ucf(args: argparse.Namespace) -> tuple[Result, int]:
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
                    result = _run_load("ucf", webhook_url, pid, args, first=1_000_000)
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


def _report(bare: Result, ucf: Result, stored: int, args: argparse.Namespace) -> bool:
    low, mid, high = ucf.body_bytes
    print(
        f"webhook bench: {args.deliveries} signed GitHub issues.opened deliveries "
        f"({low / 1024:.1f}-{high / 1024:.1f} KB, median {mid / 1024:.1f} KB) at concurrency "
        f"{args.concurrency}, after {args.warmup} warm-up deliveries; uvicorn, 1 worker, "
        f"loopback; load generator in its own process (httpx, keep-alive)"
    )
    print(
        f"ucf serve: SQLite, scheduler off, UCF_WEBHOOK_RPM={RPM} (raised from 100/min so the "
        "rate limit, still checked per delivery, does not throttle the bench)"
    )
    print()
    print(
        f"{'server':<8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'server CPU/req':>17}"
        f"{'server busy':>13}"
    )
    for result in (bare, ucf):
        print(
            f"{result.name:<8}{result.rps:>10.0f}{result.p50_ms:>10.2f}{result.p99_ms:>10.2f}"
            f"{result.server_cpu_us:>14.0f} µs{result.busy:>13.0%}"
        )
    ratio = ucf.rps / bare.rps
    print()
    print(
        f"ucf / bare throughput: {ratio:.0%} (target ≥ {TARGET_RATIO:.0%}); "
        f"ucf p99 {ucf.p99_ms:.1f} ms (target < {TARGET_P99_MS:.0f} ms)"
    )
    print(
        f"load generator CPU per request: bare {bare.client_cpu_us:.0f} µs, "
        f"ucf {ucf.client_cpu_us:.0f} µs"
    )
    if bare.busy < 0.6:
        print(
            f"note: the bare server was busy {bare.busy:.0%} of one core, so its figure is "
            "bound by the load generator (or by other load on the machine), not by the "
            f"server; by server CPU per request ucf costs {ucf.server_cpu_us / bare.server_cpu_us:.1f}"
            "× the bare endpoint"
        )
    ok = True
    for result in (bare, ucf):
        if not result.all_2xx:
            print(f"FAIL {result.name}: statuses {result.statuses}, errors {result.errors}")
            ok = False
    expected = args.warmup + args.deliveries
    if stored != expected:
        print(f"FAIL store holds {stored} signals, expected {expected} (one per delivery)")
        ok = False
    else:
        print(f"checks: every delivery answered 2xx; the store holds {stored} signals, one each")
    if ratio < TARGET_RATIO:
        print(f"MISSED throughput target: {ratio:.0%} < {TARGET_RATIO:.0%}")
    if ucf.p99_ms >= TARGET_P99_MS:
        print(f"MISSED latency target: p99 {ucf.p99_ms:.1f} ms ≥ {TARGET_P99_MS:.0f} ms")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    parser.add_argument("--only", choices=("bare", "ucf"), default=None)
    # internal roles of the same script
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", type=Path, metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_bare is not None:
        _serve_bare(args.serve_bare)
        return
    if args.load is not None:
        result = asyncio.run(
            _load(args.load, args.first, args.warmup, args.deliveries, args.concurrency)
        )
        args.out.write_text(json.dumps(result))
        return

    if args.only == "bare":
        bare = bench_bare(args)
        print(
            f"bare: {bare.rps:.0f} req/s, p50 {bare.p50_ms:.2f} ms, p99 {bare.p99_ms:.2f} ms, "
            f"server CPU {bare.server_cpu_us:.0f} µs/req"
        )
        return
    if args.only == "ucf":
        ucf, stored = bench_ucf(args)
        print(
            f"ucf: {ucf.rps:.0f} req/s, p50 {ucf.p50_ms:.2f} ms, p99 {ucf.p99_ms:.2f} ms, "
            f"server CPU {ucf.server_cpu_us:.0f} µs/req"
        )
        print(f"statuses {ucf.statuses}, errors {ucf.errors}, stored {stored}")
        return
    bare = bench_bare(args)
    print(f"(bare done: {bare.rps:.0f} req/s; now ucf serve)", file=sys.stderr, flush=True)
    ucf, stored = bench_ucf(args)
    if not _report(bare, ucf, stored, args):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
