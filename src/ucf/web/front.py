"""The webhook front: ``POST|HEAD /api/webhooks/…`` answered in raw ASGI, before the app.

A delivery needs none of the management app's machinery, and every layer of
it cost CPU per delivery under load (``bench/webhook.py``): FastAPI's and
Starlette's middleware stack, the router, request and response objects. So the
object the server runs (``UcfApp.__call__`` under ``ucf serve``,
:class:`FrontDoor` under Mangum on Lambda) hands each delivery straight to
:class:`WebhookFront`, and everything else to the app unchanged. Neither
FastAPI nor Starlette is imported here: a Lambda that only receives
deliveries never loads or builds the app.

The front keeps every promise the routes in :mod:`ucf.web.webhooks` document
and the app's middleware keeps for other requests:

- the same paths and methods (``/api/webhooks/{connectorId}/{projectId}`` and
  ``…/{hookId}``); another method on those paths is answered 405 here, its
  ``Allow`` naming both (the app's router named the first route's alone, and
  on Lambda a GET built the management app to say so); another depth goes on
  to the app, which answers 404;
- 404 before a byte of the body is read, 413 while it streams in (declared or
  chunked, ``Connection: close``), 408 when it trickles in for longer than
  :data:`BODY_TIMEOUT_SECONDS`, a 400 for a ``Content-Length`` that is not a
  number;
- the app's JSON error shape (:mod:`ucf.web.refusals`), and for anything
  unexpected a logged error and a JSON 500 naming the request id, never a
  traceback; a sender gone mid-body is counted as 499 and answered nothing;
- the request id (a sane incoming ``X-Request-Id`` kept, else a new ULID;
  echoed in the answer and in every log line), the access log line and the
  request metrics by route template (:mod:`ucf.web.request_log`);
- the registered URL (public URL, else the request's own base, plus the raw
  path and query) for schemes that sign it, the client address as the server
  reports it (uvicorn applies trusted proxy headers before the front runs).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    MutableMapping,
)
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from ucf.core.records import datarecord
from ucf.core.webhook import FoldedHeaders
from ucf.service.errors import NotFoundError, ServiceError
from ucf.service.webhooks import (
    NOT_HERE,
    Accepted,
    Delivery,
    HandshakeAnswer,
    Ignored,
    WebhookOutcome,
    read_limited,
    refuse_declared_length,
    too_large,
    webhook_path,
)
from ucf.stores.errors import StoreError
from ucf.web.logs import REQUEST_ID
from ucf.web.refusals import Refusal, error_json, service_refusal, store_refusal
from ucf.web.request_log import new_request_id, record_request, sane_request_id
from ucf.web.state import WebState

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "HOOK_ROUTE",
    "PREFIX",
    "SHARED_ROUTE",
    "BodyTimeout",
    "FrontDoor",
    "WebhookFront",
]

log = logging.getLogger("ucf.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX: Final = "/api/webhooks/"
SHARED_ROUTE: Final = "/api/webhooks/{connectorId}/{projectId}"
HOOK_ROUTE: Final = "/api/webhooks/{connectorId}/{projectId}/{hookId}"
METHODS: Final = frozenset({"POST", "HEAD"})
ALLOW: Final = "POST, HEAD"
"""The ``Allow`` header of a 405 at a gateway route: every method it serves."""

BODY_TIMEOUT_SECONDS = 30.0
"""A delivery trickling in slower than this (at most 256 KB) holds a connection for
nothing: providers send their whole body at once."""

_JSON: Final = (b"content-type", b"application/json")


Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]
"""Status, body, headers."""


class BodyTimeout(ServiceError):
    status = 408
    code = "request_timeout"


class _Disconnected(Exception):
    """The sender went away before its body arrived: nobody to answer."""


@datarecord
class Target:
    """Where a request goes: the route template (metrics label) and its path parameters."""

    route: str
    connector_id: str
    project_id: str
    hook_id: str | None = None
    nowhere: bool = False
    """The decoded path matches a route, the path as sent names no endpoint (404): an
    escaped ``/`` outside a project id (``/api%2Fwebhooks/…``, ``…/github%2Fproj``). The
    app would route the decoded path to the documented routes, which never run. Also a
    method the route does not serve (:func:`misdirected`; 405)."""


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``root_path`` taken off, as Starlette's router does."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def match(scope: Scope) -> Target | None:
    """The gateway route an HTTP request is for, or None (the app's to answer).

    A project id may hold any character, a ``/`` too (``%2F`` in its URL), which the
    decoded ``path`` no longer tells from the path's own. With the ``raw_path`` (uvicorn)
    the escaped segments are read instead. Without one (Mangum: API Gateway decoded the
    path, see :func:`ucf.aws.handlers.api._http_api_path`), a path with more segments
    than a route is read as the instance's own URL of a project id holding ``/``:
    connector ids never hold one, ucf's hook ids neither.
    """
    if scope.get("method") not in METHODS:
        return None
    return _gateway_target(scope)


def misdirected(scope: Scope) -> Target | None:
    """The gateway route an HTTP request asks for with a method it does not serve (a GET
    of a webhook URL, pasted into a browser), or None: answered 405 by the front."""
    if scope.get("method") in METHODS:
        return None
    found = _gateway_target(scope)
    # Read as a target that names no endpoint: its one branch in the delivery tells the
    # 405 from the 404, and a delivery (POST, HEAD) pays no check of its method.
    return None if found is None else _NOWHERE[found.route]


def _gateway_target(scope: Scope) -> Target | None:
    path = route_path(scope)
    if not path.startswith(PREFIX):
        return None
    raw = scope.get("raw_path")
    if raw is None:
        return _decoded_target(path[len(PREFIX) :])
    if b"%" in raw and (b"%2F" in raw or b"%2f" in raw):  # most hook URLs hold no escape
        found = _escaped_target(raw, scope.get("root_path", ""))
        if found is not None:
            return found
        decoded = _target(path[len(PREFIX) :])
        return None if decoded is None else _NOWHERE[decoded.route]
    return _target(path[len(PREFIX) :])


@functools.lru_cache(maxsize=1024)
def _target(rest: str) -> Target | None:
    """The target of a path after :data:`PREFIX`. A provider delivers to the same few URLs
    over and over: each is split once, not per delivery. Bounded, so paths a sender
    makes up cannot grow it."""
    return _routed(rest.split("/"))


def _routed(parts: list[str]) -> Target | None:
    if not all(parts):
        return None
    if len(parts) == 2:
        return Target(SHARED_ROUTE, parts[0], parts[1])
    if len(parts) == 3:
        return Target(HOOK_ROUTE, parts[0], parts[1], parts[2])
    return None


_NOWHERE: Final = {
    route: Target(route, "", "", None, nowhere=True) for route in (SHARED_ROUTE, HOOK_ROUTE)
}
"""A route's answer for a path as sent that names no endpoint (:attr:`Target.nowhere`)."""


@functools.lru_cache(maxsize=256)
def _escaped_target(raw: bytes, root_path: str) -> Target | None:
    """The target of a raw path whose segments hold an escaped ``/``: split, then each
    segment decoded (as uvicorn decodes the whole path)."""
    text = raw.decode("latin-1")
    if root_path and text.startswith(root_path + "/"):
        text = text[len(root_path) :]
    if not text.startswith(PREFIX):  # the prefix itself escaped
        return None
    return _routed([unquote(part) for part in text[len(PREFIX) :].split("/")])


@functools.lru_cache(maxsize=256)
def _decoded_target(rest: str) -> Target | None:
    """The target of a path API Gateway decoded: a ``%2F`` of the project id is a ``/``
    by now, so the first segment is the connector, the last the hook id, and the
    segments between them the project. (The shared URL of such a project is read as its
    own URL, whose hook id it lacks: 404. The instance's own URL is what ucf hands out.)"""
    parts = rest.split("/")
    if len(parts) <= 3:
        return _target(rest)
    if not (parts[0] and parts[-1]):
        return None
    # Empty segments between them are the project's own: ``/x``, ``x/`` and ``a//b`` are
    # ``%2Fx``, ``x%2F`` and ``a%2F%2Fb`` in their URLs.
    return Target(HOOK_ROUTE, parts[0], "/".join(parts[1:-1]), parts[-1])


class Headers(FoldedHeaders):
    """Request headers by case-insensitive name; of repeated headers, the first (as
    Starlette's ``Headers`` answers a lookup). Values decoded as latin-1, so a verifier
    can encode them back to the bytes that were sent. Names folded once, here."""

    __slots__ = ()

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        values: dict[str, str] = {}
        names = _HEADER_NAMES
        for key, value in raw:
            values.setdefault(names.get(key) or _folded_name(key), value.decode("latin-1"))
        self.folded = values  # FoldedHeaders.__init__, without super()'s call


_HEADER_NAMES: dict[bytes, str] = {}
"""Header names as sent -> folded: a provider sends the same few names with every
delivery, each decoded and lowered once instead of per delivery (1.3 -> 0.9 µs for a
GitHub delivery's eight headers alone)."""
MAX_HEADER_NAMES: Final = 512
"""Names remembered at most: names a sender makes up are folded each time past these."""


def _folded_name(key: bytes) -> str:
    name = key.decode("latin-1").lower()
    if len(_HEADER_NAMES) < MAX_HEADER_NAMES:
        _HEADER_NAMES[key] = name
    return name


class _BaseUrl:
    """The request's own base URL (scheme, host, root path), as Starlette's
    ``request.base_url`` gives it, for servers without a public URL. The last one is
    remembered: a server is reached under one name, and the Host header is the
    sender's to choose, so nothing grows with what senders send."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value = ""

    def __call__(self, scope: Scope) -> str:
        host = next((value for key, value in scope["headers"] if key == b"host"), None)
        root_path = scope.get("app_root_path", scope.get("root_path", ""))
        key = (scope.get("scheme", "http"), host, scope.get("server"), root_path)
        if key != self._key:
            path = root_path if root_path.endswith("/") else root_path + "/"
            self._value = _url_of(scope.get("scheme", "http"), host, scope.get("server"), path)
            self._key = key
        return self._value


# Starlette's ``URL(scope=…)`` rules (starlette/datastructures.py, Starlette 1.x), written out
# because importing it loads anyio, ~12 ms of a Lambda's cold delivery: a Host header
# that is no valid host[:port] is ignored for the server's address. A test holds the two
# equal on the cases these rules tell apart.
_HOST = re.compile(
    r"^(?P<host>[a-z0-9._~%!$&'()*+,;=-]+|\[(?:(?P<ipv6>[a-f0-9]*:[a-f0-9.:]+)|"
    r"(?-i:v)[a-f0-9]+\.[a-z0-9._~!$&'()*+,;=:-]+)\])(?::(?P<port>[0-9]+))?$",
    re.IGNORECASE,
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _authority(host_header: bytes | None) -> str | None:
    """``host[:port]`` from a Host header, or None when it is not a valid one."""
    if host_header is None:
        return None
    text = host_header.decode("latin-1")
    found = _HOST.fullmatch(text)
    if found is None:
        return None
    if found["ipv6"] is not None:
        from ipaddress import AddressValueError, IPv6Address

        try:
            IPv6Address(found["ipv6"])
        except AddressValueError:
            return None
    port = found["port"]
    if port is None:
        return str(found["host"])
    digits = port.lstrip("0")
    if len(digits) > 5 or int(digits or "0") > 65535:
        return None
    return f"{found['host']}:{port}"


def _url_of(scheme: str, host_header: bytes | None, server: Any, path: str) -> str:
    """The URL Starlette builds from a scope with this scheme, Host, server and path (no
    query), without the trailing slash."""
    path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    netloc = _authority(host_header)
    if netloc is None and server is not None:
        host, port = server
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        netloc = host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if netloc is not None:
        return f"{scheme}://{netloc}{path}".rstrip("/")
    if path.startswith("//"):
        path = "/%2F" + path[2:]  # without a host, a leading // would read as one
    return path.rstrip("/")


class _Deadlines:
    """The body deadlines of the deliveries being read, kept by one timer.

    ``asyncio.timeout`` per delivery scheduled and cancelled a timer handle and
    built its context manager each time (~3 % of the front's time under wrk),
    for a deadline almost never reached: bodies arrive whole, at once. Here a
    delivery only records its deadline; one timer, armed while any is
    recorded, wakes every :meth:`tick` seconds and cancels the tasks past
    theirs, which :meth:`expired` then tells from any other cancellation (as
    ``asyncio.timeout`` does, the cancellation is taken back with
    ``uncancel``, and one that came from anywhere else as well, a shutdown, is
    left to propagate). A deadline is enforced within one tick after it passes.
    """

    __slots__ = ("_due", "_expired", "_loop", "_timer")

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], tuple[float, int]] = {}
        """Task -> (deadline, its ``cancelling()`` when it started reading)."""
        self._expired: dict[asyncio.Task[Any], int] = {}
        """Tasks cancelled by the sweep -> their ``cancelling()`` when they started."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @staticmethod
    def tick(seconds: float) -> float:
        return min(1.0, max(0.01, seconds / 8))

    def start(self, task: asyncio.Task[Any], seconds: float) -> None:
        loop = task.get_loop()
        if loop is not self._loop:  # a new loop (a test's, a Lambda invocation's)
            self._due.clear()
            self._expired.clear()
            self._loop, self._timer = loop, None
        self._due[task] = (loop.time() + seconds, task.cancelling())
        if self._timer is None:
            self._timer = loop.call_later(self.tick(seconds), self._sweep, seconds)

    def stop(self, task: asyncio.Task[Any]) -> None:
        """``task`` done reading. Cancelled for its deadline but never told so by
        :meth:`expired` (its body came all the same: a ``receive`` handed it over
        when the cancellation reached it), its cancellation is taken back, as
        ``asyncio.timeout`` does on the way out: left counted, the task's next
        timeout or task group would take itself for cancelled."""
        self._due.pop(task, None)
        if self._expired.pop(task, None) is not None:
            task.uncancel()

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled for its deadline alone (then it is no longer
        cancelled: the caller answers 408). Also cancelled by anything else (a shutdown
        in the same moment) it stays cancelled, as ``asyncio.timeout`` leaves it."""
        started = self._expired.pop(task, None)
        if started is None:
            return False
        return task.uncancel() <= started

    def _sweep(self, seconds: float) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for task, (due, started) in list(self._due.items()):
            if due <= now:
                del self._due[task]
                self._expired[task] = started
                task.cancel()
        self._timer = (
            loop.call_later(self.tick(seconds), self._sweep, seconds) if self._due else None
        )


class WebhookFront:
    """Answers one webhook delivery in raw ASGI (see the module docstring).

    ``state``: the running app's :class:`~ucf.web.state.WebState` (the gateway, the
    metrics, the public URL), read per request because the app's lifespan builds it.
    """

    def __init__(self, state: Callable[[], WebState]) -> None:
        self._state = state
        self._base_url = _BaseUrl()
        self._deadlines = _Deadlines()

    async def answered(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if it is a delivery; False leaves it to the app."""
        if scope["type"] != "http":
            return False
        target = match(scope) or misdirected(scope)
        if target is None:
            return False
        await self(target, scope, receive, send)
        return True

    async def __call__(self, target: Target, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = Headers(scope.get("headers", ()))
        sent = headers.folded.get("x-request-id")
        request_id = (sent is not None and sane_request_id(sent)) or new_request_id()
        token = REQUEST_ID.set(request_id)
        method: str = scope["method"]
        status = 500
        answered = False
        state: WebState | None = None
        try:
            state = self._state()
            # A refusal's 5xx log line names the route template, never the path: the
            # instance's own URL ends in its hook id, as secret as a credential.
            try:
                status, body, extra = await self._deliver(state, target, scope, receive, headers)
            except ServiceError as error:
                status, body, extra = self._refused(service_refusal(method, target.route, error))
            except StoreError as error:
                status, body, extra = self._refused(store_refusal(method, target.route, error))
            extra.append((b"x-request-id", request_id.encode()))
            answered = True
            await send({"type": "http.response.start", "status": status, "headers": extra})
            await send({"type": "http.response.body", "body": body})
        except _Disconnected:
            status = 499  # nobody to answer; nginx's code for it
        except Exception:
            log.exception("unhandled error answering %s %s", method, target.route)
            status = 500
            if not answered:
                body = error_json("internal", f"internal error (request id {request_id})")
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            _JSON,
                            (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", request_id.encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            try:
                if state is not None:
                    elapsed = time.perf_counter() - started
                    record_request(state.metrics, method, target.route, status, elapsed)
            finally:
                REQUEST_ID.reset(token)

    async def _deliver(
        self, state: WebState, target: Target, scope: Scope, receive: Receive, headers: Headers
    ) -> Answer:
        if target.nowhere:
            method = scope["method"]
            if method not in METHODS:  # checked here only: a delivery never pays for it
                return self._refused(
                    Refusal(
                        405,
                        "method_not_allowed",
                        f"{method} is not allowed on a webhook URL: it answers {ALLOW}",
                        headers={"Allow": ALLOW},
                    )
                )
            raise NotFoundError(NOT_HERE)
        gateway = state.gateway
        found = gateway.cached_target(
            target.connector_id, target.project_id, target.hook_id
        ) or await gateway.target(target.connector_id, target.project_id, target.hook_id)
        task = asyncio.current_task()
        assert task is not None  # an ASGI app runs in a task
        deadlines = self._deadlines
        deadlines.start(task, BODY_TIMEOUT_SECONDS)
        try:
            limit = gateway.max_bytes
            refuse_declared_length(limit, headers.folded.get("content-length"))
            first = await receive()
            body = _whole(first, limit)
            if body is None:
                body = await read_limited(
                    _chunks(receive, first), limit=limit, declared_length=None
                )
        except asyncio.CancelledError:
            if deadlines.expired(task):
                raise BodyTimeout(
                    f"the body did not arrive within {BODY_TIMEOUT_SECONDS:.0f} s"
                ) from None
            raise
        finally:
            deadlines.stop(task)
        query = scope.get("query_string", b"")
        client = scope.get("client")
        delivery = Delivery(  # method, body, headers, query, url, client
            scope["method"],
            body,
            headers,
            dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {},
            self._registered_url(state, scope, query, target) if found.needs_url else "",
            client[0] if client else None,
        )
        return _rendered(await gateway.receive(found, delivery))

    def _registered_url(self, state: WebState, scope: Scope, query: bytes, target: Target) -> str:
        """The URL the provider was given: the public base (if set; its path is the prefix
        ucf is served under) plus the app's path and query as sent (Trello signs it).

        Without ``raw_path`` (Mangum gives none, and API Gateway's HTTP API hands the
        path over decoded anyway), the path is the one ucf showed for the target
        (:func:`ucf.service.webhooks.webhook_path`): a project id with a space, an
        accent, a ``%`` or a ``/`` is in the signed URL as ``%20``, ``%C3%A9``, ``%25``
        or ``%2F``.
        """
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes):
            path = raw_path.decode("latin-1")
            # uvicorn's raw_path starts with its root_path (``--root-path``), which the
            # base below already ends with: once, not twice (/ucf/ucf/api/webhooks/…).
            root_path: str = scope.get("root_path", "")
            if root_path and path.startswith(root_path + "/"):
                path = path[len(root_path) :]
        else:
            path = webhook_path(target.connector_id, target.project_id, target.hook_id)
        base = state.public_url.rstrip("/") if state.public_url else self._base_url(scope)
        return base + path + ("?" + query.decode("latin-1") if query else "")

    @staticmethod
    def _refused(refusal: Refusal) -> Answer:
        body = refusal.body()
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers.items()
        ]
        headers += [(b"content-length", str(len(body)).encode()), _JSON]
        return refusal.status, body, headers


def _whole(first: Message, limit: int) -> bytes | None:
    """The body if the first message holds all of it (under ``limit``: 413 otherwise),
    else None: the rest streams in (:func:`read_limited`'s promises). A delivery's body
    usually arrives whole in the first message: it is taken as it is, without the
    stream's generator and copy (and without a coroutine of its own)."""
    if first["type"] == "http.request" and not first.get("more_body", False):
        body: bytes = first.get("body", b"")
        if len(body) > limit:
            raise too_large(limit)
        return body
    return None


async def _chunks(receive: Receive, message: Message) -> AsyncIterator[bytes]:
    """The body as it streams in from ``message`` on; a disconnect ends the request
    (Starlette's ``stream()``)."""
    while True:
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
        elif kind == "http.disconnect":
            raise _Disconnected
        message = await receive()


def _rendered(outcome: WebhookOutcome) -> Answer:
    """An outcome as Starlette's ``Response``/``JSONResponse`` would send it."""
    if isinstance(outcome, HandshakeAnswer):
        answer = outcome.response
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
        ]
        names = {name for name, _ in headers}
        body = answer.body
        if b"content-length" not in names and not (
            answer.status < 200 or answer.status in (204, 304)
        ):
            headers.append((b"content-length", str(len(body)).encode()))
        content_type = answer.media_type
        if content_type is not None and b"content-type" not in names:
            if content_type.startswith("text/") and "charset=" not in content_type.lower():
                content_type += "; charset=utf-8"
            headers.append((b"content-type", content_type.encode("latin-1")))
        return answer.status, body, headers
    body, length = _json_body(outcome)
    return outcome.status, body, [(b"content-length", length), _JSON]


_BODIES: dict[tuple[int, int, int, int, int] | str, tuple[bytes, bytes]] = {}
MAX_BODIES: Final = 256


def _json_body(outcome: Accepted | Ignored) -> tuple[bytes, bytes]:
    """An outcome's JSON body and its length. Under load most deliveries end in the same
    few outcomes (``{"received":1,"inserted":1,"duplicates":0}``): each is written once,
    not once per delivery. Bounded (emptied when full), so event types a sender makes up
    cannot grow it. Keyed by the outcome's fields (an ignored one's event type), not the
    record itself: hashing and comparing a record are two Python calls."""
    key = (
        outcome.event_type
        if isinstance(outcome, Ignored)
        else (
            outcome.received,
            outcome.inserted,
            outcome.duplicates,
            outcome.item_errors,
            outcome.skipped,
        )
    )
    found = _BODIES.get(key)
    if found is None:
        body = json.dumps(
            outcome.to_json(), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
        if len(_BODIES) >= MAX_BODIES:
            _BODIES.clear()
        found = _BODIES[key] = (body, str(len(body)).encode())
    return found


class FrontDoor:
    """An ASGI app: deliveries to the front, everything else to the app, built on first need.

    For Mangum on Lambda: a function that only ever receives deliveries never
    imports or builds the management app. ``app`` is awaited once (concurrent
    first requests share the one build).
    """

    def __init__(self, front: WebhookFront, app: Callable[[], Awaitable[ASGIApp]]) -> None:
        self.front = front
        self._load = app
        self._app: ASGIApp | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self.front.answered(scope, receive, send):
            return
        app = self._app
        if app is None:
            try:
                app = await self._built()
            except Exception as error:
                if scope["type"] != "http":
                    raise
                # Not the request's fault, and the next one builds again (an unreadable
                # admin token secret): a JSON 503, not a traceback through Mangum.
                log.error("answered 503: the management app could not be built: %s", error)
                await _unavailable(send)
                return
        await app(scope, receive, send)

    async def _built(self) -> ASGIApp:
        async with self._lock:  # a failed build raises and is tried again next time
            if self._app is None:
                self._app = await self._load()
            return self._app


async def _unavailable(send: Send) -> None:
    body = error_json(
        "unavailable", "this server cannot answer management requests yet; try again shortly"
    )
    headers = [_JSON, (b"content-length", str(len(body)).encode()), (b"retry-after", b"5")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
