"""A large poll must not stall the event loop that the webhook gateway and /healthz share.

Parsing, mapping and sanitising a page of tens of thousands of items is CPU
work; on the event loop it holds every webhook delivery (Slack gives up after
3 s) and health probe behind it. The poll does that work in worker threads,
so the loop keeps answering while it runs. The bound asserted is generous
(a stalled loop showed seconds); what the test proves is that the loop gets
its turn during the poll, not a speed.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import open_web, web_settings
from tests.web.support import ACME, API_KEY, CONNECTOR
from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer

ITEMS = 20_000
PROJECT = "loop"
STALL_BOUND_SECONDS = 0.5

# A time bound: with three other test processes busy on the same cores the
# poll's threads wait for the CPU too, so `make test` runs this one on its own.
pytestmark = pytest.mark.serial


@pytest.fixture(scope="module")
def big_page() -> Iterator[FakeServer]:
    start = datetime.now(UTC) - timedelta(hours=1)
    tickets = [
        {
            "id": f"T-{n}",
            "title": f"Ticket {n}: the printer on floor {n % 9} is on fire again",
            "updated_at": (start + timedelta(milliseconds=n)).isoformat(),
            "body": "Steps to reproduce: " + "lorem ipsum " * 12,
            "labels": [{"name": "ops"}, {"name": f"floor-{n % 9}"}],
        }
        for n in range(ITEMS)
    ]
    body = FakeResponse.json({"tickets": tickets})
    server = FakeServer()

    def page(request: FakeRequest) -> FakeResponse:
        return body

    server.add_route("GET", "/tickets", page)
    server.add_route("GET", "/me", lambda request: FakeResponse.json({"ok": True}))
    with server:
        yield server


async def test_healthz_answers_while_a_large_page_is_polled(
    tmp_path: Path, big_page: FakeServer
) -> None:
    descriptor: dict[str, Any] = copy.deepcopy(ACME)
    async with open_web(web_settings(tmp_path)) as web:
        assert (await web.client.post("/api/connectors", json=descriptor)).status_code == 201
        made = await web.client.post(
            f"/api/projects/{PROJECT}/instances",
            json={
                "connectorId": CONNECTOR,
                "credentials": {"apiKey": API_KEY},
                "config": {"baseUrl": big_page.base_url},
            },
        )
        assert made.status_code == 201, made.text

        poll = asyncio.create_task(
            web.client.post(f"/api/projects/{PROJECT}/instances/{CONNECTOR}/poll", timeout=120)
        )
        latencies: list[float] = []
        while not poll.done():
            started = time.perf_counter()
            probe = await web.anonymous.get("/healthz")
            latencies.append(time.perf_counter() - started)
            assert probe.status_code == 200
            await asyncio.sleep(0.01)
        result = (await poll).json()

    assert result["status"] == "ok", result
    assert result["inserted"] == ITEMS
    assert len(latencies) > 5, "the poll ended before the loop was probed"
    worst = max(latencies)
    assert worst < STALL_BOUND_SECONDS, f"/healthz waited {worst:.2f} s during the poll"
