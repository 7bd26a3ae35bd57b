"""Outside JSON is standard JSON: NaN and Infinity never become signal values."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucf.core.jsonpath import MISSING
from ucf.core.payload import StrictJson, loads_strict, payload_or_missing


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]"])
def test_non_standard_constants_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a JSON value"):
        loads_strict(text)
    assert payload_or_missing(text.encode()) is MISSING


def test_standard_json_and_empty_or_deep_bodies() -> None:
    assert loads_strict(b'{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
    assert payload_or_missing(b"  \n") is MISSING
    assert payload_or_missing(b"[" * 100_000 + b"]" * 100_000) is MISSING


@pytest.mark.parametrize("json_first", [0, 1 << 20])
def test_json_nested_too_deeply_is_a_value_error_on_either_parser(json_first: int) -> None:
    """json raises RecursionError past its depth: its callers (the HTTP client's
    parse_json among them) handle ValueError, as the contract says."""
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        StrictJson(json_first=json_first, loaded_at_once=False).loads(deep)
    assert StrictJson(json_first=json_first, loaded_at_once=False).loads(b"[" * 150 + b"]" * 150)


def _stdlib(data: bytes) -> tuple[str, object]:
    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not a JSON value")

    try:
        return "ok", json.dumps(json.loads(data, parse_constant=refuse))
    except (ValueError, RecursionError) as error:
        return "error", str(error)


def _ours(data: bytes, parser: StrictJson) -> tuple[str, object]:
    try:
        return "ok", json.dumps(parser.loads(data))  # types and key order must match too
    except (ValueError, RecursionError) as error:
        return "error", str(error)


_JSONISH = st.text(alphabet='{}[]":,.-+eE0123456789 \t\nabtrufnlsNIy\\u\x00é\ud800', max_size=40)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        _JSONISH.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        ).map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=30),
    )
)
def test_the_fast_parser_accepts_and_refuses_exactly_what_json_does(data: bytes) -> None:
    """Past its first bytes a parser tries pydantic-core first; its answers, and its error
    messages, are json's."""
    assert _ours(data, StrictJson(json_first=0)) == _stdlib(data)
    assert _ours(data, StrictJson(json_first=1 << 20, loaded_at_once=False)) == _stdlib(data)


def test_a_process_imports_the_fast_parser_only_once_it_has_read_enough() -> None:
    """A webhook body or a cold start's first page does not pay pydantic-core's import."""
    probe = (
        "import sys\n"
        "from ucf.core.payload import StrictJson, loads_strict\n"
        "loads_strict(b'[' + b'1,' * 100_000 + b'1]')\n"
        "before = 'pydantic_core' in sys.modules\n"
        "parser = StrictJson(json_first=10)\n"
        "parser.loads(b'[1, 2, 3, 4, 5, 6]')\n"
        "between = 'pydantic_core' in sys.modules\n"
        "assert parser.loads(b'[7]') == [7]\n"
        "print(before, between, 'pydantic_core' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.split() == ["False", "False", "True"]


def test_a_process_that_has_imported_the_fast_parser_reads_with_it_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its import is all that waiting for ``json_first`` bytes saves: once paid (this
    process's models imported it), even the first document goes to pydantic-core."""
    import pydantic_core

    read: list[object] = []

    def spy(data: bytes | str, **options: Any) -> Any:
        read.append(data)
        return json.loads(data)

    monkeypatch.setattr(pydantic_core, "from_json", spy)
    assert StrictJson(json_first=1 << 30).loads(b"[1, 2]") == [1, 2]
    assert read == [b"[1, 2]"]
    assert StrictJson(json_first=1 << 30, loaded_at_once=False).loads(b"[3]") == [3]
    assert read == [b"[1, 2]"], "json's path, when asked to wait"


def test_text_with_a_lone_surrogate_reads_as_json_reads_it() -> None:
    assert loads_strict('"a\ud800"') == json.loads('"a\ud800"')
    assert StrictJson(json_first=0).loads('"a\ud800"') == json.loads('"a\ud800"')
