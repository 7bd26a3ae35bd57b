"""Mapping throughput: the descriptor engine against a hand-written function, same run.

Maps N realistic GitHub issues through the shipped ``github-issues`` descriptor
and through a hand-written Python function that produces the very same signals
(asserted), then prints records/s for both and the ratio. Target: ≥ 75 %.

    make bench            # or: uv run python bench/mapping.py [--items 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from github_items import github_issues
from ucf.core.mapping import CompiledMapping, MappedSignal
from ucf.core.signal import (
    NormalisedSignal,
    dedup_key,
    iso_utc,
    signal_id,
)
from ucf.core.validation import parse_descriptor

CATALOGUE = Path(__file__).resolve().parents[1] / "src/ucf/catalogue/github-issues.json"
PRIORITY = {
    "P0": "critical", "priority: critical": "critical", "critical": "critical",
    "P1": "high", "priority: high": "high", "high": "high",
    "P2": "medium", "priority: medium": "medium", "medium": "medium",
    "P3": "low", "priority: low": "low", "low": "low",
}  # fmt: skip
ORDER = ("critical", "high", "medium", "low")


def hand_written(item: dict[str, Any], connector: str, project: str) -> MappedSignal:
    """What a careful engineer would write for this one API, producing identical signals."""
    updated = item["updated_at"]
    moment = datetime.fromisoformat(updated)
    timestamp = iso_utc(moment)
    item_id = str(item["id"])
    key = dedup_key(connector, project, item_id, timestamp)
    label_names = list(dict.fromkeys(label["name"] for label in item["labels"]))
    ranks = [ORDER.index(PRIORITY[name]) for name in label_names if name in PRIORITY]
    priority = ORDER[min(ranks)] if ranks else None
    participants = list(dict.fromkeys(a["login"] for a in item["assignees"]))
    summary = f"#{item['number']} {item['title']}"
    signal: dict[str, Any] = {
        "id": signal_id(key, int(moment.timestamp() * 1000)),
        "source": connector,
        "timestamp": timestamp,
        "type": "issue_created" if item["created_at"] == updated else "issue_updated",
        "summary": summary if len(summary) <= 500 else summary[:499] + "…",
        "raw": {
            "number": item["number"],
            "title": item["title"],
            "state": item["state"],
            "state_reason": item["state_reason"],
            "html_url": item["html_url"],
            "user": {"login": item["user"]["login"]},
            "comments": item["comments"],
            "created_at": item["created_at"],
            "updated_at": updated,
            "closed_at": item["closed_at"],
        },
        "projectId": project,
    }
    if priority or participants or label_names:
        metadata = signal["metadata"] = {"priority": priority} if priority else {}
        metadata["participants"] = participants
        metadata["relatedTickets"] = []
        metadata["tags"] = label_names
    return MappedSignal(wire=signal, dedup_key=key, item_id=item_id, version=timestamp)


def _rate(
    label: str, run: Any, items: list[dict[str, Any]], repeat: int
) -> tuple[float, list[MappedSignal]]:
    best = float("inf")
    out: list[MappedSignal] = []
    for _ in range(repeat):
        started = time.perf_counter()
        out = run(items)
        best = min(best, time.perf_counter() - started)
    rate = len(items) / best
    print(f"  {label:<28} {rate:>12,.0f} records/s   ({best * 1e6 / len(items):.2f} µs/record)")
    return rate, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = parser.parse_args()

    descriptor = parse_descriptor(json.loads(CATALOGUE.read_text()))
    assert descriptor.field_mapping is not None
    engine = CompiledMapping(descriptor.field_mapping)
    items = github_issues(args.items)
    gc.collect()
    gc.freeze()  # the input set is long-lived: keep the collector from rescanning it

    print(f"mapping {len(items):,} GitHub issues (best of {args.repeat})")
    engine_rate, engine_out = _rate(
        "ucf descriptor engine",
        lambda xs: engine.map_items(xs, "github-issues", "bench").signals,
        items,
        args.repeat,
    )
    hand_rate, hand_out = _rate(
        "hand-written function",
        lambda xs: [hand_written(x, "github-issues", "bench") for x in xs],
        items,
        args.repeat,
    )
    assert len(engine_out) == len(hand_out) == len(items)
    for mine, theirs in zip(engine_out, hand_out, strict=True):
        assert mine.dedup_key == theirs.dedup_key
        assert mine.wire == theirs.wire, (mine, theirs)
        NormalisedSignal.model_validate(mine.wire)  # the contract, checked outside the timing
    ratio = engine_rate / hand_rate
    verdict = "meets" if ratio >= 0.75 else "MISSES"
    print(f"  ratio engine / hand-written: {ratio:.0%} ({verdict} the ≥ 75 % target)")
    print(f"  signals identical: {len(items):,} of {len(items):,}  ({datetime.now(UTC):%Y-%m-%d})")


if __name__ == "__main__":
    main()
