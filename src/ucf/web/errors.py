"""Every refusal as ``{"error": {"code", "message", "details"}}`` with the right status.

Use cases raise :class:`~ucf.service.errors.ServiceError` (status and code on
the class); stores raise typed :class:`~ucf.stores.errors.StoreError`;
Starlette raises ``HTTPException`` for unknown routes and wrong methods;
FastAPI raises ``RequestValidationError`` for bodies and parameters that do
not fit. Each gets one handler here. Two rules hold for all of them:

- nothing a client sent is echoed back (pydantic's ``input``, the raw body of
  a JSON decode error): a credential typed in the wrong field must not come
  back in the error that rejects it;
- 5xx answers say only what to do (retry, look in the logs for the request
  id); the reason, which may name files or hosts, goes to the server log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ucf.service.errors import ServiceError
from ucf.stores.errors import StoreError
from ucf.web.front import route_path
from ucf.web.refusals import Refusal, service_refusal, store_refusal

_HTTP_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """The shape of every error response."""

    error: ErrorDetail


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    content = {"error": {"code": code, "message": message, "details": details}}
    try:
        return JSONResponse(content, status_code=status, headers=dict(headers or {}))
    except UnicodeEncodeError:
        # A path naming what was sent (``credentials.<name>``) may hold a lone surrogate
        # JSON's "\ud800" escape made: no UTF-8 body can carry it, and the refusal
        # was a 500. Written as the escape it came as.
        return JSONResponse(_encodable(content), status_code=status, headers=dict(headers or {}))


def _encodable(value: Any) -> Any:
    """``value`` with every text UTF-8 can encode: a lone surrogate as its ``\\udXXX``."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


async def _service_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    return _service_answer(request, error)


def _service_answer(request: Request, error: ServiceError) -> JSONResponse:
    path = request.url.path
    routed = route_path(request.scope)  # without the prefix ucf is served under
    challenge = routed.startswith("/api/") and not routed.startswith("/api/webhooks/")
    return _json(service_refusal(request.method, path, error, bearer_challenge=challenge))


async def _store_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StoreError)
    return _store_answer(request, error)


def _store_answer(request: Request, error: StoreError) -> JSONResponse:
    return _json(store_refusal(request.method, request.url.path, error))


def _json(refusal: Refusal) -> JSONResponse:
    return error_response(
        refusal.status, refusal.code, refusal.message, refusal.details, refusal.headers
    )


async def _http_exception(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return _http_answer(request, error)


def _http_answer(request: Request, error: HTTPException) -> JSONResponse:
    status = error.status_code
    code = _HTTP_CODES.get(status, "error")
    if status == 404:
        message = f"no such route: {request.method} {request.url.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif isinstance(error.detail, str) and error.detail:
        message = error.detail
    else:
        message = _phrase(status)
    headers = dict(error.headers or {})
    if status == 413:
        headers["Connection"] = "close"  # stop a client still streaming the rest
    return error_response(status, code, message, None, headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _location(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _json_invalid(problem: Mapping[str, Any], body: Any) -> str:
    """Where the body stops being JSON, as ``ucf connectors validate`` says it for a file
    (a descriptor pasted into a script, an editor's buffer): line and column, not just
    "not valid JSON", which left the author to find a stray comma in 300 lines."""
    loc = problem.get("loc", ())
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    reason = (problem.get("ctx") or {}).get("error")
    if position is None or not isinstance(body, str) or not isinstance(reason, str):
        return "the body is not valid JSON"
    line = body.count("\n", 0, position) + 1
    column = position - body.rfind("\n", 0, position)
    return f"the body is not valid JSON: {reason} at line {line} column {column}"


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = []
    for problem in error.errors():
        kind = problem.get("type")
        loc = problem.get("loc", ())
        if kind == "json_invalid":
            details.append({"path": "body", "message": _json_invalid(problem, error.body)})
            continue
        details.append({"path": _location(loc), "message": str(problem.get("msg", "invalid"))})
    return error_response(422, "invalid", "the request is not valid", details)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
