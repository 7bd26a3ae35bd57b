"""``ucf outbox status|parked|requeue`` as an operator runs them, on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.cli.test_signals_cli import NOW, ucf, write
from ucf.stores import open_store


def park_second_of_three(url: str) -> list[str]:
    """Three signals queued for the HTTP sink; the second refused for good. Their ids."""
    writes = [write("p1", n, at=NOW - timedelta(minutes=3 - n)) for n in range(3)]

    async def run() -> None:
        async with open_store(url) as store:
            for item in writes:
                await store.signals.ingest([item], sinks=["http"])
            claimed = await store.outbox.claim(
                "http", limit=3, lease=timedelta(seconds=30), now=datetime.now(UTC)
            )
            await store.outbox.park(
                "http", [claimed[1].entry_id], reason="POST pipe/signals: HTTP 422", now=NOW
            )
            await store.outbox.release(
                "http", [claimed[0].entry_id, claimed[2].entry_id], retry_at=NOW
            )

    asyncio.run(run())
    return [item.signal_id for item in writes]


def test_an_operator_sees_what_was_parked_and_sends_it_again(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'ucf.db'}"
    ids = park_second_of_three(url)

    status = ucf("outbox", "status", "--store", url, "--sink", "http")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("http: 2 pending (oldest ")
    assert status.stdout.rstrip().endswith("1 parked")

    listed = ucf("outbox", "parked", "--store", url, "--json")
    assert listed.returncode == 0, listed.stderr
    [line] = [json.loads(text) for text in listed.stdout.splitlines()]
    assert line["signal"]["id"] == ids[1]
    assert (line["reason"], line["projectId"], line["attempts"]) == (
        "POST pipe/signals: HTTP 422",
        "p1",
        1,
    )
    plain = ucf("outbox", "parked", "--store", url)
    assert ids[1] in plain.stdout
    assert "HTTP 422" in plain.stdout

    again = ucf("outbox", "requeue", "--store", url, "--sink", "http")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "requeued 1 parked signal(s) for http"
    after = ucf("outbox", "status", "--store", url, "--sink", "http")
    assert after.stdout.startswith("http: 3 pending")
    assert after.stdout.rstrip().endswith("0 parked")
    nothing = ucf("outbox", "parked", "--store", url)
    assert (nothing.stdout, nothing.stderr.strip()) == ("", "nothing parked for http")


def test_a_missing_store_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = ucf("outbox", "status", "--data-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "no ucf store at" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_mistyped_sink_is_refused_not_reported_empty(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'ucf.db'}"
    park_second_of_three(url)
    for command in (
        ("parked", "--sink", "SQS"),
        ("requeue", "--sink", "webhook"),
        ("status", "--sink", "http", "--sink", "s3"),
    ):
        result = ucf("outbox", *command, "--store", url)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith("error: unknown sink '")
        assert "one of jsonl, http, sqs, eventbridge" in result.stderr
    parked = ucf("outbox", "status", "--store", url, "--sink", "http")
    assert parked.stdout.rstrip().endswith("1 parked")  # nothing was requeued
