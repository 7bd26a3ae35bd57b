"""The health policy of a connector instance (SPEC §4.5, §8.3), as pure functions.

Health checks and the outcome of every poll feed one state machine per
instance::

    unknown/healthy ──slow or throttled──▶ degraded ──3rd failure in a row──▶ error
          ▲    └──────1st failure────────────▲ │                                │
          └──────────────── any success ─────┴─┴────────────────────────────────┘
    any state ──401/403 (credentials refused)──▶ error, at once

The store applies an observation atomically (two workers reporting at once
never lose a failure, see :meth:`InstanceStore.record_health`); this module
only decides *what* is observed: :func:`classify` turns an outcome into a
:class:`~ucf.stores.models.HealthObservation`. :func:`retry_delay` decides how
long a failing instance waits before its next poll, so a broken API is not
hammered at the poll interval.

Nothing here reads the clock or the environment: times are passed in.
"""

from __future__ import annotations

import enum
import sys
from datetime import datetime, timedelta
from typing import Final

from ucf.core.records import datarecord
from ucf.runtime.redaction import redact
from ucf.stores.models import HealthObservation, InstanceRecord

__all__ = [
    "MAX_ERROR_CHARS",
    "HealthPolicy",
    "Outcome",
    "classify",
    "retry_delay",
    "secret_free",
]

MAX_ERROR_CHARS: Final = 500
"""``lastError`` is a line on a dashboard, not a log: long upstream messages are cut."""


class Outcome(enum.Enum):
    """What one poll or health check amounted to, as far as health is concerned."""

    OK = "ok"
    SLOW = "slow"
    """Succeeded, but slower than the policy allows."""
    THROTTLED = "throttled"
    """Succeeded after the upstream asked us to wait (HTTP 429 / rate-limit headers)."""
    BACKLOGGED = "backlogged"
    """Succeeded, but ``maxPages`` cut the poll short with more waiting: the instance is
    behind, and its next poll goes on from where this one stopped."""
    FAILED = "failed"
    """No usable answer: 5xx, timeouts, malformed bodies, refused connections, bad config."""
    RATE_LIMITED = "rate_limited"
    """Failed because the upstream kept throttling us past the retry budget."""
    REJECTED = "rejected"
    """The credentials were refused (401/403) or are missing: retrying cannot help."""


@datarecord
class HealthPolicy:
    """How outcomes map to health states and how failing instances back off.

    ``failures_before_error``: consecutive failures that turn degraded into error.
    ``slow_after_ms``: a request slower than this degrades a successful outcome.
    ``backoff_cap``: the longest a failing instance waits before its next poll;
    an instance whose credentials were refused waits exactly this long (unless
    its settings change), since polling it sooner can only fail again.
    """

    failures_before_error: int = 3
    slow_after_ms: float = 5_000.0
    backoff_cap: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.failures_before_error < 1:
            raise ValueError("failures_before_error must be at least 1")
        if self.slow_after_ms <= 0:
            raise ValueError("slow_after_ms must be positive")
        if self.backoff_cap <= timedelta(0):
            raise ValueError("backoff_cap must be positive")


def secret_free(message: str, credentials: tuple[str, ...] = ()) -> str:
    """``message`` fit for ``lastError``: credentials masked, one line, bounded length.

    ``credentials`` are the instance's own values, masked literally on top of
    :func:`~ucf.runtime.redaction.redact` (which knows the registered ones and
    credential shapes), so even a value that was never registered cannot leak.
    """
    text = " ".join(message.split())
    for value in sorted(credentials, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "••••")
    text = redact(text)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


def classify(
    outcome: Outcome,
    *,
    at: datetime,
    policy: HealthPolicy,
    latency_ms: float | None = None,
    error: str | None = None,
    synced: bool = False,
) -> HealthObservation:
    """The observation the store applies for one outcome.

    ``synced`` marks a completed poll (it sets ``lastSyncAt``). ``error`` must
    already be secret-free (see :func:`secret_free`); of the successes, only a
    backlogged one keeps it (it says how far behind the instance is).
    """
    if outcome in (Outcome.OK, Outcome.SLOW, Outcome.THROTTLED, Outcome.BACKLOGGED):
        return HealthObservation(
            ok=True,
            at=at,
            latency_ms=latency_ms,
            error=error if outcome is Outcome.BACKLOGGED else None,
            synced=synced,
            degraded=outcome is not Outcome.OK,
            failures_before_error=policy.failures_before_error,
        )
    if outcome is Outcome.REJECTED:
        threshold = 1  # refused credentials are an error at once, not after three tries
    elif outcome is Outcome.RATE_LIMITED:
        # Throttling counts as a failure (so the instance backs off) but by itself
        # never turns an instance red: the upstream works, it asks for patience.
        threshold = sys.maxsize
    else:
        threshold = policy.failures_before_error
    return HealthObservation(
        ok=False,
        at=at,
        latency_ms=latency_ms,
        error=error or outcome.value,
        failures_before_error=threshold,
    )


def outcome_of_success(
    *, latency_ms: float, throttled: bool, policy: HealthPolicy, truncated: bool = False
) -> Outcome:
    """A success is degraded when it was cut short, throttled or answered slowly."""
    if truncated:
        return Outcome.BACKLOGGED
    if throttled:
        return Outcome.THROTTLED
    if latency_ms > policy.slow_after_ms:
        return Outcome.SLOW
    return Outcome.OK


def retry_delay(
    record: InstanceRecord, interval: timedelta, policy: HealthPolicy
) -> timedelta | None:
    """How long after its last failed attempt a failing instance may be polled again.

    None when the instance is not failing (it polls at its interval). After the
    n-th consecutive failure the wait is ``interval × 2^(n-1)``, capped at
    ``policy.backoff_cap`` (but never shorter than one interval). Refused
    credentials (error state before the failure threshold) wait the cap at once.
    """
    failures = record.consecutive_failures
    if failures <= 0:
        return None
    cap = max(policy.backoff_cap, interval)
    if record.health_state == "error" and failures < policy.failures_before_error:
        return cap
    exponent = min(failures - 1, 32)  # 2**32 intervals exceeds any sane cap
    return min(cap, interval * (1 << exponent))
