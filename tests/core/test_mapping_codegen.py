"""The generated mapping function against the interpreter it replaces on the hot path.

``CompiledMapping.map`` runs code written out by ``ucf.core.mapping_codegen``;
``CompiledMapping.interpret`` walks the planned closures and stays the
reference. Hypothesis draws descriptors (plain, wildcard and query paths,
every operator, ``all``, ``valuePath``, event types, priority tables, skip
conditions, version paths, timestamp formats) and items (missing fields,
nulls, numbers where strings are expected, arrays of objects) and holds both
equal: the same signal or the same error, and the same skip decision.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ucf.core.descriptor import FieldMappingDescriptor
from ucf.core.mapping import (
    CompiledMapping,
    FallbackVersion,
    ItemMappingError,
    MappedSignal,
    compile_mapping,
)

KEYS = ("id", "t", "a", "name", "labels", "state")
PATHS = (
    "$.id",
    "id",
    "t",
    "a",
    "a.t",
    "a.id",
    "a.a.id",
    "state",
    "$.labels[*].name",
    "a.labels[*].name",
    "more[*].name",
    "labels[*]",
    "labels[0].name",
    "labels[-1]",
    "$.a.*",
    "$..name",
    "$.labels[?@.name == 'P1'].name",
    "$['odd key']",
    "$",
)
WORDS = ("P1", "closed", "", "1", "true", "x y")
TIMES = (
    "2024-01-01T12:00:00Z",
    "2024-01-01T12:00:00.123456+02:00",
    "2024-01-01",
    "1700000000",
    "1700000000123",
    "not a date",
    "2024-02-30T12:00:00Z",  # the shape of a canonical time, but no date
    "2024-01-01T12:00:00.987Z",
)
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

words = st.sampled_from(WORDS)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=1_700_000_000_123),
    st.sampled_from([1.5, 0.0]),
    st.sampled_from(WORDS + TIMES),
)
labels = st.lists(
    st.one_of(
        st.fixed_dictionaries({"name": scalars}),
        st.fixed_dictionaries({"name": words}),
        scalars,
        st.just({}),
    ),
    max_size=5,
)
values = st.one_of(
    scalars,
    labels,
    st.dictionaries(st.sampled_from(KEYS), scalars, max_size=3),
    # Objects in objects: paths that pass through one, or meet a value that is not one.
    st.dictionaries(
        st.sampled_from(KEYS),
        st.one_of(scalars, labels, st.dictionaries(st.sampled_from(KEYS), scalars, max_size=3)),
        max_size=3,
    ),
)
_item_shapes = (
    # Items that map (an id and a good time) are the ones that exercise every part.
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.integers(1, 9), words.filter(bool)),
            "t": st.sampled_from(TIMES[:3]),
            "labels": labels,
            "state": scalars,
        },
        optional={"a": values, "name": scalars, "odd key": values},
    ),
    st.fixed_dictionaries(
        {
            "id": st.integers(1, 9),
            "t": st.sampled_from(TIMES[:2]),
            "labels": labels,
            "state": st.sampled_from(["closed", "true", "P1", "x y"]),
            "a": st.fixed_dictionaries(
                {"t": st.sampled_from(TIMES[:2]), "id": words},
                optional={"labels": labels, "a": values},
            ),
            "more": st.lists(st.fixed_dictionaries({"name": words}), min_size=3, max_size=5),
        }
    ),
    st.dictionaries(st.sampled_from((*KEYS, "odd key")), values, max_size=6),
    st.fixed_dictionaries(
        {
            "id": scalars,
            "t": st.sampled_from(TIMES),
            "labels": labels,
            "a": values,
            "state": scalars,
        }
    ),
    st.one_of(scalars, st.just([])),
)
#: Mostly items that map: one of the first two shapes seven times in ten.
items = st.integers(0, 9).flatmap(lambda n: _item_shapes[0 if n < 4 else 1 if n < 7 else n - 5])

paths = st.sampled_from(PATHS)


def _condition_dict(operator: str, when: str, value: Any, value_path: str | None) -> dict[str, Any]:
    condition: dict[str, Any] = {"when": when, "operator": operator}
    if operator in ("exists", "not_exists"):
        return condition
    if value_path is not None and operator in ("equals", "not_equals", "contains"):
        condition["valuePath"] = value_path
        return condition
    if operator == "in":
        condition["value"] = value if isinstance(value, list) else [value]
    elif operator == "matches":
        condition["value"] = "^P[0-9]$"
    else:
        condition["value"] = value if isinstance(value, str) else value[0]
    return condition


conditions = st.builds(
    _condition_dict,
    # The operators the generator writes out itself come up most.
    st.sampled_from(
        ["equals", "equals", "not_equals", "contains", "exists", "not_exists", "matches", "in"]
    ),
    # Paths the items of the second shape always have, so conditions often hold.
    st.sampled_from(("state", "state", "id", "$.labels[*].name", "more[*].name", "a.id", *PATHS)),
    st.one_of(words, st.lists(words, min_size=1, max_size=3)),
    st.sampled_from((None, None, None, "a.id", "state", "labels[0].name", "a.*", "t")),
)


def _rule(condition: dict[str, Any], then: str, more: list[Any], events: Any) -> dict[str, Any]:
    rule = {**condition, "then": then}
    if more:
        rule["all"] = more
    if events is not None:
        rule["eventTypes"] = events
    return rule


type_rules = st.lists(
    st.builds(
        _rule,
        conditions,
        st.sampled_from(["created", "updated", "closed"]),
        st.lists(conditions, max_size=2),
        st.one_of(st.none(), st.just(["issues"]), st.just(["issues.closed", "push"])),
    ),
    max_size=4,
)
#: Priority rules often share a path (the label table): draw the table shape as well.
table_rule = st.builds(
    lambda when, value, then: {"when": when, "operator": "in", "value": value, "then": then},
    st.sampled_from(["$.labels[*].name", "state", "more[*].name"]),
    st.lists(words, min_size=1, max_size=3),
    st.sampled_from(["critical", "high", "medium", "low"]),
)
priority_rules = st.lists(
    st.one_of(
        table_rule,
        table_rule,
        st.builds(_rule, conditions, st.sampled_from(["high", "low"]), st.just([]), st.none()),
    ),
    max_size=5,
)
templates = st.lists(
    st.one_of(
        st.sampled_from(["#", " ", "text ", "}}", "\\{{ "]),
        st.sampled_from(["id", "a.t", "labels[*].name", "labels[0]", "$", "a.*"]).map(
            lambda p: "{{" + p + "}}"
        ),
    ),
    max_size=4,
).map("".join)


@st.composite
def descriptors(draw: st.DrawFn) -> FieldMappingDescriptor:
    spec: dict[str, Any] = {
        "itemsPath": "$",
        "idPath": draw(
            st.sampled_from(
                ["$.id", "id", "$.id", "id", "$.id", "a.id", "labels[0].name", "$..name"]
            )
        ),
        "timestampPath": draw(st.sampled_from(["t", "t", "t", "a.t", "$.id", "state"])),
        "timestampFormat": draw(
            st.sampled_from(["auto", "iso8601", "auto", "auto", "auto", "unix", "unix_ms"])
        ),
        "summaryTemplate": draw(templates),
        "signalTypeRules": draw(type_rules),
        "defaultType": draw(st.sampled_from(["unknown", "other"])),
        "versionPrecision": draw(st.sampled_from(["millisecond", "second", "minute"])),
    }
    optional = {
        "priorityMapping": priority_rules,
        "participantsPath": paths,
        "tagsPath": paths,
        "relatedItemsPath": paths,
        # Objects in runs and split apart, a leaf beside the object it names, repeats.
        "rawFields": st.lists(
            st.sampled_from(
                [
                    *("id", "a.t", "a.id", "state", "labels[*].name", "$['odd key']"),
                    *("a", "a.a.id", "a.a.t", "$.a.t", "a.labels[*].name", "a.labels"),
                ]
            ),
            max_size=5,
        ),
        "skip": st.lists(conditions, max_size=2),
        "versionPath": st.sampled_from(["t", "a", "state", "labels[*].name"]),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            spec[name] = draw(strategy)
    return FieldMappingDescriptor.model_validate(spec)


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        signal: MappedSignal = run()
    except ItemMappingError as error:
        return ("error", (error.reason, error.item_id))
    # The JSON text too: stored signals keep the order of raw's keys.
    text = json.dumps(signal.wire, default=repr)
    return ("signal", (signal.wire, text, signal.dedup_key, signal.item_id, signal.version))


def _lazy_delivery_id() -> str:
    """A fallback version given as the function that makes it (the gateway's way)."""
    return "delivery-1"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    descriptors(),
    st.lists(items, min_size=1, max_size=4),
    st.sampled_from([None, "issues", "issues.closed", "push"]),
    st.sampled_from([None, "delivery-1", _lazy_delivery_id]),
    st.sampled_from([None, NOW]),
)
def test_generated_function_maps_as_the_interpreter(
    spec: FieldMappingDescriptor,
    batch: list[Any],
    event_type: str | None,
    fallback: FallbackVersion | None,
    now: datetime | None,
) -> None:
    mapping = CompiledMapping(spec)
    for item in batch:
        generated = _outcome(
            lambda item=item: mapping.map(
                item, "c", "p", event_type=event_type, fallback_version=fallback, now=now
            )
        )
        reference = _outcome(
            lambda item=item: mapping.interpret(
                item, "c", "p", event_type=event_type, fallback_version=fallback, now=now
            )
        )
        assert generated == reference, mapping.generated.source
        generated_skip = mapping.generated.skip is not None and mapping.generated.skip(item)
        assert generated_skip == mapping.skipped(item)
    result = mapping.map_items(
        batch, "c", "p", event_type=event_type, fallback_version=fallback, now=now
    )
    assert result.skipped + len(result.signals) + len(result.errors) == len(batch)
    event("maps" if result.signals else "nothing maps")


_RULES: list[dict[str, Any]] = [
    {"when": "state", "operator": "equals", "value": "closed"},
    {"when": "state", "operator": "not_equals", "value": "closed"},
    {"when": "a.t", "operator": "equals", "valuePath": "t"},
    {"when": "labels[*].name", "operator": "equals", "value": "P1"},
    {"when": "n", "operator": "equals", "value": "12"},
    {"when": "state", "operator": "exists"},
    {"when": "labels[*]", "operator": "not_exists"},
    {"when": "labels[*].name", "operator": "contains", "value": "bug"},
    {
        "when": "state",
        "operator": "equals",
        "value": "closed",
        "all": [{"when": "n", "operator": "exists"}],
    },
]
_ITEMS: list[dict[str, Any]] = [
    {"state": "closed", "t": "2024-01-01T00:00:00Z", "a": {"t": "2024-01-01T00:00:00Z"}},
    {"state": "closed!", "labels": [{"name": "P1"}, {"name": "bug"}], "n": 12},
    {"state": None, "labels": [], "n": "12", "a": {"t": 5}},
    {"labels": [{"name": ["P1"]}, {}, "bug"], "n": 12.0},
    {"state": "closed", "n": 0},
]


@pytest.mark.parametrize("rule", _RULES, ids=lambda rule: json.dumps(rule))
def test_each_operator_the_generator_writes_out_decides_as_the_interpreter(
    rule: dict[str, Any],
) -> None:
    """Every specialised condition, held and not held, as a type rule, a priority and a skip."""
    spec = FieldMappingDescriptor.model_validate(
        {
            "itemsPath": "$",
            "idPath": "id",
            "timestampPath": "t",
            "summaryTemplate": "{{state}}",
            "signalTypeRules": [{**rule, "then": "hit"}],
            "priorityMapping": [{**rule, "then": "high"}],
            "skip": [{k: v for k, v in rule.items() if k != "all"}],
        }
    )
    mapping = CompiledMapping(spec)
    assert mapping.generated.skip is not None
    decided = set()
    for extra in _ITEMS:
        item = {"id": 1, "t": "2024-01-01T00:00:00Z", **extra}
        signal = mapping.map(item, "c", "p")
        assert signal == mapping.interpret(item, "c", "p")
        assert mapping.generated.skip(item) == mapping.skipped(item)
        decided.add(signal.wire["type"])
    assert decided == {"hit", "unknown"}  # each rule holds for some items and not others


CATALOGUE = Path(__file__).resolve().parents[2] / "src/ucf/catalogue"


@pytest.mark.parametrize("name", sorted(p.name for p in CATALOGUE.glob("*.json")))
def test_every_catalogue_mapping_generates_and_compiles(name: str) -> None:
    document = json.loads((CATALOGUE / name).read_text())
    for key in ("fieldMapping", "webhookFieldMapping"):
        if isinstance(document.get(key), dict):
            mapping = CompiledMapping(FieldMappingDescriptor.model_validate(document[key]))
            assert "def map_one(" in mapping.generated.source


HOSTILE = '"]; __import__("os").system("touch /tmp/ucf-pwned") #'


def test_descriptor_text_never_reaches_the_generated_source(tmp_path: Path) -> None:
    """Paths, templates and rule values are constants: hostile text is only data."""
    marker = tmp_path / "pwned"
    attack = HOSTILE.replace("/tmp/ucf-pwned", str(marker))
    key = f"x{attack}"
    spec = FieldMappingDescriptor.model_validate(
        {
            "itemsPath": "$",
            "idPath": f"$[{json.dumps(key)}]",
            "timestampPath": "t",
            "summaryTemplate": attack + "{{" + f"[{json.dumps(key)}]" + "}}' + '\\n" + attack,
            "signalTypeRules": [
                {
                    "when": f"$[{json.dumps(key)}]",
                    "operator": "equals",
                    "value": attack,
                    "then": attack,
                }
            ],
            "rawFields": [f"$[{json.dumps(key)}]"],
            "defaultType": attack,
        }
    )
    mapping = CompiledMapping(spec)
    source = mapping.generated.source
    assert "__import__" not in source
    assert "system" not in source
    assert '"' not in source
    signal = mapping.map({key: attack, "t": "2024-01-01T00:00:00Z"}, "c", "p")
    assert not marker.exists()
    assert signal.wire["type"] == attack
    assert signal.wire["raw"] == {f"$[{json.dumps(key)}]": attack}
    assert signal.wire["summary"].startswith(attack + attack)
    assert signal == mapping.interpret({key: attack, "t": "2024-01-01T00:00:00Z"}, "c", "p")


def test_compiled_mappings_are_shared_per_content() -> None:
    spec = {
        "itemsPath": "$",
        "idPath": "id",
        "timestampPath": "t",
        "summaryTemplate": "{{id}}",
        "signalTypeRules": [],
    }
    first = compile_mapping(FieldMappingDescriptor.model_validate(spec))
    assert compile_mapping(FieldMappingDescriptor.model_validate(spec)) is first
    changed = compile_mapping(FieldMappingDescriptor.model_validate({**spec, "idPath": "t"}))
    assert changed is not first


_RAW_LAYOUTS: list[list[str]] = [
    ["a.t", "a.id", "state"],  # one object's run
    ["a.t", "id", "a.id"],  # an object's fields split by another key
    ["a", "a.t"],  # a leaf, then an object at the same key
    ["a.t", "a"],
    ["a.a.id", "a.t", "a.a.t"],  # an object in an object, split
    ["a.a.id", "a.a.t", "a.t", "labels[*].name"],
    ["a.t", "a.t", "$.a.t", "id"],  # one field named three times
]
_RAW_ITEMS: list[dict[str, Any]] = [
    {"a": {"t": "x", "id": "y", "a": {"id": 1, "t": None}}, "state": "s", "labels": []},
    {"a": {"a": "not an object"}, "labels": [{"name": "P1"}]},
    {"a": [1, 2], "state": None},
    {"a": {"id": "only"}},
    {},
]


@pytest.mark.parametrize("fields", _RAW_LAYOUTS, ids=",".join)
def test_raw_fields_in_every_layout_are_placed_as_the_interpreter_does(
    fields: list[str],
) -> None:
    """Objects built apart and put in place keep the interpreter's key order and values."""
    spec = FieldMappingDescriptor.model_validate(
        {
            "itemsPath": "$",
            "idPath": "id",
            "timestampPath": "t",
            "summaryTemplate": "",
            "signalTypeRules": [],
            "rawFields": fields,
        }
    )
    mapping = CompiledMapping(spec)
    for extra in _RAW_ITEMS:
        item = {"id": 1, "t": "2024-01-01T00:00:00Z", **json.loads(json.dumps(extra))}
        reference = mapping.interpret(item, "c", "p").wire["raw"]
        generated = mapping.map(item, "c", "p").wire["raw"]
        assert json.dumps(generated) == json.dumps(reference), mapping.generated.source
