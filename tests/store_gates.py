"""Cancel a task in the one moment a store step cannot be seen from outside: after the
store did its work, before the caller heard the answer.

The store method stays the real one (our stores are never mocked); it only holds its
answer back until the task has been cancelled, which is what a shutdown landing
between a store write and the bookkeeping that follows it looks like.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


class AnswerLate:
    """``part.method`` (e.g. ``store.outbox``, ``"claim"``) answering only when released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, part: object, method: str) -> None:
        self._monkeypatch = monkeypatch
        self._part = part
        self._method = method
        self._real = getattr(part, method)
        self._done_in_store = asyncio.Event()
        self._go_on = asyncio.Event()
        monkeypatch.setattr(part, method, self._answer_late)

    async def _answer_late(self, *args: Any, **kwargs: Any) -> Any:
        result = await self._real(*args, **kwargs)
        self._done_in_store.set()
        await self._go_on.wait()
        return result

    async def cancel_in_between(self, task: asyncio.Task[Any], *, times: int = 1) -> None:
        """Once the store has acted: cancel ``task`` (``times`` over, as a second Ctrl-C
        would), let the store answer, see the task end cancelled, restore the method."""
        await asyncio.wait_for(self._done_in_store.wait(), timeout=5)
        for _ in range(times):
            task.cancel()
            await asyncio.sleep(0.01)
        self._go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        self._monkeypatch.setattr(self._part, self._method, self._real)
