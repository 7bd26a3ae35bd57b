"""How often a source polls (:class:`PollSchedule`), apart from the sources themselves.

The scheduler decides what is due from each connector's schedule alone; for a
descriptor-driven connector that is its ``ingestion.polling`` block
(:func:`declared_schedule`), so deciding needs neither the source's compiled
poll plan and mapping nor the HTTP stack (the AWS schedule function loads none
of them: ``bench/coldstart.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ucf.core.descriptor import ConnectorDescriptor

__all__ = ["DEFAULT_LEASE_TTL", "PollSchedule", "declared_schedule"]

DEFAULT_LEASE_TTL: Final = timedelta(seconds=60)
"""How long a poller that stops renewing (a crash, SIGKILL) blocks its instance."""


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """How often a source polls, how many requests a minute its upstream allows, and how
    far back its first poll reaches.

    A generic source takes them from ``ingestion.polling``; a native source
    declares them in code. A source without a schedule receives webhooks only.
    """

    interval_seconds: int = 300
    rate_limit_rpm: int = 60
    initial_lookback_seconds: int = 7 * 24 * 3600


def declared_schedule(descriptor: ConnectorDescriptor) -> PollSchedule | None:
    """A descriptor's ``ingestion.polling`` as a schedule; None when it only receives webhooks."""
    polling = descriptor.polling
    if polling is None:
        return None
    return PollSchedule(
        polling.interval_seconds, polling.rate_limit_rpm, polling.initial_lookback_seconds
    )
