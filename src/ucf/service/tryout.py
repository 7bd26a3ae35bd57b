"""Try a descriptor against the live API: one page, shown in full, nothing stored.

The author of a new connector needs to see what the API really answers: the
request as sent, the status, headers and body, and the signals the first page
maps to. This runs the connector's own first poll (its auth, pagination and
delta, :func:`ucf.runtime.connection.connect` and ``fetch_delta`` with
``max_pages``) through an HTTP client built like the process's (the SSRF
guard, timeouts, size cap, retries), records the exchange, and stops after
the first page. No checkpoint, instance or signal is written.

Credentials are typed for the try-out only: never stored, never logged, never
echoed. Every value given is masked wherever it appears in what is shown
(URL, headers, body, error), on top of the usual rules of
:mod:`ucf.runtime.redaction` (authorization headers, ``?token=`` parameters,
known token shapes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from ucf.core.descriptor import ConnectorDescriptor, OAuth2Auth
from ucf.core.jsonpath import MISSING
from ucf.core.mapping import CompiledMapping, MappingResult
from ucf.core.payload import payload_or_missing
from ucf.core.records import datarecord
from ucf.core.sanitiser import Sanitiser
from ucf.core.validation import Problem, validate_descriptor
from ucf.core.webhook import header
from ucf.runtime.auth import render_url
from ucf.runtime.connection import connect
from ucf.runtime.http import AuthFailed, UpstreamError, create_client
from ucf.runtime.polling import NotPollable
from ucf.runtime.redaction import SECRETS, mask, redact, url_forms
from ucf.runtime.sources import NativeSourceMissing, source_for
from ucf.runtime.ssrf import EgressDenied
from ucf.service.context import UcfContext
from ucf.service.errors import ValidationFailed
from ucf.service.preview import (
    Preview,
    item_errors_json,
    preview_sample,
    signals_json,
    type_reasons,
)

__all__ = ["MAX_SHOWN_BODY", "SampleDelivery", "TryOut", "try_delivery", "try_descriptor"]

MAX_SHOWN_BODY: Final = 64 * 1024
"""Characters of the response body shown; the rest is cut and ``truncated`` says so."""
MAX_TRY_PAGES: Final = 3
TRY_DEADLINE_SECONDS: Final = 20.0
"""How long a try may take at most (a poll's ``UCF_POLL_TIMEOUT`` when that is shorter).
Someone waits for it in the editor: with only the poll's deadline, an upstream that
never answered held the page for 154 s of attempts and retries before it said "read
timed out". Well under the Lambda API's 30 s (its function's timeout, and API Gateway's
most): at 30 s the function was stopped first, and the editor showed a 503, not why."""

_SENSITIVE_HEADER_NAMES: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "private-token",
        "dd-api-key",
        "dd-application-key",
    }
)


@dataclass(slots=True)
class _Exchange:
    request: httpx.Request
    response: httpx.Response | None = None


@dataclass(slots=True)
class _Recorder:
    """Keeps the last request of the poll and its response (token requests left out)."""

    skip_urls: frozenset[str] = frozenset()
    last: _Exchange | None = None

    async def on_request(self, request: httpx.Request) -> None:
        if str(request.url.copy_with(query=None)) not in self.skip_urls:
            self.last = _Exchange(request)

    async def on_response(self, response: httpx.Response) -> None:
        if self.last is not None and self.last.request is response.request:
            await response.aread()
            self.last.response = response


class _Masker:
    def __init__(self, secrets: Mapping[str, str]) -> None:
        # As typed, and as a URL carries it: a key sent in the query goes out encoded.
        self._secrets = sorted(
            {
                form
                for v in secrets.values()
                if isinstance(v, str) and len(v) >= 3
                for form in url_forms(v)
            },
            key=len,
            reverse=True,
        )

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, mask(secret))
        return redact(value)

    def headers(self, headers: httpx.Headers) -> dict[str, str]:
        shown: dict[str, str] = {}
        for name, value in headers.multi_items():
            lowered = name.lower()
            text = mask(value) if lowered in _SENSITIVE_HEADER_NAMES else self.text(value)
            shown[lowered] = f"{shown[lowered]}, {text}" if lowered in shown else text
        return shown


@dataclass(slots=True)
class TryOut:
    """What one try shows; every string in it already masked."""

    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    preview: Preview = field(default_factory=lambda: Preview("poll"))
    error: dict[str, Any] | None = None
    pages: int = 0
    masker: _Masker | None = None
    delivery: dict[str, Any] | None = None
    """A webhook try's delivery as mapped: its event type and headers."""

    def signals(self, sanitiser: Sanitiser) -> list[dict[str, Any]]:
        """Sanitised like stored signals, and masked: an API may echo a credential back."""
        shown = signals_json(self.preview, sanitiser)
        if self.masker is None:
            return shown
        masked: list[dict[str, Any]] = json.loads(self.masker.text(json.dumps(shown)))
        return masked


def _as_sent(url: httpx.URL) -> str:
    """The URL with its path and query exactly as they went on the wire (``%2F`` kept)."""
    port = f":{url.port}" if url.port is not None else ""
    host = f"[{url.host}]" if ":" in url.host else url.host  # an IPv6 literal, as written
    return f"{url.scheme}://{host}{port}{url.raw_path.decode('ascii', 'replace')}"


def _shown_body(response: httpx.Response, masker: _Masker) -> tuple[str, bool]:
    """Pretty JSON when it is JSON, the text otherwise; cut at :data:`MAX_SHOWN_BODY`."""
    text = response.content.decode("utf-8", "replace")
    with contextlib.suppress(ValueError, RecursionError):
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    text = masker.text(text)
    if len(text) > MAX_SHOWN_BODY:
        return text[:MAX_SHOWN_BODY], True
    return text, False


def _error(kind: str, message: str, masker: _Masker) -> dict[str, Any]:
    return {"kind": kind, "message": masker.text(message)}


def _strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items() if v is not None}


async def try_descriptor(
    context: UcfContext,
    data: Any,
    *,
    credentials: Mapping[str, Any],
    config: Mapping[str, Any],
    max_pages: int = 1,
    project_id: str = "try",
    text_problems: Sequence[Problem] = (),
) -> TryOut:
    """One live poll page of a descriptor (``max_pages`` at most); raises
    :class:`ValidationFailed` for a descriptor that is not valid or cannot poll.

    ``text_problems``: what the descriptor's JSON text showed and ``data`` no longer
    can (a key given twice, :func:`~ucf.core.validation.duplicate_keys`); refused with
    the rest, as saving it would be.

    The credentials are masked in log lines while the try runs, and forgotten
    after it (:meth:`~ucf.runtime.redaction.SecretRegistry.lent`).
    """
    with SECRETS.lent():
        return await _try(
            context,
            data,
            credentials=credentials,
            config=config,
            max_pages=max_pages,
            project_id=project_id,
            text_problems=text_problems,
        )


async def _try(
    context: UcfContext,
    data: Any,
    *,
    credentials: Mapping[str, Any],
    config: Mapping[str, Any],
    max_pages: int,
    project_id: str,
    text_problems: Sequence[Problem],
) -> TryOut:
    descriptor, problems = validate_descriptor(data)
    problems = [*text_problems, *problems]
    if descriptor is None or problems:
        raise ValidationFailed.from_problems("the descriptor is not valid", problems)
    # Trimmed as stored credentials are (check_credentials): the try shows what a poll does.
    secrets = {key: value.strip() for key, value in _strings(credentials).items()}
    masker = _Masker(secrets)
    try:
        source = source_for(descriptor)
    except NativeSourceMissing as error:
        raise ValidationFailed(str(error)) from None
    if source.schedule is None:
        raise ValidationFailed.from_problems(
            f"{descriptor.id} receives webhooks only: there is nothing to poll",
            [
                Problem(
                    "delivery",
                    f"{descriptor.id} receives webhooks only: there is nothing to poll",
                    "paste a sample delivery to try it (the try's 'delivery')",
                )
            ],
        )
    recorder = _Recorder(skip_urls=_token_urls(descriptor, _strings(config)))
    client = create_client(context.settings.http, context.settings.egress)
    client.event_hooks = {"request": [recorder.on_request], "response": [recorder.on_response]}
    tried = TryOut(masker=masker)
    result = MappingResult()
    items_seen: list[Any] = []
    deadline = context.settings.poll_timeout.total_seconds()
    limit = "UCF_POLL_TIMEOUT"
    if deadline > TRY_DEADLINE_SECONDS:
        deadline, limit = TRY_DEADLINE_SECONDS, "a try's own; a poll waits UCF_POLL_TIMEOUT"
    scope = asyncio.timeout(deadline)
    try:
        upstream = connect(
            source,
            credentials=secrets,
            config=_strings(config),
            client=client,
            settings=context.settings.http,
            now=context.clock,
        )
        pages = source.fetch_delta(
            upstream, None, now=context.clock(), max_pages=max(1, min(max_pages, MAX_TRY_PAGES))
        )
        async with scope:  # a poll's own deadline: an upstream that drips cannot hold the try
            async for page in pages:
                tried.pages += 1
                mapped = source.normalise(page.items, project_id=project_id, now=context.clock())
                offset = len(items_seen)
                items_seen += page.items
                result.signals += mapped.signals
                result.skipped += mapped.skipped
                result.errors += [
                    type(e)(e.index + offset, e.reason, e.item_id) for e in mapped.errors
                ]
    except TimeoutError:
        if not scope.expired():
            raise
        tried.error = _error(
            "upstream",
            f"try stopped at its {deadline:g} s deadline ({limit}) after {tried.pages} page(s)",
            masker,
        )
    except AuthFailed as error:
        tried.error = _error("credentials_rejected", str(error), masker)
    except EgressDenied as error:
        tried.error = _error("refused_address", str(error), masker)
    except UpstreamError as error:
        tried.error = _error("upstream", str(error), masker)
    except NotPollable as error:
        tried.error = _error("not_pollable", str(error), masker)
    except (httpx.TimeoutException, httpx.TransportError) as error:
        tried.error = _error("connection", f"connection failed ({type(error).__name__})", masker)
    except ValueError as error:  # a config value a template could not use
        tried.error = _error("config", str(error), masker)
    finally:
        await client.aclose()
    tried.preview = _preview_of(source, descriptor, items_seen, result, pages=tried.pages)
    exchange = recorder.last
    if exchange is not None:
        tried.request = {
            "method": exchange.request.method,
            "url": masker.text(_as_sent(exchange.request.url)),
            "headers": masker.headers(exchange.request.headers),
        }
        if exchange.response is not None:
            body, truncated = _shown_body(exchange.response, masker)
            tried.response = {
                "status": exchange.response.status_code,
                "headers": masker.headers(exchange.response.headers),
                "body": body,
                "truncated": truncated,
            }
    return tried


@datarecord
class SampleDelivery:
    """A webhook delivery pasted for a try: its body, byte for byte, and headers."""

    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    event_type: str | None = None
    """Put in the descriptor's event-type header when the headers lack it."""


NO_SIGNATURE: Final = (
    "no signature is needed for a try: the gateway checks '{verification}' on every real "
    "delivery (the Webhook preview checks this one with the secret)"
)


async def try_delivery(
    context: UcfContext,
    data: Any,
    delivery: SampleDelivery,
    *,
    project_id: str = "try",
    text_problems: Sequence[Problem] = (),
) -> TryOut:
    """What the gateway would make of a sample delivery: the signals, sanitised, with the
    same item errors and notes as a poll's try; raises :class:`ValidationFailed` for a
    descriptor that is not valid or takes no webhooks, as a poll's try does.

    A webhook-only connector has nothing to poll, so its try was a refusal. This maps
    the delivery through the gateway's own path (:func:`~ucf.service.preview.preview_sample`:
    event type, :func:`~ucf.core.webhook.map_delivery` or the native handler, a
    handshake's answer), without its signature: the author has a payload from the
    provider's docs or logs, rarely a signed one. Nothing is stored or sent anywhere.
    ``text_problems`` as for :func:`try_descriptor`.
    """
    descriptor, problems = validate_descriptor(data)
    problems = [*text_problems, *problems]
    if descriptor is None or problems:
        raise ValidationFailed.from_problems("the descriptor is not valid", problems)
    try:
        source = source_for(descriptor)
    except NativeSourceMissing as error:
        raise ValidationFailed(str(error)) from None
    if descriptor.webhook is None and source.webhooks is None:
        raise ValidationFailed.from_problems(
            f"{descriptor.id} receives no webhooks",
            [
                Problem(
                    "delivery",
                    f"{descriptor.id} receives no webhooks",
                    "leave out 'delivery': its try sends one live request",
                )
            ],
        )
    tried = TryOut()
    headers = dict(delivery.headers)
    webhook = descriptor.webhook
    if delivery.event_type:
        named = webhook.event_type_header if webhook is not None else None
        if named is None:
            where = f" at {webhook.event_type_path}" if webhook and webhook.event_type_path else ""
            tried.error = {
                "kind": "delivery",
                "message": f"{descriptor.id} reads the event type from the delivery itself"
                f"{where}, not from a header: leave the event type empty and put it there",
            }
            return tried
        if header(headers, named) is None:
            headers[named] = delivery.event_type
    raw = delivery.body.encode("utf-8", "surrogatepass")
    payload = payload_or_missing(raw)
    if payload is MISSING:
        tried.error = {"kind": "delivery", "message": "the delivery's body is not JSON"}
        return tried
    tried.preview = await preview_sample(
        descriptor,
        payload,
        body=raw,
        headers=headers,
        mode="webhook",
        project_id=project_id,
        now=context.clock(),
        unchecked=NO_SIGNATURE,
    )
    tried.delivery = {"eventType": tried.preview.event_type, "headers": headers}
    if tried.preview.problems:
        problem = tried.preview.problems[0]
        hint = f" ({problem.hint})" if problem.hint else ""
        tried.error = {"kind": "delivery", "message": f"{problem.message}{hint}"}
    return tried


def _token_urls(descriptor: ConnectorDescriptor, config: Mapping[str, str]) -> frozenset[str]:
    """Token endpoints: their exchanges carry secrets and are not the poll's request.

    Rendered with the try's settings, as the refresh sends them: the templates
    themselves (``{{baseUrl}}/oauth/token``) equal no URL sent, so a refused refresh
    showed its POST as the request the try made."""
    urls: set[str] = set()
    for method in descriptor.auth_methods():
        if isinstance(method, OAuth2Auth):
            try:
                url = httpx.URL(render_url(method.config.token_url, config))
                urls.add(str(url.copy_with(query=None)))
            except (ValueError, httpx.InvalidURL):
                urls.add(method.config.token_url)  # unrenderable: no refresh is sent to it
    return frozenset(urls)


def _preview_of(
    source: Any,
    descriptor: ConnectorDescriptor,
    items: list[Any],
    result: MappingResult,
    *,
    pages: int,
) -> Preview:
    preview = Preview("poll", result=result)
    plan = getattr(source, "plan", None)
    mapping: CompiledMapping | None = getattr(plan, "mapping", None)
    if mapping is not None:
        preview.reasons = type_reasons(mapping, items, result, None)
    else:
        preview.reasons = [None] * len(result.signals)
    if pages and not items and descriptor.field_mapping is not None:  # no page: see error
        preview.notes.append(
            f"the first page had no items at itemsPath {descriptor.field_mapping.items_path}"
        )
    return preview


def tryout_json(tried: TryOut, context: UcfContext) -> dict[str, Any]:
    """The API's answer: request, response, signals (sanitised, each with its type's reason)."""
    return {
        "request": tried.request,
        "response": tried.response,
        "signals": tried.signals(context.sanitiser),
        "itemErrors": item_errors_json(tried.preview.result),
        "notes": tried.preview.notes,
        "error": tried.error,
        "pages": tried.pages,
        "delivery": tried.delivery,
        "handshake": tried.preview.handshake,
        "problems": [
            {"path": p.path, "message": p.message, "hint": p.hint} for p in tried.preview.problems
        ],
    }
