"""A signal too large for the store it goes to: stored with less of its raw, never a stuck poll.

The sanitiser bounds ``raw`` in characters (200 000), which DynamoDB does not count:
its items hold 400 KB, and the same characters in CJK script, emoji or a number-heavy
payload take two to four times as many bytes. Real parts: dynalite and the sanitiser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.service.delivery_support import mapped
from tests.stores.dynalite import dynamodb_url, unique_table_name
from ucf.core.mapping import MappedSignal
from ucf.core.sanitiser import Sanitiser, SanitiserPolicy
from ucf.core.signal import SignalMetadata
from ucf.service.ingest import SignalIngestor
from ucf.stores import Store, open_store
from ucf.stores.dynamodb.signals import MAX_SIGNAL_BYTES
from ucf.stores.models import CheckpointMove

RECEIVED = datetime(2025, 3, 2, tzinfo=UTC)


@pytest.fixture
async def store(dynalite_endpoint: str) -> AsyncIterator[Store]:
    async with open_store(dynamodb_url(dynalite_endpoint, unique_table_name())) as opened:
        yield opened


@pytest.mark.parametrize(
    "text",
    ["仕様書のテキスト" * 1250, "🙂🎉" * 5000],
    ids=["a Japanese specification (600 KB)", "emoji (800 KB)"],
)
async def test_a_page_with_a_signal_too_large_for_dynamodb_is_stored_and_moves_on(
    store: Store, text: str
) -> None:
    """25 sections of 10 000 characters: within every bound of the sanitiser, refused by
    DynamoDB at every poll of the page until now."""
    ingestor = SignalIngestor(store.signals, Sanitiser(), ["http"])
    page = [
        mapped("jira", "p1", 1),
        mapped("jira", "p1", 2, raw={f"section {n}": text for n in range(25)}),
        mapped("jira", "p1", 3),
    ]
    move = CheckpointMove("p1", "jira", expected_version=0, value={"at": 3}, now=RECEIVED)

    outcome = await ingestor.ingest(
        page, project_id="p1", connector_id="jira", received_at=RECEIVED, checkpoint=move
    )

    assert outcome.inserted == 3
    assert outcome.checkpoint_moved is True
    stored = await store.signals.get("p1", page[1].signal.id)
    assert stored is not None
    assert "truncated:raw_total" in stored.signal["sanitisationNotes"]
    assert stored.signal["summary"] == page[1].signal.summary
    kept = "".join(stored.signal["raw"].values())
    assert kept
    assert set(kept) <= set(text + "…")
    entries = await store.outbox.claim("http", limit=10, lease=timedelta(minutes=1), now=RECEIVED)
    assert [entry.signal["id"] for entry in entries] == [item.signal.id for item in page]
    untouched = await store.signals.get("p1", page[0].signal.id)
    assert untouched is not None
    assert untouched.signal["raw"] == page[0].wire["raw"]
    assert MAX_SIGNAL_BYTES < 600_000


def with_metadata(item: MappedSignal, **lists: list[str]) -> MappedSignal:
    signal = item.signal.model_copy(update={"metadata": SignalMetadata(**lists)})
    return MappedSignal.of(signal, dedup_key=item.dedup_key, item_id=item.item_id, version="v1")


@pytest.mark.parametrize(
    "lists",
    [
        {"tags": [f"label {n} " + "ラベル" * 20 for n in range(20_000)]},
        {"participants": ["Bobby Tables " + "🙂" * 150_000]},
        {"related_tickets": [f"https://tracker.example/browse/ENG-{n}" for n in range(20_000)]},
    ],
    ids=["20 000 tags", "one 600 KB name", "20 000 ticket URLs"],
)
async def test_a_signal_too_large_for_its_metadata_is_stored_bounded_and_the_page_moves_on(
    store: Store, lists: dict[str, list[str]]
) -> None:
    """A tags, participants or related-items path can pick any list out of a payload. The
    sanitiser bounded ``raw`` but not ``metadata``, and the ingest cut only ``raw``: such a
    signal was refused by DynamoDB at every poll of its page, for good."""
    ingestor = SignalIngestor(store.signals, Sanitiser(), ["http"])
    page = [mapped("jira", "p1", 1), with_metadata(mapped("jira", "p1", 2), **lists)]
    move = CheckpointMove("p1", "jira", expected_version=0, value={"at": 2}, now=RECEIVED)

    outcome = await ingestor.ingest(
        page, project_id="p1", connector_id="jira", received_at=RECEIVED, checkpoint=move
    )

    assert outcome.inserted == 2
    assert outcome.checkpoint_moved is True
    stored = await store.signals.get("p1", page[1].signal.id)
    assert stored is not None
    metadata = stored.signal["metadata"]
    [(name, values)] = [(n, v) for n, v in metadata.items() if v and n != "priority"]
    policy = SanitiserPolicy()
    assert 0 < len(values) <= policy.max_metadata_items
    assert all(len(value) <= policy.max_metadata_chars for value in values)
    assert "truncated:metadata" in stored.signal["sanitisationNotes"]
    assert stored.signal["raw"] == page[1].wire["raw"], "raw was not to blame"
    original = page[1].wire["metadata"][name]
    assert values[0] == original[0] or values[0].endswith("…")
