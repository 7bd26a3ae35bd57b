"""What a refused request is answered with: status, JSON error body, headers.

The one place that turns a :class:`~ucf.service.errors.ServiceError` or a
:class:`~ucf.stores.errors.StoreError` into an answer. It imports neither
FastAPI nor Starlette: the app's exception handlers (:mod:`ucf.web.errors`)
wrap it in a ``JSONResponse``, the webhook front (:mod:`ucf.web.front`) sends
its bytes itself. Two rules hold for both:

- nothing a client sent is echoed back;
- 5xx answers say only what to do (retry, look in the logs for the request
  id); the reason, which may name files or hosts, goes to the server log.
"""

from __future__ import annotations

import json
import logging
from dataclasses import field
from typing import Any

from ucf.core.records import datarecord
from ucf.service.errors import ServiceError
from ucf.service.webhooks import RateLimitExceeded
from ucf.stores.errors import (
    AlreadyExists,
    InvalidCursor,
    InvalidRecord,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from ucf.web.logs import REQUEST_ID

__all__ = ["Refusal", "error_json", "service_refusal", "store_refusal"]

log = logging.getLogger("ucf.web")


def error_json(code: str, message: str, details: Any = None) -> bytes:
    """``{"error": {"code", "message", "details"}}`` as Starlette's ``JSONResponse`` renders it."""
    return json.dumps(
        {"error": {"code": code, "message": message, "details": details}},
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
    ).encode()


@datarecord
class Refusal:
    status: int
    code: str
    message: str
    details: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        return error_json(self.code, self.message, self.details)


def request_id() -> str:
    return REQUEST_ID.get() or "-"


def service_refusal(
    method: str, path: str, error: ServiceError, *, bearer_challenge: bool = False
) -> Refusal:
    """``bearer_challenge``: a 401 of the management API names its scheme (never the
    gateway's: a webhook sender has no bearer token to offer)."""
    headers: dict[str, str] = {}
    if isinstance(error, RateLimitExceeded):
        headers["Retry-After"] = str(error.retry_after_seconds)
    if error.status == 401 and bearer_challenge:
        headers["WWW-Authenticate"] = "Bearer"
    if error.status == 413:
        headers["Connection"] = "close"  # stop a client still streaming the rest
    if error.status >= 500:
        log.error("%s %s: %s", method, path, error.message)
        return Refusal(
            error.status,
            error.code,
            f"the server cannot handle this right now (request id {request_id()})",
        )
    return Refusal(error.status, error.code, error.message, error.details, headers)


def store_refusal(method: str, path: str, error: StoreError) -> Refusal:
    if isinstance(error, InvalidCursor):
        return Refusal(400, "invalid_cursor", "the cursor is not one this server issued")
    if isinstance(error, NotFound):
        return Refusal(404, "not_found", "not found")
    if isinstance(error, AlreadyExists):
        return Refusal(409, "conflict", "it already exists")
    if isinstance(error, InvalidRecord):
        return Refusal(422, "invalid", error.problem)
    status = 503 if isinstance(error, StoreUnavailable) else 500
    log.error("store error answering %s %s: %s", method, path, error)
    return Refusal(
        status,
        "store_unavailable" if status == 503 else "store_error",
        f"the store could not complete the request (request id {request_id()}); try again",
    )
