"""The fakes of every catalogue connector, running side by side on loopback.

Each catalogue connector ships a :class:`~ucf.fakes.scenario.Scenario` (the
battery's contract): a faithful fake of the provider's API, credentials it
accepts, and deliveries signed the provider's way. The sandbox needs nothing
else to know about a provider — a connector added to the catalogue with a
scenario shows up here without touching this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ucf.catalogue import builtin_descriptors
from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.validation import validate_descriptor
from ucf.fakes.scenario import ProviderFake, Scenario, delivery_verification, scenario_for
from ucf.runtime.sources import source_for

__all__ = ["Fleet", "Provider", "catalogue"]


@dataclass(slots=True)
class Provider:
    """One connector of the catalogue, its scenario and its running fake."""

    descriptor: ConnectorDescriptor
    scenario: Scenario
    fake: ProviderFake

    @property
    def connector_id(self) -> str:
        return self.descriptor.id

    @property
    def native(self) -> bool:
        return self.descriptor.kind == "native"

    @property
    def polls(self) -> bool:
        """The descriptor's polling block; a native connector's source declaration."""
        if self.native:
            return source_for(self.descriptor).schedule is not None
        return self.descriptor.polling is not None

    @property
    def receives_webhooks(self) -> bool:
        if self.native:
            return source_for(self.descriptor).webhooks is not None
        return self.descriptor.webhook is not None

    @property
    def signs_webhooks(self) -> bool:
        """Only a signature covers the body, so only then can tampering be detected
        (SNS's signature does; Graph's clientState, a shared value, does not)."""
        verification = delivery_verification(self.descriptor, self.scenario)
        return self.receives_webhooks and verification is not None and verification.signs_body

    @property
    def oauth_app(self) -> tuple[str, str] | None:
        """The client id and secret of the app its fake's authorization server knows, when
        the descriptor offers a consent ("Connect with …"): asked of the descriptor, so a
        connector that gains OAuth (as an alternative auth method too) lights up alone."""
        if self.descriptor.consent() is None:
            return None
        return self.scenario.oauth_app()

    def consent_settings(self) -> dict[str, str]:
        """Every URL setting as a consent from another project needs it to stay on the fake:
        the one the sandbox's own instance uses where it sets one (an API's path included:
        Asana's ``…/api/1.0``, Graph's ``…/v1.0``), else the fake's address (the sign-in
        and token URLs, which default to the real provider's). The sandbox used to name
        the fake's address alone, and a consent given it for ``baseUrl`` polled 404s."""
        base = self.fake.base_url
        own = self.scenario.config(base)
        return {
            field.key: own[field.key] if own.get(field.key, "").startswith(base) else base
            for field in self.descriptor.setup_config_fields()
            if field.type == "url"
        }

    def instance_body(self) -> dict[str, Any]:
        """``POST /api/projects/{p}/instances``: config pointing at the fake, good credentials."""
        return {
            "connectorId": self.connector_id,
            "config": self.scenario.config(self.fake.base_url),
            "credentials": self.scenario.credentials(),
            "enabled": True,
        }


def catalogue() -> list[tuple[ConnectorDescriptor, Scenario]]:
    """Every shipped descriptor with its scenario, in id order."""
    pairs = []
    for raw in builtin_descriptors():
        descriptor, problems = validate_descriptor(raw)
        if descriptor is None or problems:
            raise ValueError(f"shipped descriptor {raw.get('id')!r} is invalid: {problems}")
        pairs.append((descriptor, scenario_for(descriptor.id)))
    return pairs


class Fleet:
    """Every catalogue fake, started together and stopped together."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        self.providers = list(providers)
        self.polled = [p for p in self.providers if p.polls]
        self.webhooks = [p for p in self.providers if p.receives_webhooks]
        self.signed = [p for p in self.webhooks if p.signs_webhooks]

    @classmethod
    @contextlib.contextmanager
    def running(cls, now: datetime) -> Iterator[Fleet]:
        """Start every fake with a dataset laid out around ``now``; stop them all on exit."""
        started: list[ProviderFake] = []
        try:
            providers = []
            for descriptor, scenario in catalogue():
                fake = scenario.fake(now)
                fake.start()
                started.append(fake)
                providers.append(Provider(descriptor, scenario, fake))
            yield cls(providers)
        finally:
            for fake in reversed(started):
                with contextlib.suppress(Exception):  # one stuck fake must not keep the others
                    fake.stop()

    def server_environment(self) -> dict[str, str]:
        """Settings ``ucf serve`` needs for these fakes (SES: trust the SNS fake's certificate)."""
        environment: dict[str, str] = {}
        for provider in self.providers:
            environment.update(provider.scenario.server_environment(provider.fake))
        return environment

    def get(self, connector_id: str) -> Provider:
        for provider in self.providers:
            if provider.connector_id == connector_id:
                return provider
        raise KeyError(connector_id)
