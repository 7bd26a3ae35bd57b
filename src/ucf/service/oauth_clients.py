"""The OAuth apps operators register, one per connector (SPEC §8.2's "Connect with …").

Apart from the consent flow (:mod:`ucf.service.oauth`, which exchanges codes
through the HTTP client) because every process reads them: the gateway fills a
registered app's client id and secret into an instance's credentials for each
delivery, and a Lambda's first webhook delivery must not load an HTTP client
stack for that (``bench/coldstart.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

from ucf.core.records import datarecord
from ucf.runtime.redaction import SECRETS
from ucf.service.connectors import Connector
from ucf.service.errors import ValidationFailed
from ucf.stores.protocols import KeyValueStore
from ucf.stores.secrets.base import SecretNotFound, SecretStore

if TYPE_CHECKING:
    from ucf.core.descriptor import ConnectorDescriptor, OAuth2Config
    from ucf.core.descriptor_view import ConnectorView

__all__ = ["OAuthClients", "RegisteredClient", "consent_of"]


def consent_of(connector: Connector) -> OAuth2Config:
    """``connector``'s consent flow; :class:`ValidationFailed` when it has none."""
    config = connector.descriptor.consent()
    if config is None:
        raise ValidationFailed(
            f"'{connector.id}' does not connect through an OAuth 2.0 consent "
            "(its auth is not oauth2 with a user grant)"
        )
    return config


CLIENT_ID_MAX: Final = 500
CLIENT_SECRET_MAX: Final = 2000
"""The API's own bounds (``OAuthClientBody``), kept for the dashboard's form too: a whole
credentials file pasted as the client id was stored and made a consent URL no provider
takes."""


@datarecord
class RegisteredClient:
    """An operator's OAuth app for one connector (the secret stays in the secret store)."""

    connector_id: str
    client_id: str
    secret_ref: str


class OAuthClients:
    """The OAuth apps operators registered, one per connector."""

    def __init__(self, records: KeyValueStore, secrets: SecretStore) -> None:
        self._records = records
        self._secrets = secrets

    @staticmethod
    def _key(connector_id: str) -> str:
        return f"oauth-client:{connector_id}"

    async def get(self, connector_id: str, *, now: datetime) -> RegisteredClient | None:
        record = await self._records.get(self._key(connector_id), now=now)
        if record is None:
            return None
        client_id, ref = record.get("clientId"), record.get("secretRef")
        if not isinstance(client_id, str) or not isinstance(ref, str):
            return None
        return RegisteredClient(connector_id, client_id, ref)

    async def register(
        self, connector: Connector, *, client_id: str, client_secret: str, now: datetime
    ) -> RegisteredClient:
        consent_of(connector)
        client_id, client_secret = client_id.strip(), client_secret.strip()
        problems = [
            {"path": name, "message": "must not be empty"}
            if not value
            else {"path": name, "message": f"is longer than {limit} characters"}
            for name, value, limit in (
                ("clientId", client_id, CLIENT_ID_MAX),
                ("clientSecret", client_secret, CLIENT_SECRET_MAX),
            )
            if not value or len(value) > limit
        ]
        if problems:
            raise ValidationFailed("the OAuth client is not valid", problems)
        SECRETS.add(client_secret)
        current = await self.get(connector.id, now=now)
        ref = await self._secrets.put(
            current.secret_ref if current else None, {"clientSecret": client_secret}
        )
        await self._records.put(self._key(connector.id), {"clientId": client_id, "secretRef": ref})
        return RegisteredClient(connector.id, client_id, ref)

    async def credentials(
        self, descriptor: ConnectorDescriptor | ConnectorView, *, now: datetime
    ) -> dict[str, str]:
        """The registered app as the connector's credential fields (client id and secret),
        or nothing when the connector has no consent flow or no app is registered.

        ``descriptor`` may be the connector's view: the gateway and the poll read
        only which keys the app fills, not the models."""
        config = descriptor.consent()
        if config is None:
            return {}
        client = await self.get(descriptor.id, now=now)
        if client is None:
            return {}
        try:
            stored = await self._secrets.get(client.secret_ref)
        except SecretNotFound:
            return {}
        secret = stored.get("clientSecret", "")
        if not secret:
            return {}
        return {config.client_id_key: client.client_id, config.client_secret_key: secret}
