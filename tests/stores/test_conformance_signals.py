"""Signals and the delivery outbox: the same behaviour on every backend."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

import pytest

from tests.stores.builders import T0, minutes, signal_write
from ucf.stores import InvalidCursor, Store
from ucf.stores.models import CheckpointMove, SignalQuery

LEASE = timedelta(seconds=30)


# --- ingest and dedup ----------------------------------------------------------------


async def test_a_signal_is_stored_once_however_often_it_is_delivered(store: Store) -> None:
    write = signal_write("101")
    first = await store.signals.ingest([write])
    again = await store.signals.ingest([write, write])
    assert first.inserted == (True,)
    assert again.inserted == (False, False)
    assert (again.inserted_count, again.duplicate_count) == (0, 2)
    page = await store.signals.query("p1")
    assert [s.signal_id for s in page.items] == [write.signal_id]


async def test_batch_reports_each_item_in_order_and_first_duplicate_wins(store: Store) -> None:
    await store.signals.ingest([signal_write("1")])
    batch = [
        signal_write("1"),
        signal_write("2"),
        signal_write("2", padding=50),
        signal_write("3"),
    ]
    result = await store.signals.ingest(batch)
    assert result.inserted == (False, True, False, True)
    stored = await store.signals.get("p1", batch[1].signal_id)
    assert stored is not None
    assert stored.signal["raw"]["body"] == ""


async def test_new_version_of_an_item_is_a_new_signal(store: Store) -> None:
    result = await store.signals.ingest(
        [signal_write("1", version="v1"), signal_write("1", version="v2")]
    )
    assert result.inserted == (True, True)


async def test_stored_signal_reads_back_as_the_wire_object(store: Store) -> None:
    write = signal_write("7", padding=600, received_at=T0 + minutes(1))
    await store.signals.ingest([write])
    stored = await store.signals.get("p1", write.signal_id)
    assert stored is not None
    assert stored.signal == dict(write.signal)
    assert stored.signal["sanitised"] is True
    assert (stored.dedup_key, stored.project_id, stored.connector_id) == (
        write.dedup_key,
        "p1",
        "github-issues",
    )
    assert stored.received_at == T0 + minutes(1)
    assert stored.expires_at == T0 + minutes(1) + timedelta(days=30)


async def test_numbers_json_cannot_hold_are_stored_as_null_on_every_store(store: Store) -> None:
    """An upstream's ``1e400`` parses to infinity; the signal is stored (as null), not
    refused by one store alone: a refused page would fail its poll for ever."""
    base = signal_write("8")
    raw = {"estimate": math.inf, "drift": -math.inf, "ratio": math.nan, "id": 2**70}
    odd = dataclasses.replace(base, signal={**base.signal, "raw": raw})
    assert (await store.signals.ingest([odd])).inserted == (True,)
    stored = await store.signals.get("p1", odd.signal_id)
    assert stored is not None
    assert stored.signal["raw"] == {"estimate": None, "drift": None, "ratio": None, "id": 2**70}


async def test_a_project_never_reads_another_projects_signal(store: Store) -> None:
    theirs = signal_write("1", project_id="p2")
    await store.signals.ingest([theirs])
    assert await store.signals.get("p1", theirs.signal_id) is None
    assert (await store.signals.query("p1")).items == ()
    assert await store.signals.get("p2", theirs.signal_id) is not None


async def test_empty_batch_is_a_no_op(store: Store) -> None:
    result = await store.signals.ingest([])
    assert result.inserted == ()


# --- query ---------------------------------------------------------------------------


async def test_query_is_newest_first_and_pages_with_a_cursor(store: Store) -> None:
    writes = [signal_write(str(i), at=T0 + minutes(i)) for i in range(7)]
    await store.signals.ingest(writes)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.signals.query("p1", limit=3, cursor=cursor)
        pages += 1
        seen.extend(s.signal_id for s in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [w.signal_id for w in reversed(writes)]
    assert pages == 3


async def test_signals_with_equal_timestamps_are_neither_lost_nor_repeated_across_pages(
    store: Store,
) -> None:
    writes = [signal_write(str(i), at=T0) for i in range(5)]
    await store.signals.ingest(writes)
    first = await store.signals.query("p1", limit=2)
    second = await store.signals.query("p1", limit=2, cursor=first.next_cursor)
    third = await store.signals.query("p1", limit=2, cursor=second.next_cursor)
    ids = [s.signal_id for p in (first, second, third) for s in p.items]
    assert sorted(ids) == sorted(w.signal_id for w in writes)
    assert len(set(ids)) == 5
    assert third.next_cursor is None


async def test_query_filters_by_source_type_and_time_range(store: Store) -> None:
    await store.signals.ingest(
        [
            signal_write("1", source="jira", signal_type="issue_created", at=T0),
            signal_write("2", source="jira", signal_type="issue_updated", at=T0 + minutes(10)),
            signal_write(
                "3", source="github-issues", signal_type="issue_updated", at=T0 + minutes(20)
            ),
            signal_write("4", source="jira", signal_type="issue_updated", at=T0 + minutes(30)),
        ]
    )

    async def raws(filters: SignalQuery) -> list[str]:
        page = await store.signals.query("p1", filters)
        return [s.signal["raw"]["id"] for s in page.items]

    assert await raws(SignalQuery(source="jira")) == ["4", "2", "1"]
    assert await raws(SignalQuery(type="issue_updated")) == ["4", "3", "2"]
    assert await raws(SignalQuery(source="jira", type="issue_updated")) == ["4", "2"]
    window = SignalQuery(since=T0 + minutes(10), until=T0 + minutes(30))
    assert await raws(window) == ["3", "2"], "since is inclusive, until exclusive"


async def test_a_time_range_that_ends_before_it_starts_is_empty(store: Store) -> None:
    """``?since=`` after ``?until=`` is a user's slip, not a store failure (DynamoDB refuses
    a BETWEEN whose bounds are reversed: it was the API's 500)."""
    await store.signals.ingest([signal_write("1", at=T0)])

    backwards = SignalQuery(since=T0 + minutes(1), until=T0 - minutes(1))
    page = await store.signals.query("p1", backwards)
    anchored = await store.signals.query("p1", SignalQuery(since=T0 + minutes(1), until=T0))

    assert (page.items, page.next_cursor) == ((), None)
    assert (anchored.items, anchored.next_cursor) == ((), None)


async def test_a_cursor_that_was_not_issued_is_rejected(store: Store) -> None:
    with pytest.raises(InvalidCursor):
        await store.signals.query("p1", cursor="not-a-cursor!!")


# --- counts and expiry ---------------------------------------------------------------


async def test_counts_cover_the_last_day_and_week_by_received_time(store: Store) -> None:
    now = T0 + timedelta(days=10)
    received = [
        now - timedelta(hours=1),
        now - timedelta(hours=23),
        now - timedelta(days=2),
        now - timedelta(days=6, hours=23),
        now - timedelta(days=8),
    ]
    await store.signals.ingest(
        [signal_write(str(i), received_at=at) for i, at in enumerate(received)]
        + [signal_write("other", source="jira", received_at=now - timedelta(hours=1))]
    )
    counts = await store.signals.counts("p1", "github-issues", now=now)
    assert (counts.last_24h, counts.last_7d) == (2, 4)
    none = await store.signals.counts("p1", "asana", now=now)
    assert (none.last_24h, none.last_7d) == (0, 0)


async def test_purging_expired_signals_never_touches_fresh_ones(store: Store) -> None:
    # How expired ones disappear is backend-specific (SQLite purges, DynamoDB's
    # TTL sweeper deletes); see test_sqlite.py. Fresh data must survive either way.
    fresh = signal_write("fresh", received_at=T0 + timedelta(days=20))
    await store.signals.ingest([fresh], sinks=["jsonl"])
    await store.signals.purge_expired(now=T0 + timedelta(days=30, seconds=1))
    assert await store.signals.get("p1", fresh.signal_id) is not None
    [entry] = await store.outbox.claim("jsonl", limit=10, lease=LEASE, now=T0 + timedelta(days=31))
    assert entry.signal["id"] == fresh.signal_id


# --- outbox --------------------------------------------------------------------------


async def test_each_new_signal_is_queued_once_per_sink_and_duplicates_are_not(
    store: Store,
) -> None:
    a, b = signal_write("a", at=T0), signal_write("b", at=T0 + minutes(1))
    await store.signals.ingest([a, b], sinks=["jsonl", "http"])
    await store.signals.ingest([a, b], sinks=["jsonl", "http"])
    for sink in ("jsonl", "http"):
        entries = await store.outbox.claim(sink, limit=10, lease=LEASE, now=T0 + minutes(5))
        assert [e.signal["id"] for e in entries] == [a.signal_id, b.signal_id]
        assert {(e.sink, e.project_id, e.connector_id, e.attempts) for e in entries} == {
            (sink, "p1", "github-issues", 1)
        }


async def test_claimed_entries_are_hidden_until_the_lease_ends(store: Store) -> None:
    await store.signals.ingest([signal_write("a")], sinks=["http"])
    first = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0)
    assert len(first) == 1
    assert await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(0.25)) == []
    again = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(1))
    assert [e.entry_id for e in again] == [first[0].entry_id]
    assert again[0].attempts == 2, "a crashed delivery counts as an attempt"


async def test_acked_entries_are_never_delivered_again(store: Store) -> None:
    await store.signals.ingest([signal_write("a"), signal_write("b")], sinks=["http"])
    entries = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0)
    await store.outbox.ack("http", [entries[0].entry_id])
    await store.outbox.ack("http", [entries[0].entry_id])  # again: already gone, no error
    assert (await store.outbox.lag("http", now=T0)).pending == 1
    later = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + timedelta(hours=1))
    assert [e.entry_id for e in later] == [entries[1].entry_id]


async def test_released_entries_return_at_the_retry_time(store: Store) -> None:
    await store.signals.ingest([signal_write("a")], sinks=["http"])
    [entry] = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0)
    assert await store.outbox.release("http", [entry.entry_id], retry_at=T0 + minutes(5)) == 1
    assert await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(4)) == []
    [back] = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(5))
    assert back.entry_id == entry.entry_id


async def test_claim_limit_takes_the_oldest_first(store: Store) -> None:
    writes = [signal_write(str(i), received_at=T0 + minutes(i)) for i in range(5)]
    for write in writes:
        await store.signals.ingest([write], sinks=["http"])
    first = await store.outbox.claim("http", limit=2, lease=LEASE, now=T0 + minutes(10))
    second = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(10))
    assert [e.signal["raw"]["id"] for e in first] == ["0", "1"]
    assert [e.signal["raw"]["id"] for e in second] == ["2", "3", "4"]


async def test_one_sinks_progress_does_not_affect_another(store: Store) -> None:
    await store.signals.ingest([signal_write("a")], sinks=["jsonl", "http"])
    [entry] = await store.outbox.claim("jsonl", limit=10, lease=LEASE, now=T0)
    await store.outbox.ack("jsonl", [entry.entry_id])
    assert await store.outbox.claim("jsonl", limit=10, lease=LEASE, now=T0) == []
    assert len(await store.outbox.claim("http", limit=10, lease=LEASE, now=T0)) == 1


async def test_lag_reports_pending_count_and_oldest_age(store: Store) -> None:
    empty = await store.outbox.lag("http", now=T0)
    assert (empty.pending, empty.oldest_age_seconds) == (0, None)
    await store.signals.ingest(
        [signal_write("a", received_at=T0), signal_write("b", received_at=T0 + minutes(1))],
        sinks=["http"],
    )
    lag = await store.outbox.lag("http", now=T0 + minutes(2))
    assert lag.pending == 2
    assert lag.oldest_age_seconds == pytest.approx(120.0)
    entries = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(2))
    in_flight = await store.outbox.lag("http", now=T0 + minutes(2))
    assert in_flight.pending == 2, "claimed but unacknowledged entries are still pending"
    await store.outbox.ack("http", [e.entry_id for e in entries])
    assert (await store.outbox.lag("http", now=T0 + minutes(3))).pending == 0


async def test_ingest_without_sinks_queues_nothing(store: Store) -> None:
    await store.signals.ingest([signal_write("a")])
    assert (await store.outbox.lag("http", now=T0)).pending == 0


async def test_a_sink_configured_later_starts_empty_and_gets_only_what_comes_after(
    store: Store,
) -> None:
    before = [signal_write("a", at=T0), signal_write("b", at=T0 + minutes(1))]
    await store.signals.ingest(before)  # no sink configured yet: stored, queued nowhere
    after = signal_write("c", at=T0 + minutes(2))
    result = await store.signals.ingest([before[0], after], sinks=["http"])
    assert result.inserted == (False, True), "a redelivery of an earlier signal is no news"
    queued = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(5))
    assert [e.signal["id"] for e in queued] == [after.signal_id]
    page = await store.signals.query("p1")
    assert {s.signal_id for s in page.items} == {w.signal_id for w in (*before, after)}
    last = signal_write("d", at=T0 + minutes(3))
    await store.signals.ingest([last], sinks=["http", "jsonl"])  # a second sink joins
    jsonl = await store.outbox.claim("jsonl", limit=10, lease=LEASE, now=T0 + minutes(5))
    assert [e.signal["id"] for e in jsonl] == [last.signal_id]


# --- a poll page's checkpoint with its signals ---------------------------------------


def _move(expected_version: int, value: object) -> CheckpointMove:
    return CheckpointMove("p1", "github-issues", expected_version, value, T0)


async def test_a_page_moves_its_checkpoint_once_its_signals_are_stored(store: Store) -> None:
    first = await store.signals.ingest([signal_write("a")], checkpoint=_move(0, {"since": 1}))
    assert (first.inserted, first.checkpoint_moved) == ((True,), True)
    second = await store.signals.ingest([], checkpoint=_move(1, {"since": 2}))
    assert second.checkpoint_moved is True, "an empty page still moves its checkpoint"
    stored = await store.checkpoints.get("p1", "github-issues")
    assert (stored.value, stored.version) == ({"since": 2}, 2)
    assert (await store.signals.ingest([signal_write("b")])).checkpoint_moved is None


async def test_a_lost_checkpoint_race_keeps_the_pages_signals(store: Store) -> None:
    assert await store.checkpoints.compare_and_set(
        "p1", "github-issues", expected_version=0, value="theirs", now=T0
    )
    write = signal_write("a")
    result = await store.signals.ingest([write], checkpoint=_move(0, "ours"))
    assert (result.inserted, result.checkpoint_moved) == ((True,), False)
    assert (await store.checkpoints.get("p1", "github-issues")).value == "theirs"
    assert await store.signals.get("p1", write.signal_id) is not None


# --- parked entries ---------------------------------------------------------------


async def test_a_parked_entry_leaves_the_queue_and_the_ones_after_it_go_on(store: Store) -> None:
    writes = [signal_write(str(i), received_at=T0 + minutes(i)) for i in range(3)]
    for write in writes:
        await store.signals.ingest([write], sinks=["http", "jsonl"])
    first = await store.outbox.claim("http", limit=3, lease=LEASE, now=T0 + minutes(5))
    poison = first[1]
    await store.outbox.ack("http", [first[0].entry_id])
    parked_at = T0 + minutes(6)
    assert await store.outbox.park("http", [poison.entry_id], reason="HTTP 422", now=parked_at) == 1
    assert await store.outbox.park("http", [poison.entry_id], reason="HTTP 422", now=parked_at) == 0
    await store.outbox.release("http", [first[2].entry_id], retry_at=parked_at)

    later = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(7))
    assert [e.signal["raw"]["id"] for e in later] == ["2"], "the parked one is never claimed"
    [parked] = await store.outbox.parked("http", limit=10)
    assert (parked.reason, parked.parked_at) == ("HTTP 422", parked_at)
    assert parked.entry.signal == writes[1].signal
    assert (parked.entry.project_id, parked.entry.attempts) == ("p1", 1)
    lag = await store.outbox.lag("http", now=T0 + minutes(7))
    assert (lag.pending, lag.parked) == (1, 1), "parked entries are counted apart"
    other = await store.outbox.lag("jsonl", now=T0 + minutes(7))
    assert (other.pending, other.parked) == (3, 0), "parking is per sink"


async def test_requeued_parked_entries_are_delivered_again_after_the_queue(store: Store) -> None:
    writes = [signal_write(str(i), received_at=T0 + minutes(i)) for i in range(4)]
    for write in writes:
        await store.signals.ingest([write], sinks=["http"])
    claimed = await store.outbox.claim("http", limit=2, lease=LEASE, now=T0 + minutes(5))
    ids = [entry.entry_id for entry in claimed]
    assert await store.outbox.park("http", ids, reason="HTTP 400", now=T0 + minutes(5)) == 2
    assert await store.outbox.parked("http", limit=1) != []
    assert len(await store.outbox.parked("http", limit=1)) == 1

    assert await store.outbox.requeue_parked("http", now=T0 + minutes(6)) == 2
    assert await store.outbox.parked("http", limit=10) == []
    assert (await store.outbox.lag("http", now=T0 + minutes(6))).parked == 0
    again = await store.outbox.claim("http", limit=10, lease=LEASE, now=T0 + minutes(6))
    assert [e.signal["raw"]["id"] for e in again] == ["2", "3", "0", "1"]
    assert all(e.attempts == 1 for e in again[2:]), "a requeued entry starts its attempts again"
    assert await store.outbox.requeue_parked("http", now=T0 + minutes(7)) == 0


async def test_entry_ids_are_never_reused_even_after_the_queue_drains(store: Store) -> None:
    """A parked entry keeps its id; a later entry must not be given it again."""
    await store.signals.ingest([signal_write("a", received_at=T0)], sinks=["http"])
    [first] = await store.outbox.claim("http", limit=1, lease=LEASE, now=T0)
    await store.outbox.park("http", [first.entry_id], reason="HTTP 422", now=T0)
    await store.signals.ingest([signal_write("b", received_at=T0)], sinks=["http"])
    [second] = await store.outbox.claim("http", limit=1, lease=LEASE, now=T0)
    await store.outbox.ack("http", [second.entry_id])
    await store.signals.ingest([signal_write("c", received_at=T0)], sinks=["http"])
    [third] = await store.outbox.claim("http", limit=1, lease=LEASE, now=T0)
    assert len({first.entry_id, second.entry_id, third.entry_id}) == 3
    assert await store.outbox.park("http", [third.entry_id], reason="HTTP 400", now=T0) == 1
    parked = await store.outbox.parked("http", limit=10)
    assert [p.reason for p in parked] == ["HTTP 422", "HTTP 400"], "oldest first"
