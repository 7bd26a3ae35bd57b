"""The harness the catalogue battery runs every connector through.

Everything real: the connector's shipped descriptor, its fake API on a
loopback port, the runtime's HTTP client (SSRF guard allow-listing only
127.0.0.1), auth flows, polling engine and webhook verifier. Only sleeping is
replaced, so a 429 asking for seconds of patience costs none.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.catalogue.profiles import (
    PROJECT,
    ConnectorProfile,
    Delivered,
    Poll,
    RecordingSleep,
    SetEnv,
    map_delivery,
    profile_for,
    webhook_url,
)
from ucf.catalogue import builtin_descriptors
from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.validation import parse_descriptor
from ucf.fakes.scenario import ProviderFake, Scenario, delivery_verification, scenario_for
from ucf.runtime.http import HttpSettings, create_client
from ucf.runtime.sources import source_for
from ucf.runtime.ssrf import EgressPolicy

__all__ = [
    "BRIEF_SIGNAL_TYPES",
    "CATALOGUE",
    "PROJECT",
    "Delivered",
    "Harness",
    "Poll",
    "RecordingSleep",
    "map_delivery",
    "webhook_url",
]

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
    # Native connectors (issue 11 §2-§3).
    "jira": frozenset(
        {
            "issue_created",
            "issue_updated",
            "issue_status_changed",
            "issue_commented",
            "issue_deleted",
        }
    ),
    "asana": frozenset(
        {"task_created", "task_updated", "task_completed", "task_assigned", "task_commented"}
    ),
    "ses": frozenset({"email_received"}),
    "outlook": frozenset({"email_received", "email_updated"}),
}

RAW_DESCRIPTORS: dict[str, dict[str, Any]] = {d["id"]: d for d in builtin_descriptors()}
CATALOGUE: list[str] = sorted(RAW_DESCRIPTORS)


def _parsed(connector_id: str) -> ConnectorDescriptor | None:
    try:
        return parse_descriptor(RAW_DESCRIPTORS[connector_id])
    except ValueError:
        return None  # the validation test reports why


def _does(descriptor: ConnectorDescriptor, part: str) -> bool:
    """Whether a connector polls / receives webhooks: its descriptor says so for a generic
    connector, its source's declaration (``schedule``, ``webhooks``) for a native one."""
    if descriptor.kind == "native":
        try:
            source = source_for(descriptor)
        except LookupError:
            return True  # let the tests fail loudly on the missing package
        return (source.schedule if part == "polling" else source.webhooks) is not None
    return (descriptor.polling if part == "polling" else descriptor.webhook) is not None


def _with(part: str) -> list[str]:
    """Catalogue ids that poll / receive webhooks (collection time)."""
    chosen = []
    for connector_id in CATALOGUE:
        descriptor = _parsed(connector_id)
        if descriptor is None or _does(descriptor, part):
            chosen.append(connector_id)  # a bad descriptor fails loudly in every test
    return chosen


POLLING = _with("polling")
WEBHOOKS = _with("webhook")


def _verified_with(connector_id: str) -> tuple[str | None, bool]:
    """The credential deliveries are verified with, and whether a signature covers the
    body: the descriptor says it for a generic connector, the scenario for a native one."""
    descriptor = _parsed(connector_id)
    if descriptor is None:
        return "?", True  # a bad descriptor fails loudly in every test
    verification = delivery_verification(descriptor, scenario_for(connector_id))
    if verification is None:
        return None, False
    return verification.secret_credential, verification.signs_body


VERIFIED = [c for c in WEBHOOKS if _verified_with(c)[0] is not None]
SIGNED = [c for c in WEBHOOKS if _verified_with(c)[1]]


def descriptor_of(connector_id: str) -> ConnectorDescriptor:
    return parse_descriptor(RAW_DESCRIPTORS[connector_id])


# --------------------------------------------------------------------------- harness


class Harness:
    """Runs catalogue connectors against their fakes through the real runtime.

    :meth:`profile` is how the battery reaches a connector of either kind
    (:mod:`tests.catalogue.profiles`); :meth:`poll` stays for the per-connector
    test files that poll a descriptor directly.
    """

    def __init__(self, client: httpx.AsyncClient, setenv: SetEnv) -> None:
        self.client = client
        self.setenv = setenv
        self._profiles: dict[str, ConnectorProfile] = {}

    def profile(self, connector_id: str) -> ConnectorProfile:
        found = self._profiles.get(connector_id)
        if found is None:
            found = self._profiles[connector_id] = profile_for(
                RAW_DESCRIPTORS[connector_id], self.client, setenv=self.setenv
            )
        return found

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
        profile = profile_for(descriptor.to_json(), self.client, scenario, self.setenv)
        return await profile.poll(
            fake, checkpoint=checkpoint, now=now, credentials=credentials, sleep=sleep
        )

    def close(self) -> None:
        for profile in self._profiles.values():
            profile.close()


@pytest_asyncio.fixture(loop_scope="function")
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    settings = HttpSettings(max_retries=4, max_total_retry_wait=120.0)
    async with create_client(settings, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
        yield client


@pytest.fixture
def harness(http_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    found = Harness(http_client, monkeypatch.setenv)
    yield found
    found.close()


@pytest.fixture
def now() -> datetime:
    """A whole-second 'now' (providers with second-precision timestamps compare exactly)."""
    return datetime.now(UTC).replace(microsecond=0)


# --------------------------------------------------------------------------- webhooks


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
