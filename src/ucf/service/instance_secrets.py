"""What an instance keeps in the secret store: credentials, its webhook hook id, pending secrets.

One encrypted entry per instance (the ``credentialSecretRef`` of its record),
read in one go by the gateway, which needs all three for a delivery:

- **credentials** — what the user typed (or confirmed), keyed as the
  descriptor's credential fields;
- **hook id** — the random last segment of the instance's own webhook URL
  (``/api/webhooks/{connectorId}/{projectId}/{hookId}``). A URL that admits
  whoever knows it is a capability, so it lives with the secrets: encrypted at
  rest, never in the registry a table reader can see;
- **pending secrets** — signing secrets that an *unsigned* handshake handed
  over (Notion's ``verification_token``, Asana's ``X-Hook-Secret``). Anyone
  who knows the URL can send such a handshake, so nothing received this way
  verifies a delivery until an operator confirms it (for Notion: the token
  that Notion's Verify dialog accepted is the genuine one).

The extra entries sit under keys starting with ``ucf:``, which a descriptor's
credential key (``[A-Za-z_][A-Za-z0-9_]*``) can never be, so they never mix
with credentials and are stripped from everything that sees credentials.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Collection, Mapping
from dataclasses import field
from datetime import datetime
from typing import Any, Final

from ucf.core.records import datarecord
from ucf.runtime.redaction import mask

__all__ = ["MAX_PENDING", "InstanceSecrets", "PendingSecret", "new_hook_id"]

RESERVED: Final = "ucf:"
HOOK_ID: Final = "ucf:hookId"
PENDING: Final = "ucf:pending"
MAX_PENDING: Final = 5
"""Pending secrets kept per instance: the newest win, so a provider's "resend" always
lands even after a stranger sent a few."""


def new_hook_id() -> str:
    """192 random bits, URL-safe: a webhook URL nobody can guess."""
    return secrets.token_urlsafe(24)


@datarecord
class PendingSecret:
    """A secret an unsigned handshake handed over, waiting for an operator's confirmation."""

    credential: str
    """The credential it would become (the scheme's ``secretCredential``)."""
    value: str = field(repr=False)
    received_at: datetime
    client: str | None = None
    """The address it came from, to help the operator tell the provider from a stranger."""

    @property
    def id(self) -> str:
        """Stable and secret-free: what the confirm and discard buttons name."""
        digest = hashlib.sha256(f"{self.credential}\0{self.value}".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:16]

    def to_json(self, *, differs: bool) -> dict[str, Any]:
        """For the API: masked like every credential, never the value."""
        return {
            "id": self.id,
            "credential": self.credential,
            "masked": mask(self.value),
            "receivedAt": self.received_at.isoformat(),
            "from": self.client,
            "differsFromConfirmed": differs,
        }

    def _encode(self) -> dict[str, Any]:
        return {
            "credential": self.credential,
            "value": self.value,
            "receivedAt": self.received_at.isoformat(),
            "from": self.client,
        }


def _pending(text: str | None) -> tuple[PendingSecret, ...]:
    if not text:
        return ()
    try:
        entries = json.loads(text)
        return tuple(
            PendingSecret(
                credential=str(entry["credential"]),
                value=str(entry["value"]),
                received_at=datetime.fromisoformat(entry["receivedAt"]),
                client=entry.get("from"),
            )
            for entry in entries
        )
    except (ValueError, TypeError, KeyError):
        return ()  # unreadable: nothing pending rather than a broken instance


@datarecord
class InstanceSecrets:
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    hook_id: str | None = field(default=None, repr=False)
    pending: tuple[PendingSecret, ...] = ()

    @classmethod
    def decode(cls, stored: Mapping[str, str]) -> InstanceSecrets:
        return cls(
            credentials={k: v for k, v in stored.items() if not k.startswith(RESERVED)},
            hook_id=stored.get(HOOK_ID) or None,
            pending=_pending(stored.get(PENDING)),
        )

    def encode(self) -> dict[str, str]:
        stored = dict(self.credentials)
        if self.hook_id:
            stored[HOOK_ID] = self.hook_id
        if self.pending:
            stored[PENDING] = json.dumps([p._encode() for p in self.pending])
        return stored

    def with_credentials(self, fresh: Mapping[str, str]) -> InstanceSecrets:
        return InstanceSecrets({**self.credentials, **fresh}, self.hook_id, self.pending)

    def without_credentials(self, keys: Collection[str]) -> InstanceSecrets:
        return InstanceSecrets(
            {k: v for k, v in self.credentials.items() if k not in keys}, self.hook_id, self.pending
        )

    def with_hook_id(self, hook_id: str) -> InstanceSecrets:
        return InstanceSecrets(self.credentials, hook_id, self.pending)

    def holding(self, received: PendingSecret) -> InstanceSecrets | None:
        """With ``received`` pending; None when nothing changes (already confirmed or
        already pending)."""
        if self.credentials.get(received.credential) == received.value:
            return None
        if any(p.id == received.id for p in self.pending):
            return None
        kept = (*self.pending, received)[-MAX_PENDING:]
        return InstanceSecrets(self.credentials, self.hook_id, kept)

    def confirming(self, pending_id: str) -> InstanceSecrets | None:
        """The pending secret becomes its credential; the others for it are dropped."""
        chosen = next((p for p in self.pending if p.id == pending_id), None)
        if chosen is None:
            return None
        rest = tuple(p for p in self.pending if p.credential != chosen.credential)
        credentials = {**self.credentials, chosen.credential: chosen.value}
        return InstanceSecrets(credentials, self.hook_id, rest)

    def discarding(self, pending_id: str) -> InstanceSecrets | None:
        rest = tuple(p for p in self.pending if p.id != pending_id)
        if len(rest) == len(self.pending):
            return None
        return InstanceSecrets(self.credentials, self.hook_id, rest)
