"""The connector guide's example must keep doing what docs/writing-a-connector.md shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UCF = str(Path(sys.executable).parent / "ucf")


def test_guide_example_validates_and_maps_as_the_guide_shows() -> None:
    validate = subprocess.run(
        [UCF, "connectors", "validate", "examples/acme-tickets.json"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=60,
    )  # fmt: skip
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.strip() in (ROOT / "docs/writing-a-connector.md").read_text()
    mapped = subprocess.run(
        [UCF, "map", "--descriptor", "examples/acme-tickets.json",
         "--sample", "examples/acme-tickets-response.json", "--project", "demo"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=60,
    )  # fmt: skip
    assert mapped.returncode == 0, mapped.stderr
    signals = [json.loads(line) for line in mapped.stdout.splitlines()]
    guide = (ROOT / "docs/writing-a-connector.md").read_text()
    for signal in signals:
        assert signal["id"] in guide
        assert signal["summary"] in guide
    assert [s["type"] for s in signals] == ["ticket_created", "ticket_closed"]
    assert "item 2: no id at $.id" in mapped.stderr
    assert "2 signal(s), 1 item error(s)" in mapped.stderr
