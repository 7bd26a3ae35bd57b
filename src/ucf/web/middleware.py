"""The one ASGI middleware around every request: id, body limit, access log, metrics, last resort.

Pure ASGI rather than ``BaseHTTPMiddleware`` so a request body is streamed,
never buffered by us, and the webhook gateway can stop reading at its own
limit. What it adds:

- **Request ids.** A sane incoming ``X-Request-Id`` is kept (a proxy's id ties
  logs together), anything else is replaced; the id is echoed in the
  response and in every log line of the request.
- **Body limit.** Management requests may send at most ``body_limit`` bytes;
  the count is kept as the app reads, so chunked bodies are cut too. (The
  gateway enforces its smaller limit itself, after its 404 check.)
- **Access log and metrics** by route template, never by raw path, so ids in
  URLs neither leak into logs nor explode label cardinality.
- **Last resort.** An exception nothing else handled is logged (redacted) with
  its request id and answered with a JSON 500 — never a traceback.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ucf.web.logs import REQUEST_ID
from ucf.web.metrics import Metrics
from ucf.web.refusals import error_json
from ucf.web.request_log import UNMATCHED, incoming_request_id, new_request_id, record_request

log = logging.getLogger("ucf.web")

DEFAULT_BODY_LIMIT: Final = 1024 * 1024


def route_of(scope: Scope) -> str:
    """The matched route's template, e.g. ``/api/projects/{projectId}/signals``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def error_body(code: str, message: str, details: Any = None) -> bytes:
    """The error shape of :func:`ucf.web.errors.error_response`, for raw ASGI answers."""
    return error_json(code, message, details)


class _BodyCounter:
    """Wraps ``receive``: refuses with 413 once more than ``limit`` bytes were read."""

    def __init__(self, receive: Receive, limit: int, declared: str | None) -> None:
        self._receive = receive
        self._limit = limit
        self._declared = declared
        self._seen = 0

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"the request body is larger than {self._limit} bytes")

    async def __call__(self) -> Message:
        declared = self._declared
        if self._seen == 0 and declared is not None and _over(declared, self._limit):
            raise self._too_large()
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                raise self._too_large()
        return message


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        body_limit: int = DEFAULT_BODY_LIMIT,
        unlimited_prefixes: tuple[str, ...] = ("/api/webhooks/",),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit
        self.unlimited_prefixes = unlimited_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = incoming_request_id(scope.get("headers", ())) or new_request_id()
        token = REQUEST_ID.set(request_id)
        state = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
            await send(message)

        path: str = scope.get("path", "")
        if not path.startswith(self.unlimited_prefixes):
            receive = _BodyCounter(receive, self.body_limit, _header(scope, b"content-length"))
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            state["status"] = 499  # nobody to answer; nginx's code for it
        except Exception:
            log.exception("unhandled error answering %s %s", scope.get("method"), route_of(scope))
            if not state["started"]:
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": error_body("internal", f"internal error (request id {request_id})"),
                    }
                )
        finally:
            elapsed = time.perf_counter() - started
            route = route_of(scope)
            status = int(state["status"])
            method = str(scope.get("method", ""))
            record_request(self.metrics, method, route, status, elapsed)
            REQUEST_ID.reset(token)


def _over(declared: str, limit: int) -> bool:
    return declared.isdigit() and int(declared) > limit


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None
