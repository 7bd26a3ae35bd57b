"""Every link between the project's Markdown pages leads somewhere.

A reader of the README or a page under ``docs/`` follows its relative links; one that
names a file from the repository's root inside ``docs/`` (``docs/polling.md`` where
``polling.md`` was meant) opens a page that does not exist, and nothing else notices.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("docs/connectors/*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """The fragment ids GitHub gives a page's headings: lower case, punctuation dropped,
    spaces as dashes."""
    anchors = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if heading := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(slug.replace(" ", "-"))
    return anchors


def _relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [
        link
        for link in LINK.findall(text)
        if not re.match(r"[a-z][a-z0-9+.-]*:", link)  # https:, mailto: …
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_of_a_page_opens_a_file_and_its_heading(page: Path) -> None:
    dead = []
    for link in _relative_links(page):
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            dead.append(f"{link} (no {os.path.relpath(target, ROOT)})")
        elif fragment and target.suffix == ".md" and fragment not in _anchors(target):
            dead.append(f"{link} (no heading '#{fragment}' in {target.name})")
    assert dead == [], f"{page.relative_to(ROOT)} links to nothing: {dead}"
