"""docs/connectors/<id>.md are generated from the shipped descriptors and must stay in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from ucf.catalogue import builtin_descriptors
from ucf.catalogue.docs import render_connector_doc
from ucf.core.validation import parse_descriptor
from ucf.runtime.native import native_registry

DOCS = Path(__file__).resolve().parents[2] / "docs/connectors"
IDS = [d["id"] for d in builtin_descriptors()]


@pytest.mark.parametrize("connector_id", IDS)
def test_connector_page_is_in_sync_with_its_descriptor(connector_id: str) -> None:
    data = next(d for d in builtin_descriptors() if d["id"] == connector_id)
    page = DOCS / f"{connector_id}.md"
    assert page.exists(), "run `ucf connectors docs` to generate it"
    expected = render_connector_doc(
        parse_descriptor(data), guide=native_registry().guide(connector_id)
    )
    assert page.read_text(encoding="utf-8") == expected, "run `ucf connectors docs` to regenerate"


def test_a_native_connector_page_carries_its_packages_guide() -> None:
    page = (DOCS / "jira.md").read_text(encoding="utf-8")
    assert native_registry().guide("jira").strip() in page
    assert "## Credentials" in page  # the generated part stays the base


def test_every_page_belongs_to_a_shipped_connector() -> None:
    assert {p.stem for p in DOCS.glob("*.md")} <= set(IDS)


@pytest.mark.parametrize("connector_id", IDS)
def test_every_shipped_connector_links_its_provider_documentation(connector_id: str) -> None:
    descriptor = parse_descriptor(next(d for d in builtin_descriptors() if d["id"] == connector_id))
    assert descriptor.references, "list the provider pages this descriptor follows in 'references'"
    page = (DOCS / f"{connector_id}.md").read_text(encoding="utf-8")
    assert "## Sources" in page
    for reference in descriptor.references:
        assert f"<{reference.url}>" in page
