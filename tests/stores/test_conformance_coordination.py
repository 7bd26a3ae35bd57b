"""Checkpoints, leases and rate-limit buckets: the same behaviour on every backend."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from tests.stores.builders import T0
from ucf.stores import Store

TTL = timedelta(seconds=60)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


# --- checkpoints ---------------------------------------------------------------------


async def test_missing_checkpoint_reads_as_version_zero(store: Store) -> None:
    checkpoint = await store.checkpoints.get("p1", "jira")
    assert (checkpoint.value, checkpoint.version) == (None, 0)


async def test_checkpoint_advances_only_from_the_version_read(store: Store) -> None:
    assert await store.checkpoints.compare_and_set(
        "p1", "jira", expected_version=0, value={"since": "2025-01-01T00:00:00Z"}, now=T0
    )
    current = await store.checkpoints.get("p1", "jira")
    assert (current.value, current.version, current.updated_at) == (
        {"since": "2025-01-01T00:00:00Z"},
        1,
        T0,
    )
    assert await store.checkpoints.compare_and_set(
        "p1", "jira", expected_version=1, value={"since": "2025-02-01T00:00:00Z"}, now=T0
    )
    stale = await store.checkpoints.compare_and_set(
        "p1", "jira", expected_version=1, value={"since": "2024-12-01T00:00:00Z"}, now=T0
    )
    assert stale is False, "a worker holding an old version must not move the checkpoint back"
    final = await store.checkpoints.get("p1", "jira")
    assert (final.value, final.version) == ({"since": "2025-02-01T00:00:00Z"}, 2)


async def test_creating_an_existing_checkpoint_fails(store: Store) -> None:
    assert await store.checkpoints.compare_and_set(
        "p1", "jira", expected_version=0, value="a", now=T0
    )
    assert not await store.checkpoints.compare_and_set(
        "p1", "jira", expected_version=0, value="b", now=T0
    )
    assert (await store.checkpoints.get("p1", "jira")).value == "a"


async def test_checkpoint_keys_and_instances_are_independent(store: Store) -> None:
    await store.checkpoints.compare_and_set("p1", "jira", expected_version=0, value=1, now=T0)
    await store.checkpoints.compare_and_set(
        "p1", "jira", expected_version=0, value=2, now=T0, key="comments"
    )
    await store.checkpoints.compare_and_set("p2", "jira", expected_version=0, value=3, now=T0)
    assert (await store.checkpoints.get("p1", "jira")).value == 1
    assert (await store.checkpoints.get("p1", "jira", "comments")).value == 2
    assert (await store.checkpoints.get("p2", "jira")).value == 3


async def test_deleting_an_instances_checkpoints_resets_them(store: Store) -> None:
    await store.checkpoints.compare_and_set("p1", "jira", expected_version=0, value=1, now=T0)
    await store.checkpoints.compare_and_set(
        "p1", "jira", expected_version=0, value=2, now=T0, key="comments"
    )
    await store.checkpoints.compare_and_set("p2", "jira", expected_version=0, value=3, now=T0)
    await store.checkpoints.delete("p1", "jira")
    assert (await store.checkpoints.get("p1", "jira")).version == 0
    assert (await store.checkpoints.get("p1", "jira", "comments")).version == 0
    assert (await store.checkpoints.get("p2", "jira")).version == 1


# --- leases --------------------------------------------------------------------------


async def test_a_held_lease_cannot_be_taken_by_another_worker(store: Store) -> None:
    assert await store.leases.acquire("poll:p1:jira", "worker-a", ttl=TTL, now=T0)
    assert not await store.leases.acquire("poll:p1:jira", "worker-b", ttl=TTL, now=T0 + seconds(59))
    lease = await store.leases.get("poll:p1:jira", now=T0 + seconds(1))
    assert lease is not None
    assert (lease.owner, lease.expires_at) == ("worker-a", T0 + TTL)


async def test_an_expired_lease_can_be_taken_over(store: Store) -> None:
    await store.leases.acquire("poll", "worker-a", ttl=TTL, now=T0)
    assert await store.leases.get("poll", now=T0 + TTL) is None
    assert await store.leases.acquire("poll", "worker-b", ttl=TTL, now=T0 + TTL)
    assert not await store.leases.renew("poll", "worker-a", ttl=TTL, now=T0 + TTL)
    assert not await store.leases.release("poll", "worker-a")
    lease = await store.leases.get("poll", now=T0 + TTL)
    assert lease is not None
    assert lease.owner == "worker-b"


async def test_owner_can_reacquire_and_renew_its_lease(store: Store) -> None:
    await store.leases.acquire("poll", "worker-a", ttl=TTL, now=T0)
    assert await store.leases.acquire("poll", "worker-a", ttl=TTL, now=T0 + seconds(30))
    assert await store.leases.renew("poll", "worker-a", ttl=TTL, now=T0 + seconds(50))
    lease = await store.leases.get("poll", now=T0 + seconds(100))
    assert lease is not None
    assert lease.expires_at == T0 + seconds(110)


async def test_released_lease_is_free_for_the_next_worker(store: Store) -> None:
    await store.leases.acquire("poll", "worker-a", ttl=TTL, now=T0)
    assert not await store.leases.release("poll", "worker-b")
    assert await store.leases.release("poll", "worker-a")
    assert await store.leases.get("poll", now=T0) is None
    assert await store.leases.acquire("poll", "worker-b", ttl=TTL, now=T0)


async def test_renewing_a_lease_nobody_holds_fails(store: Store) -> None:
    assert not await store.leases.renew("poll", "worker-a", ttl=TTL, now=T0)


# --- rate limits ---------------------------------------------------------------------


async def test_bucket_grants_its_capacity_then_refuses_with_retry_after(store: Store) -> None:
    granted = [
        await store.rate_limits.try_acquire(
            "webhook:p1:jira", capacity=100, refill_per_second=100 / 60, now=T0
        )
        for _ in range(101)
    ]
    assert all(d.allowed for d in granted[:100])
    refused = granted[100]
    assert not refused.allowed
    assert refused.retry_after_seconds == pytest.approx(0.6)


async def test_bucket_refills_at_its_rate_but_never_beyond_capacity(store: Store) -> None:
    async def take(at: timedelta) -> bool:
        decision = await store.rate_limits.try_acquire(
            "rpm", capacity=2, refill_per_second=1, now=T0 + at
        )
        return decision.allowed

    assert [await take(seconds(0)) for _ in range(3)] == [True, True, False]
    assert [await take(seconds(1)) for _ in range(2)] == [True, False]
    assert [await take(seconds(100)) for _ in range(3)] == [True, True, False]


async def test_buckets_are_independent_and_cost_is_honoured(store: Store) -> None:
    big = await store.rate_limits.try_acquire("a", capacity=10, refill_per_second=1, now=T0, cost=7)
    assert big.allowed
    short = await store.rate_limits.try_acquire(
        "a", capacity=10, refill_per_second=1, now=T0, cost=5
    )
    assert not short.allowed
    assert short.retry_after_seconds == pytest.approx(2.0)
    other = await store.rate_limits.try_acquire(
        "b", capacity=10, refill_per_second=1, now=T0, cost=10
    )
    assert other.allowed


async def test_a_cost_above_capacity_is_never_granted(store: Store) -> None:
    decision = await store.rate_limits.try_acquire(
        "a", capacity=5, refill_per_second=1, now=T0, cost=6
    )
    assert not decision.allowed
    assert math.isinf(decision.retry_after_seconds)


async def test_a_caller_with_a_lagging_clock_gets_no_extra_tokens(store: Store) -> None:
    for _ in range(2):
        assert (
            await store.rate_limits.try_acquire("a", capacity=2, refill_per_second=1, now=T0)
        ).allowed
    behind = await store.rate_limits.try_acquire(
        "a", capacity=2, refill_per_second=1, now=T0 - seconds(30)
    )
    assert not behind.allowed


async def test_a_token_given_back_can_be_taken_again_but_never_fills_past_capacity(
    store: Store,
) -> None:
    """A delivery whose signal write failed gives its token back: the sender's allowance
    is as if it never came, and giving back never makes the bucket hold more than it
    can (nor makes one that was never drawn from)."""
    buckets = store.rate_limits

    async def take() -> bool:
        decision = await buckets.try_acquire("a", capacity=2, refill_per_second=0.5, now=T0)
        return decision.allowed

    await buckets.give_back("a", capacity=2, refill_per_second=0.5, now=T0)  # no bucket yet
    assert [await take() for _ in range(3)] == [True, True, False]
    await buckets.give_back("a", capacity=2, refill_per_second=0.5, now=T0)
    assert [await take() for _ in range(2)] == [True, False]
    for _ in range(5):
        await buckets.give_back("a", capacity=2, refill_per_second=0.5, now=T0 + seconds(1))
    later = [
        (await buckets.try_acquire("a", capacity=2, refill_per_second=0.5, now=T0 + seconds(1)))
        for _ in range(3)
    ]
    assert [d.allowed for d in later] == [True, True, False]
    assert later[2].retry_after_seconds == pytest.approx(2.0)


# --- records ----------------------------------------------------------------------------


async def test_a_record_reads_back_until_it_expires(store: Store) -> None:
    await store.records.put("flow:a", {"project": "p1", "n": 1}, expires_at=T0 + seconds(600))
    assert await store.records.get("flow:a", now=T0) == {"project": "p1", "n": 1}
    assert await store.records.get("flow:a", now=T0 + seconds(600)) is None
    await store.records.put("client:x", {"clientId": "abc"})
    assert await store.records.get("client:x", now=T0 + timedelta(days=3650)) == {"clientId": "abc"}
    await store.records.put("client:x", {"clientId": "def"})
    assert await store.records.get("client:x", now=T0) == {"clientId": "def"}
    await store.records.delete("client:x")
    assert await store.records.get("client:x", now=T0) is None


async def test_a_record_is_taken_once_and_an_expired_one_never(store: Store) -> None:
    await store.records.put("state:1", {"v": 1}, expires_at=T0 + seconds(60))
    assert await store.records.take("state:1", now=T0) == {"v": 1}
    assert await store.records.take("state:1", now=T0) is None, "single use"
    assert await store.records.get("state:1", now=T0) is None
    await store.records.put("state:2", {"v": 2}, expires_at=T0 + seconds(60))
    assert await store.records.take("state:2", now=T0 + seconds(61)) is None
    assert await store.records.get("state:2", now=T0) is None, "an expired take deletes it"


async def test_racing_takes_of_one_record_hand_it_to_exactly_one_caller(store: Store) -> None:
    import asyncio

    await store.records.put("state:race", {"v": "once"}, expires_at=T0 + seconds(60))
    results = await asyncio.gather(*(store.records.take("state:race", now=T0) for _ in range(8)))
    assert [r for r in results if r is not None] == [{"v": "once"}]


# --- secret leases ----------------------------------------------------------------------


async def test_a_held_secret_ref_is_due_from_its_time_on_until_released(store: Store) -> None:
    """The upkeep finds a flow's short-lived secret by its time alone (the flow's record
    may be gone), earliest first, at most ``limit`` of them, and never before its time."""
    leases = store.secret_leases
    await leases.hold("ref#late", until=T0 + seconds(120))
    await leases.hold("ref%early", until=T0 + seconds(60))
    await leases.hold("arn:aws:secretsmanager:us-east-1:1:secret:ucf/x", until=T0 + seconds(90))

    assert await leases.due(now=T0 + seconds(59.999), limit=10) == []
    assert await leases.due(now=T0 + seconds(60), limit=10) == ["ref%early"]
    assert await leases.due(now=T0 + seconds(600), limit=2) == [
        "ref%early",
        "arn:aws:secretsmanager:us-east-1:1:secret:ucf/x",
    ]
    await leases.release("ref%early")
    await leases.release("ref%early")  # twice: fine
    assert await leases.due(now=T0 + seconds(600), limit=10) == [
        "arn:aws:secretsmanager:us-east-1:1:secret:ucf/x",
        "ref#late",
    ]
    await leases.hold("ref#late", until=T0 + seconds(900))  # held again: its new time counts
    assert await leases.due(now=T0 + seconds(600), limit=10) == [
        "arn:aws:secretsmanager:us-east-1:1:secret:ucf/x"
    ]
