"""A poll has a total deadline: a slow-drip upstream cannot hold its slot.

The GitHub fake answers the first page normally and drips the second one, a
few bytes at a time, each within the read timeout. The poll must end at
``UCF_POLL_TIMEOUT`` as failed, keep the first page's signals and checkpoint,
and free its slot; the next poll, with the upstream well again, goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from ucf.fakes import Fault
from ucf.fakes.github import GitHubFake
from ucf.runtime.http import HttpSettings
from ucf.service.context import UcfContext
from ucf.service.poll import poll_instance
from ucf.service.settings import DEFAULT_POLL_TIMEOUT, Settings

from .poll_support import all_signals, connect_github, settings_for

SECOND_PAGE = "/repositories/{id}/issues"  # GitHub's Link header points here
# Reads would time out after 2 s and attempts after 60 s; only the poll deadline is short.
HTTP = HttpSettings(connect_timeout=2, read_timeout=2, attempt_timeout=60, max_retries=0)


@pytest.fixture
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(datetime.now(UTC)) as github:
        yield github


@pytest_asyncio.fixture(loop_scope="function")
async def context(tmp_path: Path) -> AsyncIterator[UcfContext]:
    settings = dataclasses.replace(
        settings_for(tmp_path, http=HTTP), poll_timeout=timedelta(seconds=1.5)
    )
    async with await UcfContext.open(settings) as ctx:
        yield ctx


async def test_slow_drip_page_ends_the_poll_at_its_deadline_keeping_what_was_stored(
    context: UcfContext, fake: GitHubFake
) -> None:
    await connect_github(context, fake.base_url)
    fake.server.inject(Fault.drip(0.1, chunk=64), path=SECOND_PAGE)

    result = await asyncio.wait_for(poll_instance(context, "p1", "github-issues"), timeout=30)

    assert result.status == "failed"
    assert result.error is not None
    assert "1.5 s deadline (UCF_POLL_TIMEOUT)" in result.error
    assert result.pages == 1  # the first page was stored before the deadline
    assert result.inserted == len(await all_signals(context, "p1")) > 0
    stored = await context.store.checkpoints.get("p1", "github-issues")
    assert stored.value == result.checkpoint is not None
    assert result.health == "degraded"

    again = await poll_instance(context, "p1", "github-issues")  # the upstream is well again

    assert again.status == "ok", again.error
    assert again.health == "healthy"


def test_poll_and_attempt_deadlines_are_settings_with_defaults(tmp_path: Path) -> None:
    defaults = Settings.from_env({}, data_dir=tmp_path)
    assert defaults.poll_timeout == DEFAULT_POLL_TIMEOUT == timedelta(minutes=5)
    assert defaults.http.attempt_timeout == 60

    tuned = Settings.from_env(
        {"UCF_POLL_TIMEOUT": "90", "UCF_HTTP_ATTEMPT_TIMEOUT": "12.5"}, data_dir=tmp_path
    )
    assert tuned.poll_timeout == timedelta(seconds=90)
    assert tuned.http.attempt_timeout == 12.5


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_a_deadline_that_is_not_a_positive_number_is_refused_by_name(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ValueError, match="UCF_POLL_TIMEOUT must be a number of seconds"):
        Settings.from_env({"UCF_POLL_TIMEOUT": value}, data_dir=tmp_path)
