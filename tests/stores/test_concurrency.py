"""Races between real processes sharing one store, on every backend.

Each contender is a spawned process that opens the store by URL, waits at a
barrier with the others, then does its part at once. Only the store's own
atomicity (transactions, conditional writes) can make these come out right.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest

from tests.stores.builders import T0, signal_write
from ucf.stores import Store, open_store

CONTENDERS = 6
_TIMEOUT_S = 90.0

Scenario = Callable[[Store, int], Awaitable[Any]]


async def _insert_same_signal(store: Store, index: int) -> Any:
    result = await store.signals.ingest([signal_write("42")], sinks=["http"])
    return result.inserted[0]


async def _acquire_lease(store: Store, index: int) -> Any:
    return await store.leases.acquire(
        "poll:p1:jira", f"worker-{index}", ttl=timedelta(minutes=5), now=T0
    )


async def _increment_checkpoint(store: Store, index: int) -> Any:
    """Read-modify-write 15 times; count the writes the store accepted."""
    accepted = 0
    for _ in range(15):
        current = await store.checkpoints.get("p1", "jira")
        value = 0 if current.value is None else int(current.value)
        if await store.checkpoints.compare_and_set(
            "p1", "jira", expected_version=current.version, value=value + 1, now=T0
        ):
            accepted += 1
    return accepted


async def _drain_bucket(store: Store, index: int) -> Any:
    granted = 0
    for _ in range(10):
        decision = await store.rate_limits.try_acquire(
            "webhook:p1:jira", capacity=25, refill_per_second=0.001, now=T0
        )
        granted += decision.allowed
    return granted


SCENARIOS: dict[str, Scenario] = {
    "insert_same_signal": _insert_same_signal,
    "acquire_lease": _acquire_lease,
    "increment_checkpoint": _increment_checkpoint,
    "drain_bucket": _drain_bucket,
}


def _contender(
    index: int,
    barrier: Barrier,
    commands: Queue[tuple[str, str, dict[str, str]] | None],
    results: Queue[tuple[int, str, Any]],
) -> None:
    """A worker process: for each (url, scenario) it is sent, open, meet, race, report."""

    async def main(url: str, scenario: str) -> Any:
        async with open_store(url) as store:
            await asyncio.to_thread(barrier.wait, _TIMEOUT_S)
            return await SCENARIOS[scenario](store, index)

    while (command := commands.get()) is not None:
        url, scenario, env = command
        os.environ.update(env)
        try:
            results.put((index, "ok", asyncio.run(main(url, scenario))))
        except BaseException:
            results.put((index, "error", traceback.format_exc()))


class Contenders:
    """Processes spawned once per module (spawning costs about a second each) and
    reused for every race; the barrier is cyclic, so each race starts together."""

    def __init__(self, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.count = count
        self._results: Queue[tuple[int, str, Any]] = ctx.Queue()
        self._commands: list[Queue[tuple[str, str, dict[str, str]] | None]] = [
            ctx.Queue() for _ in range(count)
        ]
        # Held for the pool's lifetime: a collected barrier unlinks its semaphore.
        self._barrier = ctx.Barrier(count)
        self._processes = [
            ctx.Process(
                target=_contender,
                args=(i, self._barrier, self._commands[i], self._results),
                daemon=True,
            )
            for i in range(count)
        ]
        for process in self._processes:
            process.start()

    def race(self, url: str, scenario: str) -> list[Any]:
        """Run ``scenario`` in every process at once; their results by process index."""
        env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "UCF_"))}
        for commands in self._commands:
            commands.put((url, scenario, env))
        outcomes = [self._next_result() for _ in self._processes]
        errors = [detail for _, status, detail in outcomes if status == "error"]
        assert not errors, errors[0]
        return [value for _, _, value in sorted(outcomes, key=lambda o: o[0])]

    def _next_result(self) -> tuple[int, str, Any]:
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                return self._results.get(timeout=0.5)
            except queue.Empty:
                dead = [p.exitcode for p in self._processes if not p.is_alive()]
                assert not dead, f"a contender process died (exit codes {dead})"
        raise AssertionError(f"contenders did not finish within {_TIMEOUT_S} s")

    def stop(self) -> None:
        for commands in self._commands:
            commands.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


@pytest.fixture(scope="module")
def contenders() -> Iterator[Contenders]:
    pool = Contenders(CONTENDERS)
    try:
        yield pool
    finally:
        pool.stop()


async def _prepare(url: str) -> None:
    async with open_store(url):
        pass


async def test_racing_inserts_of_one_signal_store_it_exactly_once(
    store_url: str, contenders: Contenders
) -> None:
    await _prepare(store_url)
    inserted = await asyncio.to_thread(contenders.race, store_url, "insert_same_signal")
    assert sorted(inserted) == [False] * (CONTENDERS - 1) + [True]
    async with open_store(store_url) as store:
        page = await store.signals.query("p1")
        assert len(page.items) == 1
        entries = await store.outbox.claim("http", limit=10, lease=timedelta(seconds=1), now=T0)
        assert len(entries) == 1, "the one insert enqueues exactly one delivery"


async def test_racing_workers_get_exactly_one_lease_owner(
    store_url: str, contenders: Contenders
) -> None:
    await _prepare(store_url)
    acquired = await asyncio.to_thread(contenders.race, store_url, "acquire_lease")
    assert sum(acquired) == 1
    winner = acquired.index(True)
    async with open_store(store_url) as store:
        lease = await store.leases.get("poll:p1:jira", now=T0)
        assert lease is not None
        assert lease.owner == f"worker-{winner}"


async def test_racing_checkpoint_increments_lose_no_update(
    store_url: str, contenders: Contenders
) -> None:
    await _prepare(store_url)
    accepted = await asyncio.to_thread(contenders.race, store_url, "increment_checkpoint")
    async with open_store(store_url) as store:
        final = await store.checkpoints.get("p1", "jira")
    assert final.value == sum(accepted), "every accepted write is counted exactly once"
    assert final.version == sum(accepted)
    assert sum(accepted) >= 15, "at least one worker's writes must have gone through"


async def test_racing_rate_limit_callers_never_exceed_capacity(
    store_url: str, contenders: Contenders
) -> None:
    await _prepare(store_url)
    granted = await asyncio.to_thread(contenders.race, store_url, "drain_bucket")
    assert sum(granted) == 25, "60 attempts at one instant: exactly the 25 tokens are granted"
