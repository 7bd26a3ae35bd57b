"""The connector guide's example must keep doing what docs/writing-a-connector.md shows."""

from __future__ import annotations

import json
import re
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


def test_guide_webhook_example_maps_the_delivery_as_the_guide_shows() -> None:
    guide = (ROOT / "docs/writing-a-connector.md").read_text()
    command = (
        "ucf map --descriptor examples/gitlab-issues.json --sample examples/gitlab-issue-hook.json"
        " --webhook --header 'X-Gitlab-Event: Issue Hook'"
        " --header 'Idempotency-Key: 9c4d2a7e-0b1f-4c55-8f35-3f0d1b2e6a10' --project demo"
    )
    assert f"$ {command}" in guide
    validate = subprocess.run(
        [UCF, "connectors", "validate", "examples/gitlab-issues.json"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=60,
    )  # fmt: skip
    assert validate.returncode == 0, validate.stderr
    mapped = subprocess.run(
        [UCF, "map", "--descriptor", "examples/gitlab-issues.json",
         "--sample", "examples/gitlab-issue-hook.json", "--webhook",
         "--header", "X-Gitlab-Event: Issue Hook",
         "--header", "Idempotency-Key: 9c4d2a7e-0b1f-4c55-8f35-3f0d1b2e6a10", "--project", "demo"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=60,
    )  # fmt: skip
    assert mapped.returncode == 0, mapped.stderr
    [signal] = [json.loads(line) for line in mapped.stdout.splitlines()]
    assert (signal["type"], signal["summary"]) == ("issue_closed", "#23 Checkout fails on Safari")
    shown = json.dumps({k: signal[k] for k in ("source", "timestamp", "type", "summary")})[1:-1]
    assert shown in guide
    assert json.dumps(signal["metadata"]) in guide
    assert "1 signal(s), 0 item error(s)" in mapped.stderr


def test_guide_validate_example_lists_all_four_problems_in_one_pass(tmp_path: Path) -> None:
    data = json.loads((ROOT / "examples/acme-tickets.json").read_text())
    mapping = data["fieldMapping"]
    mapping["itemPath"] = mapping.pop("itemsPath")
    data["ingestion"]["endpoint"] = data["ingestion"]["endpoint"].replace(
        "config.workspace", "config.workspce"
    )
    mapping["signalTypeRules"][1] = {
        "when": "$.status", "operator": "matches", "value": "^(?=done)", "then": "ticket_closed"
    }  # fmt: skip
    (tmp_path / "acme-broken.json").write_text(json.dumps(data))
    validate = subprocess.run(
        [UCF, "connectors", "validate", "acme-broken.json"],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=60,
    )  # fmt: skip
    assert validate.returncode == 1
    guide = (ROOT / "docs/writing-a-connector.md").read_text()
    assert f"$ ucf connectors validate acme-broken.json\n{validate.stderr}```" in guide


def _fragments(guide: str) -> list[dict[str, object]]:
    """The guide's ```json blocks, each read as the object it is a part of: a block
    that opens the descriptor is closed, one that lists members is wrapped."""
    parts = []
    for block in re.findall(r"```json\n(.*?)```", guide, re.S):
        text = block.strip().rstrip(",")
        if text.startswith("{"):
            text += "\n}" * (text.count("{") - text.count("}"))
        else:
            text = "{" + text + "}"
        parts.append(json.loads(text))
    return parts


def test_every_descriptor_fragment_of_the_guide_is_the_example_files_own() -> None:
    """The guide builds examples/acme-tickets.json piece by piece (and shows
    gitlab-issues.json's webhook block): each piece is the file's, so copying the pieces
    gives the file that validates, and an edit of one is seen in the other."""
    guide = (ROOT / "docs/writing-a-connector.md").read_text()
    acme = json.loads((ROOT / "examples/acme-tickets.json").read_text())
    gitlab = json.loads((ROOT / "examples/gitlab-issues.json").read_text())
    differ = []
    for fragment in _fragments(guide):
        for key, value in fragment.items():
            if value not in (acme.get(key), gitlab.get(key), gitlab["ingestion"].get(key)):
                differ.append(key)
    assert differ == [], f"the guide's {differ} differ from the example files'"
