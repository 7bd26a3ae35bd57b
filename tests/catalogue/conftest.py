"""The harness the catalogue battery runs every connector through.

Everything real: the connector's shipped descriptor, its fake API on a
loopback port, the runtime's HTTP client (SSRF guard allow-listing only
127.0.0.1), auth flows, polling engine and webhook verifier. Only sleeping is
replaced, so a 429 asking for seconds of patience costs none.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ucf.catalogue import builtin_descriptors
from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.mapping import CompiledMapping, MappedSignal
from ucf.core.validation import parse_descriptor
from ucf.core.webhook import delivery_id_of, event_type_of, handles
from ucf.fakes.scenario import ProviderFake, Scenario, WebhookDelivery
from ucf.runtime.auth import build_auth
from ucf.runtime.http import HttpSettings, create_client
from ucf.runtime.polling import Page
from ucf.runtime.sources import GenericSource, SourceContext
from ucf.runtime.ssrf import EgressPolicy

PROJECT = "battery"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "webhooks"

#: SPEC §9: the signal types each catalogue connector must produce (the minimum).
BRIEF_SIGNAL_TYPES: Mapping[str, frozenset[str]] = {
    "github-issues": frozenset({"issue_created", "issue_updated", "issue_commented"}),
    "github-prs": frozenset({"pr_opened", "pr_merged", "pr_reviewed"}),
    "linear": frozenset({"issue_created", "issue_updated", "cycle_changed"}),
    "trello": frozenset({"card_created", "card_moved", "card_commented"}),
    "slack": frozenset({"message_received", "mention", "reaction"}),
    "notion": frozenset({"page_updated", "database_updated"}),
    "confluence": frozenset({"page_updated", "page_commented"}),
    "pagerduty": frozenset({"incident_triggered", "incident_resolved"}),
    "sentry": frozenset({"error_created", "error_resolved"}),
    "datadog": frozenset({"monitor_triggered", "monitor_resolved"}),
    "ses": frozenset({"email_received"}),
}

RAW_DESCRIPTORS: dict[str, dict[str, Any]] = {d["id"]: d for d in builtin_descriptors()}
CATALOGUE: list[str] = sorted(RAW_DESCRIPTORS)


def _parsed(connector_id: str) -> ConnectorDescriptor | None:
    try:
        return parse_descriptor(RAW_DESCRIPTORS[connector_id])
    except ValueError:
        return None  # the validation test reports why


def _with(part: str) -> list[str]:
    """Catalogue ids whose descriptor has a polling / webhook part (collection time)."""
    chosen = []
    for connector_id in CATALOGUE:
        descriptor = _parsed(connector_id)
        if descriptor is None:
            chosen.append(connector_id)  # let the test fail loudly on the bad descriptor
        elif (descriptor.polling if part == "polling" else descriptor.webhook) is not None:
            chosen.append(connector_id)
    return chosen


POLLING = _with("polling")
WEBHOOKS = _with("webhook")


def descriptor_of(connector_id: str) -> ConnectorDescriptor:
    return parse_descriptor(RAW_DESCRIPTORS[connector_id])


# --------------------------------------------------------------------------- polling


class RecordingSleep:
    """Stands in for ``asyncio.sleep``: remembers what the runtime asked for, waits nothing."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class Poll:
    """One poll's pages and the signals its items map to."""

    pages: list[Page]
    signals: list[MappedSignal] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def checkpoint(self) -> str | None:
        return self.pages[-1].checkpoint if self.pages else None

    @property
    def item_ids(self) -> set[str]:
        return {s.item_id for s in self.signals}

    @property
    def keys(self) -> set[str]:
        return {s.dedup_key for s in self.signals}

    @property
    def types(self) -> set[str]:
        return {s.signal.type for s in self.signals}


class Harness:
    """Polls a connector's fake through the real runtime."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def poll(
        self,
        descriptor: ConnectorDescriptor,
        scenario: Scenario,
        fake: ProviderFake,
        *,
        checkpoint: str | None,
        now: datetime,
        credentials: Mapping[str, str] | None = None,
        sleep: RecordingSleep | None = None,
    ) -> Poll:
        config = scenario.config(fake.base_url)
        auth = build_auth(
            descriptor.auth,
            dict(credentials if credentials is not None else scenario.credentials()),
            token_client=self.client,
            config=config,
            sleep=sleep or RecordingSleep(),
        )
        context = SourceContext(
            client=self.client, auth=auth, config=config, sleep=sleep or RecordingSleep()
        )
        source = GenericSource(descriptor)
        assert source.plan is not None
        mapping = source.plan.mapping
        poll = Poll(pages=[])
        async for page in source.fetch_delta(context, checkpoint, now=now):
            poll.pages.append(page)
            result = mapping.map_items(page.items, descriptor.id, PROJECT, now=now)
            poll.signals.extend(result.signals)
            poll.errors.extend(f"{e.item_id}: {e.reason}" for e in result.errors)
        return poll


@pytest_asyncio.fixture(loop_scope="function")
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    settings = HttpSettings(max_retries=4, max_total_retry_wait=120.0)
    async with create_client(settings, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
        yield client


@pytest.fixture
def harness(http_client: httpx.AsyncClient) -> Harness:
    return Harness(http_client)


@pytest.fixture
def now() -> datetime:
    """A whole-second 'now' (providers with second-precision timestamps compare exactly)."""
    return datetime.now(UTC).replace(microsecond=0)


# --------------------------------------------------------------------------- webhooks


WEBHOOK_URL = "https://ucf.example.com/api/webhooks/{connector}/battery"


def webhook_url(connector_id: str) -> str:
    return WEBHOOK_URL.format(connector=connector_id)


@dataclass
class Delivered:
    """What the gateway would make of one delivery: event type, handled, signals."""

    event_type: str | None
    handled: bool
    signals: list[MappedSignal]
    errors: list[str]


def map_delivery(
    descriptor: ConnectorDescriptor, delivery: WebhookDelivery, now: datetime
) -> Delivered:
    """The gateway's mapping steps (ucf.core.webhook + the webhook field mapping)."""
    webhook = descriptor.webhook
    mapping = descriptor.webhook_mapping()
    assert webhook is not None
    assert mapping is not None
    payload = delivery.json()
    event_type = event_type_of(webhook, payload, delivery.headers)
    if event_type is None or not handles(webhook, event_type):
        return Delivered(event_type, False, [], [])
    compiled = CompiledMapping(mapping)
    version = delivery_id_of(webhook, payload, delivery.headers) or delivery.name
    result = compiled.map_items(
        compiled.extract_items(payload),
        descriptor.id,
        PROJECT,
        event_type=event_type,
        version=version,
        now=now,
    )
    return Delivered(
        event_type,
        True,
        result.signals,
        [f"{e.item_id}: {e.reason}" for e in result.errors],
    )


@dataclass(frozen=True)
class DocumentedExample:
    """A provider's documented webhook payload, named in a ``manifest.json`` beside it."""

    provider: str
    connector: str
    file: Path
    headers: Mapping[str, str]
    expected_types: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.connector}:{self.file.name}"


def documented_examples() -> list[DocumentedExample]:
    """Every ``tests/fixtures/webhooks/<provider>/manifest.json`` entry.

    A manifest is a list of ``{"connector", "file", "headers", "expect"}``
    objects; ``expect`` lists the signal types the payload maps to (empty: the
    connector must ignore it).
    """
    found: list[DocumentedExample] = []
    for manifest in sorted(FIXTURES.glob("*/manifest.json")):
        for entry in json.loads(manifest.read_text(encoding="utf-8")):
            found.append(
                DocumentedExample(
                    provider=manifest.parent.name,
                    connector=entry["connector"],
                    file=manifest.parent / entry["file"],
                    headers=entry.get("headers", {}),
                    expected_types=tuple(entry.get("expect", [])),
                )
            )
    return found
