"""What a webhook delivery is about: its event type, delivery id and fallback identity.

Pure helpers shared by the gateway, ``ucf map`` and the dashboard's preview
(:func:`map_delivery`), so a descriptor author sees exactly what the gateway
will do with a sample delivery.
"""

from __future__ import annotations

import hashlib
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ucf.core.jsonpath import MISSING, compile_path
from ucf.core.mapping import CompiledMapping, ItemError, ItemMappingError, MappingResult
from ucf.core.records import datarecord

if TYPE_CHECKING:
    from ucf.core.descriptor import WebhookSpec as WebhookModel
    from ucf.core.descriptor_view import WebhookView

    WebhookSpec = WebhookModel | WebhookView
    """The webhook part of a descriptor: the gateway's view or a model (previews, the CLI)."""


class FoldedHeaders(Mapping[str, str]):
    """Request headers whose names are already folded to lower case (the first of
    repeated headers kept), looked up by name in any case.

    A delivery's headers are read several times (verification, event type,
    delivery id, handshakes): a server that folds them once, as it decodes them,
    hands this over and every reader looks its header up directly instead of
    folding every name again (:func:`header`, the verifiers' ``_lower``).
    """

    __slots__ = ("folded",)

    def __init__(self, folded: dict[str, str]) -> None:
        self.folded = folded
        """Lower-case name -> value; read-only for everyone but its maker."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _FOLDED_CLASSES.add(cls)

    def __getitem__(self, name: str) -> str:
        return self.folded[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self.folded.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.folded

    def __iter__(self) -> Iterator[str]:
        return iter(self.folded)

    def items(self) -> ItemsView[str, str]:  # readers fold every header: skip __getitem__
        return self.folded.items()

    def keys(self) -> KeysView[str]:
        return self.folded.keys()

    def values(self) -> ValuesView[str]:
        return self.folded.values()

    def __len__(self) -> int:
        return len(self.folded)


_FOLDED_CLASSES: set[type] = {FoldedHeaders}


def folded_of(headers: Mapping[str, str]) -> dict[str, str] | None:
    """``headers.folded`` when ``headers`` is a :class:`FoldedHeaders`, else None.

    Told by its exact class: ``isinstance`` against ``FoldedHeaders``, an ABC
    (``Mapping``'s), goes through ``ABCMeta.__instancecheck__`` (~0.33 µs for the
    server's subclass), and a delivery's headers are looked up several times."""
    if headers.__class__ in _FOLDED_CLASSES:
        return headers.folded  # type: ignore[attr-defined, no-any-return]
    return None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name; the first of repeated headers."""
    lowered = name.lower()
    folded = folded_of(headers)
    if folded is not None:
        return folded.get(lowered)
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _text_at(payload: Any, path: str) -> str | None:
    value = compile_path(path).first(payload)
    if value is MISSING or value is None or isinstance(value, dict | list):
        return None
    return str(value) if not isinstance(value, bool) else ("true" if value else "false")


def event_type_of(webhook: WebhookSpec, payload: Any, headers: Mapping[str, str]) -> str | None:
    """The delivery's event type: header or payload path, plus '.action' when configured.

    GitHub: ``X-GitHub-Event: issues`` with ``{"action": "opened"}`` → ``issues.opened``.
    """
    base: str | None = None
    if webhook.event_type_header is not None:
        base = header(headers, webhook.event_type_header)
    if base is None and webhook.event_type_path is not None:
        base = _text_at(payload, webhook.event_type_path)
    if base is None:
        return None
    if webhook.action_path is not None:
        action = _text_at(payload, webhook.action_path)
        if action:
            return f"{base}.{action}"
    return base


def handles(webhook: WebhookSpec, event_type: str) -> bool:
    """Whether the connector maps this event type ('issues' also covers 'issues.opened')."""
    allowed = webhook.event_types
    return event_type in allowed or event_type.split(".", 1)[0] in allowed


def delivery_id_of(webhook: WebhookSpec, payload: Any, headers: Mapping[str, str]) -> str | None:
    """The provider's id for this delivery, stable across its retries."""
    if webhook.delivery_id_header is not None:
        found = header(headers, webhook.delivery_id_header)
        if found:
            return found
    if webhook.delivery_id_path is not None:
        return _text_at(payload, webhook.delivery_id_path)
    return None


def fallback_version(
    webhook: WebhookSpec, payload: Any, headers: Mapping[str, str], body: bytes
) -> str:
    """The version of an item whose payload carries none (no versionPath value, no time).

    Signals are keyed by item id + item version (see
    :meth:`ucf.core.mapping.CompiledMapping.map`); this is only the fallback,
    and it must be something an attacker cannot vary on a captured delivery:

    - a delivery id inside the body (Slack ``event_id``, Trello ``action.id``):
      the signature covers it;
    - a delivery id header, only where the signature covers it too (Standard
      Webhooks' ``webhook-id``) or where a signed timestamp bounds replays to
      a few minutes (Slack, Linear);
    - otherwise the body's SHA-256. GitHub's ``X-GitHub-Delivery`` is unsigned:
      a captured body replayed under a fresh id must not become a new signal.
    """
    if webhook.delivery_id_path is not None:
        found = _text_at(payload, webhook.delivery_id_path)
        if found:
            return found
    signature = webhook.signature
    header_name = webhook.delivery_id_header
    if header_name is not None and signature is not None:
        signed_id = (
            signature.id_header is not None and signature.id_header.lower() == header_name.lower()
        )
        if signed_id or signature.timestamp is not None:
            found = header(headers, header_name)
            if found:
                return found
    return hashlib.sha256(body).hexdigest()


class _FallbackVersion:
    """:func:`fallback_version`, worked out on first call and kept: most payloads carry
    their items' versions (an update time), so most deliveries never need it, and the
    body's SHA-256 cost a few microseconds of every delivery."""

    __slots__ = ("_args", "_value")

    def __init__(
        self, webhook: WebhookSpec, payload: Any, headers: Mapping[str, str], body: bytes
    ) -> None:
        self._args = (webhook, payload, headers, body)
        self._value: str | None = None

    def __call__(self) -> str:
        if self._value is None:
            self._value = fallback_version(*self._args)
        return self._value


@datarecord(frozen=False)
class MappedDelivery:
    """One delivery's signals, or why there are none.

    ``event_type`` is None when the delivery names no event type; ``handled``
    is False when the connector does not map that event type (the gateway
    answers 202 and stores nothing).

    Read-only by convention, not ``frozen``: a frozen dataclass sets each field
    through ``object.__setattr__`` (0.53 → 0.16 µs a construction), and one is
    made for every delivery.
    """

    event_type: str | None
    handled: bool
    result: MappingResult = field(default_factory=MappingResult)


def map_delivery(
    webhook: WebhookSpec,
    mapping: CompiledMapping,
    payload: Any,
    *,
    headers: Mapping[str, str],
    body: bytes,
    connector_id: str,
    project_id: str,
    now: datetime,
) -> MappedDelivery:
    """A verified webhook delivery as signals: the gateway, ``ucf map`` and the dashboard's
    preview all call this, so an author sees what the gateway will store."""
    event_type = event_type_of(webhook, payload, headers)
    if event_type is None:
        return MappedDelivery(None, False)
    if not handles(webhook, event_type):
        return MappedDelivery(event_type, False)
    items = mapping.extract_items(payload)
    fallback = _FallbackVersion(webhook, payload, headers, body)
    if len(items) != 1:
        result = mapping.map_items(
            items,
            connector_id,
            project_id,
            event_type=event_type,
            fallback_version=fallback,
            now=now,
        )
        return MappedDelivery(event_type, True, result)
    # A payload is usually one item: map_items' loop and bookkeeping, written out for one
    # (a test holds the two equal on a mapped, a skipped and an unmappable item).
    item = items[0]
    generated = mapping.generated
    skip = generated.skip
    if skip is not None and skip(item):
        return MappedDelivery(event_type, True, MappingResult(skipped=1))
    try:
        signal = generated.map_one(item, connector_id, project_id, event_type, fallback, now)
    except ItemMappingError as error:
        return MappedDelivery(
            event_type, True, MappingResult(errors=[ItemError(0, error.reason, error.item_id)])
        )
    return MappedDelivery(event_type, True, MappingResult([signal]))
