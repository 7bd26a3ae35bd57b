"""Asana as a native connector: one project's tasks and comments.

Asana's API needs what a descriptor cannot say: the Events API answers the
first request (and an expired sync token) with ``412`` and a fresh token,
its events are compact and must be fetched in full, and webhooks hand their
signing secret over in an unsigned handshake. See ``docs/connectors/asana.md``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ucf.native import NativeConnector
from ucf.native.asana.source import AsanaSource

__all__ = ["GUIDE", "AsanaSource", "connector"]


def _descriptor() -> dict[str, Any]:
    text = resources.files("ucf.catalogue").joinpath("asana.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


GUIDE = resources.files(__name__).joinpath("guide.md").read_text(encoding="utf-8")
"""How to set it up and what it signals: the second half of docs/connectors/asana.md."""

connector = NativeConnector(_descriptor(), AsanaSource, guide=GUIDE)
