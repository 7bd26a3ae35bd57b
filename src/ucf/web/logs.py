"""Structured logs for ``ucf serve``: one JSON object a line, each with its request id.

Every record — ours, uvicorn's, httpx's — goes through one handler on the root
logger whose :class:`~ucf.runtime.redaction.RedactionFilter` masks credentials
before formatting, so a log shipper receives nothing a secret scanner would
flag. The request id comes from a context variable the request middleware
sets, so lines logged deep in a use case still say which request they
belong to.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

from ucf.runtime.redaction import install_redaction

REQUEST_ID: ContextVar[str | None] = ContextVar("ucf_request_id", default=None)

FIELDS_ATTRIBUTE: Final = "ucf_fields"
"""``log.info(..., extra={"ucf_fields": {...}})`` adds these keys to the JSON line."""

SERVER_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi")


@functools.cache
def _fast_dumps() -> Callable[[dict[str, Any]], bytes]:
    """orjson's writer, made to hand what json.dumps would write with ``default=str`` to
    ``str`` as well: its own dataclass writer would put every field in the line (a
    ``repr=False`` secret included) and it writes datetimes with a ``T``."""
    import orjson  # on first use: a process that logs nothing does not import it

    option = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    return functools.partial(orjson.dumps, default=str, option=option)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "requestId", ...fields, "exception"}``."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1.0
        self._prefix = ""

    def _timestamp(self, created: float) -> str:
        """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, with
        the date and time of day formatted once per second (a busy server logs many lines
        a second: the access line of each request)."""
        second, fraction = divmod(created, 1.0)
        micros = round(fraction * 1_000_000)
        if micros == 1_000_000:
            second, micros = second + 1, 0
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["requestId"] = request_id
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        # orjson writes a line ~20x faster than json.dumps (it is every request's access
        # line); what it refuses (integers beyond 64 bits, non-str keys, lone surrogates)
        # json writes in the same compact form.
        try:
            return _fast_dumps()(line).decode()
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


def configure_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """JSON lines on stderr for everything, credentials masked; idempotent per process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ucf_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.__dict__["_ucf_json"] = True
    root.addHandler(handler)
    root.setLevel(level)
    # The JSON line shows none of these, and each record would look them up.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
        install_redaction(server_logger)
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    install_redaction(root)
