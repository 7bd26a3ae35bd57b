"""What webhook deliveries leave on an instance's health, the rule both stores apply.

Kept apart from :mod:`ucf.stores.models` (which still exports every name, see
its ``__getattr__``) so that a poll, which never records a webhook delivery,
does not build these dataclasses at a cold start.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ucf.core.records import datarecord

if TYPE_CHECKING:
    from ucf.stores.models import HealthState, InstanceRecord

__all__ = ["DeliveryHealth", "DeliveryObservation", "health_after_delivery"]


@datarecord
class DeliveryObservation:
    """Webhook deliveries of one instance: one that passed verification, or ``failed``
    that did not (``error``: the last one's secret-free reason).

    Kept apart from :class:`HealthObservation` on purpose: anyone who knows a
    webhook URL can send unverifiable requests, so they must never count as a
    poll failure (that would back the instance's polling off) nor turn it red.
    """

    at: datetime
    verified: bool
    failed: int = 0
    error: str | None = None
    failures_before_degraded: int = 3


@datarecord
class DeliveryHealth:
    """What a :class:`DeliveryObservation` leaves on an instance."""

    health_state: HealthState
    last_error: str | None
    delivery_failures: int
    last_delivery_at: datetime | None


def health_after_delivery(record: InstanceRecord, observed: DeliveryObservation) -> DeliveryHealth:
    """The rule both stores apply atomically for webhook deliveries.

    A verified delivery proves a webhook-only instance works (unknown → healthy)
    and clears a degradation that failed verifications caused. Failures in a
    row, from ``failures_before_degraded`` on, degrade an instance that polls
    fine or only receives (a rotated signing secret makes every genuine
    delivery fail), never further: polling failures keep their own rules.
    """
    if observed.verified:
        state, error = record.health_state, record.last_error
        if record.consecutive_failures == 0 and (
            record.health_state == "unknown"
            or record.delivery_failures >= observed.failures_before_degraded
        ):
            state, error = "healthy", None
        return DeliveryHealth(state, error, 0, observed.at)
    failures = record.delivery_failures + observed.failed
    state, error = record.health_state, record.last_error
    if (
        failures >= observed.failures_before_degraded
        and record.consecutive_failures == 0
        and record.health_state != "error"
    ):
        state = "degraded"
        error = (
            f"{failures} webhook deliveries in a row failed verification (last: "
            f"{observed.error or 'unverified'}); is the signing secret current?"
        )
    return DeliveryHealth(state, error, failures, record.last_delivery_at)
