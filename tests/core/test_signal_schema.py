"""The published signal schemas: what a consumer in any language validates against.

The files under ``schema/`` are committed for consumers who never run ucf; they
must equal what the models generate, and a signal as ucf delivers it must
validate against them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ucf.core.sanitiser import Sanitiser
from ucf.core.signal import (
    SIGNAL_SCHEMAS,
    NormalisedSignal,
    SignalMetadata,
    signal_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]


def committed(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / f"schema/{name}-signal.schema.json").read_text())
    return loaded


def signal(**changes: Any) -> NormalisedSignal:
    fields: dict[str, Any] = {
        "id": "01JN8S7QG0P3Y4WJMXVHYSJ0AB",
        "source": "github-issues",
        "timestamp": "2025-03-01T12:00:00.000Z",
        "type": "issue_created",
        "summary": "CI fails with token ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2,
        "raw": {"number": 7, "labels": ["bug"]},
        "project_id": "p1",
        "metadata": SignalMetadata(priority="high", tags=["bug"]),
    }
    return NormalisedSignal(**{**fields, **changes})


@pytest.mark.parametrize("name", sorted(SIGNAL_SCHEMAS))
def test_the_committed_schema_is_the_one_the_models_generate(name: str) -> None:
    assert committed(name) == signal_json_schema(name), (
        f"schema/{name}-signal.schema.json is stale: run `make schema`"
    )


@pytest.mark.parametrize("name", sorted(SIGNAL_SCHEMAS))
def test_every_field_says_what_it_means(name: str) -> None:
    schema = committed(name)
    Draft202012Validator.check_schema(schema)
    for model in [schema, *schema.get("$defs", {}).values()]:
        for field, spec in model["properties"].items():
            assert spec.get("description"), f"{name}: {field} has no description"


def test_a_signal_as_every_sink_delivers_it_validates_against_the_sanitised_schema() -> None:
    wire = Sanitiser().sanitise_wire(signal().to_wire())
    validator = Draft202012Validator(committed("sanitised"))

    assert list(validator.iter_errors(wire)) == []
    assert "[REDACTED:github_token]" in wire["sanitisedSummary"]
    assert not Draft202012Validator(committed("normalised")).is_valid(wire), (
        "a normalised signal has no sanitiser fields: the two schemas must tell them apart"
    )


def test_a_normalised_signal_with_and_without_metadata_validates() -> None:
    validator = Draft202012Validator(committed("normalised"))
    assert validator.is_valid(signal().to_wire())
    assert validator.is_valid(signal(metadata=None).to_wire())
    assert not validator.is_valid({**signal().to_wire(), "projectId": 7})
    assert not validator.is_valid({k: v for k, v in signal().to_wire().items() if k != "id"})
