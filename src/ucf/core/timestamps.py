"""Timestamps in every shape the catalogue APIs send, and the shapes their filters take.

Parsing turns an item's timestamp field into an aware UTC ``datetime``:

* ISO 8601 — ``2019-05-15T15:20:18Z`` (GitHub), ``2024-01-01T12:00:00.000Z``
  (Linear, Notion, Trello), ``2024-01-01T12:00:00.000+0000`` (Jira),
  ``2019-08-19T20:58:37.391000Z`` (Sentry webhooks), seven fractional digits
  (Microsoft Graph), date-only, a space instead of ``T``, a ``UTC`` suffix.
  Without an offset the time is taken to be UTC.
* Unix seconds as int, float or numeric string (Slack ``event_time``,
  Datadog v1 ``date_happened``, Sentry ``received``).
* Unix milliseconds (Linear ``webhookTimestamp``, Datadog ``$LAST_UPDATED``,
  Jira webhook ``timestamp``).
* Slack ``ts`` strings, ``"1355517523.000005"``: seconds and microseconds,
  read exactly (a float would lose the last digit, and the ts is an id).

``auto`` reads ISO strings as ISO and numbers as seconds below 1e11, else as
milliseconds: 1e11 seconds is the year 5138, 1e11 ms is March 1973, so both
readings are unambiguous for any real event. Parsing never raises: anything
unreadable or out of range is ``None`` and the caller reports a per-item error.

Formatting turns a checkpoint into what an API's filter expects. Everything is
UTC except the Atlassian query languages: JQL and CQL literals are read in the
*user's* time zone, so ``cql_datetime``/``jql_datetime`` take a ``zone``;
without it the caller must overlap the window by the largest possible offset.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, Literal, get_args

__all__ = [
    "OUTPUT_FORMATS",
    "TIMESTAMP_FORMATS",
    "OutputFormat",
    "TimestampFormat",
    "format_timestamp",
    "parse_timestamp",
    "parser_for",
    "to_epoch_ms",
]

TimestampFormat = Literal["auto", "iso8601", "unix", "unix_ms", "slack_ts"]
OutputFormat = Literal[
    "iso8601", "iso8601_ms", "unix", "unix_ms", "slack_ts", "date", "cql_datetime", "jql_datetime"
]
TIMESTAMP_FORMATS: Final[tuple[TimestampFormat, ...]] = get_args(TimestampFormat)
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = get_args(OutputFormat)

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_LIMIT: Final = 100_000_000_000  # 1e11: seconds below, milliseconds above

# --- parsing ---------------------------------------------------------------------

_NUMERIC: Final = re.compile(r"\s*([+-]?)(\d+)(?:\.(\d*))?\s*")
_LOOSE_ISO: Final = re.compile(
    r"""(?P<date>\d{4}-\d{2}-\d{2})
    (?:[Tt\ ]
        (?P<time>\d{2}(?::\d{2}(?::\d{2})?)?)
        (?:[.,](?P<fraction>\d+))?
    )?
    \ ?(?P<zone>[Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?""",
    re.VERBOSE,
)  # no nested or adjacent unbounded repeats: linear on hostile input


def _utc(moment: datetime) -> datetime | None:
    """Aware UTC; naive means UTC. None when the shift leaves datetime's range."""
    zone = moment.tzinfo
    if zone is UTC:
        return moment
    if zone is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _normalise_iso(text: str) -> str | None:
    """Rewrite the ISO variants ``fromisoformat`` refuses (``t``/``z``, ``UTC``,
    padding) into the form it accepts; None when it is not ISO 8601 at all."""
    match = _LOOSE_ISO.fullmatch(text.strip())
    if match is None:
        return None
    date, time, fraction, zone = match.group("date", "time", "fraction", "zone")
    if time is None:
        return date if zone is None else f"{date}T00:00:00{_offset(zone)}"
    fraction = f".{fraction[:6]}" if fraction else ""
    return f"{date}T{time}{fraction}{_offset(zone)}"


def _offset(zone: str | None) -> str:
    if zone is None:
        return ""
    if zone in ("Z", "z", "UTC", "GMT"):
        return "+00:00"
    return zone


def _from_iso(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if not isinstance(value, str):
        return None
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        pass
    normalised = _normalise_iso(value)
    if normalised is None:
        return None
    try:
        return _utc(datetime.fromisoformat(normalised))
    except ValueError:
        return None


def _epoch(value: Any, unit: int) -> datetime | None:
    """``value`` counted in ``unit`` microseconds since 1970 (1e6 for s, 1e3 for ms).

    Integers and numeric strings are converted exactly; floats round to the
    nearest microsecond. Booleans are not numbers here.
    """
    if isinstance(value, str):
        match = _NUMERIC.fullmatch(value)
        if match is None:
            return None
        sign, whole, fraction = match.groups()
        digits = len(str(unit)) - 1  # fractional digits that fit in a microsecond
        try:
            micros = int(whole) * unit + int((fraction or "")[:digits].ljust(digits, "0"))
        except ValueError:  # more digits than int() accepts: far out of range anyway
            return None
        return _from_micros(-micros if sign == "-" else micros)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _from_micros(value * unit)
    if isinstance(value, float):
        try:
            return _from_micros(round(value * unit))
        except (OverflowError, ValueError):  # inf, nan
            return None
    return None


def _from_micros(micros: int) -> datetime | None:
    """Exact integer arithmetic; also the fastest form (``fromtimestamp`` plus
    ``replace`` costs about five times as much)."""
    seconds, micro = divmod(micros, 1_000_000)
    try:
        return EPOCH + timedelta(0, seconds, micro)
    except OverflowError:
        return None


def _from_seconds(value: Any) -> datetime | None:
    return _epoch(value, 1_000_000)


def _from_ms(value: Any) -> datetime | None:
    return _epoch(value, 1_000)


def _magnitude(value: Any) -> float | None:
    """How big a number is, to tell seconds from milliseconds; None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return abs(value)
    if isinstance(value, str):
        match = _NUMERIC.fullmatch(value)
        return None if match is None else float(match.group(2))
    return None


def _auto(value: Any) -> datetime | None:
    if isinstance(value, str) and "-" in value[1:]:  # dates have dashes; numbers don't
        return _from_iso(value)
    magnitude = _magnitude(value)
    if magnitude is None:
        return _from_iso(value)
    if magnitude != magnitude:  # NaN
        return None
    return _from_seconds(value) if magnitude < _SECONDS_LIMIT else _from_ms(value)


_PARSERS: Final[dict[str, Callable[[Any], datetime | None]]] = {
    "auto": _auto,
    "iso8601": _from_iso,
    "unix": _from_seconds,
    "unix_ms": _from_ms,
    "slack_ts": _from_seconds,  # "seconds.micros" is exactly a decimal second count
}


def parser_for(fmt: str) -> Callable[[Any], datetime | None]:
    """The parser :func:`parse_timestamp` uses for ``fmt`` (one lookup saved per item).

    An unknown format parses nothing, as in :func:`parse_timestamp`.
    """
    return _PARSERS.get(fmt, _nothing)


def _nothing(_value: Any) -> None:
    return None


def parse_timestamp(value: Any, fmt: TimestampFormat = "auto") -> datetime | None:
    """Read a timestamp field as an aware UTC datetime; None when it is not one."""
    parser = _PARSERS.get(fmt)
    if parser is None:
        return None
    return parser(value)


# --- formatting ------------------------------------------------------------------


def _as_utc(moment: datetime) -> datetime:
    zone = moment.tzinfo
    if zone is UTC:
        return moment
    if zone is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_ONE_MS: Final = timedelta(milliseconds=1)


def to_epoch_ms(moment: datetime) -> int:
    """Milliseconds since 1970 (floor), in integer arithmetic: no float round trip.

    Naive means UTC. Used for signal ids and webhook replay windows. A
    ``timedelta`` floor-divided by another is exact integer arithmetic in C
    (whole microseconds), and cheaper than adding up the fields in Python.
    """
    if moment.tzinfo is not UTC:
        moment = _as_utc(moment)
    return (moment - EPOCH) // _ONE_MS


CANONICAL_UTC: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?Z", re.ASCII
)
"""Text written as ``iso_utc`` writes it, with or without its milliseconds: what
``datetime.fromisoformat`` reads to the very moment the ``iso8601`` parser gives
(or refuses, for a date that does not exist), and what :func:`canonical_utc_text`
takes as it is."""


def canonical_utc_text(value: Any) -> str | None:
    """``iso_utc`` of the moment ``value`` parses to, read off its text; None if it cannot be.

    Only for a value that did parse: text written ``YYYY-MM-DDTHH:MM:SSZ`` or
    ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (ASCII digits) parses to exactly those fields
    or not at all, so its ``iso_utc`` text is the same characters, with
    ``.000`` added when it has no milliseconds. Formatting the parsed moment
    back (``datetime.isoformat``) costs about four times this check; most
    APIs (GitHub, Jira Cloud, Linear) write their times one of these two ways.
    """
    if value.__class__ is not str or CANONICAL_UTC.fullmatch(value) is None:
        return None
    return value if len(value) == 24 else value[:19] + ".000Z"


_EPOCH_ORDINAL: Final = EPOCH.toordinal()


def _epoch_seconds(m: datetime) -> int:
    """Whole seconds since 1970 of an aware UTC datetime (floor)."""
    return (m.toordinal() - _EPOCH_ORDINAL) * 86400 + m.hour * 3600 + m.minute * 60 + m.second


def _iso8601(m: datetime) -> str:
    return m.isoformat(timespec="seconds")[:-6] + "Z"  # drop "+00:00"


def _iso8601_ms(m: datetime) -> str:
    return m.isoformat(timespec="milliseconds")[:-6] + "Z"  # truncates, never rounds


def _slack_ts(m: datetime) -> str:
    """Decimal seconds; before 1970 the sign covers the fraction too (-1.5, not -2.5)."""
    micros = _epoch_seconds(m) * 1_000_000 + m.microsecond
    seconds, micro = divmod(abs(micros), 1_000_000)
    return f"{'-' if micros < 0 else ''}{seconds}.{micro:06d}"


def _jql(m: datetime) -> str:
    return m.isoformat(sep=" ", timespec="minutes")[:16]


def _cql(m: datetime) -> str:
    return _jql(m).replace("-", "/")


_FORMATTERS: Final[dict[str, Callable[[datetime], str]]] = {
    "iso8601": _iso8601,  # GitHub since=2024-01-01T00:00:00Z
    "iso8601_ms": _iso8601_ms,  # Notion, Linear filters
    "unix": lambda m: str(_epoch_seconds(m)),  # Datadog v1 start=
    "unix_ms": lambda m: str(to_epoch_ms(m)),  # Datadog v2 filter[from]=
    "slack_ts": _slack_ts,  # conversations.history oldest=
    "date": lambda m: m.date().isoformat(),
    "cql_datetime": _cql,  # Confluence lastmodified>="2024/01/01 12:00"
    "jql_datetime": _jql,  # Jira updated>="2024-01-01 12:00"
}
_LOCAL_TIME_FORMATS: Final = frozenset({"cql_datetime", "jql_datetime", "date"})


def format_timestamp(moment: datetime, fmt: OutputFormat, *, zone: tzinfo = UTC) -> str:
    """Write ``moment`` the way an API filter expects it. Naive means UTC.

    ``zone`` applies to the wall-clock formats (``date``, ``cql_datetime``,
    ``jql_datetime``) and is ignored by the rest, which are UTC by definition.
    Precision is truncated, never rounded up, so a filter never skips ahead.
    """
    formatter = _FORMATTERS.get(fmt)
    if formatter is None:
        raise ValueError(f"unknown timestamp format {fmt!r}; known: {', '.join(OUTPUT_FORMATS)}")
    utc = _as_utc(moment)
    if fmt in _LOCAL_TIME_FORMATS and zone is not UTC:
        return formatter(utc.astimezone(zone))
    return formatter(utc)
