"""Shared set-up of the poll, health and scheduler tests: a real embedded ucf and a GitHub fake."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ucf.fakes.github import GOOD_TOKEN, OWNER, REPO
from ucf.runtime.http import HttpSettings
from ucf.service.context import UcfContext, utc_now
from ucf.service.settings import Settings
from ucf.stores.models import StoredSignal

ROOT = Path(__file__).resolve().parents[2]
GITHUB = json.loads((ROOT / "src/ucf/catalogue/github-issues.json").read_text())

FAST_HTTP = HttpSettings(
    connect_timeout=2, read_timeout=2, max_retries=1, backoff_base=0.01, max_total_retry_wait=2
)
"""Few, short retries: failure tests fail in milliseconds, not minutes."""


def settings_for(
    data_dir: Path, *, sink: bool = True, http: HttpSettings = FAST_HTTP, **env: str
) -> Settings:
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", **env}
    if sink:
        environ["UCF_SINK_JSONL"] = str(data_dir / "signals.jsonl")
    return dataclasses.replace(Settings.from_env(environ, data_dir=data_dir), http=http)


async def open_context(
    data_dir: Path,
    *,
    sink: bool = True,
    http: HttpSettings = FAST_HTTP,
    clock: Callable[[], datetime] = utc_now,
) -> UcfContext:
    return await UcfContext.open(settings_for(data_dir, sink=sink, http=http), clock=clock)


def github_descriptor(
    connector_id: str = "gh-paged", *, page_size: int = 30, sorted_ascending: bool = True
) -> dict[str, Any]:
    """The shipped GitHub Issues descriptor under another id, with smaller pages."""
    data: dict[str, Any] = copy.deepcopy(GITHUB)
    data["id"] = connector_id
    data["name"] = f"GitHub ({connector_id})"
    data["category"] = "Custom"
    polling = data["ingestion"]["polling"]
    polling["pagination"]["pageSize"] = page_size
    polling["delta"]["sortedAscending"] = sorted_ascending
    return data


async def connect_github(
    context: UcfContext,
    base_url: str,
    *,
    project: str = "p1",
    connector: str = "github-issues",
    token: str = GOOD_TOKEN,
    repo: str = REPO,
) -> None:
    await context.instances.create(
        project,
        connector,
        credentials={"token": token},
        config={"baseUrl": base_url, "owner": OWNER, "repo": repo},
    )


async def all_signals(context: UcfContext, project: str) -> list[StoredSignal]:
    """Every stored signal of a project, through the public query API."""
    found: list[StoredSignal] = []
    cursor: str | None = None
    while True:
        page = await context.store.signals.query(project, limit=200, cursor=cursor)
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
