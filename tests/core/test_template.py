"""Templates substitute names, escape for their destination, and never run code."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ucf.core.jsonpath import MISSING, compile_path
from ucf.core.template import (
    Placeholder,
    TemplateSyntaxError,
    compile_template,
    json_string_content,
    plain,
    render_json,
    url_component,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


def lookup(values: dict[str, Any]) -> Any:
    return lambda name: values.get(name, MISSING)


def test_url_templates_substitute_config_and_checkpoint() -> None:
    template = compile_template(
        "{{baseUrl}}/repos/{{ config.owner }}/{{config.repo}}/issues?since={{checkpoint}}"
    )
    assert template.variables == {"baseUrl", "config.owner", "config.repo", "checkpoint"}
    rendered = template.render(
        lookup(
            {
                "baseUrl": "https://api.github.com",
                "config.owner": "octo",
                "config.repo": "hello",
                "checkpoint": "2024-01-01T00:00:00Z",
            }
        )
    )
    assert rendered == "https://api.github.com/repos/octo/hello/issues?since=2024-01-01T00:00:00Z"


def test_placeholders_record_name_and_span_in_the_source() -> None:
    template = compile_template("x {{ a.b }} y {{c}}")
    assert template.placeholders == (
        Placeholder(name="a.b", start=2, end=11),
        Placeholder(name="c", start=14, end=19),
    )
    assert template.literals == ("x ", " y ", "")


@pytest.mark.parametrize(
    "name",
    [
        "baseUrl",
        "config.owner",
        "credentials.apiKey",
        "user.login",
        "labels[0].name",
        "labels[-1].name",
        "labels[*].name",
        "fields['Story Points']",
        'fields["a \\" quote"]',
        "fields['a}}b']",
        "$.fields.summary",
        "x-request-id",
        "données.été",
    ],
)
def test_names_authors_use_are_accepted_verbatim_and_are_valid_item_paths(name: str) -> None:
    template = compile_template(f"<{{{{ {name} }}}}>")
    assert template.variables == {name}
    assert template.render(lookup({name: "V"})) == "<V>"
    compile_path(name)  # summary templates resolve names as item paths


@pytest.mark.parametrize(
    ("source", "position", "fragment"),
    [
        ("{{", 0, "never closed"),
        ("abc {{ name", 4, "never closed"),
        ("{{}}", 0, "empty placeholder"),
        ("a{{   }}", 1, "empty placeholder"),
        ("{{ a {{ b }} }}", 5, "nested braces"),
        ("{{{a}}}", 2, "nested braces"),
        ("{{ a | upper }}", 0, "not a name"),
        ("{{ a + 1 }}", 0, "not a name"),
        ("{{ __import__('os').system('id') }}", 0, "not a name"),
        ("{{ items[0]() }}", 0, "not a name"),
        ("{{ 1a }}", 0, "not a name"),
        ("{{ a['unterminated }}", 0, "unterminated quote"),
    ],
)
def test_malformed_templates_are_rejected_with_the_position(
    source: str, position: int, fragment: str
) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(source)
    assert caught.value.position == position
    assert fragment in str(caught.value)
    assert f"column {position + 1}" in str(caught.value)


def test_errors_in_multi_line_bodies_give_line_and_column() -> None:
    with pytest.raises(TemplateSyntaxError, match="line 3, column 5"):
        compile_template('{\n  "a": 1,\n  "b{{": 2\n}')


def test_a_name_is_only_ever_looked_up_never_evaluated() -> None:
    asked: list[str] = []

    def resolve(name: str) -> Any:
        asked.append(name)
        return MISSING

    assert compile_template("{{ a.__class__.__mro__ }}").render(resolve) == ""
    assert asked == ["a.__class__.__mro__"]


def test_escaped_braces_are_literal_text() -> None:
    template = compile_template("\\{{not a placeholder}} {{real}}")
    assert template.variables == {"real"}
    assert template.render(lookup({"real": 1})) == "{{not a placeholder}} 1"


def test_graphql_closing_braces_are_plain_text() -> None:
    query = "query($after: String) { issues(after: $after) { nodes { id }}}"
    assert compile_template(query).render(lookup({})) == query


def test_missing_and_null_values_render_empty() -> None:
    template = compile_template("[{{a}}|{{b}}]")
    assert template.render(lookup({"b": None})) == "[|]"


def test_single_placeholder_is_recognised_only_when_it_is_the_whole_template() -> None:
    assert compile_template("{{checkpoint}}").is_single_placeholder
    assert compile_template("{{ checkpoint }}").is_single_placeholder
    assert not compile_template(" {{checkpoint}}").is_single_placeholder
    assert not compile_template("{{a}}{{b}}").is_single_placeholder
    assert not compile_template("plain").is_single_placeholder


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("text", "text"),
        (None, ""),
        (MISSING, ""),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (42, "42"),
        (1.5, "1.5"),
        (["a", 1], '["a",1]'),
        ({"k": "é"}, '{"k":"é"}'),
    ],
)
def test_plain_renders_values_in_json_spelling(value: Any, text: str) -> None:
    assert plain("x", value) == text


def test_url_component_keeps_values_from_changing_the_request() -> None:
    template = compile_template("{{baseUrl}}/search?q={{q}}")
    rendered = template.render(
        lookup({"baseUrl": "https://h", "q": "a&b=c/d?e#f g"}),
        lambda name, value: plain(name, value) if name == "baseUrl" else url_component(name, value),
    )
    assert rendered == "https://h/search?q=a%26b%3Dc%2Fd%3Fe%23f%20g"


def test_json_string_content_cannot_break_out_of_the_string() -> None:
    body = compile_template('{"title": "{{title}}"}').render(
        lookup({"title": 'x", "admin": true, "y": "\\'}), json_string_content
    )
    assert json.loads(body) == {"title": 'x", "admin": true, "y": "\\'}


def test_escapes_never_raise_on_lone_surrogates_from_json_input() -> None:
    lone = json.loads('"\\ud800x"')
    assert url_component("x", lone) == "%3Fx"
    assert json.loads('"' + json_string_content("x", lone) + '"') == lone


def test_render_json_keeps_types_for_whole_value_placeholders() -> None:
    body: dict[str, Any] = {
        "query": "query($after: String) { issues(after: $after) { nodes { id }}}",
        "variables": {
            "after": "{{pageToken}}",
            "since": "{{checkpoint}}",
            "first": "{{config.pageSize}}",
            "label": "team {{config.team}}",
            "{{notAKey}}": ["{{config.pageSize}}", 3, None, False],
        },
    }
    rendered = render_json(
        body,
        lookup({"pageToken": None, "config.pageSize": 50, "config.team": "core"}),
    )
    assert rendered == {
        "query": body["query"],
        "variables": {
            "after": None,
            "since": None,
            "first": 50,
            "label": "team core",
            "{{notAKey}}": [50, 3, None, False],
        },
    }
    assert body["variables"]["after"] == "{{pageToken}}"  # the template is not mutated


def test_templates_are_parsed_once_and_shared() -> None:
    assert compile_template("{{a}}") is compile_template("{{a}}")


# --- properties -------------------------------------------------------------------


@given(st.text().filter(lambda text: "{{" not in text))
def test_text_without_placeholders_renders_to_itself(text: str) -> None:
    template = compile_template(text)
    assert template.placeholders == ()
    assert template.render(lookup({})) == text


names = st.sampled_from(["a", "config.owner", "labels[0].name", "fields['x y']", "$.b"])
# A backslash right before "{{" escapes it, so literals here carry none.
literals = st.text().filter(lambda text: not set(text) & set("{}\\"))


@given(st.lists(st.tuples(literals, names), max_size=4), literals, st.lists(json_values))
def test_rendering_substitutes_each_placeholder_between_its_literals(
    pieces: list[tuple[str, str]], tail: str, values: list[Any]
) -> None:
    source = "".join(f"{text}{{{{{name}}}}}" for text, name in pieces) + tail
    table = {
        name: values[i] if i < len(values) else MISSING
        for i, name in enumerate(sorted({n for _, n in pieces}))
    }
    expected = "".join(text + plain(name, table[name]) for text, name in pieces) + tail
    assert compile_template(source).render(lookup(table)) == expected


@given(json_values, st.sampled_from([plain, url_component, json_string_content]))
def test_rendering_never_raises_for_any_json_value(value: Any, escape: Any) -> None:
    rendered = compile_template("a {{x}} b {{y}}").render(lambda name: value, escape)
    assert isinstance(rendered, str)


@given(json_values)
def test_url_component_round_trips_through_unquote(value: Any) -> None:
    encoded = url_component("x", value)
    assert encoded.isascii()
    assert set(encoded) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%"
    )
    assert unquote(encoded) == plain("x", value)


@given(json_values)
def test_json_string_content_parses_back_to_the_original_text(value: Any) -> None:
    assert json.loads('"' + json_string_content("x", value) + '"') == plain("x", value)


untemplated_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text().filter(lambda text: "{{" not in text),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(untemplated_json)
def test_render_json_leaves_bodies_without_placeholders_unchanged(value: Any) -> None:
    assert render_json(value, lookup({})) == value
