"""``ucf sandbox``: the real command, its real ``ucf serve`` child and the real fakes.

The end-to-end tests run the console script as a user would and check what
it claims through the API it prints: every connector connected, signals
arriving by poll and by webhook, tampered deliveries refused and counted,
health dipping and recovering, and a clean exit 0 by ``--duration``, by
Ctrl-C (SIGINT) and by SIGTERM. The rest are the pieces those runs rely on.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ucf.catalogue import builtin_descriptors
from ucf.cli.invocation import ucf_command
from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.webhook import delivery_id_of
from ucf.fakes.kit import FakeResponse, FakeServer
from ucf.fakes.scenario import scenario_for
from ucf.runtime.sources import source_for
from ucf.runtime.webhooks import compile_verifier
from ucf.sandbox.console import Reporter
from ucf.sandbox.fleet import Fleet, Provider, catalogue
from ucf.sandbox.live import (
    ROUND,
    TOUR,
    Activity,
    Deck,
    Kind,
    Tally,
    read_metrics,
    with_new_delivery_id,
)
from ucf.sandbox.session import choose_port, server_environment
from ucf.service.context import UcfContext
from ucf.service.settings import Settings
from ucf.stores.models import SignalQuery

UCF = str(Path(sys.executable).parent / "ucf")
CATALOGUE = sorted(str(d["id"]) for d in builtin_descriptors())


def _descriptor(connector_id: str) -> ConnectorDescriptor:
    raw = next(d for d in builtin_descriptors() if d["id"] == connector_id)
    return ConnectorDescriptor.model_validate(raw)


def _declares(connector_id: str, part: str) -> bool:
    """Polls / receives webhooks: the descriptor says so, or a native connector's source."""
    descriptor = _descriptor(connector_id)
    if descriptor.kind == "native":
        source = source_for(descriptor)
        return (source.schedule if part == "polling" else source.webhooks) is not None
    return (descriptor.polling if part == "polling" else descriptor.webhook) is not None


POLLED = [c for c in CATALOGUE if _declares(c, "polling")]
WEBHOOKS = [c for c in CATALOGUE if _declares(c, "webhook")]


# --------------------------------------------------------------------------- a running sandbox


class Run:
    """A ``ucf sandbox`` subprocess whose output is read as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [UCF, "sandbox", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        self.lines: list[str] = []
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._changed.set()
        self._closed.set()
        self._changed.set()

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first output line matching ``pattern`` (already printed or still to come)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                if match := regex.search(line):
                    return match
            if self._closed.is_set():
                raise AssertionError(f"the sandbox ended without {pattern!r}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} yet:\n{self.output}")
            self._changed.wait(0.2)
            self._changed.clear()

    def finish(self, timeout: float) -> int:
        """The exit code, once the process ended and all its output is read."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.kill()


def _where(run: Run) -> tuple[str, str]:
    base = run.wait_for(r"^\s+API\s+(http://127\.0\.0\.1:\d+)/api$").group(1)
    token = run.wait_for(r"^\s+token\s+(\S+)$").group(1)
    return base, token


def _refused(base: str) -> bool:
    host, port = base.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


# --------------------------------------------------------------------------- end to end


def test_sandbox_connects_every_connector_and_shows_signals_webhooks_and_health(
    tmp_path: Path, runs: list[Run]
) -> None:
    data_dir = tmp_path / "sandbox"
    run = Run(
        "--duration", "20", "--port", "0", "--data-dir", str(data_dir),
        "--every", "0.5", "--poll-interval", "2", "--seed", "3",
    )  # fmt: skip
    runs.append(run)
    base, token = _where(run)
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    instances = api.get("/api/projects/sandbox/instances").json()["items"]
    assert sorted(i["connectorId"] for i in instances) == CATALOGUE
    assert all(i["enabled"] for i in instances)
    by_id = {i["connectorId"]: i for i in instances}
    for connector in WEBHOOKS:
        assert by_id[connector]["webhookUrl"].startswith(
            f"{base}/api/webhooks/{connector}/sandbox/"
        )

    assert run.wait_for(r"^\s+webhooks\s+(\S+)$").group(1) == (
        f"{base}/api/webhooks/{{connectorId}}/sandbox"
    )
    page = api.get("/", follow_redirects=True)
    serves_dashboard = page.status_code == 200 and "html" in page.headers["content-type"]
    printed_dashboard = any(re.match(r"^\s+dashboard\s+http://", line) for line in run.lines)
    assert printed_dashboard == serves_dashboard
    tail = run.wait_for(r"^\s+signals\s+(\S*ucf signals tail .*)$").group(1)
    # the bare name only where the user's shell finds this ucf (not Debian's /usr/bin/ucf)
    assert tail == f"{ucf_command()} signals tail --project sandbox --data-dir {data_dir}"

    first = read_metrics(api.get("/metrics").text)
    wanted_grown = 3
    deadline = time.monotonic() + 40
    while True:
        latest = read_metrics(api.get("/metrics").text)
        polled = {c for (c, via), n in latest.ingested.items() if via == "poll" and n > 0}
        pushed = {c for (c, via), n in latest.ingested.items() if via == "webhook" and n > 0}
        grown = {
            c
            for (c, via), n in latest.ingested.items()
            if via == "poll" and n > first.ingested.get((c, via), 0)
        }
        refused = sum(latest.verification_failures.values())
        if (
            polled == set(POLLED)
            and len(pushed) >= 3
            and len(grown) >= wanted_grown
            and refused >= 1
        ):
            break
        if time.monotonic() > deadline or run.process.poll() is not None:
            pytest.fail(
                f"polled={sorted(polled)} pushed={sorted(pushed)} grown={sorted(grown)} "
                f"refused={refused}\n{run.output}"
            )
        time.sleep(0.5)
    api.close()

    assert run.finish(timeout=60) == 0, run.output
    assert "Traceback" not in run.output
    assert _refused(base), "ucf serve is still listening after the sandbox exited"

    tampered = run.wait_for(
        r"tampered\s+(\d+) sent, (\d+) rejected with 401; the server counted (\d+) verification"
    )
    sent, rejected, counted = (int(n) for n in tampered.groups())
    assert sent >= 1
    assert sent == rejected == counted
    assert counted >= refused
    assert "unexpected" not in run.output
    assert re.search(r"health\s+\S+\s+healthy → degraded", run.output), run.output
    assert re.search(r"health\s+\S+\s+degraded → healthy", run.output), run.output
    assert (data_dir / "serve.log").is_file()

    # The kept data directory: every instance still there (disabled: its fake is gone),
    # and the signals of every connector readable without the server.
    async def stored() -> tuple[dict[str, bool], dict[str, int]]:
        context = await UcfContext.open(Settings.from_env({}, data_dir=data_dir))
        try:
            records = await context.store.instances.list_by_project("sandbox")
            counts = {}
            for connector in CATALOGUE:
                page = await context.store.signals.query(
                    "sandbox", SignalQuery(source=connector), limit=1
                )
                counts[connector] = len(page.items)
            return {r.connector_id: r.enabled for r in records}, counts
        finally:
            await context.close()

    listed = subprocess.run(
        [UCF, "signals", "list", *tail.split()[3:], "--limit", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 5

    enabled, counts = asyncio.run(stored())
    assert enabled == dict.fromkeys(CATALOGUE, False)
    assert all(counts.values()), counts


def test_ctrl_c_stops_the_server_and_the_fakes_and_exits_zero(runs: list[Run]) -> None:
    run = Run("--port", "0", "--every", "0.3", "--seed", "5")
    runs.append(run)
    base, _ = _where(run)
    data_dir = Path(run.wait_for(r"^\s+data\s+(\S+) \(removed on exit").group(1))
    run.wait_for(r"^\d\d:\d\d:\d\d\s+tampered\s")  # mid-way: live activity is flowing

    run.process.send_signal(signal.SIGINT)

    assert run.finish(timeout=60) == 0, run.output
    assert "Traceback" not in run.output
    assert "SIGINT: stopping the sandbox" in run.output
    assert "sandbox summary after" in run.output
    assert _refused(base)
    assert not data_dir.exists(), "the throw-away data directory should be gone"


def test_sigterm_while_starting_stops_cleanly(runs: list[Run]) -> None:
    run = Run("--port", "0")
    runs.append(run)
    run.wait_for(r"^starting ucf serve")

    run.process.send_signal(signal.SIGTERM)

    assert run.finish(timeout=60) == 0, run.output
    assert "Traceback" not in run.output
    assert "stopped before the sandbox was ready" in run.output


def test_a_busy_port_falls_back_to_a_free_one_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen, note = choose_port(port)
    assert chosen == 0
    assert note is not None
    assert f"port {port} is not available" in note
    assert choose_port(0) == (0, None)


# --------------------------------------------------------------------------- the pieces


def test_the_sandbox_server_never_inherits_a_real_store_and_allows_only_loopback_extra() -> None:
    env = server_environment(
        {
            "PATH": "/bin",
            "UCF_STORE": "dynamodb://prod-table",
            "UCF_DATA_DIR": "/srv/ucf",
            "UCF_API_TOKEN": "the-real-token",
            "UCF_SCHEDULER": "0",
            "UCF_ALLOW_HOSTS": "jira.internal",
            "UCF_SINK_HTTP": "http://pipeline.internal/ingest",
            # A deployment's own (an API Gateway stage): the sandbox's server, on loopback,
            # refused to start with it ("must be the root of its host"), and with a bare
            # origin handed out webhook URLs (Graph subscriptions) on the real host.
            "UCF_PUBLIC_URL": "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
        },
        token="ucf_sandbox_x",
        poll_interval=2,
    )
    for isolated in ("UCF_STORE", "UCF_DATA_DIR", "UCF_SCHEDULER", "UCF_PUBLIC_URL"):
        assert isolated not in env
    assert env["UCF_API_TOKEN"] == "ucf_sandbox_x"
    assert env["UCF_ALLOW_HOSTS"] == "jira.internal,127.0.0.1"
    assert env["UCF_POLL_INTERVAL_OVERRIDE"] == "2"
    assert env["UCF_SINK_HTTP"] == "http://pipeline.internal/ingest"
    assert env["PATH"] == "/bin"


def test_the_first_round_shows_every_kind_of_event_then_rounds_stay_balanced() -> None:
    deck = Deck(random.Random(1))
    size = sum(ROUND.values())
    first = [next(deck) for _ in range(size)]
    assert tuple(first[: len(TOUR)]) == TOUR
    assert set(TOUR) == set(Kind)
    for events in (first, [next(deck) for _ in range(size)]):
        assert {kind: events.count(kind) for kind in Kind} == dict(ROUND)


@pytest.mark.parametrize("connector_id", ["datadog", "notion", "github-issues"])
def test_a_resent_sample_becomes_a_new_delivery_that_still_verifies(connector_id: str) -> None:
    """Scenarios with fixed delivery ids would otherwise only ever show deduplication."""
    descriptor = _descriptor(connector_id)
    assert descriptor.webhook is not None
    scenario = scenario_for(connector_id)
    sample = scenario.webhook_samples()[0]
    url = f"http://127.0.0.1:1/api/webhooks/{connector_id}/sandbox"
    now = datetime.now(UTC)
    renewed = with_new_delivery_id(sample, descriptor, random.Random(2))
    assert renewed is not None
    before, after = (scenario.sign(s, url=url, at=now) for s in (sample, renewed))
    webhook = descriptor.webhook
    assert delivery_id_of(webhook, after.json(), after.headers) != delivery_id_of(
        webhook, before.json(), before.headers
    )
    verdict = compile_verifier(descriptor).verify(
        body=after.body,
        headers=after.headers,
        url=url,
        query={},
        credentials=scenario.credentials(),
        now=now,
    )
    assert verdict.reason is None


def test_metrics_are_read_by_connector_and_route() -> None:
    text = (
        "# TYPE ucf_signals_ingested counter\n"
        'ucf_signals_ingested_total{connector="slack",via="poll"} 12.0\n'
        'ucf_signals_ingested_total{connector="slack",via="webhook"} 3.0\n'
        "# TYPE ucf_webhook_verification_failures counter\n"
        'ucf_webhook_verification_failures_total{connector="slack",reason="mismatch"} 2.0\n'
        'ucf_webhook_verification_failures_total{connector="slack",reason="stale"} 1.0\n'
    )
    metrics = read_metrics(text)
    assert metrics.ingested == {("slack", "poll"): 12, ("slack", "webhook"): 3}
    assert metrics.total() == 15
    assert metrics.total("webhook") == 3
    assert metrics.verification_failures == {"slack": 3}


async def test_the_poll_interval_override_reaches_the_scheduler(tmp_path: Path) -> None:
    """The end-to-end run proves the effect (polls every 2 s, not every 2-5 min)."""
    from ucf.service.scheduler import Scheduler

    settings = Settings.from_env({"UCF_POLL_INTERVAL_OVERRIDE": "2.5"}, data_dir=tmp_path)
    assert settings.poll_interval_override == timedelta(seconds=2.5)
    assert Settings.from_env({}, data_dir=tmp_path).poll_interval_override is None
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(ValueError, match="UCF_POLL_INTERVAL_OVERRIDE"):
            Settings.from_env({"UCF_POLL_INTERVAL_OVERRIDE": bad}, data_dir=tmp_path)

    context = await UcfContext.open(settings)
    try:
        policy = Scheduler(context, "w").policy
    finally:
        await context.close()
    assert policy.interval_override == timedelta(seconds=2.5)
    assert policy.rescan_seconds == 2.5


def test_a_fake_runs_dataset_changes_between_its_requests() -> None:
    with FakeServer() as server:
        thread = server.call_between_requests(lambda: threading.current_thread())
    assert thread is not threading.current_thread()
    assert thread.name == "ucf-fake-upstream"


async def test_a_delivery_is_not_sent_again_as_a_redelivery_once_its_item_changed_upstream() -> (
    None
):
    """Asana's handler reads the task when a delivery arrives: after the sandbox changed
    the task upstream, sending that delivery again rightly stores the new version, which
    the sandbox must not report as a failed deduplication. It sends a fresh delivery."""
    descriptor, scenario = next(pair for pair in catalogue() if pair[0].id == "asana")
    gateway = FakeServer()
    gateway.add_route(
        "POST",
        "/hook",
        lambda request: FakeResponse(
            200,
            {"Content-Type": "application/json"},
            b'{"received": 1, "inserted": 1, "duplicates": 0}',
        ),
    )
    with scenario.fake(datetime.now(UTC)) as fake, gateway:
        fleet = Fleet([Provider(descriptor, scenario, fake)])
        tally = Tally()
        async with httpx.AsyncClient() as hooks:
            activity = Activity(
                fleet,
                hooks,
                {"asana": gateway.url("/hook")},
                Reporter(quiet=True),
                random.Random(7),
                tally,
                time.monotonic,
            )
            await activity.play(Kind.WEBHOOK)
            await activity.play(Kind.UPSTREAM)
            await activity.play(Kind.REDELIVER)

    assert tally.unexpected == []
    assert tally.redeliveries == 0
    assert tally.webhooks_sent == 2
    assert len(gateway.requests_to("/hook")) == 2
