"""Instance health (SPEC §4.5, §8.3): what the dashboard shows after checks and polls."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ucf.fakes import FakeResponse, FakeServer, Fault
from ucf.fakes.github import BAD_TOKEN, GOOD_TOKEN, GitHubFake
from ucf.runtime.health import (
    MAX_ERROR_CHARS,
    HealthPolicy,
    Outcome,
    classify,
    retry_delay,
    secret_free,
)
from ucf.runtime.polling import bucket_for_rpm
from ucf.service import health
from ucf.service.context import UcfContext
from ucf.service.errors import NotFoundError
from ucf.service.poll import lease_name, poll_instance, rate_bucket
from ucf.stores.models import InstanceRecord

from .poll_support import connect_github, open_context

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = HealthPolicy()


@pytest.fixture
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(datetime.now(UTC)) as github:
        yield github


@pytest_asyncio.fixture(loop_scope="function")
async def context(tmp_path: Path) -> AsyncIterator[UcfContext]:
    async with await open_context(tmp_path) as ctx:
        yield ctx


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("outcome", "ok", "degraded", "threshold"),
    [
        (Outcome.OK, True, False, 3),
        (Outcome.SLOW, True, True, 3),
        (Outcome.THROTTLED, True, True, 3),
        (Outcome.BACKLOGGED, True, True, 3),
        (Outcome.FAILED, False, False, 3),
        (Outcome.REJECTED, False, False, 1),
    ],
)
def test_each_outcome_becomes_the_observation_the_state_machine_expects(
    outcome: Outcome, ok: bool, degraded: bool, threshold: int
) -> None:
    observed = classify(outcome, at=T0, policy=POLICY, latency_ms=12.0, error="boom")
    assert (observed.ok, observed.degraded, observed.failures_before_error) == (
        ok,
        degraded,
        threshold,
    )
    assert observed.error == (None if ok and outcome is not Outcome.BACKLOGGED else "boom")


def test_throttling_failures_count_for_backoff_but_never_turn_an_instance_red() -> None:
    observed = classify(Outcome.RATE_LIMITED, at=T0, policy=POLICY, error="429")
    assert not observed.ok
    assert observed.failures_before_error > 10**6


def record(failures: int, state: str = "degraded") -> InstanceRecord:
    return InstanceRecord(
        project_id="p",
        connector_id="c",
        enabled=True,
        credential_secret_ref=None,
        config={},
        created_at=T0,
        updated_at=T0,
        consecutive_failures=failures,
        health_state=state,  # type: ignore[arg-type]
        last_health_check=T0,
    )


def test_failing_instances_back_off_exponentially_up_to_the_cap() -> None:
    interval = timedelta(minutes=2)
    delays = [
        retry_delay(record(n, "error" if n >= 3 else "degraded"), interval, POLICY)
        for n in range(0, 9)
    ]
    assert delays[0] is None
    assert delays[1:7] == [timedelta(minutes=m) for m in (2, 4, 8, 16, 32, 60)]
    assert delays[7:] == [timedelta(hours=1)] * 2


def test_refused_credentials_wait_the_cap_at_once() -> None:
    assert retry_delay(record(1, "error"), timedelta(minutes=2), POLICY) == timedelta(hours=1)


def test_the_cap_never_polls_more_often_than_the_interval() -> None:
    slow = timedelta(hours=6)
    assert retry_delay(record(1), slow, POLICY) == slow
    assert retry_delay(record(9, "error"), slow, POLICY) == slow


def test_last_error_masks_credentials_and_stays_one_short_line() -> None:
    token = "sk_live_abcdefghijklmnopqrstuvwxyz123456"
    message = f"GET api.example.com/v1 failed:\n  token {token} was rejected " + "x" * 2000
    cleaned = secret_free(message, (token,))
    assert token not in cleaned
    assert "\n" not in cleaned
    assert len(cleaned) <= MAX_ERROR_CHARS


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="failures_before_error"):
        HealthPolicy(failures_before_error=0)


# --------------------------------------------------------------------------- Test Connection


async def test_test_connection_reports_healthy_with_its_latency(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)

    result = await health.test_connection(context, "p1", "github-issues")

    assert result.ok
    assert (result.state, result.http_status, result.error) == ("healthy", 200, None)
    assert result.latency_ms > 0
    stored = await context.instances.record("p1", "github-issues")
    assert stored.last_health_check == result.checked_at
    assert stored.last_latency_ms == pytest.approx(result.latency_ms)
    assert stored.last_sync_at is None, "a health check is not a sync"
    assert len(fake.server.requests_to("/rate_limit")) == 1


async def test_a_check_spends_the_instances_rate_budget_like_a_poll_request(
    tmp_path: Path, fake: GitHubFake
) -> None:
    """rateLimitRpm 60: ten tokens of burst. With the clock frozen, a check leaves nine."""
    async with await open_context(tmp_path, clock=lambda: T0) as context:
        await connect_github(context, fake.base_url)
        assert (await health.test_connection(context, "p1", "github-issues")).ok
        capacity, refill = bucket_for_rpm(60)
        taken = 0
        while (
            await context.store.rate_limits.try_acquire(
                rate_bucket("p1", "github-issues"),
                capacity=capacity,
                refill_per_second=refill,
                now=T0,
            )
        ).allowed:
            taken += 1
        assert taken == capacity - 1


async def test_a_token_the_store_grants_slowly_is_used_not_wasted_as_a_spent_budget(
    tmp_path: Path, fake: GitHubFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget is there but the store answers after the check's token wait (a busy
    SQLite file, a throttled DynamoDB): the token it granted must serve the check, not
    be thrown away while the check reports the budget spent."""
    async with await open_context(tmp_path, clock=lambda: T0) as context:
        await connect_github(context, fake.base_url)
        buckets = context.store.rate_limits
        real_draw = buckets.try_acquire

        async def slow_draw(*args: Any, **kwargs: Any) -> Any:
            granted = await real_draw(*args, **kwargs)
            await asyncio.sleep(0.25)  # the store's answer comes after the 0.05 s wait
            return granted

        monkeypatch.setattr(buckets, "try_acquire", slow_draw)
        result = await health.test_connection(
            context, "p1", "github-issues", token_wait=timedelta(seconds=0.05)
        )
        monkeypatch.undo()

        assert (result.ok, result.recorded) == (True, True), result.error
        assert len(fake.server.requests_to("/rate_limit")) == 1
        capacity, refill = bucket_for_rpm(60)
        left = 0
        while (
            await buckets.try_acquire(
                rate_bucket("p1", "github-issues"),
                capacity=capacity,
                refill_per_second=refill,
                now=T0,
            )
        ).allowed:
            left += 1
        assert left == capacity - 1, "one token, the one the check used"


async def test_a_check_waits_a_bounded_time_for_a_spent_budget_and_then_records_nothing(
    tmp_path: Path, fake: GitHubFake
) -> None:
    async with await open_context(tmp_path, clock=lambda: T0) as context:  # no refill
        await connect_github(context, fake.base_url)
        capacity, refill = bucket_for_rpm(60)
        for _ in range(int(capacity)):  # a backfill spent the budget
            await context.store.rate_limits.try_acquire(
                rate_bucket("p1", "github-issues"),
                capacity=capacity,
                refill_per_second=refill,
                now=T0,
            )
        before = await context.instances.record("p1", "github-issues")

        result = await health.test_connection(
            context, "p1", "github-issues", token_wait=timedelta(seconds=0.2)
        )

        assert (result.ok, result.recorded) == (False, False)
        assert result.error is not None
        assert "rateLimitRpm" in result.error
        assert fake.server.requests_to("/rate_limit") == []
        after = await context.instances.record("p1", "github-issues")
        assert (after.health_state, after.last_health_check) == (
            before.health_state,
            before.last_health_check,
        )


async def test_test_connection_with_a_revoked_token_errors_at_once_and_hides_it(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url, token=BAD_TOKEN)

    result = await health.test_connection(context, "p1", "github-issues")

    assert not result.ok
    assert (result.state, result.http_status) == ("error", 401)
    assert result.error is not None
    assert BAD_TOKEN not in result.error
    assert BAD_TOKEN not in str(result.to_json())
    stored = await context.instances.record("p1", "github-issues")
    assert stored.last_error == result.error


async def test_a_slow_but_working_upstream_shows_degraded(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_route(
        "GET", "/health", lambda request: dataclasses.replace(FakeResponse.json({}), delay=0.05)
    )
    with server:
        async with await open_context(tmp_path) as context:
            await context.connectors.register(descriptor())
            await context.instances.create(
                "p1", "plain", credentials={}, config={"baseUrl": server.base_url}
            )
            policy = HealthPolicy(slow_after_ms=20)
            result = await health.test_connection(context, "p1", "plain", policy=policy)
            fast = await health.test_connection(context, "p1", "plain")

    assert result.ok
    assert result.state == "degraded"
    assert fast.state == "healthy"


async def test_an_unexpected_status_degrades_then_a_success_restores_health(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    fake.server.inject(Fault.status(502), path="/rate_limit")

    failed = await health.test_connection(context, "p1", "github-issues")
    recovered = await health.test_connection(context, "p1", "github-issues")

    assert (failed.state, failed.http_status) == ("degraded", 502)
    assert failed.error is not None
    assert "502" in failed.error
    assert recovered.state == "healthy"


async def test_missing_credentials_are_an_error_without_any_request(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    stored = await context.instances.record("p1", "github-issues")
    assert stored.credential_secret_ref is not None
    await context.secrets.delete(stored.credential_secret_ref)

    result = await health.test_connection(context, "p1", "github-issues")

    assert result.state == "error"
    assert result.error is not None
    assert "token" in result.error
    assert fake.server.requests == []


@pytest.mark.parametrize(
    ("pasted", "stored_as_typed"),
    [("\u00a0", True), (" ", True), ("\n", True), ("\u200b", False), ("\u00a0x", False)],
)
async def test_a_token_pasted_with_an_invisible_character_is_an_error_not_a_crash(
    context: UcfContext, fake: GitHubFake, pasted: str, stored_as_typed: bool
) -> None:
    """A header cannot carry a non-ASCII or control character, nor a space at its end:
    the check and the poll say which credential, without its value and without
    sending anything (httpx raised UnicodeEncodeError, the poll 'failed inside ucf').
    Spaces at either end are trimmed at entry now, so those cases are stored as typed
    (as before that change) to show what such a stored token still gets."""
    token = GOOD_TOKEN + pasted
    await connect_github(context, fake.base_url, token=token)
    if stored_as_typed:
        record = await context.instances.record("p1", "github-issues")
        assert record.credential_secret_ref is not None
        stored = await context.secrets.get(record.credential_secret_ref)
        await context.secrets.put(record.credential_secret_ref, {**stored, "token": token})

    result = await health.test_connection(context, "p1", "github-issues")
    polled = await poll_instance(context, "p1", "github-issues")

    assert (result.state, result.ok) == ("error", False)
    assert result.error is not None
    assert "credential 'token' holds a character an HTTP header cannot carry" in result.error
    assert GOOD_TOKEN not in result.error
    assert polled.status == "failed"
    assert polled.error is not None
    assert "credential 'token' holds a character" in polled.error
    assert fake.server.requests == []


async def test_checks_and_polls_feed_one_state_machine(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    fake.server.inject(Fault.status(500), times=100)

    poll = await poll_instance(context, "p1", "github-issues")
    check = await health.test_connection(context, "p1", "github-issues")
    third = await poll_instance(context, "p1", "github-issues")
    fake.server.clear_faults()
    back = await health.test_connection(context, "p1", "github-issues")

    assert [poll.health, check.state, third.health, back.state] == [
        "degraded",
        "degraded",
        "error",
        "healthy",
    ]


async def test_checking_an_unknown_instance_is_not_found(context: UcfContext) -> None:
    with pytest.raises(NotFoundError):
        await health.test_connection(context, "nope", "github-issues")


async def test_an_oauth_check_waits_for_a_running_poll_instead_of_racing_its_refresh(
    tmp_path: Path,
) -> None:
    server = FakeServer()
    server.add_route("GET", "/health", lambda request: FakeResponse.json({}))
    with server:
        async with await open_context(tmp_path) as context:
            await context.connectors.register(descriptor(oauth=True))
            await context.instances.create(
                "p1",
                "plain",
                credentials={"clientId": "id", "clientSecret": "s3cret-value"},
                config={"baseUrl": server.base_url},
            )
            await context.store.leases.acquire(
                lease_name("p1", "plain"), "poller", ttl=timedelta(minutes=1), now=context.clock()
            )
            result = await health.test_connection(
                context, "p1", "plain", lease_wait=timedelta(milliseconds=300)
            )
            stored = await context.instances.record("p1", "plain")

    assert not result.recorded
    assert result.error is not None
    assert "poll" in result.error
    assert stored.last_health_check is None
    assert server.requests == []


def descriptor(*, oauth: bool = False) -> dict[str, Any]:
    auth: dict[str, Any] = {"method": "none"}
    if oauth:
        auth = {
            "method": "oauth2",
            "config": {
                "authoriseUrl": "{{baseUrl}}/authorise",
                "tokenUrl": "{{baseUrl}}/token",
                "scopes": [],
                "grant": "client_credentials",
                "credentialFields": [
                    {"key": "clientId", "label": "Id", "type": "text", "required": True},
                    {
                        "key": "clientSecret",
                        "label": "Secret",
                        "type": "password",
                        "required": True,
                    },
                ],
            },
        }
    return {
        "id": "plain",
        "name": "Plain",
        "description": "a health endpoint",
        "category": "Custom",
        "icon": "x",
        "kind": "generic",
        "version": "1.0.0",
        "auth": auth,
        "ingestion": {
            "mode": "polling",
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "rateLimitRpm": 600,
        },
        "fieldMapping": {
            "itemsPath": "$",
            "idPath": "$.id",
            "timestampPath": "$.updated_at",
            "summaryTemplate": "{{id}}",
            "signalTypeRules": [],
        },
        "healthCheck": {
            "endpoint": "{{baseUrl}}/health",
            "method": "GET",
            "expectStatus": 200,
            "timeoutMs": 2000,
        },
    }


def test_an_auth_code_in_a_200_body_counts_as_refused_credentials() -> None:
    """Slack answers a revoked token with HTTP 200 {"ok": false, "error": "invalid_auth"}."""
    from ucf.runtime.sources import HealthResult

    policy = HealthPolicy()
    rejected = HealthResult(ok=False, status=200, latency_ms=5.0, error="x", failure="rejected")
    throttled = HealthResult(
        ok=False, status=200, latency_ms=5.0, error="x", failure="rate_limited"
    )
    assert health.outcome_of_check(rejected, policy) is Outcome.REJECTED
    assert health.outcome_of_check(throttled, policy) is Outcome.RATE_LIMITED
