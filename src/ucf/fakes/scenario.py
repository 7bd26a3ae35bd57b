"""What the catalogue battery and ``ucf sandbox`` need to know about one connector.

A catalogue connector is a JSON descriptor; proving it works takes a faithful
fake of the provider's API, credentials that fake accepts (and some it
rejects), and deliveries signed the way the provider signs them. A
:class:`Scenario` bundles exactly that for one connector id, so one battery
(``tests/catalogue/test_battery.py``) runs every connector through the same
checks and ``ucf sandbox`` starts every fake with live activity, without either
knowing anything provider-specific.

Writing one for a new connector ``acme-tasks``:

* put a module ``ucf.fakes.acme`` (the id up to its first ``-``) next to this
  one, or add the id to :data:`MODULE_OVERRIDES`;
* give it a function ``scenario(connector_id: str) -> Scenario``;
* its fake is a :class:`ProviderFake` (a :class:`~ucf.fakes.kit.FakeServer`
  with routes, plus a mutable dataset whose timestamps are relative to the
  ``now`` it was built with);
* its :meth:`Scenario.sign` is the provider's documented signing scheme.

:func:`scenario_for` imports the module lazily, so importing the battery does
not start (or even import) any fake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, Self

from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.signal import Priority
from ucf.fakes.kit import FakeServer, Fault

__all__ = [
    "MODULE_OVERRIDES",
    "Activity",
    "DeliveryVerification",
    "HandshakeSample",
    "MetadataExpectation",
    "ProviderFake",
    "PushedChange",
    "Scenario",
    "ScenarioMissing",
    "WebhookDelivery",
    "WebhookSample",
    "delivery_verification",
    "hmac_digest",
    "scenario_for",
]


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True, slots=True)
class WebhookSample:
    """A delivery before signing: what the provider posts, minus its signature.

    ``headers`` are the provider's non-signature headers (GitHub's
    ``X-GitHub-Event`` and ``X-GitHub-Delivery``, Linear's ``Linear-Event``…).
    ``expected_types`` are the signal types its items must map to, in item
    order; empty means the connector must ignore the delivery (an event type
    it does not handle).
    """

    name: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    expected_types: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        name: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        expected_types: tuple[str, ...] = (),
    ) -> WebhookSample:
        """A sample whose body is ``payload`` as compact JSON (how most providers send it)."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(name, body, dict(headers or {}), expected_types)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """A signed delivery exactly as it reaches the gateway: ``method url``, headers, body."""

    name: str
    url: str
    body: bytes
    headers: Mapping[str, str]
    expected_types: tuple[str, ...] = ()
    method: Literal["POST"] = "POST"

    def json(self) -> Any:
        return json.loads(self.body)

    def tampered(self) -> WebhookDelivery:
        """The same headers over a body an attacker changed: still valid JSON, one key more.

        Any byte change must break the signature; keeping the JSON valid makes
        sure the rejection comes from the signature, not from the parser.
        """
        payload = self.json()
        if isinstance(payload, dict):
            changed = json.dumps({**payload, "injected": True}, separators=(",", ":")).encode()
        else:
            changed = self.body + b" "
        return replace(self, body=changed)


@dataclass(frozen=True, slots=True)
class HandshakeSample:
    """A provider's set-up request and the answer its documentation asks for.

    ``answer_headers`` must be echoed (Asana's ``X-Hook-Secret``), ``answer_body``
    returned (Slack's challenge); ``keeps`` are the credentials the handshake
    hands over and the instance must store (Asana, Notion).
    """

    delivery: WebhookDelivery
    answer_headers: Mapping[str, str] = field(default_factory=dict)
    answer_body: bytes | None = None
    keeps: Mapping[str, str] = field(default_factory=dict)


def hmac_digest(
    secret: str | bytes,
    message: bytes,
    *,
    algorithm: Literal["sha256", "sha1"] = "sha256",
    encoding: Literal["hex", "base64"] = "hex",
) -> str:
    """The HMAC every provider in the catalogue signs with, hex or base64 encoded."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, message, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class DeliveryVerification:
    """How a connector tells its provider's deliveries from forgeries, as the battery and
    ``ucf sandbox`` need to know it.

    A generic connector's descriptor says it (:meth:`of_descriptor`); a native
    connector's scenario declares it (:attr:`Scenario.webhook_verification`) and
    the battery holds the connector's handler to the declaration.
    """

    secret_credential: str | None
    """The credential deliveries are checked against; None when the proof needs none of
    the instance's (SNS signs with AWS's key, checked against its certificate)."""
    signs_body: bool
    """A signature covers the body, so a delivery changed after signing is refused
    (:meth:`Scenario.tamper`). False for a shared value the delivery merely carries
    (Datadog's header token, Graph's ``clientState``): tampering goes unnoticed."""
    replay_window_seconds: int | None = None
    """The signed timestamp's window; None when the scheme signs no time (GitHub, Jira,
    SNS: a replay verifies, and the delivery's identity dedups it)."""

    @classmethod
    def of_descriptor(cls, descriptor: ConnectorDescriptor) -> DeliveryVerification | None:
        """What a descriptor's ``webhook`` block says; None when deliveries are unverified."""
        webhook = descriptor.webhook
        if webhook is None or webhook.verification == "none":
            return None
        if webhook.verification == "token":
            key = webhook.token.secret_credential if webhook.token is not None else None
            return cls(key, signs_body=False)
        signature = descriptor.signature_verification()
        if signature is None:
            return cls(None, signs_body=True)  # invalid: the descriptor tests say why
        window = signature.timestamp.tolerance_seconds if signature.timestamp else None
        return cls(signature.secret_credential, signs_body=True, replay_window_seconds=window)


def delivery_verification(
    descriptor: ConnectorDescriptor, scenario: Scenario
) -> DeliveryVerification | None:
    """How ``descriptor``'s deliveries are verified: its ``webhook`` block, or for a native
    connector its scenario's declaration. None: not verified (or no webhooks at all)."""
    if descriptor.kind == "native":
        return scenario.webhook_verification
    return DeliveryVerification.of_descriptor(descriptor)


# --------------------------------------------------------------------------- the fake


@dataclass(frozen=True, slots=True)
class Activity:
    """What :meth:`ProviderFake.add_activity` changed, as the poll's item ids."""

    new_ids: frozenset[str]
    changed_ids: frozenset[str] = frozenset()

    @property
    def ids(self) -> frozenset[str]:
        return self.new_ids | self.changed_ids


@dataclass(frozen=True, slots=True)
class PushedChange:
    """One change a user made, as both channels see it.

    ``item_id`` is the id a poll's ``idPath`` reads for the changed item;
    ``sample`` is the (unsigned) delivery the provider pushes about that same
    change. A poll that lists the item afterwards and the delivery must come
    out as one signal (docs/security.md "Signal identity and dedup").
    """

    item_id: str
    sample: WebhookSample


class ProviderFake(ABC):
    """A provider's API on loopback, with a dataset that changes on demand.

    The dataset is built relative to the ``now`` the fake was made with: some
    items inside the connector's initial lookback window (more than one page
    of them), at least one older. Use it as a context manager; ``server`` is
    the running :class:`FakeServer` (for ``inject`` and request logs).
    """

    #: Route pattern of the listing a poll reads: where the battery injects a 429.
    poll_route: str

    def __init__(self) -> None:
        self.server = FakeServer()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @abstractmethod
    def add_activity(self, now: datetime) -> Activity:
        """Create and change items at ``now``; the next incremental poll must see only these."""

    @abstractmethod
    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        """Item ids (as the connector's ``idPath`` reads them) changed at or after ``moment``.

        The reference answer for "the first poll takes the initial window".
        """

    def push_change(self, now: datetime) -> PushedChange:
        """Change one item at ``now`` as a user would; the webhook the provider sends for it.

        Fakes of connectors that both poll and receive webhooks implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} pushes no webhooks")

    @abstractmethod
    def rate_limit_fault(self, retry_after: int) -> Fault:
        """The provider's own rate-limit answer (status, headers, body), asking for ``retry_after`` s."""

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True, slots=True)
class MetadataExpectation:
    """The metadata one item must come out with (priority, participants, tags, related).

    Checked on the item's polled signal when the connector polls, else on the
    signal its webhook sample maps to.
    """

    item_id: str
    priority: Priority | None = None
    participants: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    related_tickets: tuple[str, ...] = ()


# --------------------------------------------------------------------------- the scenario


class Scenario(ABC):
    """Everything needed to exercise one catalogue connector against its fake."""

    connector_id: str
    #: Signal types a poll of the fake's dataset (with its activity) yields.
    polling_signal_types: frozenset[str] = frozenset()
    #: Signal types :meth:`webhook_samples` map to.
    webhook_signal_types: frozenset[str] = frozenset()
    #: Items whose metadata the battery checks, among polled or delivered signals.
    metadata: tuple[MetadataExpectation, ...] = ()
    #: Native connectors only (a generic one's descriptor says it): how the connector's
    #: handler tells the provider's deliveries from forgeries; None when it does not.
    webhook_verification: DeliveryVerification | None = None
    #: The provider counts only 200/204 as delivered (Asana), so a delivery of events the
    #: connector does not map is a 200 that stores nothing rather than the gateway's 202.
    unmapped_events_answered_200: bool = False

    def expected_metadata(self, fake: ProviderFake | None) -> tuple[MetadataExpectation, ...]:
        """:attr:`metadata`, or expectations that depend on the fake's dataset.

        Trello action ids encode their creation time, so its expectations are
        only known once the fake has laid its dataset out around ``now``.
        """
        return self.metadata

    @abstractmethod
    def fake(self, now: datetime) -> ProviderFake:
        """A fake (not started) whose dataset is laid out around ``now``."""

    @abstractmethod
    def config(self, base_url: str) -> dict[str, str]:
        """Instance config pointing the connector at a fake running at ``base_url``."""

    @abstractmethod
    def credentials(self) -> dict[str, str]:
        """Credentials the fake accepts, the webhook signing secret included."""

    @abstractmethod
    def bad_credentials(self) -> dict[str, str]:
        """Credentials the fake rejects the way the provider does.

        Empty when the connector, as the scenario configures it, has no credential to
        get wrong (SES without an S3 bucket): its health check then proves none.
        """

    @property
    @abstractmethod
    def webhook_secret(self) -> str:
        """The signing secret :meth:`sign` uses (also in :meth:`credentials`)."""

    def webhook_samples(self) -> list[WebhookSample]:
        """One sample per event type the connector maps (documented payload shapes)."""
        return []

    def unknown_event_sample(self) -> WebhookSample | None:
        """A well-formed delivery of an event type the connector does not handle."""
        return None

    def oauth_app(self) -> tuple[str, str] | None:
        """The client id and secret of the fake's OAuth app, when it serves a consent (its
        provider's authorization server, ``ucf.fakes.oauth_providers``): ``ucf sandbox``
        registers it for every connector whose descriptor offers a consent, so
        "Connect with …" works offline."""
        return None

    def handshake(self, *, url: str, at: datetime) -> HandshakeSample | None:
        """The provider's set-up request to ``url``, when its scheme has one."""
        return None

    def server_environment(self, fake: ProviderFake) -> dict[str, str]:
        """Settings ``ucf serve`` needs to talk to ``fake`` (``ucf sandbox`` passes them on).

        Empty for most: a config pointing at the fake is enough. SES's SNS fake
        must be trusted as a certificate source, which no config can say.
        """
        return {}

    def tamper(self, delivery: WebhookDelivery) -> WebhookDelivery:
        """``delivery`` changed after signing, in a way its scheme must detect.

        Only meaningful where a signature covers the body (see
        :func:`delivery_verification`); the battery and ``ucf sandbox`` both tamper
        through this, so a scheme that signs only some fields (SNS) says which here.
        """
        return delivery.tampered()

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        """``sample`` as the provider sends it to ``url`` at ``at``, signed with its scheme.

        Schemes with a timestamp put ``at`` in it (Slack's header, Linear's
        ``webhookTimestamp`` in the body), so signing in the past makes a replay.
        """
        raise NotImplementedError(f"{self.connector_id} receives no webhooks")


# --------------------------------------------------------------------------- registry


class ScenarioMissing(LookupError):
    """A catalogue connector without a scenario: the battery cannot vouch for it."""


MODULE_OVERRIDES: Final[Mapping[str, str]] = {"ses": "ucf.fakes.sns", "outlook": "ucf.fakes.graph"}
"""Connector ids whose scenario module is not ``ucf.fakes.<id up to its first '-'>``."""


def scenario_module(connector_id: str) -> str:
    return MODULE_OVERRIDES.get(connector_id, f"ucf.fakes.{connector_id.split('-', 1)[0]}")


def scenario_for(connector_id: str) -> Scenario:
    """The scenario of a catalogue connector, its module imported on first use."""
    name = scenario_module(connector_id)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        raise ScenarioMissing(
            f"no scenario for {connector_id!r}: module {name} does not exist "
            "(see ucf.fakes.scenario for how to write one)"
        ) from None
    factory = getattr(module, "scenario", None)
    if not callable(factory):
        raise ScenarioMissing(f"{name} has no scenario(connector_id) function")
    found = factory(connector_id)
    if not isinstance(found, Scenario):
        raise ScenarioMissing(f"{name}.scenario({connector_id!r}) did not return a Scenario")
    return found
