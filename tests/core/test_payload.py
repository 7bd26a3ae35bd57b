"""Outside JSON is standard JSON: NaN and Infinity never become signal values."""

from __future__ import annotations

import pytest

from ucf.core.jsonpath import MISSING
from ucf.core.payload import loads_strict, payload_or_missing


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]"])
def test_non_standard_constants_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a JSON value"):
        loads_strict(text)
    assert payload_or_missing(text.encode()) is MISSING


def test_standard_json_and_empty_or_deep_bodies() -> None:
    assert loads_strict(b'{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
    assert payload_or_missing(b"  \n") is MISSING
    assert payload_or_missing(b"[" * 100_000 + b"]" * 100_000) is MISSING
