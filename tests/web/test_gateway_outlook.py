"""Outlook's Graph subscription against a real ucf app on a real port.

The Graph fake behaves as Graph does when ucf's scheduler creates the
subscription: before answering ``POST /subscriptions`` it POSTs a
``validationToken`` to the notification and lifecycle URLs and creates nothing
unless ucf's gateway echoes it. Then notifications carrying the instance's
``clientState`` become signals, and a ``missed`` lifecycle notification gets
the mail Graph never announced through a catch-up delta poll, long before the
five-minute interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.web.conftest import web_settings
from tests.web.support import PROJECT, TOKEN
from ucf.fakes.graph import (
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    TENANT,
    GraphFake,
    Subscription,
    lifecycle_notification,
)
from ucf.service.scheduler import SchedulePolicy, Scheduler
from ucf.web import create_app
from ucf.web.app import BackgroundService
from ucf.web.state import WebState

INSTANCE = f"/api/projects/{PROJECT}/instances/outlook"
QUICK = SchedulePolicy(rescan_seconds=0.2, shutdown_grace=5.0)


@pytest.fixture
def graph() -> Iterator[GraphFake]:
    with GraphFake(datetime.now(UTC)) as fake:
        yield fake


@dataclass
class Served:
    url: str
    api: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    state: WebState


@asynccontextmanager
async def serve(data_dir: Path) -> AsyncIterator[Served]:
    """The app under uvicorn on a socket bound first, so ``UCF_PUBLIC_URL`` is its address,
    with the scheduler in-process (a short rescan: upkeep of a new instance comes soon)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = web_settings(data_dir, UCF_PUBLIC_URL=url)

    def services(state: WebState) -> list[BackgroundService]:
        return [Scheduler(state.context, "in-process", policy=QUICK)]

    app = create_app(settings, services=services)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: _started(server), what="the server to start")
        async with (
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            ) as api,
            httpx.AsyncClient(timeout=30) as anonymous,
        ):
            yield Served(url, api, anonymous, app.state.ucf)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _started(server: uvicorn.Server) -> bool:
    return server.started


async def until(
    condition: Callable[[], Awaitable[bool]], *, what: str, within: float = 30.0
) -> None:
    """Wait for something the server does in the background (not a timing assertion:
    ``within`` only bounds a broken run)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def signal_ids(served: Served) -> set[str]:
    page = await served.api.get(f"/api/projects/{PROJECT}/signals", params={"limit": 500})
    assert page.status_code == 200, page.text
    return {str(item["raw"]["id"]) for item in page.json()["items"]}


async def connect(served: Served, graph: GraphFake) -> str:
    """The built-in ``outlook`` connector for a user's mailbox; its own webhook URL."""
    made = await served.api.post(
        f"/api/projects/{PROJECT}/instances",
        json={
            "connectorId": "outlook",
            "config": {
                "baseUrl": f"{graph.base_url}/v1.0",
                "authorityUrl": graph.base_url,
                "tenant": TENANT,
            },
            "credentials": {
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "refreshToken": REFRESH_TOKEN,
            },
        },
    )
    assert made.status_code == 201, made.text
    url: str = (await served.api.get(INSTANCE)).json()["webhookUrl"]
    return url


async def subscribed(graph: GraphFake) -> Subscription:
    async def made() -> bool:
        return bool(graph.subscriptions)

    await until(made, what="the scheduler's upkeep to create the Graph subscription")
    [subscription] = graph.subscriptions.values()
    return subscription


async def first_poll_done(served: Served) -> None:
    async def synced() -> bool:
        return (await served.api.get(INSTANCE)).json().get("lastSyncAt") is not None

    await until(synced, what="the first delta poll")


def lifecycle(subscription: Subscription, event: str) -> dict[str, Any]:
    return {
        "value": [
            lifecycle_notification(
                event,
                client_state=subscription.client_state or "",
                subscription_id=subscription.id,
                expires=subscription.expires,
            )
        ]
    }


async def test_graph_validates_the_instances_own_url_and_then_notifies_it(
    tmp_path: Path, graph: GraphFake
) -> None:
    async with serve(tmp_path) as served:
        hook_url = await connect(served, graph)
        subscription = await subscribed(graph)

        assert hook_url.startswith(f"{served.url}/api/webhooks/outlook/{PROJECT}/")
        assert subscription.notification_url == subscription.lifecycle_url == hook_url
        assert [(v.url, v.status, v.passed) for v in graph.validations] == [
            (hook_url, 200, True),
            (hook_url, 200, True),
        ]
        await first_poll_done(served)

        activity = graph.add_activity(datetime.now(UTC))
        [new_id, *_] = sorted(activity.new_ids)
        notified = await served.anonymous.post(
            hook_url, json={"value": [graph.notification(new_id)]}
        )
        assert notified.status_code == 200, notified.text
        assert new_id in await signal_ids(served)

        forged = await served.anonymous.post(
            hook_url, json={"value": [graph.notification(new_id, client_state="guess")]}
        )
        assert forged.status_code == 401


async def test_a_missed_notification_brings_the_mail_in_with_a_poll_at_once(
    tmp_path: Path, graph: GraphFake
) -> None:
    async with serve(tmp_path) as served:
        await connect(served, graph)
        subscription = await subscribed(graph)
        await first_poll_done(served)
        unannounced = graph.add_activity(datetime.now(UTC)).new_ids  # Graph dropped these
        assert not unannounced & await signal_ids(served)

        told = await served.anonymous.post(
            subscription.lifecycle_url or "", json=lifecycle(subscription, "missed")
        )
        assert told.status_code == 202, told.text

        async def caught_up() -> bool:
            return unannounced <= await signal_ids(served)

        # The next scheduled poll is five minutes away: only the requested one finds them.
        await until(caught_up, what="the catch-up delta poll")
        record = await served.state.context.store.instances.get(PROJECT, "outlook")
        assert record is not None
        assert record.poll_requested_at is None, "the poll answered the request"


async def test_no_subscription_when_the_gateway_is_not_where_the_public_url_says(
    tmp_path: Path, graph: GraphFake
) -> None:
    """A wrong ``UCF_PUBLIC_URL``: Graph's validation fails, so no subscription exists
    and the instance keeps polling."""
    async with serve(tmp_path) as served:
        context = served.state.context
        context.settings = dataclasses.replace(context.settings, public_url=served.url + "/x")
        await connect(served, graph)
        await first_poll_done(served)

        async def tried() -> bool:
            return len(graph.validations) > 0

        await until(tried, what="Graph's validation request")
        assert graph.subscriptions == {}
        assert [v.status for v in graph.validations] == [404]
