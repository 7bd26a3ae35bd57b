"""The webhook half of the delivery guarantee, proven by SIGKILLing ``ucf serve`` mid-delivery.

ARCHITECTURE "Delivery": a webhook is acknowledged (2xx) only after its
signals are durably stored. Here a real ``ucf serve`` (the console script's
command, forked from a zygote) receives GitHub ``issues`` deliveries signed
with ``X-Hub-Signature-256`` from a sender that retries the way Stripe and Svix
do: anything not answered 2xx — a reset connection, a refused one — is sent
again, unchanged, until it is. The server is SIGKILLed over and over, each kill
at one of these points in turn:

- *before-commit*: its n-th verified, mapped delivery reaches the ingest and
  the process dies before the store's write;
- *after-commit*: the ingest has committed, the 200 is not yet written;
- *mid-ingest* (DynamoDB only): between the conditional put that commits the
  signal and the batch writes that derive it (docs/storage.md);
- *anywhere*: a random time after launch (start-up, the store opening, any
  request in flight).

After each kill, with the server dead, the store must hold every acknowledged
delivery's signal, nothing the sender never sent, and nothing twice. Then the
server is started again and the sender redelivers. At the end every delivery
is acknowledged, and the stored signals (ids, dedup keys, content) and the
outbox equal those of a clean server that received each delivery once.

Seeded; ``UCF_CRASH_SEED`` replays a failure, ``UCF_CRASH_KILLS`` sets the kills
(docs/storage.md, "Crash safety").
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.stores.dynalite import dynalite_endpoint, free_port
from ucf.fakes.github import (
    GOOD_TOKEN,
    OWNER,
    REPO,
    WEBHOOK_SECRET,
    Dataset,
    envelope,
    sign_delivery,
)
from ucf.fakes.scenario import WebhookDelivery
from ucf.service.context import UcfContext
from ucf.service.settings import Settings
from ucf.service.webhooks import webhook_path
from ucf.stores.url import open_store

from .crash_children import DELIVERY_LEASE_ENV, KILL_POINTS
from .crash_support import KILLS, SEED, Backend, Child, Zygote, module_zygote, zygote

__all__ = ["dynalite_endpoint", "module_zygote", "zygote"]  # fixtures

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the zygote's loop

PROJECT = "crash"
CONNECTOR = "github-issues"
SERVE = "tests.service.crash_children:serve"
SENDERS = 4
"""Deliveries in flight at once, as a provider's workers send them."""
BATCH = 8
"""New deliveries queued before each launch, so every kill point's n-th ingest comes."""
TIMEOUT = 60.0


def deliveries(count: int) -> list[WebhookDelivery]:
    """``issues.edited`` deliveries, one issue each, signed as GitHub signs them."""
    issues = list(Dataset(datetime.now(UTC), count=count + 3, pulls=0).items.values())
    url = webhook_path(CONNECTOR, PROJECT)
    return [
        sign_delivery(envelope("issues", "edited", issue=issue.issue_json(), changes={}), url=url)
        for issue in issues
        if not issue.is_pull
    ][:count]


@dataclass
class Sender:
    """A provider that redelivers every delivery not acknowledged with 2xx, unchanged."""

    base_url: str
    all: list[WebhookDelivery]
    sent: int = 0
    pending: deque[int] = field(default_factory=deque)
    acked: set[int] = field(default_factory=set)
    duplicates: int = 0
    ack_times: list[float] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def queue(self, count: int) -> None:
        """Queue ``count`` deliveries never sent before."""
        assert self.sent + count <= len(self.all), "make more deliveries"
        self.pending.extend(range(self.sent, self.sent + count))
        self.sent += count

    async def send_while_alive(self, server: Child) -> None:
        """Send until every delivery is acknowledged or the server is gone."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT) as http:
            await asyncio.gather(*(self._worker(http, server) for _ in range(SENDERS)))

    async def _worker(self, http: httpx.AsyncClient, server: Child) -> None:
        while self.pending and server.returncode is None:
            index = self.pending.popleft()
            delivery = self.all[index]
            try:
                response = await http.post(
                    delivery.url, content=delivery.body, headers=delivery.headers
                )
            except httpx.TransportError:  # starting, or just killed: send it again later
                self.pending.append(index)
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 200:
                self.acked.add(index)
                self.ack_times.append(time.monotonic())
                self.duplicates += response.json()["duplicates"]
            else:  # never expected: a provider would retry, the test reports it
                self.refusals.append(f"{response.status_code} {response.text[:200]}")
                self.pending.append(index)


@dataclass
class Stored:
    signals: frozenset[tuple[str, str, str]]
    numbers: Counter[int]
    """How many stored signals each issue number has."""
    outbox: Counter[str]


async def snapshot(url: str, *, outbox: bool) -> Stored:
    """What the store holds, read while no server runs; the outbox only at the very end.

    The outbox is read by claiming it an hour ahead, past every lease and backoff a
    killed server's deliverer left (its sink refuses everything, so nothing leaves).
    """
    async with open_store(url) as store:
        signals: set[tuple[str, str, str]] = set()
        numbers: Counter[int] = Counter()
        cursor: str | None = None
        while True:
            page = await store.signals.query(PROJECT, limit=500, cursor=cursor)
            for item in page.items:
                signals.add(
                    (item.signal_id, item.dedup_key, json.dumps(item.signal, sort_keys=True))
                )
                numbers[item.signal["raw"]["issue"]["number"]] += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        entries = []
        if outbox:
            later = datetime.now(UTC) + timedelta(hours=1)
            entries = await store.outbox.claim(
                "http", limit=100_000, lease=timedelta(seconds=1), now=later
            )
    return Stored(frozenset(signals), numbers, Counter(e.signal["id"] for e in entries))


@dataclass
class Gateway:
    """One data directory and store, and how to run ``ucf serve`` on it."""

    zygote: Zygote
    backend: Backend
    directory: Path
    port: int = field(default_factory=free_port)
    sink: str = field(default_factory=lambda: f"http://127.0.0.1:{free_port()}/refuses")
    """An HTTP sink nobody listens on: outbox entries stay queued for the final count."""

    @property
    def url(self) -> str:
        return self.backend.store_url(self.directory)

    def env(self) -> dict[str, str]:
        return self.backend.env(
            self.directory,
            UCF_SCHEDULER="0",  # webhooks only: nothing else ingests
            UCF_WEBHOOK_RPM="1000000",  # rate limiting is not under test
            UCF_SINK_HTTP=self.sink,
        )

    async def create(self) -> None:
        settings = Settings.from_env(self.env(), data_dir=self.directory)
        async with await UcfContext.open(settings) as context:
            await context.instances.create(
                PROJECT,
                CONNECTOR,
                credentials={"token": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET},
                config={"baseUrl": "http://127.0.0.1:9", "owner": OWNER, "repo": REPO},
            )

    async def launch(self, kill_point: str = "", nth: int = 0) -> Child:
        args = [str(self.directory), str(self.port), kill_point, str(nth)]
        return await self.zygote.launch(SERVE, args, self.env())

    async def serve_until_acked(self, sender: Sender) -> float:
        """A run with no kill; seconds from launch to the first acknowledgement."""
        child = await self.launch()
        started = time.monotonic()
        try:
            await asyncio.wait_for(sender.send_while_alive(child), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"not all acknowledged: {sender.refusals[-3:]}") from None
        assert child.returncode is None, f"the server exited: {child.output}"
        await child.kill()
        assert not sender.pending, sender.refusals
        return min(t for t in sender.ack_times if t > started) - started


def kill_points(backend: Backend) -> tuple[str, ...]:
    points = ("before-commit", "after-commit", "anywhere")  # "after-sink": the test below
    return (*points, "mid-ingest") if backend.name == "dynamodb" else points


@pytest.mark.parametrize("backend_name", ["sqlite", "dynamodb"])
async def test_sigkilled_gateway_acknowledges_only_what_it_stored_and_stores_it_once(
    tmp_path: Path, request: pytest.FixtureRequest, backend_name: str, zygote: Zygote
) -> None:
    endpoint = request.getfixturevalue("dynalite_endpoint") if backend_name == "dynamodb" else None
    backend = Backend(backend_name, endpoint)
    rng = random.Random(SEED)
    sent = deliveries(BATCH * (KILLS + 2))
    clean = Gateway(zygote, backend, tmp_path / "clean")
    crashed = Gateway(zygote, backend, tmp_path / "crashed")
    for gateway in (clean, crashed):
        gateway.directory.mkdir()
        await gateway.create()
    calibration = Sender(f"http://127.0.0.1:{clean.port}", sent)
    calibration.queue(BATCH)
    first_ack = await clean.serve_until_acked(calibration)

    sender = Sender(f"http://127.0.0.1:{crashed.port}", sent)
    points = kill_points(backend)
    kills: list[str] = []
    committed_unacknowledged = 0
    while len(kills) < KILLS:
        sender.queue(BATCH)
        point = points[len(kills) % len(points)]
        nth = rng.randint(1, 4)
        child = await crashed.launch(*((point, nth) if point in KILL_POINTS else ()))
        sending = asyncio.create_task(sender.send_while_alive(child))
        if point == "anywhere":
            delay = rng.uniform(first_ack * 0.5, first_ack + 0.3)
            await asyncio.sleep(delay)
            await child.kill()
            where = f"anywhere, {delay:.2f} s after launch"
        else:
            where = f"{point} of ingest {nth}"
        assert await asyncio.wait_for(child.wait(), TIMEOUT) == -9, (
            f"seed {SEED}: the server was to die {where}: {child.output}"
        )
        await asyncio.wait_for(sending, TIMEOUT)
        kills.append(where)
        state = await snapshot(crashed.url, outbox=False)
        stored = set(state.numbers)
        acked = {sender.all[i].json()["issue"]["number"] for i in sender.acked}
        assert acked <= stored, f"seed {SEED}: acknowledged, not stored, after {where}"
        assert set(state.numbers.values()) <= {1}, f"seed {SEED}: stored twice after {where}"
        sent_numbers = {sender.all[i].json()["issue"]["number"] for i in range(sender.sent)}
        assert stored <= sent_numbers
        if point == "after-commit":
            assert stored - acked, f"seed {SEED}: {where} left nothing stored unacknowledged"
            committed_unacknowledged += 1

    await crashed.serve_until_acked(sender)  # the last redeliveries, no kill
    assert sender.acked == set(range(sender.sent))
    assert not sender.refusals, f"seed {SEED}: {sender.refusals[:3]}"
    assert sender.duplicates >= committed_unacknowledged > 0, (
        "a delivery stored but not acknowledged is acknowledged as a duplicate when redelivered"
    )

    calibration.queue(sender.sent - calibration.sent)  # the clean run gets each one once
    await clean.serve_until_acked(calibration)
    assert calibration.duplicates == 0
    expected = await snapshot(clean.url, outbox=True)
    final = await snapshot(crashed.url, outbox=True)

    assert len(expected.signals) == sender.sent
    assert final.signals == expected.signals, (
        f"seed {SEED}: {len(expected.signals - final.signals)} lost, "
        f"{len(final.signals - expected.signals)} unexpected; kills: {kills}"
    )
    assert set(expected.outbox.values()) == {1}
    assert final.outbox == expected.outbox, f"seed {SEED}: outbox differs; kills: {kills}"


@dataclass
class Delivering(Gateway):
    """``ucf serve`` whose deliverer appends to a JSONL sink, with a one-second claim lease
    (60 s otherwise: a batch a killed server claimed is sent again that much later)."""

    def env(self) -> dict[str, str]:
        env = super().env()
        del env["UCF_SINK_HTTP"]  # the JSONL sink of child_env remains
        env[DELIVERY_LEASE_ENV] = "1"
        return env

    def delivered(self) -> tuple[Counter[str], dict[str, set[str]]]:
        """How often each signal id is in the sink's file, and its texts there; a line a
        kill tore is skipped, as docs/pipeline.md tells consumers to."""
        path = self.directory / "signals.jsonl"
        times: Counter[str] = Counter()
        texts: dict[str, set[str]] = {}
        lines = path.read_bytes().splitlines() if path.exists() else []
        for line in lines:
            try:
                signal = json.loads(line)
            except ValueError:
                continue
            times[signal["id"]] += 1
            texts.setdefault(signal["id"], set()).add(json.dumps(signal, sort_keys=True))
        return times, texts


async def stored_texts(url: str) -> dict[str, str]:
    async with open_store(url) as store:
        found: dict[str, str] = {}
        cursor: str | None = None
        while True:
            page = await store.signals.query(PROJECT, limit=500, cursor=cursor)
            found.update({s.signal_id: json.dumps(s.signal, sort_keys=True) for s in page.items})
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor


@pytest.mark.parametrize("backend_name", ["sqlite", "dynamodb"])
async def test_sigkilled_server_hands_every_stored_signal_to_its_sink_at_least_once(
    tmp_path: Path, request: pytest.FixtureRequest, backend_name: str, zygote: Zygote
) -> None:
    """docs/pipeline.md: a crash never loses a signal on its way to a sink, and a signal
    sent twice is the same signal (same id, same content) for the consumer to drop.

    ``ucf serve`` takes deliveries and hands their signals to a JSONL sink while it is
    SIGKILLed, in turn, as a claimed batch is handed to the sink (nothing written: it
    must go later), right after a batch is written and fsynced but before the outbox
    is told (it must go again), and at a random moment. Then one run goes on until
    the sink holds every stored signal."""
    endpoint = request.getfixturevalue("dynalite_endpoint") if backend_name == "dynamodb" else None
    backend = Backend(backend_name, endpoint)
    rng = random.Random(SEED)
    rounds = max(6, KILLS // 3)
    server = Delivering(zygote, backend, tmp_path / "crashed")
    server.directory.mkdir()
    await server.create()
    sender = Sender(f"http://127.0.0.1:{server.port}", deliveries(BATCH * (rounds + 2)))
    sender.queue(BATCH)
    first_ack = await server.serve_until_acked(sender)

    kills: list[str] = []
    for round_number in range(rounds):
        sender.queue(BATCH)
        point = ("before-sink", "after-sink", "anywhere")[round_number % 3]
        if point == "anywhere":
            child = await server.launch()
            where = point
        else:  # the first batch of the run: its deliveries' signals, or what a kill left
            child = await server.launch(point, 1)
            where = f"{point} batch"
        sending = asyncio.create_task(sender.send_while_alive(child))
        if where == "anywhere":
            delay = rng.uniform(first_ack * 0.5, first_ack + 0.5)
            await asyncio.sleep(delay)
            await child.kill()
            where += f", {delay:.2f} s after launch"
        else:
            try:  # its batches come once the deliveries are stored
                await asyncio.wait_for(asyncio.shield(child.wait()), TIMEOUT)
            except TimeoutError:
                await child.kill()
                where += " (never came: killed)"
        assert await asyncio.wait_for(child.wait(), TIMEOUT) == -9, child.output
        await asyncio.wait_for(sending, TIMEOUT)
        kills.append(where)
        stored = await stored_texts(server.url)
        times, texts = server.delivered()
        assert set(times) <= set(stored), f"seed {SEED}: the sink got a signal not stored"
        assert all(texts[i] == {stored[i]} for i in times), f"seed {SEED}: a copy differs"

    # One run to the end: every delivery acknowledged, every stored signal handed over.
    child = await server.launch()
    try:
        await asyncio.wait_for(sender.send_while_alive(child), TIMEOUT)
        stored = await stored_texts(server.url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while loop.time() < deadline:
            if set(server.delivered()[0]) >= set(stored):
                break
            await asyncio.sleep(0.1)
    finally:
        await child.kill()

    assert sender.acked == set(range(sender.sent)), sender.refusals[:3]
    assert len(stored) == sender.sent
    times, texts = server.delivered()
    missing = set(stored) - set(times)
    assert not missing, f"seed {SEED}: {len(missing)} stored, never delivered; kills: {kills}"
    assert set(times) <= set(stored)
    assert all(texts[i] == {stored[i]} for i in times), "a redelivered copy differs"
    landed = [k for k in kills if k.startswith("after-sink") and "never" not in k]
    if landed:  # a batch written before its kill is written again: a duplicate to drop
        assert max(times.values()) >= 2, f"seed {SEED}: {landed} sent nothing twice"
