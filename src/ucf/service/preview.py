"""A sample through a descriptor, offline: what ``ucf map`` prints and the dashboard previews.

An author has a saved poll response or a webhook payload and a descriptor
being written; this maps one through the other exactly as a poll page or the
gateway would (the same item extraction, :func:`ucf.core.webhook.map_delivery`,
a native connector's own normaliser or handler), calls no upstream and stores
nothing. What it shows is sanitised like what the store and the sinks
receive, and each signal says which ``signalTypeRules`` entry chose its type.

Whether a sample is a poll response or a webhook delivery is the caller's
word (``poll``/``webhook``) or a guess (``auto``): a connector that only
receives webhooks, or a sample given with headers, is read as a delivery; a
guess that maps nothing gets a one-line note saying what to try instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.mapping import CompiledMapping, MappingResult, TypeReason, compile_mapping
from ucf.core.sanitiser import Sanitiser
from ucf.core.validation import Problem
from ucf.core.webhook import map_delivery
from ucf.runtime.native import Malformed, Unhandled, WebhookContext, WebhookRequest
from ucf.runtime.sources import NativeSourceMissing, Source, source_for
from ucf.runtime.webhooks import (
    WebhookConfigError,
    check_delivery,
    compile_verifier,
    sign_delivery,
)

__all__ = [
    "Preview",
    "PreviewMode",
    "item_errors_json",
    "preview_sample",
    "sign_sample",
    "signals_json",
    "type_reasons",
]

PreviewMode = Literal["poll", "webhook", "auto"]


@dataclass(slots=True)
class Preview:
    """What a sample maps to, and what an author should know about it."""

    mode: Literal["poll", "webhook"]
    result: MappingResult = field(default_factory=MappingResult)
    reasons: list[TypeReason | None] = field(default_factory=list)
    """One per signal, in order; None where a native connector's code chose the type."""
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """Why the sample could not be mapped at all (paths: ``sample``, ``headers``, ``mode``)."""
    event_type: str | None = None
    verification: dict[str, Any] | None = None
    """Webhooks: ``{"checked", "ok", "reason"}``, the gateway's verdict on these bytes."""
    handshake: dict[str, Any] | None = None
    """Webhooks: the gateway's answer when the sample is a provider's set-up request."""


class _Refused(Exception):
    def __init__(self, path: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.problem = Problem(path, message, hint)


async def preview_sample(
    descriptor: ConnectorDescriptor,
    payload: Any,
    *,
    body: bytes,
    headers: Mapping[str, str],
    mode: PreviewMode,
    project_id: str,
    now: datetime,
    switches: tuple[str, str] = ("choose the poll mode", "choose the webhook mode"),
    secret: str | None = None,
    unchecked: str | None = None,
) -> Preview:
    """Map ``payload`` (whose raw bytes are ``body``) as ``mode`` says; never raises on input.

    ``switches`` is how the caller's user picks the poll mode and the webhook mode, for
    the notes and a refused mode's hint (``ucf map`` says ``use --poll``; the dashboard
    names its own control).
    ``secret`` (a generic webhook connector's signing secret or token) checks
    ``body`` as the gateway would and answers handshakes as it would. ``unchecked``: the
    note for a delivery mapped without its secret (a try says no signature is needed).
    """
    try:
        source = source_for(descriptor)
    except NativeSourceMissing as error:
        return Preview("poll", problems=[Problem("descriptor", str(error))])
    pushes = descriptor.webhook is not None or source.webhooks is not None
    polls = source.schedule is not None
    guessed = mode == "auto"
    as_webhook = mode == "webhook" or (guessed and pushes and (bool(headers) or not polls))
    preview = Preview("webhook" if as_webhook else "poll")
    to_poll, to_webhook = switches
    try:
        if as_webhook and not pushes:
            raise _Refused(
                "mode",
                f"{descriptor.id} receives no webhooks",
                f"if the sample is a poll response, {to_poll}",
            )
        if not as_webhook and not polls:
            # A push-only connector (SES) has no poll whose page this could be: mapped
            # anyway, its item errors said nothing of the real reason.
            raise _Refused(
                "mode",
                f"{descriptor.id} does not poll",
                f"if the sample is a webhook delivery, {to_webhook}",
            )
        if as_webhook and source.webhooks is not None:
            await _native_webhook(preview, source, body, headers, project_id, now)
        elif as_webhook:
            if _gateway_check(preview, descriptor, payload, body, headers, secret, now, unchecked):
                _generic_webhook(preview, descriptor, payload, body, headers, project_id, now)
        else:
            _poll(preview, source, payload, project_id, now)
    except _Refused as refused:
        preview.problems.append(refused.problem)
        return preview
    result = preview.result
    if guessed and not result.signals and not result.skipped:
        failed = bool(result.errors)
        preview.notes.append(_why_nothing(descriptor, as_webhook, pushes, switches, failed))
    return preview


def sign_sample(
    descriptor: ConnectorDescriptor, body: bytes, secret: str | None, now: datetime
) -> dict[str, str] | Problem:
    """The headers that sign ``body`` with ``secret`` as the gateway will check them.

    So an author can preview a signed delivery without computing an HMAC by hand:
    the signature is made by the verifier the gateway compiles from the same
    descriptor, over the same bytes. Nothing is stored; the secret is not returned.
    """
    credential = _secret_credential(descriptor)
    webhook = descriptor.webhook
    if webhook is None or webhook.verification == "none" or credential is None:
        return Problem("mode", f"{descriptor.id} verifies no webhook deliveries: nothing to sign")
    if not secret:
        return Problem("secret", "type the webhook secret to sign with")
    try:
        return sign_delivery(
            compile_verifier(descriptor), body=body, credentials={credential: secret}, now=now
        )
    except WebhookConfigError as error:
        return Problem("secret", f"cannot sign: {error}")


def signals_json(preview: Preview, sanitiser: Sanitiser) -> list[dict[str, Any]]:
    """Each signal as the store would keep it (sanitised), with why it has its type."""
    return [
        {
            "signal": sanitiser.sanitise_wire(mapped.wire),
            "typeReason": reason.to_json()
            if reason is not None
            else {"type": mapped.wire["type"], "rule": None, "because": "chosen by connector code"},
        }
        for mapped, reason in zip(preview.result.signals, preview.reasons, strict=True)
    ]


def item_errors_json(result: MappingResult) -> list[dict[str, Any]]:
    """Why items did not become signals: their index in the page, id if known, reason."""
    return [
        {"index": error.index, "itemId": error.item_id, "reason": error.reason}
        for error in result.errors
    ]


def type_reasons(
    mapping: CompiledMapping, items: list[Any], result: MappingResult, event_type: str | None
) -> list[TypeReason | None]:
    """The type reason of each signal: items that were neither skipped nor errors, in order."""
    failed = {error.index for error in result.errors}
    return [
        mapping.explain_type(item, event_type)
        for index, item in enumerate(items)
        if index not in failed and not mapping.skipped(item)
    ]


def _poll(preview: Preview, source: Source, payload: Any, project_id: str, now: datetime) -> None:
    """A saved response page through the source's own item extraction and normaliser."""
    mapping: CompiledMapping | None = getattr(getattr(source, "plan", None), "mapping", None)
    extract = getattr(source, "extract_items", None)
    if callable(extract):
        try:
            items: list[Any] = list(extract(payload))
        except ValueError as error:  # the source's own words on a page it cannot read
            raise _Refused("sample", str(error)) from None
    elif mapping is not None:
        items = mapping.extract_items(payload)
    elif isinstance(payload, list):
        items = payload
    else:
        raise _Refused(
            "sample",
            f"{source.descriptor.id} cannot read a response page here",
            "pass a JSON array of its items",
        )
    preview.result = source.normalise(items, project_id=project_id, now=now)
    if mapping is not None:
        preview.reasons = type_reasons(mapping, items, preview.result, None)
    else:
        preview.reasons = [None] * len(preview.result.signals)


def _generic_webhook(
    preview: Preview,
    descriptor: ConnectorDescriptor,
    payload: Any,
    body: bytes,
    headers: Mapping[str, str],
    project_id: str,
    now: datetime,
) -> None:
    webhook = descriptor.webhook
    spec = descriptor.webhook_mapping()
    if webhook is None or spec is None:
        raise _Refused("mode", f"{descriptor.id} receives no webhooks")
    if not isinstance(payload, dict):
        raise _Refused("sample", "a webhook delivery's body must be a JSON object")
    mapping = compile_mapping(spec)
    mapped = map_delivery(
        webhook,
        mapping,
        payload,
        headers=headers,
        body=body,
        connector_id=descriptor.id,
        project_id=project_id,
        now=now,
    )
    if mapped.event_type is None:
        where = (
            f"header {webhook.event_type_header}"
            if webhook.event_type_header is not None
            else f"{webhook.event_type_path}"
        )
        raise _Refused(
            "headers" if webhook.event_type_header else "sample",
            f"the sample names no event type (expected at {where})",
            "add the header the provider sends" if webhook.event_type_header else None,
        )
    preview.event_type = mapped.event_type
    if not mapped.handled:
        preview.notes.append(
            f"event type {mapped.event_type!r} is not handled by {descriptor.id}: ignored "
            "(the gateway answers 202 and stores nothing)"
        )
        return
    preview.result = mapped.result
    preview.reasons = type_reasons(
        mapping, mapping.extract_items(payload), mapped.result, mapped.event_type
    )


async def _native_webhook(
    preview: Preview,
    source: Source,
    body: bytes,
    headers: Mapping[str, str],
    project_id: str,
    now: datetime,
) -> None:
    """A native handler's signals for a delivery, without verification or upstream calls."""
    handler = source.webhooks
    assert handler is not None
    connector_id = source.descriptor.id

    async def offline() -> Any:
        raise _Refused(
            "sample", f"{connector_id} needs its API to map this delivery; try it live instead"
        )

    request = WebhookRequest(method="POST", body=body, headers=dict(headers))
    context = WebhookContext(
        project_id=project_id,
        connector_id=connector_id,
        credentials={},
        config={},
        now=now,
        upstream=offline,
    )
    try:
        outcome = await handler.signals(request, context)
    except Malformed as error:
        raise _Refused("sample", f"the delivery cannot be read: {error}") from None
    if isinstance(outcome, Unhandled):
        preview.event_type = outcome.event_type
        preview.notes.append(
            f"event type {outcome.event_type!r} is not handled by {connector_id}: ignored"
        )
        return
    preview.result = outcome
    preview.reasons = [None] * len(outcome.signals)


def _gateway_check(
    preview: Preview,
    descriptor: ConnectorDescriptor,
    payload: Any,
    body: bytes,
    headers: Mapping[str, str],
    secret: str | None,
    now: datetime,
    unchecked: str | None = None,
) -> bool:
    """The gateway's verification and handshake on these bytes; False when it would not map."""
    webhook = descriptor.webhook
    if webhook is None:
        return True
    credential = _secret_credential(descriptor)
    credentials = {credential: secret} if credential is not None and secret else {}
    try:
        admission = check_delivery(
            compile_verifier(descriptor),
            descriptor,
            method="POST",
            body=body,
            headers=headers,
            url="",
            query={},
            credentials=credentials,
            now=now,
            payload=payload,
        )
    except WebhookConfigError as error:
        raise _Refused("descriptor", f"the gateway cannot verify deliveries: {error}") from None
    answer = admission.handshake
    if answer is not None:
        preview.handshake = {
            "kind": answer.kind,
            "status": answer.status,
            "body": answer.body.decode("utf-8", "replace"),
            "mediaType": answer.media_type,
        }
        preview.notes.append(
            f"this is a '{answer.kind}' handshake: the gateway answers it and maps nothing"
        )
        return False
    if credential is not None and not secret:
        preview.verification = {"checked": False, "ok": None, "reason": None}
        preview.notes.append(
            unchecked.format(verification=webhook.verification)
            if unchecked is not None
            else f"verification '{webhook.verification}' not checked: give the secret to "
            "check this delivery as the gateway would"
        )
        return True
    reason = admission.result.reason
    preview.verification = {
        "checked": True,
        "ok": admission.ok,
        "reason": str(reason or "") or None,
    }
    if not admission.ok:
        preview.notes.append(f"the gateway would refuse this delivery (HTTP 401): {reason}")
    return True


def _secret_credential(descriptor: ConnectorDescriptor) -> str | None:
    """The credential the gateway verifies with, or None when it verifies nothing."""
    webhook = descriptor.webhook
    if webhook is None:
        return None
    if webhook.verification == "token" and webhook.token is not None:
        return webhook.token.secret_credential
    scheme = descriptor.signature_verification()
    return scheme.secret_credential if scheme is not None else None


def _why_nothing(
    descriptor: ConnectorDescriptor,
    as_webhook: bool,
    pushes: bool,
    switches: tuple[str, str],
    failed: bool = False,
) -> str:
    """Why a guessed mode found nothing, in one line (the usual cause: the other mode).

    ``failed``: items were read, and every one failed (GitLab's Issue Hook read as
    a poll page is one item with no top-level id): the same mistake, which the
    item errors alone do not name.
    """
    to_poll, to_webhook = switches
    if as_webhook:
        return (
            "the sample was read as a webhook delivery and mapped to nothing; "
            f"if it is a poll response, {to_poll}"
        )
    if failed:
        other = f"; if it is a webhook delivery, {to_webhook}" if pushes else ""
        return f"the sample was read as a poll response and none of its items mapped{other}"
    hint = f" and the sample looks like a webhook payload: {to_webhook}" if pushes else ""
    mapping = descriptor.field_mapping
    where = f"itemsPath {mapping.items_path}" if mapping is not None else "the response"
    return f"{where} matched nothing{hint}"
