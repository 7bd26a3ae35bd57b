"""Two independent awaits run side by side, both finished before the caller goes on.

``asyncio.gather`` raises the first error as soon as it happens and leaves the
other await running on its own: a poll whose credentials cannot be read went
on to release its lease and fail while its checkpoint read was still in
flight, and a Lambda invocation could end with a store call half made (to run
when the function thaws for another request). :func:`both` waits for the two,
then raises the first one's error if it failed, else the second one's: the
same error whichever finishes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["both"]

A = TypeVar("A")
B = TypeVar("B")


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """``first`` and ``second`` side by side; their results once both are done."""
    one, two = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(one, BaseException):
        raise one
    if isinstance(two, BaseException):
        raise two
    return one, two
