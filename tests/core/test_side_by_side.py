"""Awaits side by side: every one finished before an error is raised, and the error of
the first in the order given (not in time)."""

from __future__ import annotations

import asyncio

import pytest

from ucf.core.side_by_side import both, settled


async def test_an_error_is_raised_only_once_every_await_is_over() -> None:
    finished: list[str] = []

    async def fails_at_once() -> str:
        raise ValueError("first")

    async def slow_write() -> str:
        await asyncio.sleep(0.05)
        finished.append("slow")
        return "slow"

    with pytest.raises(ValueError, match="first"):
        await settled(fails_at_once(), slow_write())
    assert finished == ["slow"]  # plain gather would have raised with it still running


async def test_the_first_failure_in_order_wins_whichever_finishes_first() -> None:
    async def fails_late() -> int:
        await asyncio.sleep(0.02)
        raise KeyError("in order")

    async def fails_early() -> int:
        raise LookupError("in time")

    with pytest.raises(KeyError):
        await settled(fails_late(), fails_early())
    with pytest.raises(KeyError):
        await both(fails_late(), fails_early())


async def test_results_come_back_in_order() -> None:
    async def value(n: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return n

    assert await settled(value(1, 0.02), value(2, 0.0), value(3, 0.01)) == [1, 2, 3]
    assert await both(value(1, 0.01), value(2, 0.0)) == (1, 2)
