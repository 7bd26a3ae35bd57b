"""What runs for the life of the app: the in-process scheduler and other background services."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.web.conftest import open_web, web_settings
from tests.web.support import ACME, CONNECTOR, PROJECT, TICKETS, instance_body
from ucf.fakes.kit import FakeServer
from ucf.web import create_app
from ucf.web.state import WebState


async def test_the_scheduler_polls_connected_instances_while_the_app_runs(
    tmp_path: Path, acme: FakeServer
) -> None:
    async with open_web(web_settings(tmp_path)) as web:  # scheduler off: just connect
        await web.client.post("/api/connectors", json=ACME)
        await web.client.post(
            f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
        )
    async with open_web(web_settings(tmp_path, UCF_SCHEDULER="1")) as web:
        polled = f'ucf_polls_total{{connector="{CONNECTOR}",status="ok"}} 1.0'
        metrics = ""
        deadline = time.monotonic() + 20  # generous: the machine may be busy
        while polled not in metrics and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            metrics = (await web.client.get("/metrics")).text
        assert polled in metrics
        page = await web.client.get(f"/api/projects/{PROJECT}/signals")
        assert len(page.json()["items"]) == TICKETS


class Ticker:
    """A background service that counts until it is stopped."""

    def __init__(self) -> None:
        self.ticks = 0
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        while not self.stopped.is_set():
            self.ticks += 1
            await asyncio.sleep(0.001)

    def stop(self) -> None:
        self.stopped.set()


class Crasher:
    async def run(self) -> None:
        raise RuntimeError("boom")

    def stop(self) -> None:
        return None


async def test_background_services_start_with_the_app_and_stop_with_it(tmp_path: Path) -> None:
    ticker = Ticker()
    seen: list[WebState] = []

    def services(state: WebState) -> list[Ticker | Crasher]:
        seen.append(state)
        return [ticker, Crasher()]  # a crashing service does not take the app down

    app = create_app(web_settings(tmp_path), services=services)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.05)
        assert ticker.ticks > 0
        assert seen
        assert seen[0] is app.state.ucf
    assert ticker.stopped.is_set()
    ticks = ticker.ticks
    await asyncio.sleep(0.02)
    assert ticker.ticks == ticks
