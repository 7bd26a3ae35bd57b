"""The field mapping engine: raw items in, signals (or per-item reasons) out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ucf.core.descriptor import FieldMappingDescriptor
from ucf.core.mapping import CompiledMapping, _name_of, as_text, names, table_lookup
from ucf.core.signal import NormalisedSignal, dedup_key
from ucf.core.validation import parse_descriptor

ROOT = Path(__file__).resolve().parents[2]
GITHUB = json.loads((ROOT / "src/ucf/catalogue/github-issues.json").read_text())


def mapping(**fields: Any) -> CompiledMapping:
    base: dict[str, Any] = {
        "itemsPath": "$.items",
        "idPath": "$.id",
        "timestampPath": "$.updated",
        "summaryTemplate": "{{title}}",
        "signalTypeRules": [],
    }
    base.update(fields)
    return CompiledMapping(FieldMappingDescriptor.model_validate(base))


def github_issue(**overrides: Any) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "id": 1347,
        "number": 42,
        "title": "Login page crashes",
        "state": "open",
        "html_url": "https://github.com/octo/hello/issues/42",
        "user": {"login": "octocat", "id": 1},
        "labels": [{"name": "bug"}, {"name": "P1"}, {"name": "bug"}],
        "assignees": [{"login": "hubot"}, {"login": "monalisa"}],
        "comments": 3,
        "created_at": "2024-01-01T12:00:00Z",
        "updated_at": "2024-01-02T08:30:00Z",
        "closed_at": None,
        "body": "secret stuff not kept",
    }
    issue.update(overrides)
    return issue


def github_mapping() -> CompiledMapping:
    descriptor = parse_descriptor(GITHUB)
    assert descriptor.field_mapping is not None
    return CompiledMapping(descriptor.field_mapping)


def test_github_issue_becomes_the_signal_the_pipeline_expects() -> None:
    mapped = github_mapping().map(github_issue(), "github-issues", "proj-1")
    wire = mapped.signal.to_wire()
    assert wire["source"] == "github-issues"
    assert wire["projectId"] == "proj-1"
    assert wire["timestamp"] == "2024-01-02T08:30:00.000Z"
    assert wire["type"] == "issue_updated"
    assert wire["summary"] == "#42 Login page crashes"
    assert wire["metadata"] == {
        "priority": "high",
        "participants": ["hubot", "monalisa"],
        "relatedTickets": [],
        "tags": ["bug", "P1"],
    }
    assert wire["raw"] == {
        "number": 42,
        "title": "Login page crashes",
        "state": "open",
        "html_url": "https://github.com/octo/hello/issues/42",
        "user": {"login": "octocat"},
        "comments": 3,
        "created_at": "2024-01-01T12:00:00Z",
        "updated_at": "2024-01-02T08:30:00Z",
        "closed_at": None,
    }
    assert mapped.dedup_key == dedup_key(
        "github-issues", "proj-1", "1347", "2024-01-02T08:30:00.000Z"
    )
    # What comes out is valid under the contract, not just constructed.
    NormalisedSignal.model_validate(wire)


def test_new_issue_is_issue_created_by_comparing_two_fields() -> None:
    issue = github_issue(updated_at="2024-01-01T12:00:00Z")
    assert github_mapping().map(issue, "github-issues", "p").signal.type == "issue_created"


def test_same_item_same_version_gives_same_key_and_id_new_version_differs() -> None:
    engine = github_mapping()
    first = engine.map(github_issue(), "github-issues", "p")
    again = engine.map(github_issue(), "github-issues", "p")
    newer = engine.map(github_issue(updated_at="2024-01-03T00:00:00Z"), "github-issues", "p")
    assert (first.dedup_key, first.signal.id) == (again.dedup_key, again.signal.id)
    assert newer.dedup_key != first.dedup_key


def test_no_rule_matching_gives_unknown_type() -> None:
    engine = mapping(
        signalTypeRules=[{"when": "$.kind", "operator": "equals", "value": "x", "then": "x"}]
    )
    result = engine.map_response({"items": [{"id": 1, "updated": 0, "title": "t"}]}, "c", "p")
    assert result.signals[0].signal.type == "unknown"


def test_rules_are_first_match_and_all_conditions_must_hold() -> None:
    engine = mapping(
        signalTypeRules=[
            {
                "when": "$.state",
                "operator": "equals",
                "value": "closed",
                "all": [{"when": "$.merged", "operator": "equals", "value": "true"}],
                "then": "pr_merged",
            },
            {"when": "$.state", "operator": "equals", "value": "closed", "then": "pr_closed"},
            {"when": "$.title", "operator": "matches", "value": "(?i)^wip", "then": "draft"},
            {"when": "$.labels", "operator": "contains", "value": "bug", "then": "bug"},
        ]
    )
    items = [
        {"id": 1, "updated": 1, "state": "closed", "merged": True},
        {"id": 2, "updated": 1, "state": "closed", "merged": False},
        {"id": 3, "updated": 1, "title": "WIP: thing"},
        {"id": 4, "updated": 1, "labels": ["ui", "bug"]},
    ]
    types = [m.signal.type for m in engine.map_items(items, "c", "p").signals]
    assert types == ["pr_merged", "pr_closed", "draft", "bug"]


def test_webhook_rules_can_require_the_event_type() -> None:
    engine = mapping(
        signalTypeRules=[
            {
                "when": "$.id",
                "operator": "exists",
                "eventTypes": ["issues.opened"],
                "then": "created",
            },
            {"when": "$.id", "operator": "exists", "eventTypes": ["issues"], "then": "updated"},
        ]
    )
    item = {"id": 1, "updated": 1}
    assert engine.map(item, "c", "p", event_type="issues.opened").signal.type == "created"
    assert engine.map(item, "c", "p", event_type="issues.edited").signal.type == "updated"
    assert engine.map(item, "c", "p").signal.type == "unknown"


def test_timestamps_in_every_catalogue_format_normalise_to_utc_z() -> None:
    engine = mapping()
    cases = {
        "2024-01-01T12:00:00Z": "2024-01-01T12:00:00.000Z",
        "2024-01-01T13:00:00.123+01:00": "2024-01-01T12:00:00.123Z",
        "2024-01-01T12:00:00.000+0000": "2024-01-01T12:00:00.000Z",
        1704110400: "2024-01-01T12:00:00.000Z",
        1704110400123: "2024-01-01T12:00:00.123Z",
        "1704110400.000200": "2024-01-01T12:00:00.000Z",
    }
    for raw, expected in cases.items():
        mapped = engine.map({"id": "x", "updated": raw}, "c", "p")
        assert mapped.signal.timestamp == expected, raw


def test_unmappable_items_give_reasons_and_the_batch_goes_on() -> None:
    engine = mapping()
    response = {
        "items": [
            {"id": 1, "updated": "2024-01-01T00:00:00Z", "title": "ok"},
            {"updated": "2024-01-01T00:00:00Z"},
            {"id": 3, "updated": "last tuesday"},
            {"id": 4},
            "not an object",
            {"id": 6, "updated": "2024-01-01T00:00:00Z", "title": "also ok"},
            None,
            7,
            [8],
        ]
    }
    result = engine.map_response(response, "c", "p")
    assert [m.item_id for m in result.signals] == ["1", "6"]
    reasons = {e.index: e.reason for e in result.errors}
    assert reasons[1] == "no id at $.id"
    assert "'last tuesday'" in reasons[2]
    assert "not a date" in reasons[2]
    assert reasons[3] == "no timestamp at $.updated"
    # In JSON's words (it said "item is a NoneType" for null, "a int" for 7):
    assert reasons[4] == "item is a string, not an object"
    assert reasons[6] == "item is null, not an object"
    assert reasons[7] == "item is a number, not an object"
    assert reasons[8] == "item is an array, not an object"


def test_webhook_without_timestamp_uses_the_receive_time() -> None:
    now = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    mapped = mapping().map({"id": 1}, "c", "p", now=now, fallback_version="delivery-1")
    assert mapped.signal.timestamp == "2024-05-01T09:00:00.000Z"
    assert mapped.version == "delivery-1"


def test_participants_and_tags_from_strings_or_objects_are_deduplicated() -> None:
    assert names(["a", {"login": "b"}, {"name": "c"}, "a", {"email": "d@x"}, None, 5]) == [
        "a",
        "b",
        "c",
        "d@x",
        "5",
    ]
    assert names("solo") == ["solo"]
    assert names(None) == []


def test_summary_is_bounded_and_missing_values_render_empty() -> None:
    engine = mapping(summaryTemplate="[{{key}}] {{title}} by {{user.name}}")
    long = engine.map({"id": 1, "updated": 1, "key": "K", "title": "x" * 600}, "c", "p")
    assert len(long.signal.summary) == 500
    short = engine.map({"id": 1, "updated": 1, "title": "T"}, "c", "p")
    assert short.signal.summary == "[] T by "


def test_items_path_on_an_object_yields_that_object() -> None:
    engine = mapping(itemsPath="$.issue")
    assert engine.extract_items({"issue": {"id": 1}}) == [{"id": 1}]
    assert engine.extract_items({"other": 1}) == []
    assert mapping(itemsPath="$").extract_items([{"id": 1}, {"id": 2}]) == [{"id": 1}, {"id": 2}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(response=json_values)
def test_arbitrary_json_never_raises_out_of_the_engine(response: Any) -> None:
    engine = github_mapping()
    result = engine.map_response(response, "github-issues", "p")
    for mapped in result.signals:
        NormalisedSignal.model_validate(mapped.signal.to_wire())


@settings(max_examples=200, deadline=None)
@given(
    item=st.dictionaries(
        st.sampled_from(
            ["id", "updated_at", "created_at", "title", "labels", "assignees", "number"]
        ),
        json_values,
    )
)
def test_arbitrary_github_like_items_map_or_give_a_reason(item: dict[str, Any]) -> None:
    result = github_mapping().map_items([item], "github-issues", "p")
    assert len(result.signals) + len(result.errors) == 1


# --------------------------------------------------------------------------- signal identity


def test_a_change_seen_by_a_poll_and_by_a_webhook_is_one_signal() -> None:
    """The webhook's delivery id is no part of the identity when the item has a version."""
    issue = github_issue()
    engine = github_mapping()
    polled = engine.map(issue, "github-issues", "p")
    pushed = engine.map(issue, "github-issues", "p", fallback_version="delivery-1")
    replayed = engine.map(issue, "github-issues", "p", fallback_version="delivery-2")
    assert polled.dedup_key == pushed.dedup_key == replayed.dedup_key
    assert polled.signal.id == pushed.signal.id == replayed.signal.id
    assert polled.version == "2024-01-02T08:30:00.000Z"


def test_a_new_update_time_is_a_new_signal() -> None:
    engine = github_mapping()
    before = engine.map(github_issue(), "github-issues", "p")
    after = engine.map(github_issue(updated_at="2024-01-02T08:31:00Z"), "github-issues", "p")
    assert before.dedup_key != after.dedup_key


def test_the_delivery_id_is_the_version_only_of_an_item_without_one() -> None:
    now = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    first = mapping().map({"id": 1}, "c", "p", now=now, fallback_version="d-1")
    second = mapping().map({"id": 1}, "c", "p", now=now, fallback_version="d-2")
    assert (first.version, second.version) == ("d-1", "d-2")
    assert first.dedup_key != second.dedup_key


def test_a_version_path_missing_from_an_item_falls_back_to_its_time() -> None:
    engine = mapping(versionPath="$.rev")
    without = engine.map({"id": 1, "updated": "2024-05-01T09:00:00Z"}, "c", "p")
    other = engine.map({"id": 1, "updated": "2024-05-01T09:05:00Z"}, "c", "p")
    assert without.version == "2024-05-01T09:00:00.000Z"
    assert without.dedup_key != other.dedup_key  # never one empty version for every item
    assert engine.map({"id": 1, "updated": "2024-05-01T09:00:00Z", "rev": 7}, "c", "p").version == (
        "7"
    )


def test_times_in_a_version_compare_as_instants_whichever_channel_wrote_them() -> None:
    """Sentry lists lastSeen with milliseconds and pushes it with microseconds."""
    engine = mapping(versionPath="$['updated','status','assignedTo']")
    listed = {"id": 1, "updated": "2024-05-01T09:00:00.391Z", "status": "resolved"}
    pushed = {**listed, "updated": "2024-05-01T09:00:00.391000Z"}
    assert engine.map(listed, "c", "p").dedup_key == engine.map(pushed, "c", "p").dedup_key
    reopened = {**listed, "status": "unresolved"}
    assert engine.map(listed, "c", "p").dedup_key != engine.map(reopened, "c", "p").dedup_key
    assigned = {**listed, "assignedTo": {"id": "7"}}
    assert engine.map(listed, "c", "p").dedup_key != engine.map(assigned, "c", "p").dedup_key


def test_version_precision_compares_times_in_the_declared_unit() -> None:
    """Notion's last_edited_time is the minute; its events carry the millisecond."""
    engine = mapping(versionPrecision="minute")
    polled = engine.map({"id": "p", "updated": "2024-05-01T09:07:00.000Z"}, "notion", "x")
    pushed = engine.map({"id": "p", "updated": "2024-05-01T09:07:41.512Z"}, "notion", "x")
    assert polled.version == pushed.version == "2024-05-01T09:07:00.000Z"
    assert polled.dedup_key == pushed.dedup_key
    assert pushed.signal.timestamp == "2024-05-01T09:07:41.512Z"  # the signal keeps its time
    seconds = mapping(versionPrecision="second")
    assert seconds.map({"id": 1, "updated": "2024-05-01T09:07:41.512Z"}, "c", "p").version == (
        "2024-05-01T09:07:41.000Z"
    )


_TABLE = {"P0": (0, "critical"), "1": (1, "high"), "true": (2, "medium"), "P3": (3, "low")}


@given(
    st.lists(
        st.one_of(
            st.sampled_from(["P0", "1", "true", "P3", "bug", ""]),
            st.integers(0, 2),
            st.booleans(),
            st.none(),
        ),
        max_size=5,
    )
)
def test_a_rule_table_answers_the_earliest_rule_any_value_of_a_list_meets(
    values: list[Any],
) -> None:
    hits = [_TABLE[as_text(v)] for v in values if as_text(v) in _TABLE]
    expected = min(hits, key=lambda hit: hit[0]) if hits else None
    assert table_lookup(_TABLE, values) == expected


_NAME_VALUES = st.one_of(
    st.sampled_from(["a", "b", "", "a"]),
    st.integers(-2, 2),
    st.booleans(),
    st.none(),
    st.fixed_dictionaries({"login": st.sampled_from(["a", "c", ""])}),
)


@given(st.one_of(_NAME_VALUES, st.lists(st.one_of(_NAME_VALUES, st.lists(_NAME_VALUES)))))
def test_names_are_each_candidates_name_once_in_order(value: Any) -> None:
    candidates = value if isinstance(value, list) else [value]
    flat = [
        inner
        for candidate in candidates
        for inner in (candidate if isinstance(candidate, list) else [candidate])
    ]
    expected = list(dict.fromkeys(n for n in map(_name_of, flat) if n is not None))
    assert names(value) == expected
