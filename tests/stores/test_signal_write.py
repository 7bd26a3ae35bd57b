"""SignalWrite: the checks every store relies on, built one by one or a page at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.stores.builders import signal_write
from ucf.stores.errors import InvalidRecord
from ucf.stores.models import SignalWrite

CET = timezone(timedelta(hours=1))


def fields(write: SignalWrite) -> dict[str, Any]:
    names = (
        "dedup_key",
        "project_id",
        "connector_id",
        "signal",
        "received_at",
        "signal_id",
        "timestamp",
    )
    return {name: getattr(write, name) for name in names}


def test_a_batch_holds_what_one_by_one_construction_holds() -> None:
    made = [signal_write(str(n), project_id="p1") for n in range(3)]
    # A signal timestamp with an offset and a receive time outside UTC: both come out in UTC.
    made[1] = SignalWrite(
        dedup_key=made[1].dedup_key,
        project_id="p1",
        connector_id=made[1].connector_id,
        signal={**made[1].signal, "timestamp": "2025-03-01T13:00:00+01:00"},
        received_at=made[1].received_at,
    )
    received = datetime(2025, 3, 1, 13, 30, tzinfo=CET)
    one_by_one = [
        SignalWrite(
            dedup_key=write.dedup_key,
            project_id="p1",
            connector_id="github-issues",
            signal=write.signal,
            received_at=received,
        )
        for write in made
    ]
    batch = SignalWrite.batch(
        [write.signal for write in made],
        [write.dedup_key for write in made],
        project_id="p1",
        connector_id="github-issues",
        received_at=received,
    )
    assert batch == one_by_one
    assert [fields(w) for w in batch] == [fields(w) for w in one_by_one]
    assert all(w.timestamp.tzinfo is UTC and w.received_at.tzinfo is UTC for w in batch)
    assert batch[1].timestamp == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": ""}, "no string 'id'"),
        ({"id": 7}, "no string 'id'"),
        ({"projectId": "p2"}, "belongs to project 'p2', not 'p1'"),
        ({"timestamp": "yesterday"}, "timestamp 'yesterday', not ISO 8601"),
        ({"timestamp": None}, "timestamp None, not ISO 8601"),
    ],
)
def test_a_batch_refuses_what_one_write_refuses(change: dict[str, Any], message: str) -> None:
    good = signal_write("1", project_id="p1")
    bad = {**good.signal, **change}
    with pytest.raises(InvalidRecord, match=message):
        SignalWrite(
            dedup_key="k",
            project_id="p1",
            connector_id="c",
            signal=bad,
            received_at=datetime.now(UTC),
        )
    with pytest.raises(InvalidRecord, match=message):
        SignalWrite.batch(
            [good.signal, bad],
            ["k1", "k2"],
            project_id="p1",
            connector_id="c",
            received_at=datetime.now(UTC),
        )


def test_a_batch_needs_one_key_per_signal() -> None:
    good = signal_write("1", project_id="p1")
    with pytest.raises(ValueError, match="one dedup key per signal"):
        SignalWrite.batch(
            [good.signal], [], project_id="p1", connector_id="c", received_at=datetime.now(UTC)
        )


def test_a_batch_write_stays_frozen() -> None:
    (write,) = SignalWrite.batch(
        [signal_write("1", project_id="p1").signal],
        ["k"],
        project_id="p1",
        connector_id="c",
        received_at=datetime.now(UTC),
    )
    with pytest.raises(AttributeError):
        write.dedup_key = "other"  # type: ignore[misc]
