"""Redirects, followed by ucf and not by httpx, so credentials never change origin.

httpx strips only ``Authorization`` when a redirect leaves the origin; the
credentials a descriptor places elsewhere — ``X-Api-Key``, Datadog's
``DD-API-KEY``, Trello's ``?key=…&token=…``, anything ``extraHeaders`` adds —
went along to whatever host the upstream named. Here the rule is simple:
credentials belong to the origin the request was addressed to (scheme, host,
port; an ``http`` → ``https`` upgrade of the same host counts as the same
origin, as in httpx and browsers).

* A hop back to that origin is sent like the first request: the auth flow runs
  again and puts every credential back (OAuth refresh included).
* A hop to any other origin is sent *without* the auth flow and without any
  header that looks like a credential (see
  :data:`~ucf.runtime.redaction.SENSITIVE_HEADERS`), so nothing placed by the
  descriptor or the caller follows it. A hop that would have to resend a
  request body elsewhere (307/308 after a POST: a token request's form carries
  the client secret) is refused instead.

Every hop goes through the same SSRF-guarded transport, so each one is
resolved and checked again.
"""

from __future__ import annotations

import re
from typing import Final

import httpx

from ucf.core.records import datarecord
from ucf.runtime.redaction import SENSITIVE_HEADERS

__all__ = ["Hop", "Origin", "RedirectRefused", "next_hop", "same_origin"]

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

_CREDENTIAL_HEADER: Final = re.compile(rf"(?:{SENSITIVE_HEADERS})", re.IGNORECASE)
# Never copied from one hop to the next: recomputed for the new URL and body.
_PER_HOP_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding"})
_BODY_HEADERS: Final = frozenset({"content-type", "content-encoding"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class RedirectRefused(ValueError):
    """A redirect ucf will not follow; the message names hosts, never paths or queries."""


def _port(url: httpx.URL) -> int | None:
    return url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme)


def same_origin(origin: httpx.URL, url: httpx.URL) -> bool:
    """Whether credentials for ``origin`` may go to ``url``.

    Same scheme, host and port — or the same host upgraded from http on 80 to
    https on 443.
    """
    if origin.host != url.host:
        return False
    if origin.scheme == url.scheme:
        return _port(origin) == _port(url)
    return (origin.scheme, _port(origin), url.scheme, _port(url)) == ("http", 80, "https", 443)


@datarecord
class Origin:
    """The first request of an attempt as the caller built it, before auth touched it.

    Auth flows edit the request they are given (headers, query parameters), so
    this snapshot is what later hops are rebuilt from.
    """

    url: httpx.URL
    method: str
    headers: tuple[tuple[str, str], ...]
    content: bytes

    @classmethod
    def of(cls, request: httpx.Request) -> Origin:
        return cls(
            request.url, request.method, tuple(request.headers.multi_items()), request.content
        )


@datarecord
class Hop:
    """The next request of a redirect chain, and whether it carries credentials."""

    method: str
    url: httpx.URL
    headers: list[tuple[str, str]]
    content: bytes | None
    credentials: bool


def _method(method: str, status: int) -> str:
    """What browsers (and httpx) do: 303 always, 302 and a POST's 301 become GET."""
    if (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST"):
        return "GET"
    return method


def _location(current: httpx.Request, response: httpx.Response) -> httpx.URL:
    text = response.headers.get("location", "")
    try:
        url = httpx.URL(text)
        if url.scheme and not url.host:  # "https:/path": as httpx, keep the current host
            url = url.copy_with(host=current.url.host)
        if url.is_relative_url:
            url = current.url.join(url)
    except httpx.InvalidURL:
        raise RedirectRefused(
            f"HTTP {response.status_code} redirect with an unusable Location header"
        ) from None
    return url.copy_with(fragment=None)


def next_hop(origin: Origin, current: httpx.Request, response: httpx.Response) -> Hop:
    """The request that follows ``response`` (a 3xx with a Location) to ``current``."""
    url = _location(current, response)
    method = _method(current.method, response.status_code)
    keeps_body = method == current.method
    content = origin.content if keeps_body and origin.content else None
    credentials = same_origin(origin.url, url)
    if not credentials and content is not None:
        raise RedirectRefused(
            f"HTTP {response.status_code} redirect from {current.url.host} to {url.host}, another"
            " origin, would resend the request body there; refused, since a body may carry"
            " credentials"
        )
    headers = [
        (name, value)
        for name, value in origin.headers
        if name.lower() not in _PER_HOP_HEADERS
        and (keeps_body or name.lower() not in _BODY_HEADERS)
        and (credentials or not _CREDENTIAL_HEADER.fullmatch(name))
    ]
    return Hop(method, url, headers, content, credentials)
