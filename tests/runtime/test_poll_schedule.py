"""A connector's schedule read from its stored JSON equals the one its parsed descriptor declares."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ucf.catalogue import builtin_descriptors
from ucf.core.descriptor import ConnectorDescriptor
from ucf.runtime.poll_schedule import declared_schedule, stored_schedule

SHIPPED = builtin_descriptors()


@pytest.mark.parametrize("data", SHIPPED, ids=[str(d["id"]) for d in SHIPPED])
def test_every_shipped_descriptor_reads_the_same_schedule_either_way(data: dict[str, Any]) -> None:
    descriptor = ConnectorDescriptor.model_validate(data)

    assert stored_schedule(data) == declared_schedule(descriptor)
    assert stored_schedule(descriptor.to_json()) == declared_schedule(descriptor)  # as stored


def _polling(data: dict[str, Any]) -> dict[str, Any]:
    ingestion: dict[str, Any] = data["ingestion"]
    polling: dict[str, Any] = ingestion if ingestion["mode"] == "polling" else ingestion["polling"]
    return polling


POLLING = [d for d in SHIPPED if d.get("ingestion", {}).get("mode", "webhook") != "webhook"]


@pytest.mark.parametrize("spelling", ["omitted", "python names"])
def test_defaults_and_python_names_read_as_the_models_read_them(spelling: str) -> None:
    assert POLLING, "the catalogue has polling connectors"
    for shipped in POLLING:
        data = copy.deepcopy(shipped)
        polling = _polling(data)
        if spelling == "omitted":
            polling.pop("intervalSeconds", None)
            polling.pop("initialLookbackSeconds", None)
        else:
            polling["rate_limit_rpm"] = polling.pop("rateLimitRpm")
            polling["interval_seconds"] = polling.pop("intervalSeconds", 120)
        descriptor = ConnectorDescriptor.model_validate(data)

        assert stored_schedule(data) == declared_schedule(descriptor), shipped["id"]


def test_a_webhook_only_or_native_descriptor_has_no_stored_schedule() -> None:
    assert stored_schedule({"id": "x", "kind": "native"}) is None
    assert stored_schedule({"ingestion": {"mode": "webhook"}}) is None


@pytest.mark.parametrize("value", ["600", " 600 ", "600.0", 600.0])
def test_numbers_the_models_accept_in_other_spellings_read_the_same(value: Any) -> None:
    """The models are lax about how a number is written ("600.0" is 600): a stored
    descriptor holding such a spelling must schedule as its parsed form does."""
    for shipped in POLLING:
        data = copy.deepcopy(shipped)
        polling = _polling(data)
        polling["intervalSeconds"] = value
        polling["rateLimitRpm"] = value
        polling["initialLookbackSeconds"] = value
        descriptor = ConnectorDescriptor.model_validate(data)

        assert stored_schedule(data) == declared_schedule(descriptor), shipped["id"]
