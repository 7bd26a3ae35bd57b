"""Upkeep between polls (Outlook's Graph subscription) with several workers on one store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ucf.fakes.graph import CLIENT_ID, CLIENT_SECRET, MAILBOX, TENANT, GraphFake
from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer, Fault
from ucf.runtime.http import HttpSettings
from ucf.runtime.native import MAINTENANCE_EVERY
from ucf.service.context import UcfContext
from ucf.service.maintenance import maintain_instance, maintenance_lease
from ucf.service.scheduler import Scheduler
from ucf.service.webhooks import webhook_path

from .delivery_support import eventually
from .poll_support import settings_for


@pytest.fixture
def graph() -> Iterator[GraphFake]:
    with GraphFake(datetime.now(UTC)) as fake:
        yield fake


@pytest.fixture
def gateway() -> Iterator[FakeServer]:
    """Where ``UCF_PUBLIC_URL`` points: answers Graph's validation request like ucf's gateway."""
    server = FakeServer()

    def validate(request: FakeRequest) -> FakeResponse:
        return FakeResponse.text(request.param("validationToken") or "")

    server.add_route("POST", "/api/webhooks/outlook/{project}/{hook}", validate)
    with server:
        yield server


def app_only_mailbox(graph: GraphFake) -> dict[str, str]:
    """Settings of an Outlook instance reading one mailbox with app-only access."""
    return {
        "baseUrl": f"{graph.base_url}/v1.0",
        "authorityUrl": graph.base_url,
        "tenant": TENANT,
        "mailbox": MAILBOX,
    }


async def open_worker(data_dir: Path, public_url: str) -> UcfContext:
    settings = dataclasses.replace(settings_for(data_dir, sink=False), public_url=public_url)
    return await UcfContext.open(settings)


async def test_two_workers_starting_upkeep_at_once_create_one_subscription(
    tmp_path: Path, graph: GraphFake, gateway: FakeServer
) -> None:
    async with (
        await open_worker(tmp_path, gateway.base_url) as one,
        await open_worker(tmp_path, gateway.base_url) as two,
    ):
        await one.instances.create(
            "p",
            "outlook",
            credentials={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
            config=app_only_mailbox(graph),
        )
        record = await one.instances.record("p", "outlook")
        connector = await one.connectors.get("outlook")

        done = await asyncio.gather(
            maintain_instance(one, record, connector, owner="worker-a"),
            maintain_instance(two, record, connector, owner="worker-b"),
        )
        later = await maintain_instance(two, record, connector, owner="worker-b")
        hook_id = (await one.instances.secrets(record)).hook_id
        lease = await one.store.leases.get(maintenance_lease("p", "outlook"), now=one.clock())

    assert sorted(done, key=str) == [None, "subscription created"]
    assert later == "subscription is current", "the second worker sees what the first stored"
    [subscription] = graph.subscriptions.values()
    assert hook_id is not None
    assert subscription.notification_url == gateway.base_url + webhook_path("outlook", "p", hook_id)
    assert lease is None, "released after the upkeep"


async def test_a_scheduler_that_lives_one_tick_still_runs_upkeep_once_per_period(
    tmp_path: Path, graph: GraphFake, gateway: FakeServer
) -> None:
    """The AWS schedule Lambda builds a new Scheduler every minute: when upkeep last ran
    must come from the store, or Graph would be asked about the subscription each tick."""
    now = [datetime.now(UTC)]
    settings = dataclasses.replace(settings_for(tmp_path, sink=False), public_url=gateway.base_url)
    async with await UcfContext.open(settings, clock=lambda: now[0]) as context:
        await context.instances.create(
            "p",
            "outlook",
            credentials={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
            config=app_only_mailbox(graph),
        )
        first = await Scheduler(context, "tick-1").maintain()
        now[0] += timedelta(minutes=1)
        second = await Scheduler(context, "tick-2").maintain()
        now[0] += timedelta(seconds=MAINTENANCE_EVERY)
        after_the_period = await Scheduler(context, "tick-3").maintain()

    assert (first, second, after_the_period) == (1, 0, 1)
    assert len(graph.subscriptions) == 1


async def test_a_stopped_scheduler_returns_only_once_upkeep_in_flight_let_go_of_its_lease(
    tmp_path: Path, graph: GraphFake, gateway: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ucf serve`` and ``ucf worker`` close the store as soon as the scheduler returns:
    an upkeep abandoned at the stop must have released its lease by then, or every
    worker waits for it to lapse (and on SQLite its release reopened the closed file)."""
    patient = HttpSettings(connect_timeout=2, read_timeout=30, max_retries=0)
    settings = dataclasses.replace(
        settings_for(tmp_path, sink=False, http=patient), public_url=gateway.base_url
    )
    async with await UcfContext.open(settings) as context:
        await context.instances.create(
            "p",
            "outlook",
            credentials={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
            config=app_only_mailbox(graph),
        )
        graph.server.inject(Fault.slow(20), path="/v1.0/subscriptions")
        leases = context.store.leases
        real_release = leases.release
        releasing, let_go = asyncio.Event(), asyncio.Event()

        async def release_late(name: str, owner: str) -> None:
            if name.startswith("maintain:"):
                releasing.set()
                await let_go.wait()
            await real_release(name, owner)

        monkeypatch.setattr(leases, "release", release_late)
        scheduler = Scheduler(context, "worker-a")
        task = asyncio.create_task(scheduler.run())

        async def upkeep_asked_graph() -> bool:
            return bool(graph.server.requests_to("/v1.0/subscriptions"))

        await eventually(upkeep_asked_graph, what="the upkeep")
        scheduler.stop()
        await asyncio.wait_for(releasing.wait(), timeout=10)
        for _ in range(20):
            await asyncio.sleep(0)
        returned_early = task.done()
        let_go.set()
        await asyncio.wait_for(task, timeout=30)
        lease = await leases.get(maintenance_lease("p", "outlook"), now=context.clock())

    assert not returned_early, "run() returned while the upkeep still held its lease"
    assert lease is None
