"""``ucf poll --store``: a one-off poll that writes like a worker and resumes like one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ucf.fakes.github import BAD_TOKEN, GOOD_TOKEN, OWNER, REPO, GitHubFake
from ucf.stores.secrets.local import LocalSecretStore
from ucf.stores.url import open_store

from .poll_support import GITHUB

UCF = str(Path(sys.executable).parent / "ucf")


@pytest.fixture
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(datetime.now(UTC)) as github:
        yield github


def poll(
    tmp_path: Path,
    fake: GitHubFake,
    token: str,
    *extra: str,
    env_data_dir: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``env_data_dir=False``: no ``UCF_DATA_DIR``, and a home of the test's own
    (``tmp_path/home``), so the default data directory is somewhere the test sees."""
    descriptor = tmp_path / "github.json"
    descriptor.write_text(json.dumps(GITHUB))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UCF_", "XDG_"))}
    env.update(UCF_ALLOW_HOSTS="127.0.0.1", UCF_DATA_DIR=str(tmp_path / "data"))
    if not env_data_dir:
        del env["UCF_DATA_DIR"]
        env["HOME"] = str(tmp_path / "home")
    return subprocess.run(
        [
            UCF,
            "poll",
            "--descriptor",
            str(descriptor),
            "--config",
            f"baseUrl={fake.base_url}",
            "--config",
            f"owner={OWNER}",
            "--config",
            f"repo={REPO}",
            "--credential",
            f"token={token}",
            "--project",
            "cli-proj",
            "--store",
            f"sqlite:///{tmp_path / 'store.db'}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


async def stored(tmp_path: Path) -> tuple[int, str | None]:
    async with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        page = await store.signals.query("cli-proj", limit=1000)
        checkpoint = await store.checkpoints.get("cli-proj", "github-issues")
    return len(page.items), checkpoint.value


def test_poll_with_a_store_keeps_the_signals_and_resumes_from_its_checkpoint(
    tmp_path: Path, fake: GitHubFake
) -> None:
    first = poll(tmp_path, fake, GOOD_TOKEN)
    assert first.returncode == 0, first.stderr
    printed = [json.loads(line) for line in first.stdout.splitlines()]
    count, checkpoint = asyncio.run(stored(tmp_path))
    assert count == len(printed) > 100
    assert f"{count} new signal(s), 0 already stored" in first.stderr
    assert f"checkpoint: {checkpoint}\n" in first.stderr

    second = poll(tmp_path, fake, GOOD_TOKEN)
    assert second.returncode == 0, second.stderr
    assert len(second.stdout.splitlines()) < 5, "it resumed from the stored checkpoint"
    assert "0 new signal(s)" in second.stderr
    assert asyncio.run(stored(tmp_path)) == (count, checkpoint)


def test_poll_with_a_store_and_a_rejected_token_fails_in_one_clean_line(
    tmp_path: Path, fake: GitHubFake
) -> None:
    result = poll(tmp_path, fake, BAD_TOKEN)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert "401" in errors[0]
    assert BAD_TOKEN not in result.stderr
    assert "Traceback" not in result.stderr
    assert asyncio.run(stored(tmp_path)) == (0, None)


async def secret_sealed_in(data_dir: Path) -> None:
    """A data directory as a worker leaves it: one credential set in its secrets.db."""
    secrets = await LocalSecretStore.open(data_dir, env={})
    try:
        await secrets.put(None, {"token": "worker-token-0001"})
    finally:
        await secrets.close()


def test_poll_with_a_store_makes_no_master_key_and_takes_the_data_dir_it_is_given(
    tmp_path: Path, fake: GitHubFake
) -> None:
    """``--data-dir`` as every store-using command takes it, not ``~/.local/share/ucf``
    behind the user's back. The poll's credentials come from the command line and no
    rotation is kept, so it opens no secret store: it made a master key (and an empty
    secrets.db) that nothing used, and failed in a worker's directory whose secrets are
    sealed under a key it does not have (``UCF_MASTER_KEY`` set for the worker only)."""
    result = poll(
        tmp_path, fake, GOOD_TOKEN, "--data-dir", str(tmp_path / "mine"), env_data_dir=False
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "mine" / "master.key").exists()
    assert not (tmp_path / "mine" / "secrets.db").exists()
    assert not (tmp_path / "home").exists(), sorted(map(str, (tmp_path / "home").rglob("*")))
    count, _ = asyncio.run(stored(tmp_path))
    assert count > 100

    alone = subprocess.run(
        [UCF, "poll", "--descriptor", "github-issues", "--data-dir", str(tmp_path / "mine")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert alone.returncode == 2
    assert "error: --data-dir goes with --store" in alone.stderr

    sealed = tmp_path / "worker"
    sealed.mkdir()
    asyncio.run(secret_sealed_in(sealed))
    (sealed / "master.key").unlink()  # the worker's key is elsewhere
    in_worker_dir = poll(tmp_path, fake, GOOD_TOKEN, "--data-dir", str(sealed))
    assert in_worker_dir.returncode == 0, in_worker_dir.stderr
    assert not (sealed / "master.key").exists()

    (tmp_path / "a-file").write_text("")
    unusable = poll(tmp_path, fake, GOOD_TOKEN, "--data-dir", str(tmp_path / "a-file"))
    assert unusable.returncode == 1
    assert f"error: cannot use the data directory {tmp_path / 'a-file'}" in unusable.stderr
    assert "Traceback" not in unusable.stderr
