"""Test Connection (SPEC §8.3): run an instance's health check and record what it says.

The check is the descriptor's ``healthCheck`` (or a native source's own),
sent with the instance's credentials through the SSRF-guarded client. Its
outcome feeds the same health state machine as every poll
(:mod:`ucf.runtime.health`), so the dashboard shows one state per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from ucf.core import descriptor as d
from ucf.runtime.auth import CredentialsChanged
from ucf.runtime.health import HealthPolicy, Outcome, classify, outcome_of_success, secret_free
from ucf.runtime.http import AuthFailed
from ucf.runtime.redaction import SECRETS
from ucf.runtime.sources import HealthResult, NativeSourceMissing
from ucf.service.connectors import Connector
from ucf.service.context import UcfContext
from ucf.service.delivery_health import FAILURES_EVERY as FAILURES_EVERY
from ucf.service.delivery_health import VERIFIED_EVERY as VERIFIED_EVERY
from ucf.service.delivery_health import DeliveryReporter as DeliveryReporter
from ucf.service.poll import (
    HeldLease,
    StoreRateGate,
    default_worker_id,
    instance_context,
    lease_name,
    rate_gate_for,
    rotation_writer,
)
from ucf.stores.errors import NotFound
from ucf.stores.models import HealthState, InstanceRecord
from ucf.stores.secrets.base import UNREADABLE_SECRET

__all__ = [
    "ConnectionTest",
    "DeliveryReporter",
    "check_connector",
    "outcome_of_check",
    "test_connection",
]

log = logging.getLogger("ucf.health")

LEASE_WAIT: Final = timedelta(seconds=10)
"""How long a check of an OAuth2 instance waits for a running poll to finish."""
TOKEN_WAIT: Final = timedelta(seconds=10)
"""How long a check waits for a token of the instance's ``rateLimitRpm`` bucket."""


@dataclass(frozen=True, slots=True)
class ConnectionTest:
    """What "Test Connection" shows: the verdict, the health state it led to, and why."""

    project_id: str
    connector_id: str
    ok: bool
    state: HealthState
    latency_ms: float
    checked_at: datetime
    http_status: int | None = None
    error: str | None = None
    """Secret-free, one line."""
    recorded: bool = True
    """False when the check could not run (a poll held the instance): health unchanged."""

    def to_json(self) -> dict[str, Any]:
        return {
            "projectId": self.project_id,
            "connectorId": self.connector_id,
            "ok": self.ok,
            "status": self.state,
            "latencyMs": round(self.latency_ms, 1),
            "httpStatus": self.http_status,
            "error": self.error,
            "checkedAt": self.checked_at.isoformat(),
            "recorded": self.recorded,
        }


def _not_run(context: UcfContext, record: InstanceRecord, why: str) -> ConnectionTest:
    """A check that could not run: the health stays as it was, nothing is recorded."""
    return ConnectionTest(
        record.project_id,
        record.connector_id,
        ok=False,
        state=record.health_state,
        latency_ms=0.0,
        checked_at=context.clock(),
        error=why,
        recorded=False,
    )


async def _token(gate: StoreRateGate, wait: timedelta) -> bool:
    """One token of the instance's bucket within ``wait``; False if the budget stays spent."""
    return await gate.acquire_within(wait.total_seconds())


def outcome_of_check(result: HealthResult, policy: HealthPolicy) -> Outcome:
    """401/403, or an auth code in the body (Slack's 200 ``invalid_auth``), mean the
    credentials were refused; 429 or a rate-limit code that we are throttled."""
    if result.ok:
        return outcome_of_success(latency_ms=result.latency_ms, throttled=False, policy=policy)
    if result.status in (401, 403) or result.failure == "rejected":
        return Outcome.REJECTED
    if result.status == 429 or result.failure == "rate_limited":
        return Outcome.RATE_LIMITED
    return Outcome.FAILED


async def check_connector(
    context: UcfContext,
    connector: Connector,
    *,
    credentials: dict[str, str],
    config: dict[str, str],
    on_rotate: CredentialsChanged | None,
    typed: bool = False,
) -> tuple[HealthResult, Outcome | None]:
    """The connector's health check with these settings (stored or not yet).

    Failures before any request (a missing credential, a token endpoint that
    refuses the grant, a native package that is not installed) are reported
    like the upstream's; the second value forces the outcome when the result
    alone would not say it. ``typed``: the credentials were typed for this check
    and are not stored: masked in log lines while it runs, and forgotten after it
    (:meth:`~ucf.runtime.redaction.SecretRegistry.lent`).
    """
    with SECRETS.lent() if typed else contextlib.nullcontext():
        return await _check_connector(
            context, connector, credentials=credentials, config=config, on_rotate=on_rotate
        )


async def _check_connector(
    context: UcfContext,
    connector: Connector,
    *,
    credentials: dict[str, str],
    config: dict[str, str],
    on_rotate: CredentialsChanged | None,
) -> tuple[HealthResult, Outcome | None]:
    try:
        upstream = instance_context(
            context,
            connector,
            credentials=credentials,
            config=config,
            on_rotate=on_rotate,
        )
        result: HealthResult = await connector.source.health_check(upstream)
    except AuthFailed as error:  # CredentialMissing, or the token endpoint refused the grant
        return HealthResult(ok=False, status=error.status, latency_ms=0.0, error=str(error)), (
            Outcome.REJECTED
        )
    except NativeSourceMissing as error:
        return HealthResult(ok=False, status=None, latency_ms=0.0, error=str(error)), (
            Outcome.FAILED
        )
    return result, None


async def test_connection(
    context: UcfContext,
    project_id: str,
    connector_id: str,
    *,
    policy: HealthPolicy | None = None,  # noqa: PT028 - a use case named by the brief, not a test
    lease_wait: timedelta = LEASE_WAIT,  # noqa: PT028
    token_wait: timedelta = TOKEN_WAIT,  # noqa: PT028
) -> ConnectionTest:
    """Run the instance's health check with its credentials and record the outcome.

    An OAuth2 check may refresh (and rotate) the instance's tokens, which must
    never race a poll doing the same, so it takes the instance's poll lease,
    waiting up to ``lease_wait`` for a running poll; static credentials need no
    lease. The check is one request of the instance's ``rateLimitRpm`` budget,
    so it waits up to ``token_wait`` for a token; a check that cannot run for
    either reason records nothing (``recorded=False``). Raises
    :class:`~ucf.service.errors.NotFoundError` for an unknown instance.
    """
    policy = policy or HealthPolicy()
    record = await context.instances.record(project_id, connector_id)
    connector = await context.connectors.get(connector_id)
    descriptor = connector.descriptor
    lease: HeldLease | None = None
    if any(isinstance(method, d.OAuth2Auth) for method in descriptor.auth_methods()):
        # A refresh may rotate the refresh token: never beside a poll that may do the same.
        lease = await _wait_for_lease(context, project_id, connector_id, lease_wait)
        if lease is None:
            return _not_run(
                context,
                record,
                "a poll of this instance is running; its outcome will update the health",
            )
    try:
        record = await context.instances.record(project_id, connector_id)  # fresh tokens
        try:
            credentials = await context.instances.credentials(record)
        except UNREADABLE_SECRET as unreadable:  # the instance's trouble: its health says why
            credentials = {}
            result: HealthResult = HealthResult(
                ok=False, status=None, latency_ms=0.0, error=str(unreadable)
            )
            forced: Outcome | None = Outcome.FAILED
        else:
            config = {key: str(value) for key, value in record.config.items()}
            gate = rate_gate_for(context, project_id, connector)
            if gate is not None and not await _token(gate, token_wait):
                return _not_run(
                    context,
                    record,
                    "this instance's request budget (rateLimitRpm) is spent by a running "
                    "poll; try again in a few seconds",
                )
            result, forced = await check_connector(
                context,
                connector,
                credentials=credentials,
                config=config,
                on_rotate=rotation_writer(context, record.credential_secret_ref),
            )
    finally:
        if lease is not None:
            await asyncio.shield(lease.release())
    outcome = forced or outcome_of_check(result, policy)
    error = (
        None
        if result.ok
        else secret_free(result.error or outcome.value, tuple(credentials.values()))
    )
    at = context.clock()
    observation = classify(outcome, at=at, policy=policy, latency_ms=result.latency_ms, error=error)
    try:
        updated = await context.store.instances.record_health(project_id, connector_id, observation)
        state = updated.health_state
    except NotFound:  # disconnected meanwhile
        state = "unknown"
    return ConnectionTest(
        project_id,
        connector_id,
        ok=result.ok,
        state=state,
        latency_ms=result.latency_ms,
        checked_at=at,
        http_status=result.status,
        error=error,
    )


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


async def _wait_for_lease(
    context: UcfContext, project_id: str, connector_id: str, wait: timedelta
) -> HeldLease | None:
    lease = HeldLease(
        context.store.leases,
        lease_name(project_id, connector_id),
        f"check:{default_worker_id()}",
        timedelta(seconds=60),
        context.clock,
    )
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        if await lease.acquire():
            return lease
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.25)
