"""The signal contract: the downstream pipeline reads these exact shapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from ulid import ULID

from ucf.core.signal import (
    NormalisedSignal,
    SanitisedSignal,
    SignalMetadata,
    dedup_key,
    signal_id,
)


def _signal(**overrides: object) -> NormalisedSignal:
    fields: dict[str, object] = {
        "id": signal_id(
            dedup_key("jira", "p1", "10001", "2024-01-01T00:00:00.000Z"), 1704067200000
        ),
        "source": "jira",
        "timestamp": "2024-01-01T00:00:00.000Z",
        "type": "issue_updated",
        "summary": "PROJ-1 changed",
        "raw": {"key": "PROJ-1"},
        "projectId": "p1",
        "metadata": {"priority": "high", "participants": ["ann"], "relatedTickets": ["PROJ-2"]},
    }
    fields.update(overrides)
    return NormalisedSignal.model_validate(fields)


def test_signal_serialises_camel_case_as_the_pipeline_expects() -> None:
    wire = _signal().to_wire()
    assert set(wire) == {
        "id",
        "source",
        "timestamp",
        "type",
        "summary",
        "raw",
        "projectId",
        "metadata",
    }
    assert wire["metadata"] == {
        "priority": "high",
        "participants": ["ann"],
        "relatedTickets": ["PROJ-2"],
        "tags": [],
    }


def test_signal_round_trips_through_json() -> None:
    original = _signal()
    again = NormalisedSignal.model_validate_json(json.dumps(original.to_wire()))
    assert again == original


def test_sanitised_signal_adds_the_three_fields_and_round_trips() -> None:
    base = _signal().to_wire()
    sanitised = SanitisedSignal.model_validate(
        {**base, "sanitisedSummary": "PROJ-1 changed", "sanitisationNotes": ["none"]}
    )
    wire = sanitised.to_wire()
    assert wire["sanitised"] is True
    assert wire["sanitisedSummary"] == "PROJ-1 changed"
    assert SanitisedSignal.model_validate_json(json.dumps(wire)) == sanitised


def test_legacy_sources_and_any_connector_id_are_accepted() -> None:
    for source in ("jira", "outlook", "ses", "github-issues", "my-custom-tool"):
        assert _signal(source=source).source == source


def test_summary_longer_than_500_chars_is_rejected() -> None:
    with pytest.raises(ValidationError):
        _signal(summary="x" * 501)


def test_unknown_priority_is_rejected() -> None:
    with pytest.raises(ValidationError):
        SignalMetadata.model_validate({"priority": "urgent"})


def test_dedup_key_is_deterministic_and_separates_components() -> None:
    assert dedup_key("a", "b", "c", "d") == dedup_key("a", "b", "c", "d")
    assert dedup_key("a", "b", "c", "d") != dedup_key("a", "b", "c", "e")
    # Concatenation must not make different tuples collide.
    assert dedup_key("ab", "c", "x", "y") != dedup_key("a", "bc", "x", "y")


def test_signal_id_is_a_valid_ulid_carrying_the_event_time() -> None:
    key = dedup_key("github-issues", "p", "1", "v")
    value = signal_id(key, 1_704_067_200_123)
    parsed = ULID.from_str(value)
    assert int(parsed.timestamp * 1000) == 1_704_067_200_123
    assert signal_id(key, 1_704_067_200_123) == value
    assert signal_id(key, -5) < signal_id(key, 10)


@settings(max_examples=500, deadline=None)
@given(
    st.text(max_size=12),
    st.integers(min_value=-(2**50), max_value=2**50)
    | st.sampled_from([0, 2**48 - 1, 2**48, -1, 1_704_067_200_123]),
)
def test_signal_id_is_the_base32_of_time_and_key_as_one_128_bit_value(
    item_id: str, timestamp_ms: int
) -> None:
    """The id is built from 10-bit chunks of two small halves; it must equal the
    plain definition: the time (clamped to 48 bits) then the key's first 80 bits."""
    key = dedup_key("github-issues", "p", item_id, "v")
    value = (min(max(timestamp_ms, 0), 2**48 - 1) << 80) | int(key[:20], 16)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    expected = "".join(alphabet[(value >> shift) & 31] for shift in range(125, -1, -5))
    assert signal_id(key, timestamp_ms) == expected
    assert ULID.from_str(expected).bytes == value.to_bytes(16, "big")


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    raw=st.dictionaries(st.text(max_size=6), _json, max_size=4),
    priority=st.none() | st.sampled_from(["critical", "high", "medium", "low"]),
    names=st.lists(st.text(max_size=5), max_size=3),
    with_metadata=st.booleans(),
    notes=st.lists(st.text(max_size=5), max_size=2),
)
def test_hand_written_wire_form_equals_pydantics(
    raw: dict[str, object],
    priority: str | None,
    names: list[str],
    with_metadata: bool,
    notes: list[str],
) -> None:
    metadata = (
        {"priority": priority, "participants": names, "tags": names[:1]} if with_metadata else None
    )
    signal = _signal(raw=raw, metadata=metadata)
    assert signal.to_wire() == signal.model_dump(mode="json", by_alias=True, exclude_none=True)
    sanitised = SanitisedSignal.model_validate(
        {**signal.to_wire(), "sanitisedSummary": "s", "sanitisationNotes": notes}
    )
    assert sanitised.to_wire() == sanitised.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
