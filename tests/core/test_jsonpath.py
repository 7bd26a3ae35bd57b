"""JSONPath as descriptor authors write it, fast for plain paths, total on any JSON."""

from __future__ import annotations

from typing import Any

import jsonpath as reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucf.core.jsonpath import MISSING, PathSyntaxError, compile_path

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "name", "0", "x y"]), children, max_size=4)
    ),
    max_leaves=25,
)

ISSUE: dict[str, Any] = {
    "id": 7,
    "fields": {
        "summary": "Login fails",
        "assignee": None,
        "Story Points": 5,
        "status": {"name": "Open"},
    },
    "labels": [{"name": "bug"}, {"name": "auth"}, {"colour": "red"}],
    "items": [{"type": "x", "name": "first"}, {"type": "y", "name": "second"}],
    "odata.count": 2,
    "@odata.nextLink": "https://graph.example/next",
    "data": {"issues": {"nodes": [{"id": "a"}, {"id": "b"}]}},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$", ISSUE),
        ("$.items", ISSUE["items"]),
        ("items", ISSUE["items"]),
        ("$.data.issues.nodes", [{"id": "a"}, {"id": "b"}]),
        ("fields.summary", "Login fails"),
        ("fields.status.name", "Open"),
        ("labels[0].name", "bug"),
        ("labels[-1].colour", "red"),
        ("$['odata.count']", 2),
        ("$['@odata.nextLink']", "https://graph.example/next"),
        ("fields['Story Points']", 5),
        ('$["fields"]["summary"]', "Login fails"),
        ('["id"]', 7),
    ],
)
def test_paths_authors_write_select_the_value_they_point_at(expression: str, expected: Any) -> None:
    path = compile_path(expression)
    assert path.is_singular
    assert path.first(ISSUE) == expected
    assert path.values(ISSUE) == [expected]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("labels[*].name", ["bug", "auth"]),
        ("labels.*.name", ["bug", "auth"]),
        ("data.issues.nodes[*].id", ["a", "b"]),
        ("$..name", ["Open", "bug", "auth", "first", "second"]),
        ("$.items[?@.type == 'x'].name", ["first"]),
        ("$.items[?match(@.type, 'x|y')].name", ["first", "second"]),
        ("$.items[0:1].name", ["first"]),
        ("$.fields['summary','id']", ["Login fails"]),
    ],
)
def test_multi_node_paths_return_every_match_in_document_order(
    expression: str, expected: list[Any]
) -> None:
    path = compile_path(expression)
    assert not path.is_singular
    assert path.values(ISSUE) == expected
    assert path.first(ISSUE) == expected[0]


def test_a_json_null_is_a_value_not_a_missing_field() -> None:
    assert compile_path("fields.assignee").first(ISSUE) is None
    assert compile_path("fields.assignee").values(ISSUE) == [None]
    assert compile_path("fields.reporter").first(ISSUE) is MISSING
    assert compile_path("fields.reporter").values(ISSUE) == []


def test_missing_is_falsy_and_distinct_from_none() -> None:
    assert not MISSING
    assert MISSING is not None
    assert repr(MISSING) == "MISSING"


@pytest.mark.parametrize(
    ("expression", "data"),
    [
        ("labels[0]", {"labels": "abc"}),  # a string is not an array
        ("labels[0]", {"labels": {"0": "zero"}}),  # an index does not select object keys
        ("labels.name", {"labels": [{"name": "x"}]}),  # a name does not select from arrays
        ("labels[5].name", {"labels": [{"name": "x"}]}),
        ("labels[-5]", {"labels": [1]}),
        ("a.b.c", {"a": {"b": 3}}),
        ("a[*].b", {"a": 3}),
        ("a", "not an object"),
        ("a", None),
        ("a[0]", [1, 2]),
    ],
)
def test_paths_that_do_not_fit_the_data_select_nothing(expression: str, data: Any) -> None:
    path = compile_path(expression)
    assert path.first(data) is MISSING
    assert path.values(data) == []


def test_wildcard_over_an_object_selects_its_values_in_order() -> None:
    assert compile_path("a[*]").values({"a": {"z": 1, "b": 2}}) == [1, 2]


def test_a_json_string_document_is_not_parsed_as_json_by_query_paths() -> None:
    # python-jsonpath json.loads() str input; a JSON string value has no children.
    assert compile_path("$..a").values('{"a": 1}') == []
    assert compile_path("$[?@.a]").first('[{"a": 1}]') is MISSING
    assert compile_path("$").first('{"a": 1}') == '{"a": 1}'


def test_filter_regexes_run_on_re2_so_backtracking_constructs_never_match() -> None:
    # Python's re would match "aa" with a backreference; RE2 has none, so the
    # pattern is invalid and RFC 9535 says the test is false.
    data = {"items": [{"name": "aa"}]}
    assert compile_path(r"$.items[?match(@.name, '(a)\\1')]").values(data) == []
    assert compile_path("$.items[?search(@.name, 'a$')]").values(data) == [{"name": "aa"}]
    # A pathological pattern that takes exponential time under backtracking.
    nasty = {"items": [{"name": "a" * 5000 + "!"}]}
    assert compile_path("$.items[?match(@.name, '(a+)+$')]").values(nasty) == []


def test_descendant_queries_on_absurdly_deep_data_select_nothing_rather_than_crash() -> None:
    deep: Any = {"name": "bottom"}
    for _ in range(500):
        deep = {"child": deep}
    assert compile_path("$..name").values(deep) == []
    assert compile_path("$..name").first(deep) is MISSING


def test_compiled_paths_are_cached_and_shared() -> None:
    assert compile_path("fields.summary") is compile_path("fields.summary")


def test_canonical_form_names_the_path_for_error_messages() -> None:
    assert compile_path("labels[0].name").canonical == "$['labels'][0]['name']"
    assert compile_path("$").canonical == "$"


@pytest.mark.parametrize(
    ("expression", "column", "fragment"),
    [
        ("@odata.nextLink", 1, "$['@odata.nextLink']"),
        ("fields.Story Points", 14, "bracket notation"),
        ("labels[", 8, "ends too early"),
        ("$.a[?@.x ==]", 12, "unexpected end of expression"),
        ("$.a[01]", 5, "leading zero"),
        ("$.a[?nope(@)]", 6, "'nope' is not defined"),
        ("  a b", 5, "unexpected token 'b'"),
    ],
)
def test_syntax_errors_say_what_is_wrong_and_at_which_column(
    expression: str, column: int, fragment: str
) -> None:
    with pytest.raises(PathSyntaxError) as caught:
        compile_path(expression)
    assert caught.value.column == column
    assert fragment in str(caught.value)
    assert repr(expression) in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("expression", ["", "   "])
def test_an_empty_path_is_rejected_with_a_hint(expression: str) -> None:
    with pytest.raises(PathSyntaxError, match=r"write \$ for the whole document"):
        compile_path(expression)


QUERY_PATHS = [
    "$..name",
    "$..*",
    "$[?@.a]",
    "$[?@.a == 1]",
    "$[?@.a < 'x']",
    "$.a[?@ > 2]",
    "$[?length(@.name) > 1]",
    "$[?count(@.*) == 2]",
    "$[?match(@.name, '[a-z]+')]",
    "$[?search(@.b, 'x')]",
    "$[?value(@..a) == null]",
    "$.a[1:3]",
    "$.a[::-1]",
    "$['a','b'][0]",
]
PLAIN_PATHS = ["$", "a", "a.b", "a[0]", "a[-1].name", "a[*]", "a[*][*].b", "$['x y'][0]", "['0']"]


@settings(max_examples=300)
@given(data=json_values, expression=st.sampled_from(QUERY_PATHS + PLAIN_PATHS))
def test_evaluation_never_raises_on_any_json_value(data: Any, expression: str) -> None:
    path = compile_path(expression)
    found = path.values(data)
    assert isinstance(found, list)
    first = path.first(data)
    assert (first is MISSING) == (not found)
    if found:
        assert first == found[0] or first != first  # NaN is never equal to itself


plain_steps = st.lists(
    st.sampled_from(["a", "b", "name", "['x y']", "['0']", "[0]", "[1]", "[-1]", "[*]"]),
    max_size=4,
)


@settings(max_examples=500)
@given(data=json_values, steps=plain_steps)
def test_the_fast_path_agrees_with_python_jsonpath_on_plain_paths(
    data: Any, steps: list[str]
) -> None:
    expression = "$" + "".join(step if step.startswith("[") else f".{step}" for step in steps)
    path = compile_path(expression)
    if isinstance(data, str):  # python-jsonpath would json.loads() a str document
        expected: list[object] = [] if steps else [data]
    else:
        expected = reference.JSONPathEnvironment(strict=True).compile(expression).findall(data)
    assert _same(path.values(data), expected)
    assert path.is_singular == ("[*]" not in steps)


def _same(left: list[Any], right: list[Any]) -> bool:
    """Equal, counting NaN as equal to itself and telling True from 1."""
    return len(left) == len(right) and all(
        a is b or (type(a) is type(b) and (a == b or a != a))
        for a, b in zip(left, right, strict=True)
    )


# Names RFC 9535 allows in shorthand, keywords of filter expressions among them.
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True) | st.sampled_from(
    ["true", "false", "null", "in", "nil", "length", "match", "value", "_"]
)
simple_steps = st.lists(
    identifiers.map(lambda name: f".{name}")
    | st.integers(min_value=0, max_value=999_999_999).map(lambda index: f"[{index}]")
    | st.sampled_from([".*", "[*]"]),
    max_size=6,
)


@settings(max_examples=500)
@given(steps=simple_steps, relative=st.booleans())
def test_simple_paths_read_without_the_library_plan_as_the_library_reads_them(
    steps: list[str], relative: bool
) -> None:
    from ucf.core import jsonpath as ours

    text = "$" + "".join(steps)
    expression = text[2:] if relative and text.startswith("$.") else text
    read = ours._simple_steps(text)
    assert read is not None
    library = ours._plan(expression, ours._environment().compile(text))
    path = compile_path(expression)
    assert type(path) is type(library)
    assert (path.canonical, path.is_singular) == (library.canonical, library.is_singular)
    assert ours.plain_steps(path) == ours.plain_steps(library)


@pytest.mark.parametrize(
    "expression", ["$.a-b", "$['a']", "$.é", "$[-1]", "$[01]", "$[ 0 ]", "$..a", "$.a.b ."]
)
def test_paths_the_simple_reader_does_not_know_go_to_the_library(expression: str) -> None:
    from ucf.core import jsonpath as ours

    assert ours._simple_steps(expression) is None


def test_simple_paths_compile_without_loading_python_jsonpath() -> None:
    """A poll whose descriptor has only plain paths never pays for the library's lexer."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from ucf.core.jsonpath import compile_path\n"
        "compile_path('$.items[*].fields.summary'); compile_path('labels[0].name')\n"
        "assert 'jsonpath' not in sys.modules, 'simple paths loaded python-jsonpath'\n"
        "compile_path('$..name')\n"
        "assert 'jsonpath' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
