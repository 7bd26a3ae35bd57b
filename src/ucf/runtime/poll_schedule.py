"""How often a source polls (:class:`PollSchedule`), apart from the sources themselves.

The scheduler decides what is due from each connector's schedule alone; for a
descriptor-driven connector that is its ``ingestion.polling`` block
(:func:`declared_schedule`, or :func:`stored_schedule` straight from the JSON
the store keeps), so deciding needs neither the source's compiled
poll plan and mapping nor the HTTP stack (the AWS schedule function loads none
of them: ``bench/coldstart.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from ucf.core.records import datarecord

if TYPE_CHECKING:
    from ucf.core.descriptor import ConnectorDescriptor
    from ucf.core.descriptor_view import ConnectorView

__all__ = ["DEFAULT_LEASE_TTL", "PollSchedule", "declared_schedule", "stored_schedule"]

DEFAULT_LEASE_TTL: Final = timedelta(seconds=60)
"""How long a poller that stops renewing (a crash, SIGKILL) blocks its instance."""


@datarecord
class PollSchedule:
    """How often a source polls, how many requests a minute its upstream allows, and how
    far back its first poll reaches.

    A generic source takes them from ``ingestion.polling``; a native source
    declares them in code. A source without a schedule receives webhooks only.
    """

    interval_seconds: int = 300
    rate_limit_rpm: int = 60
    initial_lookback_seconds: int = 7 * 24 * 3600


def declared_schedule(descriptor: ConnectorDescriptor | ConnectorView) -> PollSchedule | None:
    """A descriptor's ``ingestion.polling`` as a schedule; None when it only receives webhooks."""
    polling = descriptor.polling
    if polling is None:
        return None
    return PollSchedule(
        polling.interval_seconds, polling.rate_limit_rpm, polling.initial_lookback_seconds
    )


_DEFAULTS: Final = PollSchedule()


def stored_schedule(descriptor: Mapping[str, Any]) -> PollSchedule | None:
    """:func:`declared_schedule` read from a stored descriptor's JSON, without parsing it.

    For descriptors the store holds, which were validated in full when they
    were stored: reading three numbers this way spares a process that only
    decides what is due the descriptor models (and pydantic) altogether. A
    member may be spelled by its JSON name or its Python name, as the models
    accept; an omitted one takes the models' default (the defaults of
    :class:`PollSchedule` are those; ``tests/runtime/test_poll_schedule.py``
    holds both readings equal on every shipped descriptor).
    """
    ingestion = descriptor.get("ingestion")
    if not isinstance(ingestion, Mapping):
        return None
    mode = ingestion.get("mode")
    polling = (
        ingestion
        if mode == "polling"
        else ingestion.get("polling")
        if mode == "polling_and_webhook"
        else None
    )
    if not isinstance(polling, Mapping):
        return None

    def member(alias: str, name: str, default: int | None = None) -> int:
        value = polling.get(alias, polling.get(name, default))
        if value is None:
            raise ValueError(f"the stored descriptor's polling block has no {alias}")
        if isinstance(value, str):
            raise _Spelled
        return int(value)

    try:
        return PollSchedule(
            member("intervalSeconds", "interval_seconds", _DEFAULTS.interval_seconds),
            member("rateLimitRpm", "rate_limit_rpm"),
            member(
                "initialLookbackSeconds",
                "initial_lookback_seconds",
                _DEFAULTS.initial_lookback_seconds,
            ),
        )
    except _Spelled:
        # A number written as text: the models' lax rules ("600.0" is 600, which
        # int() refuses) decide, so both readings agree for any valid descriptor.
        from ucf.core.descriptor import ConnectorDescriptor

        return declared_schedule(ConnectorDescriptor.model_validate(descriptor))


class _Spelled(Exception):
    """A polling number stored as text (:func:`stored_schedule`)."""
