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
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

from ucf.runtime.redaction import RedactionFilter, install_redaction

REQUEST_ID: ContextVar[str | None] = ContextVar("ucf_request_id", default=None)

FIELDS_ATTRIBUTE: Final = "ucf_fields"
"""``log.info(..., extra={"ucf_fields": {...}})`` adds these keys to the JSON line."""

SERVER_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi")


@functools.cache
def _fast_dumps() -> Callable[[Any], bytes]:
    """orjson's writer, made to hand what json.dumps would write with ``default=str`` to
    ``str`` as well: its own dataclass writer would put every field in the line (a
    ``repr=False`` secret included) and it writes datetimes with a ``T``."""
    import orjson  # on first use: a process that logs nothing does not import it

    option = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    return functools.partial(orjson.dumps, default=str, option=option)


_ACCESS_PARTS_MAX: Final = 1024
_MILLISECONDS: Final = tuple(f".{n:03d}+00:00" for n in range(1000))
"""A timestamp's tail for each millisecond, written once instead of formatted per line."""


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "requestId", ...fields, "exception"}``."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp: tuple[float, str] = (-1.0, "")
        """(second, its date and time of day), read and replaced as one: the access line
        is formatted outside the handler's lock (:class:`DirectLine`) while other
        threads format their records inside it, and a second and a prefix kept apart
        could be read half-replaced (a line stamped a second off)."""
        self._access: dict[tuple[str, str, str, int], tuple[str, str]] = {}

    def _timestamp(self, created: float) -> str:
        """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, with
        the date and time of day formatted once per second (a busy server logs many lines
        a second: the access line of each request)."""
        second, fraction = divmod(created, 1.0)
        micros = round(fraction * 1_000_000)
        if micros == 1_000_000:
            second, micros = second + 1, 0
        stamped, prefix = self._stamp
        if second != stamped:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._stamp = (second, prefix)
        return prefix + _MILLISECONDS[micros // 1000]

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        return self.line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            fields if isinstance(fields, dict) else None,
            record.exc_text or None,
        )

    def access_line(
        self, created: float, logger: str, method: str, route: str, status: int, milliseconds: float
    ) -> str:
        """:meth:`line` of an access line (message ``"{method} {route} {status}"``, fields
        ``method``, ``route``, ``status``, ``durationMs``: ``milliseconds`` rounded to two
        places), written into a template: every request has one, and the dict and
        orjson's pass over it were a third of it (1.56 → 1.08 µs alone). The parts
        around the request id and the duration are made once per logger, method, route
        template and status (a bounded set; the cache is emptied if it ever fills); a
        request id or a duration a template could not write as orjson would go through
        :meth:`line`. A test holds the two equal."""
        request_id = REQUEST_ID.get()
        key = (logger, method, route, status)
        parts = self._access.get(key)
        if (
            parts is None
            or (request_id is not None and not _plain(request_id))
            or not 0.0 <= milliseconds < MAX_TEMPLATE_MILLISECONDS
        ):
            message = f"{method} {route} {status}"
            fields: dict[str, Any] = {"method": method, "route": route, "status": status}
            if parts is None and type(status) is int:
                self._access_parts(key, message, fields)
            fields["durationMs"] = round(milliseconds, 2)
            return self.line(created, "info", logger, message, fields)
        head, tail = parts
        duration = _two_places(milliseconds)
        if request_id is None:
            return f'{{"ts":"{self._timestamp(created)}"{head}{tail}{duration}}}'
        return (
            f'{{"ts":"{self._timestamp(created)}"{head},"requestId":"{request_id}"'
            f"{tail}{duration}}}"
        )

    def _access_parts(
        self, key: tuple[str, str, str, int], message: str, fields: dict[str, Any]
    ) -> None:
        """The JSON around an access line's request id and duration, as orjson writes it."""
        dumps = _fast_dumps()
        head = (
            f',"level":"info","logger":{dumps(key[0]).decode()},"message":{dumps(message).decode()}'
        )
        tail = "".join(
            f",{dumps(name).decode()}:{dumps(value).decode()}" for name, value in fields.items()
        )
        if len(self._access) >= _ACCESS_PARTS_MAX:
            self._access.clear()
        self._access[key] = (head, tail + ',"durationMs":')

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: dict[str, Any] | None = None,
        exception: str | None = None,
    ) -> str:
        """The JSON line of a record with these parts (:meth:`format`, and the access
        line's fallback in :meth:`access_line`, which has no record to hand)."""
        line: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["requestId"] = request_id
        if fields is not None:
            line.update(fields)
        if exception:
            line["exception"] = exception
        # orjson writes a line ~20x faster than json.dumps (it is every request's access
        # line); what it refuses (integers beyond 64 bits, non-str keys, lone surrogates)
        # json writes in the same compact form.
        try:
            return _fast_dumps()(line).decode()
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class DirectLine:
    """Writes an INFO line of one logger straight to ucf's own handler, when that handler
    is the only place the record would go; otherwise says so and the caller logs it.

    The access line is written for every request. Through ``logging`` it costs a
    ``LogRecord`` (a dozen attributes, the clock, the thread and process
    lookups switched off but still tested), the logger's and the handler's
    filter passes and two lock round trips before the formatter runs: about
    half of the line's cost. When the logger's records can only reach the JSON
    handler :func:`configure_logging` installs (no handler added to the logger
    or an ancestor it propagates to, no filter but the redaction filter, which
    passes a line marked as holding no secret, the handler's level and
    formatter as installed), the same line is written to the same stream under
    the handler's lock. Any other configuration a user makes (another handler,
    a filter, a level, ``logging.disable``, a replaced formatter or stream) is
    seen on the next line, which then goes through ``logging`` as before.
    """

    __slots__ = ("_logger", "_name")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._name = logger.name

    def write_access(self, method: str, route: str, status: int, milliseconds: float) -> bool:
        """Write the access line (:meth:`JsonFormatter.access_line`) if only ucf's handler
        would take it; False: log it instead. The caller has checked ``isEnabledFor(INFO)``.

        Written under the handler's lock and failing as ``StreamHandler.emit`` does;
        the stream is flushed as ``StreamHandler.flush`` would, without taking the lock a
        second time, and the message that names the line to ``handleError`` is made only
        for it (every request writes one of these lines)."""
        handler = self._sole_handler()
        if handler is None:
            return False
        formatter = handler.formatter
        assert isinstance(formatter, JsonFormatter)
        created = time.time()
        try:
            line = formatter.access_line(created, self._name, method, route, status, milliseconds)
            lock = handler.lock  # Handler.acquire() and release(), without their calls
            if lock:
                lock.acquire()
            try:
                stream = handler.stream
                stream.write(line + handler.terminator)
                if stream and hasattr(stream, "flush"):  # StreamHandler.flush, lock held
                    stream.flush()
            finally:
                if lock:
                    lock.release()
        except RecursionError:  # as StreamHandler.emit
            raise
        except Exception:
            message = f"{method} {route} {status}"
            handler.handleError(
                self._logger.makeRecord(self._name, logging.INFO, "(direct)", 0, message, (), None)
            )
        return True

    def _sole_handler(self) -> logging.StreamHandler[Any] | None:
        """ucf's JSON handler if the logger's INFO records reach it and nothing else."""
        logger: logging.Logger | None = self._logger
        filters = self._logger.filters
        if filters and not _only_redaction(filters):  # the usual case: none, and no call
            return None
        found: logging.Handler | None = None
        while logger is not None:
            handlers = logger.handlers
            if handlers:
                if found is not None or len(handlers) > 1:
                    return None
                found = handlers[0]
            if not logger.propagate:
                break
            logger = logger.parent
        if (
            type(found) is not logging.StreamHandler
            or not found.__dict__.get("_ucf_json", False)
            or found.level > logging.INFO
            or type(found.formatter) is not JsonFormatter
            or (found.filters and not _only_redaction(found.filters))
        ):
            return None
        return found


MAX_TEMPLATE_MILLISECONDS: Final = 1e12
"""Durations the access line's template writes with :func:`_two_places` (31 years)."""


def _two_places(milliseconds: float) -> str:
    """``repr(round(milliseconds, 2))`` for ``0 <= milliseconds < 1e12``, in one formatting
    pass instead of two (``round`` to two places formats the float to decimal and reads it
    back, ``repr`` formats it again: 5.1 against 2.7 K instructions alone).

    Both round the float's exact value to two decimals the same way (the same
    correctly rounded conversion); below 1e12 the doubles are far closer together
    than 0.01, so the shortest text that reads back as the rounded double is those
    two decimals, less a trailing zero (``12.30`` is ``12.3``, ``12.00`` is ``12.0``,
    as ``repr`` writes them). A property test holds the two equal."""
    text = f"{milliseconds:.2f}"
    return text[:-1] if text[-1] == "0" else text


def _plain(text: str) -> bool:
    """Whether JSON writes ``text`` between quotes as it is (no quote, backslash, control
    character or lone surrogate to escape)."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _only_redaction(filters: list[Any]) -> bool:
    """No filter but the redaction filter (which passes a record marked redacted as it is)."""
    if len(filters) <= 1:  # the usual cases, without a generator
        return not filters or type(filters[0]) is RedactionFilter
    return all(type(each) is RedactionFilter for each in filters)


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
