"""``ucf poll`` and ``ucf check`` by built-in id on the native Asana connector, against its
fake on loopback, as a user runs them (the real console script)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.cli.test_poll_cli import ucf
from ucf.fakes.asana import BAD_TOKEN, GOOD_TOKEN, PROJECT, AsanaFake


@pytest.fixture
def asana() -> Iterator[AsanaFake]:
    with AsanaFake(datetime.now(UTC), count=30) as fake:
        yield fake


def args(command: str, fake: AsanaFake, token: str, *extra: str) -> list[str]:
    return [
        command,
        "--descriptor",
        "asana",
        "--config",
        f"baseUrl={fake.api_url}",
        "--config",
        f"projectGid={PROJECT[0]}",
        "--credential",
        f"token={token}",
        *extra,
    ]


def test_poll_by_id_catches_up_then_follows_the_event_stream(asana: AsanaFake) -> None:
    first = ucf(*args("poll", asana, GOOD_TOKEN, "--project", "proj-1"))
    assert first.returncode == 0, first.stderr
    signals = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(signals) == 30  # every task of the week: the stream cannot replay them
    assert {(s["source"], s["projectId"]) for s in signals} == {("asana", "proj-1")}
    checkpoint = next(
        line.removeprefix("checkpoint: ")
        for line in first.stderr.splitlines()
        if line.startswith("checkpoint: ")
    )
    assert " " in checkpoint  # '<time> <sync token>'

    asana.add_activity(datetime.now(UTC))
    again = ucf(*args("poll", asana, GOOD_TOKEN, "--checkpoint", checkpoint))
    assert again.returncode == 0, again.stderr
    types = sorted(json.loads(line)["type"] for line in again.stdout.splitlines())
    assert types == [
        "task_assigned",
        "task_commented",
        "task_completed",
        "task_created",
        "task_created",
        "task_updated",
    ]
    assert GOOD_TOKEN not in again.stderr + again.stdout


def test_poll_with_a_rejected_token_fails_in_one_secret_free_line(asana: AsanaFake) -> None:
    result = ucf(*args("poll", asana, BAD_TOKEN))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: GET 127.0.0.1:{asana.server.port}/api/1.0/events: credentials rejected "
        "(HTTP 401: Not Authorized)\n"  # the provider's own message is kept
    )


def test_check_by_id_runs_the_users_me_health_check(asana: AsanaFake) -> None:
    healthy = ucf(*args("check", asana, GOOD_TOKEN))
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("healthy: HTTP 200 in ")
    seen = asana.server.requests_to("/api/1.0/users/me")[0]
    assert seen.headers["authorization"] == f"Bearer {GOOD_TOKEN}"

    unhealthy = ucf(*args("check", asana, BAD_TOKEN))
    assert unhealthy.returncode == 1
    assert unhealthy.stdout.startswith("unhealthy: HTTP 401 after ")
    assert BAD_TOKEN not in unhealthy.stdout + unhealthy.stderr
