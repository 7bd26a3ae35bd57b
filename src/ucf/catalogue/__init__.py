"""The connectors ucf ships: one JSON descriptor per file, named after its id."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def builtin_descriptors() -> list[dict[str, Any]]:
    """Every shipped descriptor as its JSON object, ordered by id."""
    files = sorted(
        (entry for entry in resources.files(__name__).iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    return [json.loads(entry.read_text(encoding="utf-8")) for entry in files]
