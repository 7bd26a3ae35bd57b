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
"try later" (the secret store was unreachable). The lease is renewed while the
turn is held, so a slow token refresh inside it keeps it.

A turn is re-entrant within one flow of work (an OAuth refresh holds the turn
and saves the rotated token, which merges in the same turn), including tasks
that work spawns: a context variable, which tasks inherit, names the turns held,
and a task that outlives the turn takes turns again like any other.

:class:`StoredCredentials` is what the OAuth flows of an instance's runs are
given: it saves rotated tokens in the turn and, in the turn, says what is stored,
so a run whose token expired takes the one another run refreshed instead of
refreshing with a refresh token the provider has already rotated out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Final

from ucf.core.credential_keys import ACCESS_TOKEN_EXPIRES_AT
from ucf.runtime.completion import to_the_end
from ucf.runtime.redaction import SECRETS
from ucf.service.instance_secrets import InstanceSecrets
from ucf.service.worker_id import default_worker_id
from ucf.stores.protocols import LeaseStore
from ucf.stores.secrets.base import (
    SecretNotFound,
    SecretStore,
    SecretStoreUnavailable,
    SecretValues,
    merge_secret,
)

__all__ = ["TURN_TTL", "TURN_WAIT", "SecretTurns", "StoredCredentials"]

TURN_TTL: Final = timedelta(seconds=10)
"""How long a turn outlives a holder that died mid-change: a change is one read and
one write of the secret store, a few hundred milliseconds at worst."""
TURN_WAIT: Final = 30.0
"""Seconds a change waits for its turn before giving up: more than :data:`TURN_TTL`,
so a turn left by a dead holder never makes anyone give up, and room for a live
holder's token refresh that the provider answers slowly or that retries once."""
_FIRST_RETRY: Final = 0.02
_LONGEST_RETRY: Final = 0.5


class _Held:
    """One turn held, as the flow of work that holds it sees it (tasks inherit it)."""

    __slots__ = ("held", "key")

    def __init__(self, key: tuple[int, str]) -> None:
        self.key = key  # (lease store, ref)
        self.held = True
        """False once the turn is over: a task started in it may outlive it."""


_HELD: ContextVar[frozenset[_Held]] = ContextVar("ucf_secret_turns", default=frozenset())
"""The turns this flow of work holds."""

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
        ttl: timedelta = TURN_TTL,
    ) -> None:
        self._leases = leases
        self._clock = clock
        self._holder = holder or default_worker_id()
        self._wait_seconds = wait_seconds
        self._ttl = ttl

    @contextlib.asynccontextmanager
    async def turn(self, ref: str) -> AsyncIterator[None]:
        """Hold the turn of the credential set ``ref`` for the body of the ``with``."""
        key = (id(self._leases), ref)
        held = _HELD.get()
        if any(turn.key == key and turn.held for turn in held):
            yield  # this flow of work holds it already
            return
        local = _LOCAL_TURNS.get(key)
        if local is None:
            local = _LOCAL_TURNS[key] = asyncio.Lock()
        async with local:
            name = f"secret-turn:{ref}"
            owner = f"{self._holder}:{secrets.token_hex(6)}"  # this turn alone
            await self._take(name, owner)
            renewing = asyncio.create_task(self._keep(name, owner))
            this = _Held(key)
            marked = _HELD.set(held | {this})
            try:
                yield
            finally:
                this.held = False  # for the tasks started in it that outlive it, too
                _HELD.reset(marked)
                renewing.cancel()  # a renewal after the release finds it gone and changes nothing
                # Released even when the body is cancelled, or the next change waits out the TTL.
                # A store that fails the release does not undo the change the body made: the
                # lease lapses by itself within the TTL.
                cancelled = False
                with contextlib.suppress(Exception):
                    _, cancelled = await to_the_end(self._leases.release(name, owner))
                await asyncio.wait({renewing})  # ends at once: it is cancelled
                if cancelled:
                    raise asyncio.CancelledError

    async def merge(
        self, store: SecretStore, ref: str, updates: Mapping[str, str | None]
    ) -> SecretValues:
        """:func:`merge_secret` in the turn of ``ref``."""
        async with self.turn(ref):
            return await merge_secret(store, ref, updates)

    async def _keep(self, name: str, owner: str) -> None:
        """Renew the turn's lease while the body runs (a token refresh may take a while)."""
        while True:
            await asyncio.sleep(self._ttl.total_seconds() / 3)
            renewed = True
            with contextlib.suppress(Exception):  # a store hiccup: try again next period
                renewed = await self._leases.renew(name, owner, ttl=self._ttl, now=self._clock())
            if not renewed:
                return  # taken over after all (the store was unreachable past the TTL)

    async def _take(self, name: str, owner: str) -> None:
        give_up = time.monotonic() + self._wait_seconds
        pause = _FIRST_RETRY
        while True:
            taken, cancelled = await to_the_end(
                self._leases.acquire(name, owner, ttl=self._ttl, now=self._clock())
            )
            if cancelled:
                if taken:
                    with contextlib.suppress(Exception):  # it lapses by itself within the TTL
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


class StoredCredentials:
    """An instance's credentials in the secret store, as its OAuth flows keep them
    (a :class:`ucf.runtime.auth.CredentialKeeper`)."""

    def __init__(self, turns: SecretTurns, store: SecretStore, ref: str) -> None:
        self._turns = turns
        self._store = store
        self._ref = ref

    async def __call__(self, credentials: dict[str, str]) -> None:
        updates: dict[str, str | None] = dict(credentials)
        updates.setdefault(ACCESS_TOKEN_EXPIRES_AT, None)  # a token without expiry drops the old
        await self._turns.merge(self._store, self._ref, updates)
        # Stored: masked for good, even when a typed connection test refreshed them (its
        # lent values are forgotten when it ends; these are the instance's now).
        SECRETS.keep(credentials.values())

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[Mapping[str, str] | None]:
        async with self._turns.turn(self._ref):
            try:
                stored: Mapping[str, str] | None = InstanceSecrets.decode(
                    await self._store.get(self._ref)
                ).credentials
            except SecretNotFound:
                stored = None
            yield stored
