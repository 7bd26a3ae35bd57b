"""StoreRateGate's stated bound, checked on random runs against both real stores.

A poll's gate draws tokens ahead (a reserve of them, or its first request's beside
the poll's reads) and spends them up to a second later, so the moment a token is
spent is not the moment the bucket granted it. The class states what that may cost:
any stretch of time sees at most ``reserve`` more requests than the bucket alone
allows, i.e. ``capacity + refill * length + reserve``, every spender of the
instance's budget counted (polls one after another, health checks and a native
webhook's upstream calls beside them). Hypothesis drives the draws, the waits, the
requests sent side by side and the other spenders; the store is SQLite or dynalite.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ucf.runtime.polling import bucket_for_rpm
from ucf.service.poll import StoreRateGate, reserve_for_rpm
from ucf.stores import Store

START = datetime(2026, 1, 1, tzinfo=UTC)
_keys = itertools.count()

_operations = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(0, 60).map(lambda n: n / 20)),  # 0 to 3 s
        st.tuples(st.just("poll"), st.just(0)),  # a new poll: a new gate, drawing ahead
        st.tuples(st.just("requests"), st.integers(1, 40)),
        st.tuples(st.just("side_by_side"), st.integers(2, 8)),
        st.tuples(st.just("other"), st.integers(1, 15)),  # a health check's, never waiting
    ),
    min_size=1,
    max_size=25,
)


def _excess(times: list[float], capacity: float, refill: float) -> float:
    """How far the busiest stretch of time went past what the bucket alone allows."""
    times = sorted(times)
    worst = float("-inf")
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            allowed = capacity + refill * (times[j] - start)
            worst = max(worst, (j - i + 1) - allowed)
    return worst


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rpm=st.sampled_from([60, 240, 600, 1200]), operations=_operations)
@example(  # the token drawn ahead is spent in a stretch the bucket alone fills: 11 > 10.5
    rpm=60,
    operations=[
        ("poll", 0),
        ("wait", 0.5),
        ("requests", 1),
        ("other", 9),
        ("wait", 0.5),
        ("other", 1),
    ],
)
async def test_no_stretch_of_time_sees_more_requests_than_the_bucket_and_one_reserve(
    store: Store, rpm: int, operations: list[tuple[str, Any]]
) -> None:
    capacity, refill = bucket_for_rpm(rpm)
    reserve = reserve_for_rpm(rpm)
    key = f"rate:property:{next(_keys)}"
    moment = [START]

    def clock() -> datetime:
        return moment[0]

    async def sleep(seconds: float) -> None:
        moment[0] += timedelta(seconds=seconds)

    def gate(reserving: bool) -> StoreRateGate:
        return StoreRateGate(
            store.rate_limits,
            key,
            rpm,
            clock=clock,
            sleep=sleep,
            reserve=reserve if reserving else 1,
        )

    spent: list[float] = []

    async def request(through: StoreRateGate) -> None:
        await through.acquire()
        spent.append(clock().timestamp())

    poll = gate(True)
    for operation, amount in operations:
        if operation == "wait":
            await sleep(amount)
        elif operation == "poll":
            poll = gate(True)  # the last poll's gate is dropped with what it held
            await poll.draw_ahead()
        elif operation == "requests":
            for _ in range(amount):
                await request(poll)
        elif operation == "side_by_side":
            await asyncio.gather(*(request(poll) for _ in range(amount)))
        else:
            other = gate(False)
            for _ in range(amount):
                if await other.acquire_within(0):
                    spent.append(clock().timestamp())

    assert _excess(spent, capacity, refill) <= reserve + 1e-6, (rpm, reserve, operations)
