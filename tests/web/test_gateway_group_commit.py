"""Concurrent deliveries share one SQLite commit: each 200 only once its commit holds it.

The store commits the writes of concurrent deliveries together (one transaction,
one fsync; ``docs/storage.md`` "Group commit"). These tests drive the real app
with deliveries at once and make the real commit fail: a deferred foreign key,
added to the test's database file beside ucf's tables, that a chosen delivery's
signal violates. SQLite checks it only at ``COMMIT``, so the whole group that
delivery landed in is refused by the store, exactly as a full disk would refuse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from tests.web.conftest import Web
from tests.web.support import PROJECT, sign, ticket_event, webhook_path

POISON = "Poisoned printer"


def _refuse_commits_holding(path: Path, title: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            f"""
            CREATE TABLE test_parent (id INTEGER PRIMARY KEY);
            CREATE TABLE test_orphan (
                parent INTEGER REFERENCES test_parent (id) DEFERRABLE INITIALLY DEFERRED
            );
            CREATE TRIGGER test_refuse AFTER INSERT ON signals
            WHEN NEW.body LIKE '%{title}%'
            BEGIN INSERT INTO test_orphan VALUES (42); END;
            """
        )


def _accept_commits_again(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TRIGGER test_refuse")


async def test_a_failed_group_commit_answers_503_to_its_deliveries_and_stores_none_of_them(
    connected: Web,
) -> None:
    database = connected.state.context.settings.data_dir / "ucf.db"
    assert database.exists()
    _refuse_commits_holding(database, POISON)
    deliveries = [
        sign(ticket_event(f"T-{i}", title=POISON if i == 5 else f"Printer {i}"), delivery=f"d-{i}")
        for i in range(12)
    ]
    answers = await asyncio.gather(
        *(
            connected.anonymous.post(webhook_path(), content=d.body, headers=d.headers)
            for d in deliveries
        )
    )
    statuses = [answer.status_code for answer in answers]
    # Which deliveries share the poisoned one's group depends on timing; whichever
    # they are, each is refused with it, and no other delivery is.
    assert statuses[5] == 503, "the delivery whose commit failed is told to retry"
    assert set(statuses) <= {200, 503}, statuses
    assert all(
        a.json()["error"]["code"] == "store_unavailable" for a in answers if a.status_code == 503
    )
    page = await connected.client.get(f"/api/projects/{PROJECT}/signals", params={"limit": 50})
    stored = sorted(item["summary"] for item in page.json()["items"])
    acknowledged = sorted(f"Printer {i}" for i, s in enumerate(statuses) if s == 200)
    assert stored == acknowledged, "a 200 means stored; a 503 means nothing was"

    _accept_commits_again(database)
    again = [
        await connected.anonymous.post(webhook_path(), content=d.body, headers=d.headers)
        for d, status in zip(deliveries, statuses, strict=True)
        if status == 503
    ]
    assert [answer.json()["inserted"] for answer in again] == [1] * len(again)
