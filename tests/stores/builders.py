"""Realistic signals for store tests and the benchmark, built via the core contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ucf.core.signal import SanitisedSignal, SignalMetadata, dedup_key, iso_utc, signal_id
from ucf.stores.models import SignalWrite

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def raw_issue(item_id: str, *, padding: int = 0) -> dict[str, Any]:
    """A GitHub-issue-like payload; ``padding`` grows the body to a realistic size."""
    return {
        "id": item_id,
        "number": int(item_id) if item_id.isdigit() else 0,
        "title": f"Login fails on Safari after upgrade ({item_id})",
        "state": "open",
        "user": {"login": "octocat", "id": 583231, "type": "User"},
        "labels": [{"name": "bug", "color": "d73a4a"}, {"name": "priority: high"}],
        "html_url": f"https://github.com/acme/web/issues/{item_id}",
        "body": ("Steps to reproduce: open the login page, enter credentials. " * 40)[:padding],
    }


def signal_write(
    item_id: str,
    *,
    project_id: str = "p1",
    source: str = "github-issues",
    version: str = "v1",
    signal_type: str = "issue_updated",
    at: datetime = T0,
    received_at: datetime | None = None,
    padding: int = 0,
) -> SignalWrite:
    """One item version as the runtime would store it (dedup key and id from core)."""
    key = dedup_key(source, project_id, item_id, version)
    signal = SanitisedSignal(
        id=signal_id(key, int(at.timestamp() * 1000)),
        source=source,
        timestamp=iso_utc(at),
        type=signal_type,
        summary=f"Issue {item_id} updated",
        raw=raw_issue(item_id, padding=padding),
        project_id=project_id,
        metadata=SignalMetadata(priority="high", participants=["octocat"], tags=["bug"]),
        sanitised_summary=f"Issue {item_id} updated",
    )
    return SignalWrite.of(signal, dedup_key=key, received_at=received_at or at)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
