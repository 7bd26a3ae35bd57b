"""httpcore's locks, events and shields on plain asyncio, while anyio does not run here.

httpcore's connection pool takes turns with ``AsyncLock``, waits for a free
connection with ``AsyncEvent`` and shields its clean-up with
``AsyncShieldCancellation`` (``httpcore/_synchronization.py``). On asyncio each
of them asks the module's ``anyio`` for the real thing — ``anyio.Lock()``,
``anyio.Event()``, ``anyio.Semaphore(...)``, ``anyio.CancelScope(shield=True)``,
``anyio.fail_after(timeout)`` — and the first such request loads anyio's whole
asyncio backend: 28 modules, ~21 ms of CPU, paid by the first request of every
Lambda cold start (poll worker, delivery) that otherwise never runs anyio: its
sockets are asyncio's own (:mod:`ucf.runtime.network`), its name lookups too
(:func:`ucf.runtime.ssrf.system_resolver`).

:func:`install` puts :data:`PRIMITIVES` in place of that module's ``anyio``
name. Each request is answered with asyncio's equivalent *while anyio's
asyncio backend is not loaded*, and by anyio itself once it is:

- ``Lock``, ``Event``, ``Semaphore`` → ``asyncio.Lock``, ``asyncio.Event``,
  ``asyncio.BoundedSemaphore`` (httpcore only ever bounds a semaphore at its
  initial value); ``fail_after(t)`` → :class:`Deadline` (``asyncio.timeout``'s
  logic in the synchronous ``with`` httpcore enters): both raise
  ``TimeoutError``, which httpcore maps to ``PoolTimeout``.
- ``CancelScope(shield=True)`` → a scope that does nothing. Without anyio's
  backend no anyio cancel scope exists in the process (making one loads it),
  so every cancellation is asyncio's own (``Task.cancel``, ``asyncio.timeout``,
  ``wait_for``), and anyio's shield does not hold those back either: the
  clean-up sees the same ``CancelledError`` at its next ``await`` with or
  without it (``tests/runtime/test_pool_sync.py`` holds both).

A process where anyio does run (``ucf serve``: Starlette) gets anyio's own
objects from the moment its backend is loaded, so httpcore behaves there
exactly as it does without this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, Final

__all__ = ["PRIMITIVES", "Deadline", "install"]

_ANYIO_BACKEND: Final = "anyio._backends._asyncio"


def _anyio() -> Any | None:
    """anyio, if its asyncio backend is loaded (it is then in use, or about to be)."""
    return sys.modules.get("anyio") if _ANYIO_BACKEND in sys.modules else None


class AsyncioPrimitives:
    """The part of anyio's API httpcore's asyncio branch uses, answered by asyncio first
    (anyio's names, as httpcore looks them up)."""

    @staticmethod
    def Lock() -> Any:
        anyio = _anyio()
        return asyncio.Lock() if anyio is None else anyio.Lock()

    @staticmethod
    def Event() -> Any:
        anyio = _anyio()
        return asyncio.Event() if anyio is None else anyio.Event()

    @staticmethod
    def Semaphore(initial_value: int, *, max_value: int | None = None) -> Any:
        anyio = _anyio()
        if anyio is not None:
            return anyio.Semaphore(initial_value, max_value=max_value)
        if max_value is not None and max_value != initial_value:
            raise ValueError("asyncio bounds a semaphore at its initial value")
        return (
            asyncio.Semaphore(initial_value)
            if max_value is None
            else asyncio.BoundedSemaphore(initial_value)
        )

    @staticmethod
    def CancelScope(*, shield: bool = False) -> Any:
        anyio = _anyio()
        if anyio is not None:
            return anyio.CancelScope(shield=shield)
        if not shield:
            raise ValueError("only shielding scopes are answered without anyio")
        return contextlib.nullcontext()

    @staticmethod
    def fail_after(delay: float | None) -> Any:
        anyio = _anyio()
        return Deadline(delay) if anyio is None else anyio.fail_after(delay)


class Deadline:
    """``anyio.fail_after`` on asyncio: a *synchronous* ``with`` (as httpcore enters it)
    that cancels the task after ``delay`` seconds and then raises ``TimeoutError``.

    ``asyncio.timeout`` does the same but is entered with ``async with``; this is its
    logic (``asyncio.timeouts.Timeout`` as 3.11.3 and later have it) without the awaits
    it never makes. A cancellation that is not the deadline's own (the task cancelled
    from outside) stays a ``CancelledError``. Requests a task already had when the
    deadline began (a cancellation caught and handled, as a caller of
    :func:`ucf.runtime.completion.to_the_end` settling a cancelled step does) are not
    counted against it: its expiry is still a ``TimeoutError``, as ``asyncio.timeout``'s
    and ``anyio.fail_after``'s are (3.11.0-3.11.2's ``== 0`` test turned it into a spurious
    ``CancelledError``; ucf's ``asyncio.timeout`` blocks need 3.11.3, its minimum).
    """

    def __init__(self, delay: float | None) -> None:
        self._delay = delay
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        if self._delay is not None:
            self._task = asyncio.current_task()
            if self._task is None:
                raise RuntimeError("a deadline needs a running task")
            self._cancelling = self._task.cancelling()
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._expire)
        return self

    def _expire(self) -> None:
        assert self._task is not None
        self._expired = True
        self._task.cancel()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Our cancel request is withdrawn; if no other came after the deadline began,
        # the task's CancelledError was the deadline's: it becomes the timeout.
        if (
            self._expired
            and self._task is not None
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError


PRIMITIVES: Final = AsyncioPrimitives()


def install() -> None:
    """Answer httpcore's asyncio synchronisation from :data:`PRIMITIVES` (idempotent).

    Left alone if httpcore no longer reads them from a module-level ``anyio``
    (the pinned httpcore does; a test holds it), so a future httpcore falls back
    to its own behaviour rather than breaking.
    """
    from httpcore import _synchronization

    current = getattr(_synchronization, "anyio", None)
    if current is PRIMITIVES:
        return
    if getattr(current, "__name__", None) == "anyio":
        _synchronization.anyio = PRIMITIVES  # type: ignore[assignment,attr-defined]
