"""The secret-store contract every backend honours, and what they share.

A *credential set* (``{"token": "ghp_…", "webhookSecret": "…"}``) is one secret,
stored and rotated as a whole under one opaque *ref*. Instances keep only the
ref, so the registry, logs, errors and API responses never hold a credential.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, Protocol

from ucf.stores.errors import (
    InvalidRecord,
    NotFound,
    StoreConfigError,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)

# AWS Secrets Manager holds at most 64 KiB of SecretString; every backend keeps
# the same ceiling so that a credential set accepted by one is accepted by all.
MAX_SECRET_BYTES = 65_536


class SecretNotFound(NotFound):
    """No secret is stored under the ref (never stored, or deleted)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(
            f"no secret is stored under ref {ref!r}",
            "store the connector's credentials again (the instance's secret was deleted or never saved)",
        )


class SecretStoreUnavailable(StoreUnavailable):
    """The secret backend cannot be reached or refuses us right now."""


class SecretStoreConfigError(StoreConfigError):
    """The secret store URL, master key or key file cannot be used as given."""


class SecretRefError(InvalidRecord):
    """A ref this store did not issue and cannot address (e.g. an ARN given to the local store)."""


class SecretDecryptionError(StoreError):
    """Stored secrets exist but cannot be decrypted with the key at hand."""


class SecretIntegrityError(SecretDecryptionError):
    """A stored ciphertext failed authentication: altered bytes, or moved to another ref."""


class SecretFormatError(StoreCorrupt):
    """A stored secret decrypted but is not a credential set (a JSON object of strings)."""


UNREADABLE_SECRET: Final = (SecretFormatError, SecretDecryptionError)
"""A stored secret that is there but gives no credentials: no credential set, altered
(:class:`SecretIntegrityError`) or sealed under another master key. Its instance is still
listed (without credentials) and its polls and tests fail with the error, which says how
to repair it; only the store's own trouble (unreachable, damaged file) stays a 5xx."""


class SecretValues(dict[str, str]):
    """A credential set whose ``repr``/``str`` name the keys but never the values.

    It is still a plain ``dict`` for every other purpose; the redaction only
    guards against the classic leak of logging or printing the whole mapping.
    """

    def __repr__(self) -> str:
        return f"SecretValues(keys={sorted(self)!r})"

    __str__ = __repr__


class SecretStore(Protocol):
    """Keeps credential sets by opaque ref. Implementations are async and safe to share."""

    async def put(self, ref: str | None, values: Mapping[str, str]) -> str:
        """Store ``values`` under ``ref`` (a new ref when ``None``); return the ref to keep."""
        ...

    async def get(self, ref: str) -> dict[str, str]:
        """The credential set under ``ref``; raises :class:`SecretNotFound` when there is none."""
        ...

    async def delete(self, ref: str) -> None:
        """Forget the secret under ``ref``; deleting a missing ref is not an error."""
        ...

    async def rotate(
        self, ref: str, values: Mapping[str, str], *, keep_previous: bool = True
    ) -> None:
        """Replace the whole credential set under an existing ``ref``.

        Without ``keep_previous``, the set it replaces is not kept in any form a reader
        of the store could get back (Secrets Manager's ``AWSPREVIOUS`` version, the
        local file's write-ahead log): for credentials that are no longer used.
        """
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


async def merge_secret(
    store: SecretStore, ref: str, updates: Mapping[str, str | None]
) -> SecretValues:
    """Change some keys of a credential set and keep the rest (``None`` removes a key).

    This is what an OAuth2 refresh needs: persist the new refresh token without
    restating the client secret. It reads then rotates, so two merges of one ref
    that interleave lose the first one's keys: callers run it in the ref's turn
    (:class:`ucf.service.secret_turns.SecretTurns`), which serialises the changes
    of one credential set in a process and across processes.
    """
    merged = dict(await store.get(ref))
    for name, value in updates.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    checked = credential_set(merged)
    await store.rotate(ref, checked)
    return checked


def credential_set(values: Mapping[str, str]) -> SecretValues:
    """Check that ``values`` is a mapping of non-empty string keys to string values.

    Errors name the offending key and type, never the value.
    """
    if not isinstance(values, Mapping):
        raise InvalidRecord(
            f"a credential set must be a mapping of names to strings, not {type(values).__name__}"
        )
    checked = SecretValues()
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise InvalidRecord(
                f"credential names must be non-empty strings, got {type(key).__name__} {key!r}"
                if not isinstance(key, str)
                else "credential names must be non-empty strings, got ''"
            )
        if not isinstance(value, str):
            raise InvalidRecord(
                f"credential {key!r} must be a string, not {type(value).__name__}",
                "convert it to text before storing it",
            )
        checked[key] = value
    return checked


def encode_credential_set(values: Mapping[str, str]) -> bytes:
    """The canonical JSON form both backends store (UTF-8, sorted keys)."""
    checked = credential_set(values)
    encoded = json.dumps(checked, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    data = encoded.encode()
    if len(data) > MAX_SECRET_BYTES:
        raise InvalidRecord(
            f"the credential set is {len(data)} bytes once encoded, more than the {MAX_SECRET_BYTES} a secret can hold",
            "store large material (certificates, key files) outside the credential set",
        )
    return data


def decode_credential_set(data: bytes | str, ref: str) -> SecretValues:
    """Parse a stored credential set, refusing anything that is not a JSON object of strings."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise SecretFormatError(
            f"the secret under ref {ref!r} is not a ucf credential set (a JSON object of string values)",
            "store the connector's credentials again through ucf",
        )
    return SecretValues(parsed)
