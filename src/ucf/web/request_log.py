"""Request ids, the access log line and the request metrics: the same for every request.

Shared by :class:`~ucf.web.middleware.RequestMiddleware` (the management
app) and :class:`~ucf.web.front.WebhookFront` (webhook deliveries), which
answers without the app's middleware; neither FastAPI nor Starlette is
imported here, so the front stays free of them on Lambda.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Final

from ulid import ULID

from ucf.runtime.redaction import REDACTED_ATTRIBUTE
from ucf.web.logs import FIELDS_ATTRIBUTE
from ucf.web.metrics import Metrics

__all__ = ["UNMATCHED", "incoming_request_id", "new_request_id", "record_request"]

access = logging.getLogger("ucf.web.access")

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
UNMATCHED: Final = "unmatched"
OTHER_METHOD: Final = "OTHER"
_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
)
"""RFC 9110's methods and PATCH: any other token a server passes on (uvicorn's h11
mode passes every one) is counted and logged as ``OTHER``, so a client cannot
grow the metric's label set, or fill the access log, with made-up methods."""


def incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """A sane incoming ``X-Request-Id`` (a proxy's id ties logs together), else None."""
    for key, value in headers:
        if key == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.fullmatch(text) else None
    return None


def new_request_id() -> str:
    return str(ULID())


def record_request(metrics: Metrics, method: str, route: str, status: int, seconds: float) -> None:
    """Count the request by route template (never the raw path) and log its access line."""
    if method not in _METHODS:
        method = OTHER_METHOD
    metrics.observe_request(method, route, status, seconds)
    if not access.isEnabledFor(logging.INFO):
        return
    # Made here rather than by access.info(): no caller lookup (the line names its
    # route, not a source line), and no redaction pass over a message built only from a
    # method, a route template and a status, none of which can hold a secret.
    record = access.makeRecord(
        access.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %d",
        (method, route, status),
        None,
        extra={
            FIELDS_ATTRIBUTE: {
                "method": method,
                "route": route,
                "status": status,
                "durationMs": round(seconds * 1000, 2),
            },
            REDACTED_ATTRIBUTE: True,
        },
    )
    access.handle(record)
