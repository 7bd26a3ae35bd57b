"""The app in-process (httpx over ASGI, lifespan run for real) on a real SQLite store."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from tests.web.support import ACME, PROJECT, TOKEN, acme_fake, instance_body
from ucf.fakes.kit import FakeServer
from ucf.runtime.http import HttpSettings
from ucf.service.settings import Settings
from ucf.web import create_app
from ucf.web.state import WebState

FAST_HTTP = HttpSettings(
    connect_timeout=2, read_timeout=2, max_retries=1, backoff_base=0.01, max_total_retry_wait=2
)


@dataclass
class Web:
    app: FastAPI
    client: httpx.AsyncClient
    """Authenticated with the admin token."""
    anonymous: httpx.AsyncClient

    @property
    def state(self) -> WebState:
        state: WebState = self.app.state.ucf
        return state


def web_settings(data_dir: Path, **env: str) -> Settings:
    environ = {
        "UCF_ALLOW_HOSTS": "127.0.0.1",
        "UCF_API_TOKEN": TOKEN,
        "UCF_SCHEDULER": "0",
        **env,
    }
    return dataclasses.replace(Settings.from_env(environ, data_dir=data_dir), http=FAST_HTTP)


@contextlib.asynccontextmanager
async def open_web(settings: Settings) -> AsyncIterator[Web]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport,
            base_url="http://ucf.test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client,
        httpx.AsyncClient(transport=transport, base_url="http://ucf.test") as anonymous,
    ):
        yield Web(app, client, anonymous)


@pytest.fixture(scope="session")
def acme() -> Iterator[FakeServer]:
    with acme_fake() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="function")
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    async with open_web(web_settings(tmp_path)) as opened:
        yield opened


@pytest_asyncio.fixture(loop_scope="function")
async def connected(web: Web, acme: FakeServer) -> Web:
    """``web`` with Acme registered and connected in PROJECT, webhook secret included."""
    created = await web.client.post("/api/connectors", json=ACME)
    assert created.status_code == 201, created.text
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert made.status_code == 201, made.text
    return web


@pytest.fixture
def young_heap() -> Iterator[None]:
    """The heap so far frozen out of the collector's view for the test (``gc.freeze``):
    :func:`tests.web.support.macs_keyed_with` then collects and searches only what the
    test made, and so does a scan of ``gc.get_objects()``. A full collection, a walk of
    every referrer or of every object took seconds each in a worker that had run
    hundreds of tests; what a test looks for (an HMAC keyed with its own fresh secret,
    a payload it parsed) is made after the freeze, so it is still found."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
