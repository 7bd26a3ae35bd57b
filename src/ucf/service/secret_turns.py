"""Changes to one credential set take turns, in this process and across processes.

An instance's secret entry is changed by read-modify-write from several places
that run independently: a poll saving the refresh token its OAuth provider just
rotated, the upkeep saving a Graph subscription's ``clientState``, the gateway
holding a secret an unsigned handshake handed over, an operator rotating a
credential. Interleaved, the later write drops what the other added. Losing a
rotated refresh token is the worst of it: the provider has already killed the
old one (Atlassian and Microsoft rotate them), so the connection is dead until
someone consents again.

Within a process an :class:`asyncio.Lock` per credential set is enough. On AWS
the poll worker, the upkeep and the API are different Lambda functions, and a
deployment may run several ``ucf worker`` processes on one SQLite file, so the
turn is also a lease in the shared store (``secret-turn:<ref>``), which both
stores implement with one conditional write. A holder that dies keeps it for
:data:`TURN_TTL` at most; a waiter gives up after :data:`TURN_WAIT`, longer
than that, with :class:`SecretStoreUnavailable`, which callers already treat as
"try later" (the secret store was unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import Final

from ucf.runtime.completion import to_the_end
from ucf.service.worker_id import default_worker_id
from ucf.stores.protocols import LeaseStore
from ucf.stores.secrets.base import (
    SecretStore,
    SecretStoreUnavailable,
    SecretValues,
    merge_secret,
)

__all__ = ["TURN_TTL", "TURN_WAIT", "SecretTurns"]

TURN_TTL: Final = timedelta(seconds=10)
"""How long a turn outlives a holder that died mid-change: a change is one read and
one write of the secret store, a few hundred milliseconds at worst."""
TURN_WAIT: Final = 15.0
"""Seconds a change waits for its turn before giving up: more than :data:`TURN_TTL`,
so a turn left by a dead holder never makes anyone give up."""
_FIRST_RETRY: Final = 0.02
_LONGEST_RETRY: Final = 0.5

_LOCAL_TURNS: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)
"""One lock per (lease store, ref) while a change of it runs or waits in this process:
changes in one process queue here instead of polling the lease."""


class SecretTurns:
    """Runs each read-modify-write of a credential set in its own turn."""

    def __init__(
        self,
        leases: LeaseStore,
        clock: Callable[[], datetime],
        *,
        holder: str | None = None,
        wait_seconds: float = TURN_WAIT,
    ) -> None:
        self._leases = leases
        self._clock = clock
        self._holder = holder or default_worker_id()
        self._wait_seconds = wait_seconds

    @contextlib.asynccontextmanager
    async def turn(self, ref: str) -> AsyncIterator[None]:
        """Hold the turn of the credential set ``ref`` for the body of the ``with``."""
        key = (id(self._leases), ref)
        local = _LOCAL_TURNS.get(key)
        if local is None:
            local = _LOCAL_TURNS[key] = asyncio.Lock()
        async with local:
            name = f"secret-turn:{ref}"
            owner = f"{self._holder}:{secrets.token_hex(6)}"  # this turn alone
            await self._take(name, owner)
            try:
                yield
            finally:
                # Released even when the body is cancelled, or the next change waits out the TTL.
                _, cancelled = await to_the_end(self._leases.release(name, owner))
                if cancelled:
                    raise asyncio.CancelledError

    async def merge(
        self, store: SecretStore, ref: str, updates: Mapping[str, str | None]
    ) -> SecretValues:
        """:func:`merge_secret` in the turn of ``ref``."""
        async with self.turn(ref):
            return await merge_secret(store, ref, updates)

    async def _take(self, name: str, owner: str) -> None:
        give_up = time.monotonic() + self._wait_seconds
        pause = _FIRST_RETRY
        while True:
            taken, cancelled = await to_the_end(
                self._leases.acquire(name, owner, ttl=TURN_TTL, now=self._clock())
            )
            if cancelled:
                if taken:
                    await to_the_end(self._leases.release(name, owner))
                raise asyncio.CancelledError
            if taken:
                return
            if time.monotonic() + pause > give_up:
                raise SecretStoreUnavailable(
                    "another process kept changing these credentials for "
                    f"{self._wait_seconds:g} s; try again"
                )
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))  # jitter: waiters spread out
            pause = min(pause * 2, _LONGEST_RETRY)
