"""The signal body codec: orjson for plain JSON, pydantic-core for the rest, one output."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucf.stores import InvalidRecord
from ucf.stores.sqlite.codec import dump_signal, load_signal


def _reference(value: Any) -> str | None:
    """What ``dump_signal`` wrote before orjson: pydantic-core's text, or None when it refused."""
    try:
        return pydantic_core.to_json(value, inf_nan_mode="null").decode()
    except (pydantic_core.PydanticSerializationError, TypeError):
        return None


def _ours(value: Any) -> str | None:
    try:
        return dump_signal(value, signal_id="01X")
    except InvalidRecord:
        return None


class Label(str):
    """A str subclass (an enum-like value a native connector might leave in a wire)."""


@dataclasses.dataclass
class Point:
    x: int


_SCALARS = (
    st.none()
    | st.booleans()
    # 64-bit edges and beyond: orjson refuses past them, pydantic-core writes them.
    | st.integers()
    | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**40])
    | st.floats()  # NaN and ±Infinity included: both write null
    | st.text()
    | st.text(alphabet=st.sampled_from('a\x00\x1f\x7f"\\/é\u2028😀\ud800\udfff'))
    | st.builds(Label, st.text(max_size=5))
    | st.just(datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    | st.builds(Point, st.integers(0, 9))
)
_KEYS = st.text(max_size=8) | st.integers(-3, 3) | st.booleans() | st.just("\ud800")


@settings(max_examples=500, deadline=None)
@given(
    st.recursive(
        _SCALARS,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.lists(inner, max_size=3).map(tuple)
            | st.frozensets(st.integers(0, 9), max_size=3)
            | st.dictionaries(_KEYS, inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_the_fast_encoder_writes_exactly_what_pydantic_core_wrote(value: Any) -> None:
    """Big integers, non-str keys, lone surrogates, subclasses, sets, datetimes and
    dataclasses fall back to pydantic-core; everything else must be byte-identical."""
    assert _ours(value) == _reference(value)


def test_values_orjson_refuses_are_still_stored_as_before() -> None:
    assert dump_signal({"n": 2**64}, signal_id="01X") == '{"n":18446744073709551616}'
    assert dump_signal({1: "a", "b": 2}, signal_id="01X") == '{"1":"a","b":2}'
    assert dump_signal({"tags": frozenset({"x"})}, signal_id="01X") == '{"tags":["x"]}'
    assert dump_signal({"v": float("nan"), "w": float("-inf")}, signal_id="01X") == (
        '{"v":null,"w":null}'
    )
    assert load_signal(dump_signal({"t": Label("bug")}, signal_id="01X")) == {"t": "bug"}


def test_a_value_with_no_json_form_is_refused_with_what_it_was() -> None:
    with pytest.raises(InvalidRecord, match="signal 01X is not JSON"):
        dump_signal({"summary": "a\ud800"}, signal_id="01X")
    with pytest.raises(InvalidRecord, match="signal 01X is not JSON"):
        dump_signal({"raw": object()}, signal_id="01X")
