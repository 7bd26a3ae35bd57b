"""Store steps that finish even when their caller is cancelled.

A lease acquired or entries claimed in the store while the awaiting task was
being cancelled would leave the task not knowing what it holds: on its way out
it could neither release the lease nor give the entries back, and the next
worker would wait for both to lapse. Running the step to its end, doing the
bookkeeping, then re-raising the cancellation keeps the two in step.

The same goes for a rotated OAuth refresh token saved while a request deadline
cuts the attempt: the flow must adopt the token it saved, or its retry presents
the one the provider has already killed. Hence this module sits in the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

Result = TypeVar("Result")


async def to_the_end(step: Awaitable[Result]) -> tuple[Result, bool]:
    """The step's result, and whether a cancellation came while it ran.

    The caller settles what the result says it holds, then raises
    :class:`asyncio.CancelledError` itself when the flag is set. A step that
    fails (or is cancelled itself) after a cancellation re-raises the
    cancellation, so it is never lost. Further cancellations while the step
    ends (a second Ctrl-C, a shutdown grace running out) change nothing: the
    caller still learns what the step did, and raises one cancellation.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task), False
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        if task.cancelled() or task.exception() is not None:
            raise
        return task.result(), True
