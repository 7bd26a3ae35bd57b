"""``ucf poll`` and ``ucf check`` run as a user runs them: the real console script
against a GitHub-like fake on loopback, opened with ``UCF_ALLOW_HOSTS``."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.runtime.test_polling import GITHUB, GitHubIssues
from ucf.core.signal import iso_utc
from ucf.fakes import FakeResponse, FakeServer, Fault
from ucf.fakes import jira as jira_fake
from ucf.fakes.jira import JiraFake

UCF = str(Path(sys.executable).parent / "ucf")
# Relative to the real clock: the CLI polls "now", like a user would.
NOW = datetime.now(UTC).replace(microsecond=0)


def ucf(*args: str, allow: str | None = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "UCF_ALLOW_HOSTS"}
    if allow is not None:
        env["UCF_ALLOW_HOSTS"] = allow
    return subprocess.run(
        [UCF, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.fixture(scope="module")
def descriptor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalogue's GitHub descriptor with two issues per page, so three pages."""
    data = copy.deepcopy(GITHUB)
    data["ingestion"]["polling"]["pagination"]["pageSize"] = 2
    # Hold the checkpoint back until the last page, so max-pages shows it does not move.
    data["ingestion"]["polling"]["delta"]["sortedAscending"] = False
    path = tmp_path_factory.mktemp("descriptors") / "github-issues.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def github() -> Iterator[tuple[FakeServer, GitHubIssues]]:
    fake = GitHubIssues()
    fake.put(1, NOW - timedelta(days=10))  # outside the first poll's window
    for number, days in zip(range(2, 8), (6, 5, 4, 3, 2, 1), strict=True):
        fake.put(number, NOW - timedelta(days=days))
    with FakeServer() as server:
        server.add_route("GET", "/repos/{owner}/{repo}/issues", fake)
        server.add_route("GET", "/rate_limit", lambda _: {"resources": {}})
        yield server, fake


def poll_args(descriptor: Path, server: FakeServer, token: str, *extra: str) -> list[str]:
    return [
        "poll",
        "--descriptor",
        str(descriptor),
        "--config",
        f"baseUrl={server.base_url}",
        "--config",
        "owner=octo",
        "--config",
        "repo=hello",
        "--credential",
        f"token={token}",
        *extra,
    ]


def test_poll_prints_signals_on_stdout_and_the_next_checkpoint_on_stderr(
    descriptor_file: Path, github: tuple[FakeServer, GitHubIssues]
) -> None:
    server, fake = github
    result = ucf(*poll_args(descriptor_file, server, fake.token, "--project", "proj-1"))
    assert result.returncode == 0, result.stderr
    signals = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["raw"]["number"] for s in signals] == [2, 3, 4, 5, 6, 7]
    assert {(s["source"], s["projectId"], s["type"]) for s in signals} == {
        ("github-issues", "proj-1", "issue_created")
    }
    newest = iso_utc(NOW - timedelta(days=1))
    assert f"checkpoint: {newest}\n" in result.stderr
    assert "3 page(s), 6 item(s), 6 signal(s), 0 item error(s)" in result.stderr
    assert "rate-limit waits: 0" in result.stderr
    assert fake.token not in result.stderr

    # Back with that checkpoint: only what changed since (and the 1-second overlap).
    fake.put(4, NOW - timedelta(hours=1))
    again = ucf(*poll_args(descriptor_file, server, fake.token, "--checkpoint", newest))
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["raw"]["number"] for line in again.stdout.splitlines()] == [7, 4]
    assert f"checkpoint: {iso_utc(NOW - timedelta(hours=1))}\n" in again.stderr


def test_poll_stops_at_max_pages_and_says_more_remain(
    descriptor_file: Path, github: tuple[FakeServer, GitHubIssues]
) -> None:
    server, fake = github
    server.inject(Fault.rate_limited(retry_after=1), path="/repos/{owner}/{repo}/issues")
    result = ucf(*poll_args(descriptor_file, server, fake.token, "--max-pages", "1"))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    # Unsorted results: not safe to advance yet, so the checkpoint says where to go on.
    assert 'checkpoint: resume:{"checkpoint":null,' in result.stderr
    assert "rate-limit waits: 1 (1.0 s)" in result.stderr
    assert "stopped at the max-pages limit" in result.stderr


def test_poll_with_a_rejected_token_fails_in_one_secret_free_line(
    descriptor_file: Path, github: tuple[FakeServer, GitHubIssues]
) -> None:
    server, _ = github
    result = ucf(*poll_args(descriptor_file, server, "ghp_wrong_token_123456"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: GET 127.0.0.1:{server.port}/repos/octo/hello/issues: "
        "credentials rejected (HTTP 401: Bad credentials)\n"
    )
    assert len(server.requests) == 1


def test_poll_refuses_a_loopback_api_unless_the_operator_allows_it(
    descriptor_file: Path, github: tuple[FakeServer, GitHubIssues]
) -> None:
    server, fake = github
    result = ucf(*poll_args(descriptor_file, server, fake.token), allow=None)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert server.requests == []


def test_check_prints_status_and_latency(
    descriptor_file: Path, github: tuple[FakeServer, GitHubIssues]
) -> None:
    server, fake = github
    args = ["check", "--descriptor", str(descriptor_file), "--config", f"baseUrl={server.base_url}"]
    args += ["--config", "owner=octo", "--config", "repo=hello"]
    healthy = ucf(*args, "--credential", f"token={fake.token}")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("healthy: HTTP 200 in ")
    assert server.requests_to("/rate_limit")[0].headers["authorization"] == f"Bearer {fake.token}"

    server.inject(Fault.respond(FakeResponse.json({"message": "Bad credentials"}, 401)))
    unhealthy = ucf(*args, "--credential", "token=ghp_wrong_token_123456")
    assert unhealthy.returncode == 1
    assert unhealthy.stdout.startswith("unhealthy: HTTP 401 after ")
    assert "credentials rejected (HTTP 401: Bad credentials)" in unhealthy.stderr
    assert "ghp_wrong_token_123456" not in unhealthy.stdout + unhealthy.stderr


def test_bad_command_lines_get_a_clear_error_and_no_request(
    descriptor_file: Path, github: tuple[FakeServer, GitHubIssues]
) -> None:
    server, _ = github
    malformed = ucf("poll", "--descriptor", str(descriptor_file), "--config", "baseUrl")
    assert malformed.returncode == 2
    assert "--config must look like name=value" in malformed.stderr

    no_token = ucf(
        "poll", "--descriptor", str(descriptor_file), "--config", f"baseUrl={server.base_url}",
        "--config", "owner=octo", "--config", "repo=hello",
    )  # fmt: skip
    assert no_token.returncode == 1
    assert no_token.stderr == "error: credential 'token' is not set\n"
    assert server.requests == []


def test_a_credential_typed_under_a_name_the_connector_does_not_declare_is_named(
    descriptor_file: Path, github: tuple[FakeServer, GitHubIssues], jira: JiraFake
) -> None:
    """``--credential Token=…`` for ``token``: the poll failed "credential 'token' is not
    set", as if none had been given; an unknown ``--config`` is named, and so is this."""
    server, _ = github
    typo = ucf(
        "poll", "--descriptor", str(descriptor_file), "--config", f"baseUrl={server.base_url}",
        "--config", "owner=octo", "--config", "repo=hello", "--credential", "Token=ghp_x",
    )  # fmt: skip
    assert typo.returncode == 1
    assert typo.stderr == (
        "warning: --credential Token: github-issues declares no such credential (its "
        "credentials: token, webhookSecret, clientId, clientSecret, accessToken, "
        "refreshToken)\nerror: credential 'token' is not set\n"
    )
    assert server.requests == []
    checked = ucf(*jira_args("check", jira), "--credential", "apitoken=x")
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.startswith("warning: --credential apitoken: jira declares no such")
    known = ucf(*jira_args("check", jira), "--credential", "authMethod=basic")
    assert "warning" not in known.stderr


# --------------------------------------------------------------------------- a native connector


@pytest.fixture(scope="module")
def jira() -> Iterator[JiraFake]:
    with JiraFake(NOW) as fake:
        yield fake


def jira_args(command: str, fake: JiraFake, token: str = jira_fake.GOOD_TOKEN) -> list[str]:
    return [
        command,
        "--descriptor",
        "jira",  # a built-in id: the native connector installed through its entry point
        "--config",
        f"siteUrl={fake.base_url}",
        "--credential",
        f"email={jira_fake.GOOD_EMAIL}",
        "--credential",
        f"apiToken={token}",
    ]


def test_poll_runs_the_native_jira_connector_by_its_id(jira: JiraFake) -> None:
    result = ucf(*jira_args("poll", jira), "--config", "jql=project = OPS", "--project", "ops")
    assert result.returncode == 0, result.stderr
    signals = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(signals) == len(jira.ids_changed_since(NOW - timedelta(days=7)))
    assert {s["source"] for s in signals} == {"jira"}
    assert {s["type"] for s in signals} == {
        "issue_created",
        "issue_updated",
        "issue_status_changed",
        "issue_commented",
    }
    assert all(s["summary"].startswith("OPS-") for s in signals)
    assert "2 page(s), 130 item(s), 130 signal(s), 0 item error(s)" in result.stderr
    assert jira_fake.GOOD_TOKEN not in result.stdout + result.stderr


def test_check_runs_the_native_jira_health_check(jira: JiraFake) -> None:
    healthy = ucf(*jira_args("check", jira))
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("healthy: HTTP 200 in ")
    wrong = "ATATT3xFfGF0wrong0token"
    unhealthy = ucf(*jira_args("check", jira, wrong))
    assert unhealthy.returncode == 1
    assert unhealthy.stdout.startswith("unhealthy: HTTP 401 after ")
    assert wrong not in unhealthy.stdout + unhealthy.stderr
