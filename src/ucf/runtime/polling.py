"""The Polling Engine (SPEC §6.2): a polling descriptor compiled once, run many times.

:meth:`PollPlan.compile` plans everything a poll needs — templates, paths, the
delta strategy and the paginator — so running a poll is rendering strings and
walking dicts. :meth:`PollPlan.pages` streams the poll page by page; each
:class:`Page` carries its raw items and the checkpoint that is safe to store
once that page's signals are stored, which is what makes a poll crash-safe
(see :mod:`ucf.runtime.delta`).

Templates are escaped for where they land: ``{{baseUrl}}`` is inserted
verbatim (and must be an http(s) URL), every other value is URL-encoded in the
endpoint and JSON-escaped in a body; query parameters are encoded by httpx.
Next-page URLs from a response go through the same SSRF-guarded client and
must stay on the endpoint's origin, because the credentials go with them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from ucf.core.descriptor_view import AuthView, ConnectorView, KeyedConfigView, connector_view
from ucf.core.mapping import compile_mapping
from ucf.core.records import datarecord
from ucf.core.template import (
    Template,
    compile_template,
    json_string_content,
    render_json,
    render_url,
)
from ucf.runtime.delta import CheckpointInvalid, DeltaFactory, delta_factory
from ucf.runtime.http import (
    HttpSettings,
    MalformedResponse,
    RetryStats,
    UpstreamError,
    read_json,
    send_with_retries,
)
from ucf.runtime.pagination import PageRequest, PaginatorFactory, paginator_factory
from ucf.runtime.redaction import redact
from ucf.runtime.response_errors import ResponseErrorClassifier, classifier_for

if TYPE_CHECKING:
    from ucf.core import descriptor as d

__all__ = [
    "CheckpointInvalid",
    "ConfigError",
    "JsonBody",
    "NotPollable",
    "Page",
    "PollPlan",
    "RateGate",
    "TokenBucketGate",
    "bucket_for_rpm",
    "resolve_config",
]


class ConfigError(ValueError):
    """Instance configuration that cannot fill the descriptor's templates."""


class NotPollable(ValueError):
    """The descriptor has no polling part, or is not a generic connector."""


# --------------------------------------------------------------------------- config


def resolve_config(
    descriptor: d.ConnectorDescriptor | ConnectorView, given: Mapping[str, str]
) -> dict[str, str]:
    """The instance's config with ``configFields`` defaults applied, checked.

    Unknown names are refused (a typo would otherwise render as empty text in
    a URL); required fields must have a value; ``baseUrl`` is always accepted
    and, when present, must be an absolute http(s) URL.
    """
    fields = {f.key: f for f in descriptor.config_fields}
    unknown = sorted(set(given) - set(fields) - {"baseUrl"})
    config = {key: f.default for key, f in fields.items() if f.default is not None}
    config.update(given)
    missing = [key for key, f in fields.items() if f.required and not config.get(key)]
    # Both at once: after a descriptor edit that renamed a setting (team -> region), an
    # instance's poll said only "unknown config field(s) team", and the new required
    # one came up only once that was fixed.
    said = []
    if unknown:
        known = ", ".join(sorted(set(fields) | {"baseUrl"}))
        said.append(f"unknown config field(s) {', '.join(unknown)} (known: {known})")
    if missing:
        said.append(f"config field(s) {', '.join(missing)} need a value")
    if said:
        raise ConfigError("; ".join(said))
    for key, f in fields.items():
        value = config.get(key)
        if f.type == "select" and value and f.options and value not in f.options:
            raise ConfigError(f"config field {key} must be one of {', '.join(f.options)}")
    base = config.get("baseUrl")
    if base is not None:
        url = _http_url(base)
        if url is None:
            raise ConfigError(f"baseUrl {base!r} is not an absolute http(s) URL")
        config["baseUrl"] = base.rstrip("/")
    return config


def is_http_url(text: str) -> bool:
    """Whether ``text`` is a URL a poll accepts as a base: absolute http(s) with a host,
    nothing a URL cannot hold (a space, a control character). Instance settings are
    checked with this when saved, so a base URL is never refused only at the first poll."""
    return _http_url(text) is not None


def _http_url(text: str) -> httpx.URL | None:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return url


# --------------------------------------------------------------------------- rate gate


class RateGate(Protocol):
    """Paces requests to a descriptor's ``rateLimitRpm``; shared by whoever polls it."""

    async def acquire(self) -> float:
        """Wait for permission to send one request; returns the seconds waited."""
        ...


def bucket_for_rpm(rpm: int) -> tuple[float, float]:
    """(capacity, refill per second) of the token bucket behind ``rateLimitRpm``.

    A burst of ten seconds' budget, then a steady ``rpm / 60`` per second: a
    3-page poll does not wait, a long backfill settles at the declared rate.
    """
    return max(1.0, rpm / 6), rpm / 60


class TokenBucketGate:
    """An in-process token bucket (GCRA form: no loop, exact with a fake clock).

    For the CLI and tests; the poll use case uses the store's shared bucket so
    that every worker draws from one budget.
    """

    def __init__(
        self,
        rpm: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        capacity, rate = bucket_for_rpm(rpm)
        self._interval = 1.0 / rate
        self._burst = capacity
        self._clock = clock
        self._sleep = sleep
        self._theoretical: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        async with self._lock:
            now = self._clock()
            theoretical = now if self._theoretical is None else max(self._theoretical, now)
            allowed_at = theoretical - (self._burst - 1) * self._interval
            wait = max(0.0, allowed_at - now)
            self._theoretical = theoretical + self._interval
            if wait > 0:
                await self._sleep(wait)
            return wait


# --------------------------------------------------------------------------- pages


@datarecord
class Page:
    """One page of a poll.

    ``checkpoint`` is safe to store once this page's signals are stored; the
    last page's is the poll's new checkpoint. ``request_url`` is redacted.
    ``truncated`` marks a last page cut short by the max-pages guard while
    the API still had more. The statistics default to "nothing to report", so a
    native source (``ucf.native``) fills in only what it measured.
    """

    number: int
    items: list[Any]
    checkpoint: str | None
    request_url: str = ""
    status: int = 200
    last: bool = False
    elapsed_seconds: float = 0.0
    gate_wait_seconds: float = 0.0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    dropped: int = 0
    truncated: bool = False


@datarecord
class JsonBody:
    """A compiled request body: a JSON template (typed values) or a text template.

    Shared by polls and POST health checks, so both escape values the same way.
    """

    json_template: Any = None
    text: Template | None = None
    omit_nulls: bool = False

    @classmethod
    def compile(
        cls, body: str | dict[str, Any] | None, *, omit_nulls: bool = False
    ) -> JsonBody | None:
        if body is None:
            return None
        if isinstance(body, dict):
            return cls(json_template=body, omit_nulls=omit_nulls)
        try:
            return cls(json_template=json.loads(body), omit_nulls=omit_nulls)
        except ValueError:
            return cls(text=compile_template(body))

    def render(self, resolve: Callable[[str], Any]) -> bytes:
        if self.text is not None:
            return self.text.render(resolve, json_string_content).encode()
        rendered = render_json(self.json_template, resolve)
        if self.omit_nulls and isinstance(rendered, dict):
            # Notion: no cursor yet means no 'start_cursor' key at all.
            rendered = {key: value for key, value in rendered.items() if value is not None}
        return json.dumps(rendered, ensure_ascii=False, separators=(",", ":")).encode()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


class PollPlan:
    """A polling descriptor, planned once."""

    def __init__(self, descriptor: d.ConnectorDescriptor | ConnectorView) -> None:
        # Read as its view: a stored descriptor's needs no models (a poll loads no pydantic).
        descriptor = connector_view(descriptor)
        spec = descriptor.polling
        if descriptor.kind != "generic" or spec is None or descriptor.field_mapping is None:
            raise NotPollable(f"{descriptor.id} is not a generic polling connector")
        self.descriptor = descriptor
        self.spec = spec
        self.mapping = compile_mapping(descriptor.field_mapping)
        self._endpoint = compile_template(spec.endpoint)
        self._query = {name: compile_template(value) for name, value in spec.query.items()}
        self._headers = {name: compile_template(v) for name, v in (spec.headers or {}).items()}
        self._body = JsonBody.compile(spec.body, omit_nulls=spec.omit_null_body_fields)
        self.response_errors: ResponseErrorClassifier | None = classifier_for(descriptor)
        self._delta: DeltaFactory = delta_factory(spec, descriptor.field_mapping)
        self._paginator: PaginatorFactory = paginator_factory(spec.pagination, spec.query)
        self.page_size = spec.pagination.page_size if spec.pagination else None
        self.max_pages = spec.pagination.max_pages if spec.pagination else 1
        self._credential_params = frozenset().union(
            *(_credential_params(method) for method in descriptor.auth_methods())
        )

    @classmethod
    def compile(cls, descriptor: d.ConnectorDescriptor | ConnectorView) -> PollPlan:
        return cls(descriptor)

    def _without_credentials(self, request: PageRequest) -> PageRequest:
        """``request`` fit to be stored in a checkpoint (shown on the dashboard): the auth
        flow's query parameters dropped from a next-page URL that echoes them (it adds
        them again when the page is fetched)."""
        url = request.url
        if url is not None and self._credential_params:
            parsed = httpx.URL(url)
            kept = [
                (k, v) for k, v in parsed.params.multi_items() if k not in self._credential_params
            ]
            url = str(parsed.copy_with(params=kept))
        params = {k: v for k, v in request.params.items() if k not in self._credential_params}
        return PageRequest(params=params, url=url, page_token=request.page_token)

    # -- requests

    def _resolver(
        self, config: Mapping[str, str], checkpoint: str | None, page_token: Any
    ) -> Callable[[str], Any]:
        def resolve(name: str) -> Any:
            if name == "checkpoint":
                return checkpoint
            if name == "pageToken":
                return page_token
            if name == "pageSize":
                return self.page_size
            if name == "baseUrl":
                return config.get("baseUrl")
            if name.startswith("config."):
                return config.get(name.removeprefix("config."))
            return None

        return resolve

    def endpoint_url(self, config: Mapping[str, str], checkpoint: str | None = None) -> httpx.URL:
        """The first page's URL without delta or paging parameters (its origin anchors the poll)."""
        text = render_url(self._endpoint, self._resolver(config, checkpoint, None))
        url = _http_url(text)
        if url is None:
            raise ConfigError(
                f"{self.descriptor.id}: the endpoint does not render to an http(s) URL"
                " (is baseUrl set?)"
            )
        return url

    def _build(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, str],
        checkpoint: str | None,
        state: PageRequest,
        origin: tuple[str, str, int | None],
    ) -> Callable[[], httpx.Request]:
        """The page's request, as a factory that builds a fresh one per attempt: auth flows
        edit the request they are given, so no attempt may send another's. Built from
        the parts, not copied from a first request: one ``build_request`` for a page
        sent once (~40 µs each, timed alone), not two."""
        resolve = self._resolver(config, checkpoint, state.page_token)
        if state.url is not None:
            url = _http_url(state.url)
            if url is None or _origin(url) != origin:
                host = url.host if url is not None else "(not an http URL)"
                raise MalformedResponse(
                    f"{self.descriptor.id}: next page link points to {host}, away from the"
                    " endpoint's origin; refusing to send credentials there"
                )
        else:
            url = self.endpoint_url(config, checkpoint)
            params = {name: t.render(resolve) for name, t in self._query.items()}
            if self.spec.pagination is not None and self.spec.pagination.page_size_param:
                params.setdefault(self.spec.pagination.page_size_param, str(self.page_size))
            for name, value in state.defaults.items():
                if name not in params and name not in url.params:
                    params[name] = value
            params.update(state.params)
            url = url.copy_merge_params(params)
        headers: dict[str, str] = {}
        for name, template in self._headers.items():
            value = template.render(resolve)
            if "\r" in value or "\n" in value:
                raise ConfigError(f"header {name} would contain a line break")
            if not (value.isascii() and value.isprintable()):  # httpx encodes it as ASCII
                raise ConfigError(
                    f"header {name} would hold a character outside printable ASCII, "
                    "which an HTTP header cannot carry"
                )
            headers[name] = value
        content: bytes | None = None
        if self._body is not None and self.spec.method == "POST":
            content = self._body.render(resolve)
            headers.setdefault("Content-Type", "application/json")
        return functools.partial(
            client.build_request, self.spec.method, url, headers=headers, content=content
        )

    def _paging_param(self) -> str:
        pagination = self.spec.pagination
        name = pagination.next_param if pagination is not None else None
        return f"{name!r} parameter" if name else "next-page position"

    # -- the poll

    async def pages(
        self,
        client: httpx.AsyncClient,
        auth: httpx.Auth,
        *,
        config: Mapping[str, str],
        checkpoint: str | None,
        now: datetime,
        max_pages: int | None = None,
        rate_gate: RateGate | None = None,
        settings: HttpSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> AsyncIterator[Page]:
        """Run one poll, yielding each page as soon as it is read.

        Raises :class:`ConfigError` / :class:`CheckpointInvalid` before any
        request, and the typed errors of :mod:`ucf.runtime.http` (``AuthFailed``
        at once; ``RateLimited``/``UpstreamUnavailable`` once retries run out),
        including those the API reports in the body (``responseErrors``).
        """
        settings = settings or HttpSettings()
        config = resolve_config(self.descriptor, config)
        delta = self._delta(checkpoint, now)
        paginator = self._paginator()
        state = PageRequest()
        paginator.init_request(state)
        delta.init_request(state)
        resuming = delta.resume_from is not None
        if delta.resume_from is not None:  # a listing an earlier poll's maxPages cut short
            resume = delta.resume_from
            state.params.update(resume.params)
            state.url, state.page_token = resume.url, resume.page_token
            paginator.resume(state)
        origin = _origin(self.endpoint_url(config, delta.template_value()))
        limit = max_pages if max_pages is not None else self.max_pages
        number = 0
        asked: set[str] = set()  # every page request of this listing, to catch a loop
        previous: list[Any] = []  # the last page's items: the same again is a loop too
        while True:
            number += 1
            # A loop's errors say "stopped there", not "the pages before it are stored":
            # Try it and ucf poll, which say them too, store nothing.
            if not _first_time(asked, state):
                raise MalformedResponse(
                    f"{self.descriptor.id}: the API's pagination loops (page {number} would"
                    " ask for a page this poll has already read); stopped there"
                )
            gate_wait = await rate_gate.acquire() if rate_gate is not None else 0.0
            stats = RetryStats()
            template_checkpoint = delta.template_value()
            request = self._build(client, config, template_checkpoint, state, origin)
            started = clock()
            try:
                response = await send_with_retries(
                    client,
                    request,
                    settings=settings,
                    auth=auth,
                    sleep=sleep,
                    on_wait=stats,
                    response_errors=self.response_errors,
                )
            except UpstreamError as error:
                if not (resuming and _refused_request(error)):
                    raise
                # The stored position no longer works (an expired cursor, a page that
                # is gone): read the same listing from its top instead, once.
                resuming, number = False, 0
                asked.clear()
                delta = self._delta(delta.stored, now)
                paginator = self._paginator()
                state = PageRequest()
                paginator.init_request(state)
                delta.init_request(state)
                continue
            resuming = False
            elapsed = clock() - started
            body = await read_json(response)
            items = self.mapping.extract_items(body)
            if number > 1 and items and items == previous:
                # An API that ignores the offset (or page number) answers page 1 again
                # and again: each request differs, so only the answer shows the loop.
                raise MalformedResponse(
                    f"{self.descriptor.id}: page {number} holds exactly the items of page"
                    f" {number - 1} (does the API ignore the {self._paging_param()}?); stopped"
                    " there"
                )
            previous = items
            paginator.update_state(response, body, items)
            delta.update_state(body, items)
            reached = delta.reached_checkpoint(items)
            kept = delta.keep(items)
            more = paginator.has_next_page and not reached
            complete = not more
            last = complete or number >= limit
            if last and not complete:  # cut short: the next poll goes on from the next page
                paginator.update_request(state)
                position = delta.truncated(self._without_credentials(state))
            else:
                position = delta.checkpoint(complete=complete)
            yield Page(
                number=number,
                items=kept,
                checkpoint=position,
                request_url=redact(str(response.request.url)),
                status=response.status_code,
                last=last,
                elapsed_seconds=elapsed,
                gate_wait_seconds=gate_wait,
                rate_limit_waits=stats.rate_limit_waits,
                rate_limit_wait_seconds=stats.rate_limit_seconds,
                dropped=len(items) - len(kept),
                truncated=last and not complete,
            )
            if last:
                return
            paginator.update_request(state)


def _first_time(asked: set[str], request: PageRequest) -> bool:
    """Record ``request`` among a poll's page requests; False when it was sent already.

    A next link or cursor that points back to an earlier page (``A -> B -> A``, a
    page number that repeats) would otherwise be read again and again until
    ``maxPages``, and a listing that completes only at its end would store that
    same position to resume from, poll after poll, never to complete.
    """
    key = json.dumps(
        [request.url, sorted(request.params.items()), request.page_token],
        default=str,
        separators=(",", ":"),
    )
    if key in asked:
        return False
    asked.add(key)
    return True


def _refused_request(error: UpstreamError) -> bool:
    """A 4xx that says the request itself is wrong (not credentials, not throttling)."""
    plain = type(error) is UpstreamError
    return plain and error.status is not None and 400 <= error.status < 500


def _credential_params(auth: AuthView) -> frozenset[str]:
    """Query parameters the auth flow adds to every request (Trello ``key`` and ``token``)."""
    config = auth.config
    if not isinstance(config, KeyedConfigView):  # api_key and pat place keys
        return frozenset()
    names = {config.param_name} if config.delivery == "query" else set()
    names.update(p.param_name for p in config.additional_credentials if p.delivery == "query")
    return frozenset(names)
