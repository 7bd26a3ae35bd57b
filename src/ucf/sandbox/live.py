"""Live activity against a running sandbox, and what the server makes of it.

:class:`Activity` plays one event at a time from a :class:`Deck`: items
created and changed in a fake API (the next scheduled poll brings them in),
signed webhook deliveries posted to the gateway, a tampered delivery (the
gateway must answer 401), a redelivery (deduplicated), an event type the
connector ignores (202), and now and then an upstream fault (the provider's
own 429, or a 503 outage) that makes the instance's health dip and recover.

:class:`Watcher` looks at the server the way a user would — the instances'
health through the management API, signals stored through ``/metrics`` — and
reports what changed. Neither knows anything provider-specific: everything
comes from the connectors' scenarios and descriptors.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.webhook import delivery_id_of
from ucf.fakes.kit import Fault
from ucf.fakes.scenario import WebhookDelivery, WebhookSample
from ucf.sandbox.console import Reporter
from ucf.sandbox.fleet import Fleet, Provider

__all__ = [
    "PROJECT",
    "Activity",
    "Deck",
    "Kind",
    "MetricsSnapshot",
    "Rotation",
    "Tally",
    "Watcher",
    "read_metrics",
]

PROJECT: Final = "sandbox"
OUTAGE_REQUESTS: Final = 5
"""503s in a row: one poll's request and all four of the runtime's retries, so it fails."""
RETRY_AFTER_SECONDS: Final = 1
REDELIVERY_MAX_AGE_SECONDS: Final = 30.0
"""Redeliver only recent deliveries: older ones fall outside Linear's 60 s replay window."""

T = TypeVar("T")


# --------------------------------------------------------------------------- what happens


class Kind(enum.StrEnum):
    UPSTREAM = "upstream"
    WEBHOOK = "webhook"
    TAMPERED = "tampered"
    REDELIVER = "redeliver"
    IGNORED = "ignored"
    FAULT = "fault"


ROUND: Final[Mapping[Kind, int]] = {
    Kind.UPSTREAM: 5,
    Kind.WEBHOOK: 5,
    Kind.TAMPERED: 2,
    Kind.REDELIVER: 1,
    Kind.IGNORED: 1,
    Kind.FAULT: 1,
}
TOUR: Final = (Kind.WEBHOOK, Kind.UPSTREAM, Kind.FAULT, Kind.TAMPERED, Kind.REDELIVER, Kind.IGNORED)
"""How the first round opens: one of each kind, so a newcomer sees everything within seconds."""


class Deck:
    """Events in rounds of :data:`ROUND`, shuffled; the first round opens with :data:`TOUR`."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._events = self._first_round()

    def _round(self) -> list[Kind]:
        events = [kind for kind, count in ROUND.items() for _ in range(count)]
        self._rng.shuffle(events)
        return events

    def _first_round(self) -> Iterator[Kind]:
        rest = self._round()
        for kind in TOUR:
            rest.remove(kind)
        yield from TOUR
        yield from rest

    def __iter__(self) -> Iterator[Kind]:
        return self

    def __next__(self) -> Kind:
        for kind in self._events:
            return kind
        self._events = iter(self._round())
        return next(self._events)


class Rotation(Generic[T]):
    """Every item once per pass, each pass in a new random order: random, but fair."""

    def __init__(self, items: Sequence[T], rng: random.Random) -> None:
        if not items:
            raise ValueError("nothing to rotate through")
        self._items = list(items)
        self._rng = rng
        self._pass: list[T] = []

    def __next__(self) -> T:
        if not self._pass:
            self._pass = list(self._items)
            self._rng.shuffle(self._pass)
        return self._pass.pop()


@dataclass(slots=True)
class Tally:
    """What the sandbox did and what the server answered, for the summary."""

    upstream_changes: int = 0
    webhooks_sent: int = 0
    webhooks_accepted: int = 0
    webhook_signals: int = 0
    tampered_sent: int = 0
    tampered_rejected: int = 0
    redeliveries: int = 0
    redeliveries_deduplicated: int = 0
    ignored_sent: int = 0
    ignored_answered_202: int = 0
    faults: int = 0
    health_changes: int = 0
    unexpected: list[str] = field(default_factory=list)
    """Answers the sandbox did not expect (a valid delivery refused…): bugs worth a look."""


# --------------------------------------------------------------------------- deliveries

_SIMPLE_PATH = re.compile(r"^\$(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")


def with_new_delivery_id(
    sample: WebhookSample, descriptor: ConnectorDescriptor, rng: random.Random
) -> WebhookSample | None:
    """``sample`` as a new delivery: the provider's delivery id replaced by a fresh one.

    The gateway deduplicates on that id, so a sample sent twice unchanged is a
    redelivery. Samples whose id the scenario already varies need nothing; the
    others get a new id where the descriptor says it is (a header, or a simple
    ``$.a.b`` path in the body); None when it is somewhere this cannot change.
    """
    webhook = descriptor.webhook
    if webhook is None:
        return None
    if webhook.delivery_id_header is not None:
        headers = {
            **sample.headers,
            webhook.delivery_id_header: str(uuid.UUID(int=rng.getrandbits(128))),
        }
        return replace(sample, headers=headers)
    path = webhook.delivery_id_path
    if path is None or not _SIMPLE_PATH.match(path):
        return None
    payload = sample.json()
    keys = path[2:].split(".")
    parent: Any = payload
    for key in keys[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or keys[-1] not in parent:
        return None
    old = parent[keys[-1]]
    fresh = str(rng.randrange(10**15, 10**16))
    parent[keys[-1]] = (
        int(fresh)
        if isinstance(old, int)
        else fresh
        if str(old).isdigit()
        else uuid.UUID(int=rng.getrandbits(128)).hex
    )
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return replace(sample, body=body)


@dataclass(frozen=True, slots=True)
class Sent:
    """A delivery as posted, for a later redelivery."""

    provider: Provider
    delivery: WebhookDelivery
    at: float


# --------------------------------------------------------------------------- activity


class Activity:
    """Plays events against the fakes and the gateway, reporting each in one line."""

    def __init__(
        self,
        fleet: Fleet,
        hooks: httpx.AsyncClient,
        webhook_urls: Mapping[str, str],
        reporter: Reporter,
        rng: random.Random,
        tally: Tally,
        clock: Callable[[], float],
    ) -> None:
        self.hooks = hooks
        self.webhook_urls = dict(webhook_urls)
        self.reporter = reporter
        self.rng = rng
        self.tally = tally
        self.clock = clock
        webhooks = [p for p in fleet.webhooks if p.connector_id in self.webhook_urls]
        self._upstream = Rotation(fleet.polled, rng) if fleet.polled else None
        self._faulty = Rotation(fleet.polled, rng) if fleet.polled else None
        self._webhooks = Rotation(webhooks, rng) if webhooks else None
        signed = [p for p in webhooks if p.signs_webhooks]
        self._signed = Rotation(signed, rng) if signed else None
        ignoring = [p for p in webhooks if p.scenario.unknown_event_sample() is not None]
        self._ignoring = Rotation(ignoring, rng) if ignoring else None
        self._seen_ids: set[tuple[str, str]] = set()
        self._last: Sent | None = None
        self._outage_next = False

    async def play(self, kind: Kind) -> None:
        plays = {
            Kind.UPSTREAM: self.upstream,
            Kind.WEBHOOK: self.webhook,
            Kind.TAMPERED: self.tampered,
            Kind.REDELIVER: self.redeliver,
            Kind.IGNORED: self.ignored,
            Kind.FAULT: self.fault,
        }
        await plays[kind]()

    def _event(self, kind: Kind | str, provider: Provider | str, message: str) -> None:
        name = provider if isinstance(provider, str) else provider.connector_id
        self.reporter.event(str(kind), name, message)

    def _unexpected(self, provider: Provider, what: str) -> None:
        self.tally.unexpected.append(f"{provider.connector_id}: {what}")
        self._event("unexpected", provider, what)

    # -- upstream

    async def upstream(self) -> None:
        if self._upstream is None:
            return
        provider = next(self._upstream)
        fake = provider.fake
        changed = await asyncio.to_thread(
            fake.server.call_between_requests, lambda: fake.add_activity(datetime.now(UTC))
        )
        self.tally.upstream_changes += len(changed.ids)
        if self._last is not None and self._last.provider is provider:
            # A connector that reads the item upstream when a delivery arrives (Asana's
            # compact events) rightly stores the item's new version if that delivery comes
            # again now: no longer a redelivery of the same change, so send a fresh one.
            self._last = None
        parts = [f"{len(changed.new_ids)} new"]
        if changed.changed_ids:
            parts.append(f"{len(changed.changed_ids)} changed")
        self._event(
            Kind.UPSTREAM,
            provider,
            f"{' + '.join(parts)} item(s) in the fake API; the next scheduled poll brings them in",
        )

    async def fault(self) -> None:
        if self._faulty is None:
            return
        provider = next(self._faulty)
        fake = provider.fake
        self.tally.faults += 1
        if self._outage_next:
            fake.server.inject(Fault.status(503), path=fake.poll_route, times=OUTAGE_REQUESTS)
            message = (
                f"the API answers 503 to the next {OUTAGE_REQUESTS} requests: the poll fails "
                "after its retries (degraded), the one after recovers (healthy)"
            )
        else:
            fault = fake.rate_limit_fault(retry_after=RETRY_AFTER_SECONDS)
            fake.server.inject(fault, path=fake.poll_route, times=1)
            message = (
                f"the API rate-limits the next poll (its own rate-limit answer, retry after "
                f"{RETRY_AFTER_SECONDS} s): the poll waits and completes, throttled (degraded)"
            )
        self._outage_next = not self._outage_next
        self._event(Kind.FAULT, provider, message)

    # -- webhooks

    def _sample(self, provider: Provider) -> WebhookSample | None:
        """A change made at the fake now, as the provider pushes it, so each delivery is
        news: a static sample sent again is the same version of the same item and
        rightly dedupes to nothing. Fakes that push no changes send their samples."""
        try:
            return provider.fake.push_change(datetime.now(UTC)).sample
        except NotImplementedError:
            samples = provider.scenario.webhook_samples()
            return self.rng.choice(samples) if samples else None

    def _sign(self, provider: Provider, sample: WebhookSample) -> WebhookDelivery:
        url = self.webhook_urls[provider.connector_id]
        return provider.scenario.sign(sample, url=url, at=datetime.now(UTC))

    def _fresh(self, provider: Provider, sample: WebhookSample) -> WebhookDelivery:
        """Signed now, with a delivery id the gateway has not seen from this sandbox."""
        delivery = self._sign(provider, sample)
        webhook = provider.descriptor.webhook
        if webhook is None:
            return delivery
        seen = delivery_id_of(webhook, delivery.json(), delivery.headers)
        if seen is not None and (provider.connector_id, seen) in self._seen_ids:
            renewed = with_new_delivery_id(sample, provider.descriptor, self.rng)
            if renewed is not None:
                delivery = self._sign(provider, renewed)
                seen = delivery_id_of(webhook, delivery.json(), delivery.headers)
        if seen is not None:
            self._seen_ids.add((provider.connector_id, seen))
        return delivery

    async def _post(self, delivery: WebhookDelivery) -> httpx.Response:
        headers = {k: v for k, v in delivery.headers.items() if k.lower() != "content-length"}
        return await self.hooks.post(delivery.url, content=delivery.body, headers=headers)

    async def webhook(self) -> None:
        if self._webhooks is None:
            return
        provider = next(self._webhooks)
        sample = self._sample(provider)
        if sample is None:
            return
        delivery = self._fresh(provider, sample)
        response = await self._post(delivery)
        self.tally.webhooks_sent += 1
        if response.status_code != 200:
            self._unexpected(provider, f"valid {sample.name} delivery answered {_status(response)}")
            return
        inserted = int(_json(response).get("inserted", 0))
        self.tally.webhooks_accepted += 1
        self.tally.webhook_signals += inserted
        self._last = Sent(provider, delivery, self.clock())
        self._event(
            Kind.WEBHOOK,
            provider,
            f"{sample.name}, signed → 200, verified, {inserted} new signal(s)",
        )

    async def tampered(self) -> None:
        if self._signed is None:
            return
        provider = next(self._signed)
        sample = self._sample(provider)
        if sample is None:
            return
        delivery = provider.scenario.tamper(self._fresh(provider, sample))
        response = await self._post(delivery)
        self.tally.tampered_sent += 1
        if response.status_code == 401:
            self.tally.tampered_rejected += 1
            self._event(
                Kind.TAMPERED,
                provider,
                f"{sample.name} with its body altered after signing → 401, rejected",
            )
        else:
            self._unexpected(provider, f"tampered delivery answered {_status(response)}")

    async def redeliver(self) -> None:
        last = self._last
        if last is None or self.clock() - last.at > REDELIVERY_MAX_AGE_SECONDS:
            await self.webhook()
            return
        response = await self._post(last.delivery)
        self.tally.redeliveries += 1
        body = _json(response)
        if response.status_code == 200 and body.get("inserted") == 0:
            self.tally.redeliveries_deduplicated += 1
            self._event(
                Kind.REDELIVER,
                last.provider,
                f"{last.delivery.name} delivered again → 200, deduplicated (nothing new stored)",
            )
        else:
            self._unexpected(last.provider, f"redelivery answered {_status(response)} {body}")

    async def ignored(self) -> None:
        if self._ignoring is None:
            return
        provider = next(self._ignoring)
        sample = provider.scenario.unknown_event_sample()
        if sample is None:
            return
        response = await self._post(self._fresh(provider, sample))
        self.tally.ignored_sent += 1
        # Asana counts only 200/204 as delivered: its connector answers 200, storing nothing.
        expected = 200 if provider.scenario.unmapped_events_answered_200 else 202
        if response.status_code == expected and not _json(response).get("inserted"):
            self.tally.ignored_answered_202 += 1
            self._event(
                Kind.IGNORED,
                provider,
                f"{sample.name}, an event type the connector does not map → {expected}, "
                "nothing stored",
            )
        else:
            self._unexpected(provider, f"unmapped {sample.name} answered {_status(response)}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _status(response: httpx.Response) -> str:
    error = _json(response).get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return f"{response.status_code}" + (f" ({code})" if code else "")


# --------------------------------------------------------------------------- watching


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The counters the sandbox reports, read from the server's ``/metrics``."""

    ingested: Mapping[tuple[str, str], int]
    """Signals newly stored, by (connector, how they arrived: poll or webhook)."""
    verification_failures: Mapping[str, int]
    """Webhook deliveries refused by verification, by connector."""

    def total(self, via: str | None = None) -> int:
        return sum(n for (_, how), n in self.ingested.items() if via is None or how == via)


def read_metrics(text: str) -> MetricsSnapshot:
    ingested: dict[tuple[str, str], int] = {}
    failures: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ucf_signals_ingested_total":
                key = (sample.labels["connector"], sample.labels["via"])
                ingested[key] = ingested.get(key, 0) + int(sample.value)
            elif sample.name == "ucf_webhook_verification_failures_total":
                connector = sample.labels["connector"]
                failures[connector] = failures.get(connector, 0) + int(sample.value)
    return MetricsSnapshot(ingested, failures)


class Watcher:
    """Reports health changes (management API) and signals stored (``/metrics``)."""

    def __init__(self, api: httpx.AsyncClient, reporter: Reporter, tally: Tally) -> None:
        self.api = api
        self.reporter = reporter
        self.tally = tally
        self.health: dict[str, str] = {}
        self.metrics: MetricsSnapshot | None = None

    async def snapshot(self) -> MetricsSnapshot:
        response = await self.api.get("/metrics")
        response.raise_for_status()
        return read_metrics(response.text)

    async def baseline(self) -> None:
        """What is already there is not news: only changes from here on are reported."""
        self.metrics = await self.snapshot()
        for item in await self._instances():
            self.health[str(item["connectorId"])] = str(item["healthState"])

    async def _instances(self) -> list[dict[str, Any]]:
        response = await self.api.get(f"/api/projects/{PROJECT}/instances")
        response.raise_for_status()
        items = response.json().get("items", [])
        return [item for item in items if isinstance(item, dict)]

    async def look(self) -> None:
        for item in await self._instances():
            connector, state = str(item["connectorId"]), str(item["healthState"])
            before = self.health.get(connector)
            self.health[connector] = state
            if before is None or before == state:
                continue
            self.tally.health_changes += 1
            error = item.get("lastError")
            detail = f" — {error}" if error and state != "healthy" else ""
            self.reporter.event("health", connector, f"{before} → {state}{detail}")
        metrics = await self.snapshot()
        previous = self.metrics
        self.metrics = metrics
        if previous is None:
            return
        grown = {
            key: count - previous.ingested.get(key, 0)
            for key, count in sorted(metrics.ingested.items())
            if count > previous.ingested.get(key, 0)
        }
        if grown:
            parts = [f"{connector} +{n} by {via}" for (connector, via), n in grown.items()]
            self.reporter.event(
                "signals",
                f"+{sum(grown.values())} stored",
                f"{', '.join(parts)} (this run: {metrics.total()})",
            )
