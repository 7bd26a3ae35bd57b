"""How one poll reaches its next page: one small class per pagination style.

Each paginator has dlt's two verbs (``dlt/sources/helpers/rest_client/paginators.py``):
:meth:`Paginator.update_state` reads where the next page is from a response,
:meth:`Paginator.update_request` points the next :class:`PageRequest` there.
Each docstring shows the real API response the class exists for (the provider's
pagination page is linked under Sources in docs/connectors/<id>.md). A paginator
object lives for one poll; the plan keeps a factory and makes a fresh one per poll.

A next-page URL taken from a response is only a suggestion: the polling
engine still sends it through the SSRF-guarded client and refuses it when it
leaves the origin of the descriptor's endpoint (credentials go with it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any
from urllib.parse import urljoin

import httpx

from ucf.core.descriptor_view import PaginationView
from ucf.core.jsonpath import MISSING, CompiledPath, compile_path
from ucf.core.records import datarecord
from ucf.runtime.http import MalformedResponse

__all__ = [
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "PageRequest",
    "Paginator",
    "SinglePagePaginator",
    "ValueAt",
    "paginator_factory",
]


@datarecord(frozen=False, slots=False)
class PageRequest:
    """What the next request asks for, as paginators and delta strategies edit it.

    ``params`` are query parameters that replace the descriptor's own (offset,
    cursor, page number); ``defaults`` are added only when the endpoint does not
    set them already (the delta's ``since``, the page size). ``page_token``
    fills ``{{pageToken}}`` (cursors sent in a POST body). ``url``, when set, is
    called verbatim instead of the endpoint (a Link header, ``_links.next``,
    a stored MS Graph deltaLink).
    """

    params: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    page_token: Any = None
    url: str | None = None


class Paginator(ABC):
    """One poll's walk through the pages of a listing."""

    has_next_page: bool = True

    def init_request(self, request: PageRequest) -> None:  # noqa: B027 - optional hook
        """Shape the first request (an initial offset, say). Most paginators need nothing."""

    def resume(self, request: PageRequest) -> None:  # noqa: B027 - optional hook
        """Go on from ``request``, a next page an earlier poll of this listing did not
        reach (see :class:`ucf.runtime.delta.ResumePosition`); the request is sent as is."""

    @abstractmethod
    def update_state(self, response: httpx.Response, body: Any, items: list[Any]) -> None:
        """Read where the next page is; set ``has_next_page`` False at the end."""

    @abstractmethod
    def update_request(self, request: PageRequest) -> None:
        """Point ``request`` at the next page."""


class ValueAt:
    """Where a paginator reads one value: a body path, or a response header.

    GitLab's offset pagination says where the next page is only in headers::

        X-Next-Page: 3
        X-Total: 137

    (both empty or absent on the last page), where most APIs put it in the body.
    """

    def __init__(self, path: str | None = None, header: str | None = None) -> None:
        self._path = compile_path(path) if path else None
        self._header = header

    @classmethod
    def of(cls, path: str | None, header: str | None) -> ValueAt | None:
        return cls(path, header) if path or header else None

    def __call__(self, response: httpx.Response, body: Any) -> Any:
        if self._header is not None:
            value = response.headers.get(self._header)
            return MISSING if value is None else value.strip()
        return self._path.first(body) if self._path is not None else MISSING


def _flag(path: CompiledPath | None, body: Any) -> bool | None:
    """A has-more flag: True/False when the body says so, None when it is silent."""
    if path is None:
        return None
    value = path.first(body)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _number(source: ValueAt | None, response: httpx.Response, body: Any) -> int | None:
    if source is None:
        return None
    value = source(response, body)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return _integer(value) if isinstance(value, str) else None


def _integer(text: str) -> int | None:
    """``text`` as a (signed) decimal integer; None for anything else.

    ``str.isdigit`` alone is not enough: it accepts ``"²"`` and ``int`` refuses
    it, and ``int`` refuses more than 4,300 digits; either came out of a hostile
    ``X-Total`` header as a ValueError that crashed the poll."""
    digits = text.strip()
    if not digits.isascii() or not digits.removeprefix("-").isdigit():
        return None
    try:
        return int(digits)
    except ValueError:  # more digits than int() reads
        return None


def _path(expression: str | None) -> CompiledPath | None:
    return compile_path(expression) if expression else None


class SinglePagePaginator(Paginator):
    """No pagination: the first response is the whole answer."""

    def update_state(self, response: httpx.Response, body: Any, items: list[Any]) -> None:
        self.has_next_page = False

    def update_request(self, request: PageRequest) -> None:
        raise RuntimeError("a single-page listing has no next page")


class _CountingPaginator(Paginator):
    """Shared end-of-listing rules of offset and page-number paging.

    In order: an empty page ends; a has-more flag, when the body has one,
    decides; a total, when the body has one, decides; otherwise a page shorter
    than the page size ends (an API may cap the size below what we asked for,
    which is why the flag and the total win when present).
    """

    def __init__(
        self,
        param: str,
        page_size: int,
        *,
        start: int,
        total: ValueAt | None = None,
        has_more_path: str | None = None,
        next_page: ValueAt | None = None,
    ) -> None:
        self.param = param
        self.page_size = page_size
        self.position = start
        self.seen = 0
        self._total = total
        self._has_more = _path(has_more_path)
        self._next_page = next_page

    def init_request(self, request: PageRequest) -> None:
        request.params[self.param] = str(self.position)

    def resume(self, request: PageRequest) -> None:
        position = _integer(request.params.get(self.param, ""))
        if position is not None:
            self.seen += self._items_before(position)
            self.position = position

    def _items_before(self, position: int) -> int:
        """Items the pages before ``position`` held (what a total is compared with)."""
        return position - self.position

    def _more(self, response: httpx.Response, body: Any, count: int) -> bool:
        if count == 0:
            return False
        flag = _flag(self._has_more, body)
        if flag is not None:
            return flag
        total = _number(self._total, response, body)
        if total is not None:
            return self.seen < total
        return count >= self.page_size

    def update_request(self, request: PageRequest) -> None:
        request.params[self.param] = str(self.position)


class OffsetPaginator(_CountingPaginator):
    """Offset and limit, advancing by the items actually received.

    PagerDuty ``GET /incidents?offset=0&limit=100``::

        {"incidents": [...], "limit": 100, "offset": 0, "more": true, "total": null}

    The first offset is the endpoint's own ``query`` value for the parameter, else 0.
    """

    def update_state(self, response: httpx.Response, body: Any, items: list[Any]) -> None:
        self.seen += len(items)
        self.position += len(items)
        self.has_next_page = self._more(response, body, len(items))


class PageNumberPaginator(_CountingPaginator):
    """Page numbers, one up per page.

    Datadog ``GET /api/v1/monitor?page=0&page_size=100`` answers a bare array;
    a short or empty page is the last. The first page number is the endpoint's
    own ``query`` value for the parameter (Datadog counts from 0), else 1.

    With ``nextHeader`` the API names the next page itself (GitLab
    ``X-Next-Page: 3``, empty on the last page), which then decides.
    """

    def update_state(self, response: httpx.Response, body: Any, items: list[Any]) -> None:
        self.seen += len(items)
        if self._next_page is not None:
            said = _number(self._next_page, response, body)
            # A next page equal to this one is not an end: the engine's loop check
            # stops the poll, where ending would take the listing for complete.
            self.has_next_page = bool(items) and said is not None
            if said is not None:
                self.position = said
            return
        self.position += 1
        self.has_next_page = self._more(response, body, len(items))

    def _items_before(self, position: int) -> int:
        return (position - self.position) * self.page_size


class CursorPaginator(Paginator):
    """An opaque cursor in the body, sent back as a parameter or in the body.

    Slack ``conversations.history`` — an empty string means done::

        {"ok": true, "messages": [...], "has_more": true,
         "response_metadata": {"next_cursor": "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz"}}

    Notion ``POST /v1/search`` with ``{"start_cursor": "{{pageToken}}"}``::

        {"object": "list", "results": [...], "next_cursor": "e2f1…", "has_more": true}

    With ``nextParam`` the cursor becomes that query parameter; without it, it
    fills ``{{pageToken}}`` (Notion's body, Linear's GraphQL ``after``). A
    missing, null or empty cursor ends, as does ``has_more: false``, and so
    does an empty page handing back the cursor it was asked with (an API that
    says "caught up" by staying in place). A cursor this poll has sent already
    alongside items (an API stuck in place, or cycling) is not an end: the
    polling engine stops the poll with an error instead, since taking it for
    the end would store a newest-first listing's high-water mark past the
    pages it never read.
    """

    def __init__(
        self, next_at: ValueAt, *, param: str | None, has_more_path: str | None = None
    ) -> None:
        self._next = next_at
        self._has_more = _path(has_more_path)
        self.param = param
        self.cursor: str | None = None

    def update_state(self, response: httpx.Response, body: Any, items: list[Any]) -> None:
        value = self._next(response, body)
        cursor = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
        if (
            not cursor
            or _flag(self._has_more, body) is False
            or (cursor == self.cursor and not items)  # caught up: nothing new, same place
        ):
            self.has_next_page = False
            return
        self.cursor = cursor

    def resume(self, request: PageRequest) -> None:
        found = request.params.get(self.param) if self.param is not None else request.page_token
        self.cursor = str(found) if found else None

    def update_request(self, request: PageRequest) -> None:
        if self.param is not None:
            request.params[self.param] = self.cursor or ""
        else:
            request.page_token = self.cursor


class LinkHeaderPaginator(Paginator):
    """RFC 8288 ``Link`` header, ``rel="next"`` followed verbatim.

    GitHub (omitted on the last page)::

        Link: <https://api.github.com/repositories/1/issues?page=2&per_page=100>; rel="next",
              <https://api.github.com/repositories/1/issues?page=5&per_page=100>; rel="last"

    Sentry sends both directions on every page and marks the end with
    ``results="false"``::

        Link: <…/issues/?&cursor=0:0:1>; rel="previous"; results="false"; cursor="0:0:1",
              <…/issues/?&cursor=0:100:0>; rel="next"; results="false"; cursor="0:100:0"
    """

    def __init__(self) -> None:
        self.next_url: str | None = None

    def update_state(self, response: httpx.Response, body: Any, items: list[Any]) -> None:
        self.next_url = None
        for link in response.links.values():
            rels = link.get("rel", "").lower().split()
            if "next" not in rels:
                continue
            if link.get("results", "").lower() == "false":
                break
            self.next_url = _joined(str(response.request.url), link.get("url", ""))
            break
        self.has_next_page = bool(self.next_url)

    def update_request(self, request: PageRequest) -> None:
        request.url = self.next_url


class NextUrlPaginator(Paginator):
    """The next page's URL in the body.

    Confluence — relative, under ``_links.base`` (which ends in ``/wiki``)::

        {"results": [...], "_links": {"base": "https://acme.atlassian.net/wiki",
                                      "next": "/rest/api/content/search?cql=type=page&cursor=raNDoM"}}

    Microsoft Graph — absolute::

        {"value": [...], "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/messages?$skiptoken=X"}

    A relative URL is appended to the ``baseUrlPath`` value when given (a plain
    join would drop Confluence's ``/wiki``), else resolved against the request URL.
    """

    def __init__(
        self, next_at: ValueAt, *, base_url_path: str | None, has_more_path: str | None = None
    ) -> None:
        self._next = next_at
        self._base = _path(base_url_path)
        self._has_more = _path(has_more_path)
        self.next_url: str | None = None

    def update_state(self, response: httpx.Response, body: Any, items: list[Any]) -> None:
        value = self._next(response, body)
        self.next_url = None
        if isinstance(value, str) and value and _flag(self._has_more, body) is not False:
            self.next_url = self._absolute(value, body, str(response.request.url))
        self.has_next_page = self.next_url is not None

    def _absolute(self, link: str, body: Any, request_url: str) -> str:
        if _parsed(link).is_absolute_url:
            return link
        base = self._base.first(body) if self._base is not None else MISSING
        if isinstance(base, str) and base and link.startswith("/"):
            return base.rstrip("/") + link
        return _joined(request_url, link)

    def update_request(self, request: PageRequest) -> None:
        request.url = self.next_url


def _parsed(link: str) -> httpx.URL:
    """``link`` as a URL; a next link no URL parser reads (a control character,
    ``http://[oops``) is the API's malformed answer, not a crash inside ucf."""
    try:
        return httpx.URL(link)
    except httpx.InvalidURL as error:
        raise MalformedResponse(f"the next page link {link[:200]!r} is not a URL") from error


def _joined(request_url: str, link: str) -> str:
    """``link`` resolved against the URL of the page that named it."""
    try:
        return urljoin(request_url, link)
    except ValueError as error:  # urljoin: "Invalid IPv6 URL"
        raise MalformedResponse(f"the next page link {link[:200]!r} is not a URL") from error


PaginatorFactory = Callable[[], Paginator]


def _start(initial_query: Mapping[str, str], param: str, default: int) -> int:
    start = _integer(initial_query.get(param, ""))
    return default if start is None else start


def paginator_factory(
    pagination: PaginationView | None, initial_query: Mapping[str, str]
) -> PaginatorFactory:
    """Plan the paginator of a descriptor once; call the result for each poll.

    ``initial_query`` is the endpoint's own ``query``: a value there for the
    offset or page parameter is the first page's (Datadog's ``page=0``).
    """
    if pagination is None:
        return SinglePagePaginator
    p = pagination
    if p.type == "link_header":
        return LinkHeaderPaginator
    next_at = ValueAt(p.next_path or "$.next", p.next_header)
    if p.type == "next_url":
        return lambda: NextUrlPaginator(
            next_at, base_url_path=p.base_url_path, has_more_path=p.has_more_path
        )
    if p.type == "cursor":
        return lambda: CursorPaginator(next_at, param=p.next_param, has_more_path=p.has_more_path)
    param = p.next_param or ("offset" if p.type == "offset" else "page")
    total = ValueAt.of(p.total_path, p.total_header)
    if p.type == "offset":
        start = _start(initial_query, param, 0)
        return lambda: OffsetPaginator(
            param,
            p.page_size,
            start=start,
            total=total,
            has_more_path=p.has_more_path,
        )
    start = _start(initial_query, param, 1)
    next_page = ValueAt(header=p.next_header) if p.next_header else None
    return lambda: PageNumberPaginator(
        param,
        p.page_size,
        start=start,
        total=total,
        has_more_path=p.has_more_path,
        next_page=next_page,
    )
