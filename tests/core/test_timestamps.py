"""Timestamps as the catalogue APIs send them, and as their filters want them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ucf.core.signal import iso_utc
from ucf.core.timestamps import (
    CANONICAL_UTC,
    OUTPUT_FORMATS,
    TIMESTAMP_FORMATS,
    OutputFormat,
    TimestampFormat,
    canonical_utc_text,
    format_timestamp,
    parse_timestamp,
    to_epoch_ms,
)

NOON = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019-05-15T15:20:18Z", datetime(2019, 5, 15, 15, 20, 18, tzinfo=UTC)),  # GitHub
        ("2024-01-01T12:00:00.000Z", NOON),  # Linear, Notion, Trello
        ("2024-01-01T12:00:00.000+0000", NOON),  # Jira
        ("2024-01-01T12:00:00+00:00", NOON),
        ("2024-01-01T13:00:00+01:00", NOON),
        ("2024-01-01T06:30:00-05:30", NOON),
        ("2019-08-19T20:58:37.391000Z", datetime(2019, 8, 19, 20, 58, 37, 391000, tzinfo=UTC)),
        ("2024-01-01T12:00:00.1234567Z", NOON.replace(microsecond=123456)),  # Graph: 7 digits
        ("2024-01-01T12:00:00", NOON),  # naive means UTC
        ("2024-01-01 12:00:00", NOON),
        ("2024-01-01t12:00:00z", NOON),
        (" 2024-01-01 12:00:00 UTC ", NOON),
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC)),
        (1704110400, NOON),  # unix seconds (Slack event_time, Datadog date_happened)
        (1704110400.25, NOON.replace(microsecond=250000)),  # Sentry received
        ("1704110400", NOON),
        (1704110400000, NOON),  # unix ms (Linear webhookTimestamp, Jira webhook)
        ("1704110400123", NOON.replace(microsecond=123000)),  # Datadog $LAST_UPDATED
        ("1355517523.000005", datetime(2012, 12, 14, 20, 38, 43, 5, tzinfo=UTC)),  # Slack ts
        (NOON.astimezone(timezone(timedelta(hours=3))), NOON),
    ],
)
def test_auto_reads_every_timestamp_shape_the_catalogue_sends(
    value: Any, expected: datetime
) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("1355517523.000005", "slack_ts", datetime(2012, 12, 14, 20, 38, 43, 5, tzinfo=UTC)),
        (1355517523, "slack_ts", datetime(2012, 12, 14, 20, 38, 43, tzinfo=UTC)),
        (1000, "unix", datetime(1970, 1, 1, 0, 16, 40, tzinfo=UTC)),
        (1000, "unix_ms", datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
        ("1704110400000.5", "unix_ms", NOON.replace(microsecond=500)),
        (-1, "unix", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2024-01-01T12:00:00Z", "iso8601", NOON),
    ],
)
def test_explicit_formats_read_values_auto_would_guess_differently(
    value: Any, fmt: TimestampFormat, expected: datetime
) -> None:
    assert parse_timestamp(value, fmt) == expected


def test_slack_ts_keeps_every_microsecond_where_a_float_would_not() -> None:
    parsed = parse_timestamp("1700000000.999999", "slack_ts")
    assert parsed is not None
    assert parsed.microsecond == 999999


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        (None, "auto"),
        (True, "auto"),
        (False, "unix"),
        ("", "auto"),
        ("yesterday", "auto"),
        ("2024-13-01T00:00:00Z", "auto"),
        ("2024-01-01T24:00:00Z", "auto"),
        ("0001-01-01T00:00:00+01:00", "auto"),  # before datetime.min once in UTC
        (float("nan"), "auto"),
        (float("inf"), "unix"),
        (10**30, "auto"),
        ("9" * 5000, "unix"),
        ({"ts": 1}, "auto"),
        ([1704110400], "auto"),
        ("2024-01-01T12:00:00Z", "unix"),
        (1704110400, "iso8601"),
        ("1704110400", "nonsense"),
    ],
)
def test_unreadable_or_out_of_range_values_are_none_not_errors(value: Any, fmt: Any) -> None:
    assert parse_timestamp(value, fmt) is None


MOMENT = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("iso8601", "2024-01-02T03:04:05Z"),  # GitHub since=
        ("iso8601_ms", "2024-01-02T03:04:05.678Z"),  # Notion / Linear filters
        ("unix", "1704164645"),  # Datadog v1 start=
        ("unix_ms", "1704164645678"),  # Datadog v2 filter[from]=
        ("slack_ts", "1704164645.678901"),  # Slack oldest=
        ("date", "2024-01-02"),
        ("cql_datetime", "2024/01/02 03:04"),  # Confluence CQL
        ("jql_datetime", "2024-01-02 03:04"),  # Jira JQL
    ],
)
def test_format_writes_what_each_api_filter_expects(fmt: OutputFormat, text: str) -> None:
    assert format_timestamp(MOMENT, fmt) == text
    assert format_timestamp(MOMENT.astimezone(timezone(timedelta(hours=-7))), fmt) == text
    assert format_timestamp(MOMENT.replace(tzinfo=None), fmt) == text


def test_atlassian_wall_clock_formats_follow_the_users_zone() -> None:
    zone = ZoneInfo("America/Los_Angeles")
    assert format_timestamp(MOMENT, "jql_datetime", zone=zone) == "2024-01-01 19:04"
    assert format_timestamp(MOMENT, "cql_datetime", zone=zone) == "2024/01/01 19:04"
    assert format_timestamp(MOMENT, "iso8601", zone=zone) == "2024-01-02T03:04:05Z"


def test_formats_pad_years_before_1000() -> None:
    early = datetime(7, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert format_timestamp(early, "iso8601") == "0007-02-03T04:05:06Z"
    assert format_timestamp(early, "cql_datetime") == "0007/02/03 04:05"


def test_an_unknown_output_format_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="iso8601_ms"):
        format_timestamp(MOMENT, "rfc2822")  # type: ignore[arg-type]


def test_format_lists_match_the_literal_types() -> None:
    assert "slack_ts" in TIMESTAMP_FORMATS
    assert "jql_datetime" in OUTPUT_FORMATS


def test_epoch_ms_floors_before_1970() -> None:
    assert to_epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1
    assert to_epoch_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_epoch_ms(MOMENT) == 1704164645678


# --- properties -------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.from_regex(r"\A-?\d{1,20}(\.\d{0,9})?\Z")
    | st.datetimes(timezones=st.none() | st.just(UTC)).map(datetime.isoformat),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


@given(json_values, st.sampled_from([*TIMESTAMP_FORMATS, "bogus"]))
def test_parsing_never_raises_and_only_returns_utc(value: Any, fmt: Any) -> None:
    parsed = parse_timestamp(value, fmt)
    assert parsed is None or parsed.tzinfo is UTC


utc_moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.builds(
    timezone,
    st.integers(min_value=-23 * 60 + 1, max_value=23 * 60 - 1).map(
        lambda minutes: timedelta(minutes=minutes)
    ),
)


@given(utc_moments)
def test_every_output_format_parses_back_to_the_moment_at_its_precision(moment: datetime) -> None:
    def back(fmt: OutputFormat, parse_as: TimestampFormat) -> datetime | None:
        return parse_timestamp(format_timestamp(moment, fmt), parse_as)

    assert back("slack_ts", "slack_ts") == moment
    assert back("iso8601_ms", "iso8601") == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )
    assert back("unix_ms", "unix_ms") == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )
    assert back("iso8601", "iso8601") == moment.replace(microsecond=0)
    assert back("unix", "unix") == moment.replace(microsecond=0)
    assert back("date", "iso8601") == moment.replace(hour=0, minute=0, second=0, microsecond=0)


@given(
    st.datetimes(
        min_value=datetime(1974, 1, 1), max_value=datetime(5000, 1, 1), timezones=st.just(UTC)
    )
)
def test_auto_tells_seconds_from_milliseconds_for_any_real_date(moment: datetime) -> None:
    whole = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert parse_timestamp(to_epoch_ms(moment)) == whole
    assert parse_timestamp(to_epoch_ms(moment) // 1000) == moment.replace(microsecond=0)


@given(utc_moments, offsets)
def test_iso_with_any_offset_is_the_same_instant(moment: datetime, zone: timezone) -> None:
    local = moment.astimezone(zone)
    text = local.isoformat()
    assert parse_timestamp(text) == moment
    jira_style = text[:-6] + text[-6:].replace(":", "")  # +05:30 -> +0530
    assert parse_timestamp(jira_style) == moment


@given(st.datetimes(timezones=st.just(UTC)))
def test_epoch_ms_agrees_with_timedelta_arithmetic(moment: datetime) -> None:
    assert to_epoch_ms(moment) == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


@given(st.datetimes(timezones=st.none() | st.just(UTC) | offsets))
def test_epoch_ms_adds_up_the_fields_of_the_utc_moment(moment: datetime) -> None:
    if moment.tzinfo is None:
        utc = moment
    else:
        try:
            utc = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # an offset moment at the edge of datetime's range
            return
    days = utc.toordinal() - datetime(1970, 1, 1).toordinal()
    seconds = days * 86400 + utc.hour * 3600 + utc.minute * 60 + utc.second
    assert to_epoch_ms(moment) == seconds * 1000 + utc.microsecond // 1000


@given(utc_moments, st.booleans())
def test_canonical_text_is_the_timestamp_iso_utc_writes(moment: datetime, millis: bool) -> None:
    text = moment.isoformat(timespec="milliseconds" if millis else "seconds")[:-6] + "Z"
    parsed = parse_timestamp(text)
    assert parsed is not None
    assert canonical_utc_text(text) == iso_utc(parsed)


@given(st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z\Z"))
def test_canonical_text_of_any_digits_agrees_with_parsing_them(text: str) -> None:
    """Month 13, 30 February, second 60: whatever does not parse, no text is read off.

    The compiled mapping reads such text with ``datetime.fromisoformat`` alone
    (``CANONICAL_UTC``): it must give the parsers' moment, in UTC, or refuse it.
    """
    parsed = parse_timestamp(text, "iso8601")
    assert parse_timestamp(text, "auto") == parsed
    assert CANONICAL_UTC.fullmatch(text) is not None
    try:
        direct: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        direct = None
    assert direct == parsed
    if direct is not None:
        assert direct.tzinfo is UTC
    if parsed is not None:
        assert canonical_utc_text(text) == iso_utc(parsed)


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01T12:00:00+00:00",
        "2024-01-01T12:00:00.000+0000",
        "2024-01-01t12:00:00z",
        "2024-01-01 12:00:00Z",
        "2024-W01-1T12:00:00Z",  # an ISO week date, as long as a calendar one
        "2024-01-01T12:00:00.1234Z",
        "2024-01-01T12:00:00.1Z",
        "\uff12\uff10\uff12\uff14-01-01T12:00:00Z",  # full-width digits
        "2024-01-01T12:00:00Z ",
        1704110400,
        None,
    ],
)
def test_other_spellings_are_formatted_from_the_moment(value: Any) -> None:
    assert canonical_utc_text(value) is None
