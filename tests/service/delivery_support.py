"""Shared set-up of the delivery tests: an embedded ucf with sinks, signals to ingest,
and a downstream pipeline fake that records what it accepted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ucf.core.mapping import MappedSignal
from ucf.core.signal import NormalisedSignal, dedup_key, iso_utc, signal_id
from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault
from ucf.fakes.kit import CallNext
from ucf.service.context import UcfContext
from ucf.service.settings import Settings
from ucf.stores.models import epoch_ms

BASE = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def open_context(
    data_dir: Path,
    *,
    clock: Callable[[], datetime] | None = None,
    env: Mapping[str, str] | None = None,
    **more_env: str,
) -> UcfContext:
    """A real embedded ucf (SQLite, local secrets) with the sinks ``env`` configures; on
    ``clock`` (the store's time: leases, claims, backoffs) when given."""
    variables = {"UCF_ALLOW_HOSTS": "127.0.0.1", **(env or {}), **more_env}
    settings = Settings.from_env(variables, data_dir=data_dir)
    if clock is None:
        return await UcfContext.open(settings)
    return await UcfContext.open(settings, clock=clock)


def mapped(
    connector: str, project: str, number: int, *, raw: dict[str, Any] | None = None
) -> MappedSignal:
    key = dedup_key(connector, project, str(number), "v1")
    moment = BASE + timedelta(seconds=number)
    signal = NormalisedSignal(
        id=signal_id(key, epoch_ms(moment)),
        source=connector,
        timestamp=iso_utc(moment),
        type="issue.opened",
        summary=f"Issue {number} in {project}",
        raw=raw if raw is not None else {"number": number, "title": f"Issue {number}"},
        project_id=project,
    )
    return MappedSignal.of(signal, dedup_key=key, item_id=str(number), version="v1")


async def ingest_one(context: UcfContext, item: MappedSignal) -> str:
    """Ingest one signal in its own write (so outbox order is ingest order); its id."""
    outcome = await context.ingestor.ingest(
        [item],
        project_id=item.signal.project_id,
        connector_id=item.signal.source,
        received_at=datetime.now(UTC),
    )
    assert outcome.inserted == 1
    return outcome.inserted_ids[0]


class Pipeline:
    """The downstream pipeline: accepts ``POST /signals`` and remembers each batch."""

    def __init__(self, server: FakeServer, *, bearer: str | None = None) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._bearer = bearer
        self.accepted: list[FakeRequest] = []
        self.refused = 0
        self.delay = 0.0
        """Seconds each POST takes to answer."""
        self.refuse_signal: Callable[[dict[str, Any]], bool] | None = None
        """A batch holding a signal this says yes to is answered 422 (what a strict
        pipeline does with a payload it cannot take)."""
        server.add_route("POST", "/signals", self._accept)

    def _accept(self, request: FakeRequest) -> dict[str, Any] | FakeResponse:
        if (
            self._bearer is not None
            and request.headers.get("authorization") != f"Bearer {self._bearer}"
        ):
            with self._lock:
                self.refused += 1
            return FakeResponse(status=401, body=b'{"error":"unauthorized"}')
        if self.delay:
            time.sleep(self.delay)
        refuse = self.refuse_signal
        if refuse is not None and any(refuse(signal) for signal in request.json()["signals"]):
            return FakeResponse(status=422, body=b'{"error":"unprocessable signal"}')
        with self._lock:
            self.accepted.append(request)
        return {"ok": True}

    @property
    def url(self) -> str:
        return self.server.url("/signals")

    def batches(self) -> list[list[dict[str, Any]]]:
        with self._lock:
            return [request.json()["signals"] for request in self.accepted]

    def signal_ids(self) -> list[str]:
        return [signal["id"] for batch in self.batches() for signal in batch]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def order_violation(
    batches: list[list[dict[str, Any]]], ingested: dict[tuple[str, str], list[str]]
) -> str | None:
    """Why the delivered batches break "in order per instance, each at least once", or None.

    Redeliveries are allowed (at least once); what is not is a signal arriving
    before an earlier signal of its instance has arrived, or a signal never arriving.
    """
    seen: set[str] = set()
    for number, batch in enumerate(batches):
        for signal in batch:
            expected = ingested[(signal["projectId"], signal["source"])]
            earlier = expected[: expected.index(signal["id"])]
            missing = [sid for sid in earlier if sid not in seen]
            if missing:
                return f"batch {number}: {signal['id']} arrived before {missing[0]}"
            seen.add(signal["id"])
    never = [sid for ids in ingested.values() for sid in ids if sid not in seen]
    return f"never delivered: {never}" if never else None


class Gate(Fault):
    """Holds each request until the test opens the gate: a batch still in flight, a poll
    still running."""

    name = "gate"

    def __init__(self) -> None:
        self.opened = threading.Event()

    async def apply(self, request: FakeRequest, call_next: CallNext) -> FakeResponse:
        await asyncio.to_thread(self.opened.wait, 30)
        return await call_next()
