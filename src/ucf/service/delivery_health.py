"""Webhook deliveries feed an instance's health (SPEC §8.3), without a store write each.

Apart from :mod:`ucf.service.health` (which runs health checks, so loads the
HTTP client and the poll machinery) because the gateway reports every
delivery: a descriptor connector's delivery on the Lambda API function must
not pay for an HTTP client stack it never uses (``bench/coldstart.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import field
from datetime import datetime
from typing import Final

from ucf.core.records import datarecord
from ucf.stores.errors import NotFound
from ucf.stores.models import DeliveryObservation
from ucf.stores.protocols import InstanceStore

__all__ = ["FAILURES_EVERY", "VERIFIED_EVERY", "DeliveryReporter"]

log = logging.getLogger("ucf.health")

VERIFIED_EVERY: Final = 60.0
"""Seconds between two writes of an instance's ``lastDeliveryAt`` by one process."""
FAILURES_EVERY: Final = 5.0
"""Seconds between two writes of an instance's verification failures by one process."""


@datarecord(frozen=False)
class _Deliveries:
    verified_at: float = float("-inf")
    failures_at: float = float("-inf")
    pending_failures: int = 0
    failures_recorded: bool = False


@datarecord(frozen=False, slots=False)
class DeliveryReporter:
    """Feeds webhook deliveries into an instance's health, one write per period at most.

    The gateway reports each delivery that passed verification and each that
    did not (:func:`ucf.stores.models.health_after_delivery` decides what they
    do to health). A burst must not become a store write per request: a
    verified delivery is written once a minute (at once after failures, so a
    fixed secret heals the instance without delay); failures are counted here
    and written at most every five seconds. A report that cannot be written is
    logged and dropped: health bookkeeping never costs a delivery its 2xx.
    """

    instances: InstanceStore
    clock: Callable[[], datetime]
    monotonic: Callable[[], float] = time.monotonic
    verified_every: float = VERIFIED_EVERY
    failures_every: float = FAILURES_EVERY
    _seen: dict[tuple[str, str], _Deliveries] = field(default_factory=dict)

    def verified_due(self, project_id: str, connector_id: str) -> bool:
        """Whether :meth:`verified` would write now (the first verified delivery a
        process sees of an instance, one a minute after it, the first after failures).

        The gateway then runs that write beside the delivery's ingest, which does
        not depend on it, instead of before it: on AWS two round trips (the
        instance read and its conditional update) off a Lambda's first delivery
        (``bench/coldstart.py``). Every other delivery writes nothing and awaits
        nothing more.
        """
        seen = self._seen.get((project_id, connector_id))
        if seen is None:
            return True
        return seen.failures_recorded or self.monotonic() - seen.verified_at >= self.verified_every

    async def verified(self, project_id: str, connector_id: str) -> None:
        seen = self._seen_of(project_id, connector_id)
        now = self.monotonic()
        if not seen.failures_recorded and now - seen.verified_at < self.verified_every:
            return
        seen.verified_at, seen.pending_failures, seen.failures_recorded = now, 0, False
        await self._record(project_id, connector_id, DeliveryObservation(self.clock(), True))

    async def failed(self, project_id: str, connector_id: str, reason: str) -> None:
        seen = self._seen_of(project_id, connector_id)
        seen.pending_failures += 1
        now = self.monotonic()
        if now - seen.failures_at < self.failures_every:
            return
        count, seen.pending_failures = seen.pending_failures, 0
        seen.failures_at, seen.failures_recorded = now, True
        observation = DeliveryObservation(self.clock(), False, failed=count, error=reason)
        await self._record(project_id, connector_id, observation)

    def _seen_of(self, project_id: str, connector_id: str) -> _Deliveries:
        """The instance's tally, made on its first delivery (not one made and dropped on
        every delivery, as ``setdefault`` would)."""
        seen = self._seen.get((project_id, connector_id))
        if seen is None:
            seen = self._seen[(project_id, connector_id)] = _Deliveries()
        return seen

    async def _record(
        self, project_id: str, connector_id: str, observation: DeliveryObservation
    ) -> None:
        try:
            await self.instances.record_delivery(project_id, connector_id, observation)
        except NotFound:
            return  # disconnected meanwhile
        except Exception:
            log.warning(
                "could not record webhook deliveries of %s/%s",
                project_id,
                connector_id,
                exc_info=True,
            )
