"""How the battery drives one catalogue connector: one profile per kind of connector.

The battery's checks are the same for every connector (first poll, pagination,
checkpoint resume, bad credentials, 429, health, every signal type, webhook
verification, redelivery); what differs is *how* a connector is run:

* :class:`GenericProfile` — a JSON descriptor: the polling engine and the
  ``fieldMapping``, the descriptor's verifier (``compile_verifier``), handshakes
  and webhook mapping, exactly as the gateway runs them;
* :class:`NativeProfile` — a native package: its ``Source`` (``fetch_delta`` +
  ``normalise``, its own ``auth()`` hook through :func:`ucf.runtime.connection.connect`)
  and its ``WebhookHandler`` (``verify`` + ``signals``), exactly as the gateway
  and the poll job run them.

A new native connector needs nothing here: :func:`profile_for` picks the
profile from the descriptor's ``kind``, and everything provider-specific sits
in the connector's :class:`~ucf.fakes.scenario.Scenario`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.mapping import CompiledMapping, MappedSignal
from ucf.core.payload import payload_or_missing
from ucf.core.validation import parse_descriptor
from ucf.core.webhook import event_type_of, fallback_version, handles
from ucf.fakes.scenario import (
    DeliveryVerification,
    ProviderFake,
    Scenario,
    WebhookDelivery,
    WebhookSample,
    delivery_verification,
    scenario_for,
)
from ucf.runtime.connection import connect
from ucf.runtime.native import (
    Handshake,
    Malformed,
    Refused,
    Unhandled,
    WebhookContext,
    WebhookHandler,
    WebhookRequest,
)
from ucf.runtime.polling import Page
from ucf.runtime.sources import GenericSource, HealthResult, Source, SourceContext, source_for
from ucf.runtime.webhooks import HandshakeResponse, check_delivery, compile_verifier

PROJECT = "battery"
WEBHOOK_URL = "https://ucf.example.com/api/webhooks/{connector}/battery"
SetEnv = Callable[[str, str], None]


def webhook_url(connector_id: str) -> str:
    return WEBHOOK_URL.format(connector=connector_id)


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


@dataclass
class Delivered:
    """What the gateway would make of one delivery: event type, handled, signals."""

    event_type: str | None
    handled: bool
    signals: list[MappedSignal]
    errors: list[str]


@dataclass(frozen=True, slots=True)
class Checked:
    """The gateway's verdict on one request: accepted, refused (``code``) or a handshake."""

    code: str | None = None
    handshake: HandshakeResponse | None = None
    keep: Mapping[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.code is None and self.handshake is None


class ConnectorProfile(ABC):
    """One connector as the battery runs it (see the module doc).

    Webhook deliveries come from the provider's side, which :meth:`provider` keeps
    running for the profile's lifetime: some providers sign with what only their
    running side has (SNS: a certificate served at ``SigningCertURL``), and a
    handler may call back upstream (Asana resolves compact events). ``setenv``
    applies the settings the scenario says ``ucf serve`` needs for that fake
    (:meth:`~ucf.fakes.scenario.Scenario.server_environment`), undone after the test.
    """

    def __init__(
        self,
        descriptor: ConnectorDescriptor,
        scenario: Scenario,
        client: httpx.AsyncClient,
        setenv: SetEnv | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.scenario = scenario
        self.client = client
        self.verification: DeliveryVerification | None = delivery_verification(descriptor, scenario)
        self._setenv = setenv
        self._provider: ProviderFake | None = None

    @property
    def connector_id(self) -> str:
        return self.descriptor.id

    # -- what the connector does

    @property
    @abstractmethod
    def polls(self) -> bool: ...

    @property
    @abstractmethod
    def receives_webhooks(self) -> bool: ...

    @property
    @abstractmethod
    def initial_lookback(self) -> timedelta:
        """How far back a first poll reaches."""

    @property
    def secret_credential(self) -> str | None:
        """The credential webhook deliveries are verified with (None: none of the instance's)."""
        return self.verification.secret_credential if self.verification else None

    @property
    def signed(self) -> bool:
        """Deliveries carry a signature over the body: any byte changed must be refused."""
        return self.verification is not None and self.verification.signs_body

    @property
    def replay_window_seconds(self) -> int | None:
        """The scheme's timestamp window; None when it signs no timestamp."""
        return self.verification.replay_window_seconds if self.verification else None

    # -- the provider's side of webhooks

    def provider(self, now: datetime) -> ProviderFake:
        """The provider's fake, started on first use with its server settings applied."""
        if self._provider is None:
            fake = self.scenario.fake(now).start()
            self._provider = fake
            environment = self.scenario.server_environment(fake)
            if environment:
                assert self._setenv is not None, f"{self.connector_id} needs server settings"
                for name, value in environment.items():
                    self._setenv(name, value)
        return self._provider

    def sign(self, sample: WebhookSample, now: datetime) -> WebhookDelivery:
        """``sample`` as the provider sends it at ``now``, its side running."""
        self.provider(now)
        return self.scenario.sign(sample, url=webhook_url(self.connector_id), at=now)

    def close(self) -> None:
        if self._provider is not None:
            self._provider.stop()
            self._provider = None

    # -- running it

    def source(self) -> Source:
        return source_for(self.descriptor)

    def context(
        self,
        fake: ProviderFake | None,
        *,
        credentials: Mapping[str, str] | None = None,
        sleep: RecordingSleep | None = None,
    ) -> SourceContext:
        """What the poll job builds for one instance (``connect``: auth hook or descriptor)."""
        base_url = fake.base_url if fake is not None else "http://127.0.0.1:9"
        return connect(
            self.source(),
            credentials=dict(
                credentials if credentials is not None else self.scenario.credentials()
            ),
            config=self.scenario.config(base_url),
            client=self.client,
            sleep=sleep or RecordingSleep(),
        )

    async def poll(
        self,
        fake: ProviderFake,
        *,
        checkpoint: str | None,
        now: datetime,
        credentials: Mapping[str, str] | None = None,
        sleep: RecordingSleep | None = None,
    ) -> Poll:
        source = self.source()
        context = self.context(fake, credentials=credentials, sleep=sleep)
        poll = Poll(pages=[])
        async for page in source.fetch_delta(context, checkpoint, now=now):
            poll.pages.append(page)
            result = self.normalise(source, page.items, now)
            poll.signals.extend(result.signals)
            poll.errors.extend(f"{e.item_id}: {e.reason}" for e in result.errors)
        return poll

    def normalise(self, source: Source, items: list[Any], now: datetime) -> Any:
        return source.normalise(items, project_id=PROJECT, now=now)

    async def health(self, fake: ProviderFake, credentials: Mapping[str, str]) -> HealthResult:
        return await self.source().health_check(self.context(fake, credentials=credentials))

    @abstractmethod
    async def check(
        self,
        delivery: WebhookDelivery,
        now: datetime,
        credentials: Mapping[str, str] | None = None,
    ) -> Checked:
        """What the gateway's verification says about ``delivery``."""

    @abstractmethod
    async def deliver(self, delivery: WebhookDelivery, now: datetime) -> Delivered:
        """The signals the gateway would store for a verified ``delivery``."""


class GenericProfile(ConnectorProfile):
    """A descriptor-driven connector, run by the engine and the descriptor's verifier."""

    @property
    def polls(self) -> bool:
        return self.descriptor.polling is not None

    @property
    def receives_webhooks(self) -> bool:
        return self.descriptor.webhook is not None

    @property
    def initial_lookback(self) -> timedelta:
        polling = self.descriptor.polling
        assert polling is not None
        return timedelta(seconds=polling.initial_lookback_seconds)

    def normalise(self, source: Source, items: list[Any], now: datetime) -> Any:
        assert isinstance(source, GenericSource)
        assert source.plan is not None
        return source.plan.mapping.map_items(items, self.connector_id, PROJECT, now=now)

    async def check(
        self,
        delivery: WebhookDelivery,
        now: datetime,
        credentials: Mapping[str, str] | None = None,
    ) -> Checked:
        admission = check_delivery(
            compile_verifier(self.descriptor),
            self.descriptor,
            method=delivery.method,
            body=delivery.body,
            headers=delivery.headers,
            url=delivery.url,
            query=dict(httpx.URL(delivery.url).params),
            credentials=credentials if credentials is not None else self.scenario.credentials(),
            now=now,
            payload=payload_or_missing(delivery.body),
        )
        reason = admission.result.reason
        if reason is not None:
            return Checked(code=str(reason.code))
        handshake = admission.handshake
        if handshake is not None:
            secret = self.secret_credential
            keep = (
                {secret: handshake.captured_secret} if secret and handshake.captured_secret else {}
            )
            return Checked(handshake=handshake, keep=keep)
        return Checked()

    async def deliver(self, delivery: WebhookDelivery, now: datetime) -> Delivered:
        return map_delivery(self.descriptor, delivery, now)


class NativeProfile(ConnectorProfile):
    """A native package, run through its Source and WebhookHandler as the service runs them.

    Handlers that fetch from upstream (Asana resolves compact events) get the
    connector's :meth:`provider` fake. The source is rebuilt when the provider's
    server settings are applied, as ``ucf serve`` builds it under them.
    """

    def __init__(
        self,
        descriptor: ConnectorDescriptor,
        scenario: Scenario,
        client: httpx.AsyncClient,
        setenv: SetEnv | None = None,
    ) -> None:
        super().__init__(descriptor, scenario, client, setenv)
        self._source = source_for(descriptor)

    def provider(self, now: datetime) -> ProviderFake:
        starting = self._provider is None
        fake = super().provider(now)
        if starting:  # built again under the provider's server settings, as ucf serve is
            self._source = source_for(self.descriptor)
        return fake

    def source(self) -> Source:
        return self._source

    @property
    def polls(self) -> bool:
        return self._source.schedule is not None

    @property
    def receives_webhooks(self) -> bool:
        return self._source.webhooks is not None

    @property
    def initial_lookback(self) -> timedelta:
        schedule = self._source.schedule
        assert schedule is not None
        return timedelta(seconds=schedule.initial_lookback_seconds)

    @property
    def handler(self) -> WebhookHandler:
        handler = self._source.webhooks
        assert handler is not None, f"{self.connector_id} receives no webhooks"
        return handler

    def _webhook_context(
        self, now: datetime, credentials: Mapping[str, str] | None = None
    ) -> WebhookContext:
        values = dict(credentials if credentials is not None else self.scenario.credentials())

        fake = self.provider(now)

        async def upstream() -> SourceContext:
            return self.context(fake, credentials=values)

        return WebhookContext(
            project_id=PROJECT,
            connector_id=self.connector_id,
            credentials=values,
            config=self.scenario.config(fake.base_url),
            now=now,
            upstream=upstream,
        )

    @staticmethod
    def _request(delivery: WebhookDelivery) -> WebhookRequest:
        return WebhookRequest(
            method=delivery.method,
            body=delivery.body,
            headers=delivery.headers,
            query=dict(httpx.URL(delivery.url).params),
            url=delivery.url,
        )

    async def check(
        self,
        delivery: WebhookDelivery,
        now: datetime,
        credentials: Mapping[str, str] | None = None,
    ) -> Checked:
        verdict = await self.handler.verify(
            self._request(delivery), self._webhook_context(now, credentials)
        )
        if isinstance(verdict, Refused):
            return Checked(code=verdict.code)
        if isinstance(verdict, Handshake):
            return Checked(handshake=verdict.response, keep=dict(verdict.keep))
        return Checked()

    async def deliver(self, delivery: WebhookDelivery, now: datetime) -> Delivered:
        context = self._webhook_context(now)
        request = self._request(delivery)
        try:
            mapped = await self.handler.signals(request, context)
        except Malformed as error:
            return Delivered(None, False, [], [f"malformed: {error}"])
        if isinstance(mapped, Unhandled):
            return Delivered(mapped.event_type, False, [], [])
        return Delivered(
            None,
            True,
            list(mapped.signals),
            [f"{e.item_id}: {e.reason}" for e in mapped.errors],
        )


def map_delivery(
    descriptor: ConnectorDescriptor, delivery: WebhookDelivery, now: datetime
) -> Delivered:
    """The gateway's mapping steps for a generic connector (ucf.core.webhook + mapping)."""
    webhook = descriptor.webhook
    mapping = descriptor.webhook_mapping()
    assert webhook is not None
    assert mapping is not None
    payload = delivery.json()
    event_type = event_type_of(webhook, payload, delivery.headers)
    if event_type is None or not handles(webhook, event_type):
        return Delivered(event_type, False, [], [])
    compiled = CompiledMapping(mapping)
    result = compiled.map_items(
        compiled.extract_items(payload),
        descriptor.id,
        PROJECT,
        event_type=event_type,
        fallback_version=fallback_version(webhook, payload, delivery.headers, delivery.body),
        now=now,
    )
    return Delivered(
        event_type,
        True,
        result.signals,
        [f"{e.item_id}: {e.reason}" for e in result.errors],
    )


def profile_for(
    raw: Mapping[str, Any],
    client: httpx.AsyncClient,
    scenario: Scenario | None = None,
    setenv: SetEnv | None = None,
) -> ConnectorProfile:
    """The profile of a catalogue descriptor (its JSON object), by its ``kind``."""
    descriptor = parse_descriptor(dict(raw))
    found = scenario or scenario_for(descriptor.id)
    if descriptor.kind == "native":
        return NativeProfile(descriptor, found, client, setenv)
    return GenericProfile(descriptor, found, client, setenv)
