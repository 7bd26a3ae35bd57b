"""Awaits run side by side, all finished before the caller goes on.

``asyncio.gather`` raises the first error as soon as it happens and leaves the
other awaits running on their own: a poll whose credentials cannot be read went
on to release its lease and fail while its checkpoint read was still in flight,
and a Lambda invocation could end with a store call half made (to run when the
function thaws for another request). :func:`settled` waits for every one, then
raises the error of the first that failed in the order given: the same error
whichever finishes first. No I/O of its own, so the stores use it as well as
the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["both", "settled"]

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


async def settled(*awaits: Awaitable[T]) -> list[T]:
    """Their results, in order, once every one is done."""
    outcomes = await asyncio.gather(*awaits, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]  # no exception among them


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """:func:`settled` for two awaits of different types."""
    one, two = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(one, BaseException):
        raise one
    if isinstance(two, BaseException):
        raise two
    return one, two
