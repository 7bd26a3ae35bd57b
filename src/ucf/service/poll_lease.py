"""An instance's poll lease: one poller per instance, whichever worker or Lambda runs it.

Kept apart from :mod:`ucf.service.poll` (which re-exports it) so that taking the
lease needs no more than the store: the Lambda poll worker takes it beside its
connector read, at the very start of a cold invocation, while the HTTP stack and
the poll machinery are still being imported (:mod:`ucf.aws.polling`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from ucf.runtime.completion import to_the_end
from ucf.stores.protocols import LeaseStore

__all__ = ["HeldLease", "lease_name"]


def lease_name(project_id: str, connector_id: str) -> str:
    return f"poll:{project_id}:{connector_id}"


class HeldLease:
    """A poll lease kept alive by a background renewal every third of its TTL.

    ``lost`` turns True when a renewal finds someone else holds it (we stalled
    past the TTL): the poll then stops before storing another page. Storing one
    anyway would still be safe — dedup and the checkpoint CAS see to that — but
    two pollers of one instance waste the upstream's rate budget.
    """

    def __init__(
        self,
        leases: LeaseStore,
        name: str,
        owner: str,
        ttl: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._leases = leases
        self.name = name
        self.owner = owner
        self._ttl = ttl
        self._clock = clock
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> bool:
        acquired, cancelled = await to_the_end(
            self._leases.acquire(self.name, self.owner, ttl=self._ttl, now=self._clock())
        )
        if cancelled:
            if acquired:
                with contextlib.suppress(Exception):  # it expires by itself if this fails
                    await self._leases.release(self.name, self.owner)
            raise asyncio.CancelledError
        if acquired:
            self._task = asyncio.create_task(self._keep(), name=f"renew {self.name}")
        return acquired

    @property
    def held(self) -> bool:
        """Whether :meth:`acquire` took the lease (and it is being kept alive)."""
        return self._task is not None

    async def _keep(self) -> None:
        period = self._ttl.total_seconds() / 3
        while not self.lost:
            await asyncio.sleep(period)
            with contextlib.suppress(Exception):  # a store hiccup: try again next period
                renewed = await self._leases.renew(
                    self.name, self.owner, ttl=self._ttl, now=self._clock()
                )
                self.lost = not renewed

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.lost:
            with contextlib.suppress(Exception):  # it expires by itself if this fails
                await self._leases.release(self.name, self.owner)
