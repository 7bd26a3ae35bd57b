"""Realistic GitHub issue objects (REST ``GET /repos/{o}/{r}/issues`` shape), made deterministically.

Field set and formats follow GitHub's documented issue object
(https://docs.github.com/en/rest/issues/issues#list-repository-issues):
numeric ``id``, ``node_id``, ``number``, ``title``, Markdown ``body``, ``user``,
``labels[]`` with ``name``/``color``, ``assignees[]``, ISO 8601 ``Z`` timestamps.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

LABELS = ["bug", "enhancement", "P0", "P1", "P2", "P3", "docs", "good first issue", "triage"]
USERS = ["octocat", "hubot", "monalisa", "defunkt", "mojombo", "pjhyett", "wycats", "tenderlove"]
WORDS = (
    "crash login page timeout flaky test deploy pipeline memory leak cache api error retry".split()
)


def _user(login: str, uid: int) -> dict[str, Any]:
    return {
        "login": login,
        "id": uid,
        "node_id": f"MDQ6VXNlcj{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


def github_issue(number: int, rng: random.Random, start: datetime) -> dict[str, Any]:
    created = start + timedelta(seconds=number * 37)
    updated = created if rng.random() < 0.3 else created + timedelta(minutes=rng.randint(1, 5000))
    closed = rng.random() < 0.25
    labels = rng.sample(LABELS, rng.randint(0, 3))
    assignees = rng.sample(USERS, rng.randint(0, 2))
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize()
    return {
        "url": f"https://api.github.com/repos/octo/hello/issues/{number}",
        "repository_url": "https://api.github.com/repos/octo/hello",
        "html_url": f"https://github.com/octo/hello/issues/{number}",
        "id": 1_000_000 + number,
        "node_id": f"I_kwDOAbc{number:08d}",
        "number": number,
        "title": title,
        "user": _user(rng.choice(USERS), 1000 + number % 97),
        "labels": [
            {"id": 200 + LABELS.index(name), "name": name, "color": "d73a4a", "default": False}
            for name in labels
        ],
        "state": "closed" if closed else "open",
        "state_reason": "completed" if closed else None,
        "locked": False,
        "assignee": _user(assignees[0], 7) if assignees else None,
        "assignees": [_user(login, 7 + i) for i, login in enumerate(assignees)],
        "milestone": None,
        "comments": rng.randint(0, 12),
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "updated_at": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "closed_at": updated.strftime("%Y-%m-%dT%H:%M:%SZ") if closed else None,
        "author_association": "MEMBER",
        "body": "### Steps\n" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60))),
        "reactions": {"url": "", "total_count": 0, "+1": 0, "-1": 0},
    }


def github_issues(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [github_issue(n, rng, start) for n in range(1, count + 1)]


def minimal_row(item: dict[str, Any]) -> tuple[str, int, int, str, str, str, str, str]:
    """The eight fields an engineer would map by hand for this API, and nothing else."""
    updated = item["updated_at"]
    return (
        f"{item['id']}:{updated}",  # dedup: the issue at this version
        item["id"],
        item["number"],
        item["title"],
        item["state"],
        item["html_url"],
        item["user"]["login"],
        updated,
    )
