"""One change, one signal: every catalogue connector that polls *and* receives webhooks.

Each connector's fake changes one item as a user would and pushes the webhook
its provider sends for that change; the delivery goes through the real gateway
into a real SQLite store, then is redelivered, then replayed under a fresh
delivery id (and, for GitHub, under another unsigned ``X-GitHub-Event``), and
finally a real poll lists the changed item. The store must hold that change
once, under the key and the deterministic id both channels compute.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.catalogue.conftest import POLLING, WEBHOOKS, descriptor_of, webhook_url
from tests.service.poll_support import all_signals, settings_for
from tests.stores.dynalite import dynamodb_url, unique_table_name
from ucf.core.webhook import header
from ucf.fakes.scenario import WebhookDelivery, scenario_for
from ucf.service.context import UcfContext
from ucf.service.poll import PageReport, poll_instance
from ucf.service.webhooks import Accepted, Delivery, WebhookGateway, receive_webhook
from ucf.stores.models import StoredSignal

PROJECT = "battery"
#: Descriptor connectors only: a native connector's handler code computes its own
#: signals (and keys) and is tested with its package.
BOTH = [c for c in POLLING if c in WEBHOOKS and descriptor_of(c).kind == "generic"]
#: Connectors whose API and webhooks write one instant at different precisions
#: (their descriptors say ``versionPrecision``): same key, the id of whichever came first.
PRECISION_DIFFERS = frozenset({"notion", "pagerduty", "sentry"})


class Clock:
    """The context's clock, moved by the test (the fakes' data is laid out around it)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _fresh_delivery_id(connector_id: str, delivery: WebhookDelivery) -> WebhookDelivery | None:
    """The same signed body under a new delivery id header (None: the scheme has none)."""
    webhook = descriptor_of(connector_id).webhook
    assert webhook is not None
    name = webhook.delivery_id_header
    if name is None or header(delivery.headers, name) is None:
        return None
    headers = {k: v for k, v in delivery.headers.items() if k.lower() != name.lower()}
    return replace(delivery, headers={**headers, name: str(uuid.uuid4())})


async def _deliver(
    context: UcfContext, gateway: WebhookGateway, connector_id: str, delivery: WebhookDelivery
) -> Accepted:
    outcome = await receive_webhook(
        gateway,
        connector_id,
        PROJECT,
        Delivery("POST", delivery.body, delivery.headers, {}, delivery.url),
    )
    assert isinstance(outcome, Accepted), outcome
    return outcome


def _of_item(signals: list[StoredSignal], keys: Mapping[str, object]) -> list[StoredSignal]:
    return [s for s in signals if s.dedup_key in keys]


def test_every_connector_that_polls_and_receives_webhooks_is_checked() -> None:
    assert set(BOTH) >= {"github-issues", "github-prs", "linear", "slack", "sentry"}


def _store_url(store: str, request: pytest.FixtureRequest) -> str | None:
    """None: the default SQLite file in the data directory; else a fresh dynalite table."""
    if store == "sqlite":
        return None
    return dynamodb_url(request.getfixturevalue("dynalite_endpoint"), unique_table_name())


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
@pytest.mark.parametrize("connector_id", BOTH)
async def test_a_change_pushed_redelivered_replayed_and_polled_is_stored_once(
    connector_id: str, store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    scenario = scenario_for(connector_id)
    # Whole seconds for the dataset; the change itself carries milliseconds, as real ones do.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    clock = Clock(start + timedelta(minutes=1))
    url = _store_url(store, request)
    settings = settings_for(tmp_path) if url is None else settings_for(tmp_path, UCF_STORE=url)
    context = await UcfContext.open(settings, clock=clock)
    try:
        with scenario.fake(start) as fake:
            await context.instances.create(
                PROJECT,
                connector_id,
                credentials=scenario.credentials(),
                config=scenario.config(fake.base_url),
            )
            first = await poll_instance(context, PROJECT, connector_id)
            assert first.status == "ok", first.error
            stored_before = len(await all_signals(context, PROJECT))

            changed_at = start + timedelta(minutes=10, milliseconds=437)
            change = fake.push_change(changed_at)
            clock.now = changed_at + timedelta(seconds=2)
            delivery = scenario.sign(
                change.sample, url=webhook_url(connector_id), at=clock.now - timedelta(seconds=1)
            )
            gateway = WebhookGateway(context)
            pushed = await _deliver(context, gateway, connector_id, delivery)
            assert (pushed.received, pushed.inserted) == (1, 1)

            redelivered = await _deliver(context, gateway, connector_id, delivery)
            assert (redelivered.inserted, redelivered.duplicates) == (0, 1)
            replay = _fresh_delivery_id(connector_id, delivery)
            if replay is not None:  # finding 8: the delivery id is not signed
                replayed = await _deliver(context, gateway, connector_id, replay)
                assert (replayed.inserted, replayed.duplicates) == (0, 1)
            if connector_id == "github-issues":  # nor is X-GitHub-Event
                relabelled = replace(
                    delivery, headers={**delivery.headers, "X-GitHub-Event": "issue_comment"}
                )
                other_event = await _deliver(context, gateway, connector_id, relabelled)
                assert (other_event.inserted, other_event.duplicates) == (0, 1)

            pushed_signals = await all_signals(context, PROJECT)
            assert len(pushed_signals) == stored_before + 1

            clock.now = changed_at + timedelta(minutes=2)
            polled: dict[str, tuple[str, str]] = {}  # the changed item: key → (id, time)

            def seen(report: PageReport) -> None:
                for mapped in report.mapped.signals:
                    if mapped.item_id == change.item_id:
                        polled[mapped.dedup_key] = (mapped.wire["id"], mapped.wire["timestamp"])

            second = await poll_instance(context, PROJECT, connector_id, on_page=seen)
            assert second.status == "ok", second.error
            assert polled, f"the poll did not list the changed item {change.item_id}"
            assert second.inserted == 0
            after = await all_signals(context, PROJECT)
            assert len(after) == stored_before + 1
            (stored,) = _of_item(after, polled)
            new = [s for s in pushed_signals if s.dedup_key == stored.dedup_key]
            assert len(new) == 1  # the webhook's signal is the one the poll found stored
            polled_id, polled_time = polled[stored.dedup_key]
            if polled_time == stored.signal["timestamp"]:
                # Same key, same event time: the same deterministic ULID on both channels.
                assert polled_id == stored.signal_id
            else:  # Notion, PagerDuty, Sentry: the channels write the time at other precisions
                assert scenario_for(connector_id).connector_id in PRECISION_DIFFERS
    finally:
        await context.close()
