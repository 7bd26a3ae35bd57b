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
from ucf.core.sanitiser import Sanitiser
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
