"""The shipped catalogue as files: each descriptor in ``<id>.json``, found by its id alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ucf.catalogue import builtin_descriptor, builtin_descriptors

SHIPPED = builtin_descriptors()


def test_every_shipped_file_is_named_after_the_id_it_holds() -> None:
    folder = Path(__file__).resolve().parents[2] / "src" / "ucf" / "catalogue"
    files = sorted(path.stem for path in folder.glob("*.json"))

    assert files == [data["id"] for data in SHIPPED]


@pytest.mark.parametrize("data", SHIPPED, ids=lambda data: str(data["id"]))
def test_a_shipped_descriptor_read_by_its_id_is_the_catalogues_entry(
    data: dict[str, object],
) -> None:
    assert builtin_descriptor(str(data["id"])) == data


@pytest.mark.parametrize(
    "connector_id", ["my-tracker", "GitHub-Issues", "../catalogue/jira", "jira.json", "", "-"]
)
def test_an_id_no_shipped_file_holds_finds_nothing(connector_id: str) -> None:
    assert builtin_descriptor(connector_id) is None
