"""Each signal's type with the rule that chose it, for authors previewing a mapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ucf.catalogue import builtin_descriptors
from ucf.core.mapping import CompiledMapping
from ucf.core.validation import parse_descriptor

ROOT = Path(__file__).resolve().parents[2]
BRIEF = ROOT / "tests/fixtures/descriptors/brief-github-issues.json"


def brief_mapping() -> CompiledMapping:
    descriptor = parse_descriptor(json.loads(BRIEF.read_text()))
    assert descriptor.field_mapping is not None
    return CompiledMapping(descriptor.field_mapping)


def test_the_reason_names_the_first_rule_that_held() -> None:
    mapping = brief_mapping()
    closed = {"id": 1, "state": "closed", "title": "[bug] crash"}
    reason = mapping.explain_type(closed)
    assert (reason.type, reason.rule) == ("issue_closed", 1)
    assert reason.because == '$.state equals "closed"'


def test_no_rule_holding_says_the_default_applied() -> None:
    reason = brief_mapping().explain_type({"id": 1, "state": "open", "title": "hello"})
    assert (reason.type, reason.rule) == ("unknown", None)
    assert reason.because == "no rule held: defaultType"


ITEMS: list[dict[str, Any]] = [
    {"id": 1, "state": "open", "title": "[bug] x", "labels": [{"name": "P0"}]},
    {"id": 2, "state": "closed", "pull_request": {}, "labels": []},
    {"id": 3, "state": "open", "title": "plain", "type": "incident", "priority": "P1"},
    {"id": 4, "action": "opened", "issue": {"state": "open"}, "data": {"state": "done"}},
    {},
]


@pytest.mark.parametrize("data", builtin_descriptors(), ids=lambda d: str(d["id"]))
def test_the_explained_type_is_the_type_the_mapper_gives(data: dict[str, Any]) -> None:
    """The explanation evaluates rules one by one; the mapper plans lookup tables. They agree."""
    descriptor = parse_descriptor(data)
    for spec in {
        id(m): m for m in (descriptor.field_mapping, descriptor.webhook_mapping()) if m
    }.values():
        mapping = CompiledMapping(spec)
        for item in ITEMS:
            for event_type in (None, "issues.opened", "Issue"):
                assert mapping.explain_type(item, event_type).type == mapping.signal_type(
                    item, event_type
                )
