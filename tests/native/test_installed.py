"""Every installed native connector, through the scheduler and the poll job, against its fake.

Iterates the ``ucf.native_sources`` entry points (the registry), so a native
connector that is installed — shipped with ucf or by a third-party package —
is taken through the same path a deployment runs: its catalogue descriptor is
synced into the store, an instance is created with its scenario's settings,
the scheduler finds it due (from the source's declared ``schedule``, not a
descriptor polling block) and polls it, the signals land in the store once,
and a second poll from the stored checkpoint brings exactly the new activity.
A push-only connector (its source declares no ``schedule``: SES) is never taken
through a poll; what is true of it instead is that the scheduler never finds
its instance due.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.service.poll_support import all_signals, open_context
from ucf.core.validation import parse_descriptor
from ucf.fakes.scenario import scenario_for
from ucf.runtime.native import native_registry
from ucf.runtime.sources import source_for
from ucf.service.poll import PollJob, StartAt, poll_job
from ucf.service.scheduler import NEVER, SchedulePolicy, Scheduler

INSTALLED = sorted(entry.name for entry in native_registry() if entry.connector is not None)
PROJECT = "native-e2e"


def _polls(connector_id: str) -> bool:
    """What the installed source declares (the scheduler reads the same declaration)."""
    entry = next(e for e in native_registry() if e.name == connector_id)
    assert entry.connector is not None
    return source_for(parse_descriptor(dict(entry.connector.descriptor))).schedule is not None


POLLED = [c for c in INSTALLED if _polls(c)]
PUSH_ONLY = [c for c in INSTALLED if not _polls(c)]


def test_the_native_connectors_shipped_with_ucf_are_installed_and_load() -> None:
    loaded = {entry.name: entry for entry in native_registry()}
    assert "jira" in loaded, "pyproject.toml's ucf.native_sources entry points are installed"
    for name, entry in loaded.items():
        assert entry.connector is not None, f"{name}: {entry.error}"
        assert entry.distribution == "ucf"


@pytest.mark.parametrize("connector_id", POLLED)
async def test_the_scheduler_polls_a_native_instance_and_stores_each_change_once(
    connector_id: str, tmp_path: Path
) -> None:
    scenario = scenario_for(connector_id)
    now = datetime.now(UTC).replace(microsecond=0)
    with scenario.fake(now) as fake:
        async with await open_context(tmp_path) as context:
            connector = await context.connectors.get(connector_id)
            assert connector.polls, "the source's schedule makes it polled"
            schedule = connector.schedule
            assert schedule is not None
            lookback = timedelta(seconds=schedule.initial_lookback_seconds)
            await context.instances.create(
                PROJECT,
                connector_id,
                credentials=scenario.credentials(),
                config=scenario.config(fake.base_url),
            )
            scheduler = Scheduler(context, "w-native", 2, policy=SchedulePolicy(shutdown_grace=5.0))

            first = await scheduler.run_once()
            again = await scheduler.run_once()  # not due again before its interval

            assert [(r.connector_id, r.status) for r in first] == [(connector_id, "ok")], first
            assert again == []
            stored = await all_signals(context, PROJECT)
            assert {s.signal["source"] for s in stored} == {connector_id}
            expected = fake.ids_changed_since(now - lookback)
            assert expected
            assert len(stored) >= len(expected), "every item of the first window is a signal"
            assert first[0].inserted == len(stored)
            record = await context.instances.get(PROJECT, connector_id)
            assert record is not None


@pytest.mark.parametrize("connector_id", POLLED)
async def test_the_poll_job_resumes_a_native_connector_from_its_stored_checkpoint(
    connector_id: str, tmp_path: Path
) -> None:
    scenario = scenario_for(connector_id)
    now = datetime.now(UTC).replace(microsecond=0)
    with scenario.fake(now) as fake:
        async with await open_context(tmp_path) as context:
            job = PollJob(
                project_id=PROJECT,
                connector=await context.connectors.get(connector_id),
                config=scenario.config(fake.base_url),
                credentials=scenario.credentials(),
            )
            first = await poll_job(context, job)
            activity = fake.add_activity(datetime.now(UTC))
            second = await poll_job(context, job)
            replay = await poll_job(context, job, start_at=StartAt(None))

    assert first.status == "ok", first.error
    assert first.checkpoint is not None
    assert second.status == "ok", second.error
    assert second.checkpoint is not None
    # A time for some, an opaque cursor for others (Graph's deltaLink): it moved on.
    assert second.checkpoint != first.checkpoint
    assert second.inserted == len(activity.ids), "exactly the new activity, nothing twice"
    assert replay.inserted == 0, "polling everything again stores nothing new"
    assert replay.duplicates >= first.inserted


@pytest.mark.parametrize("connector_id", PUSH_ONLY)
async def test_the_scheduler_never_finds_a_push_only_native_instance_due(
    connector_id: str, tmp_path: Path
) -> None:
    scenario = scenario_for(connector_id)
    now = datetime.now(UTC).replace(microsecond=0)
    with scenario.fake(now) as fake:
        async with await open_context(tmp_path) as context:
            connector = await context.connectors.get(connector_id)
            assert not connector.polls
            assert connector.schedule is None
            await context.instances.create(
                PROJECT,
                connector_id,
                credentials=scenario.credentials(),
                config=scenario.config(fake.base_url),
            )
            scheduler = Scheduler(context, "w-native", 2, policy=SchedulePolicy(shutdown_grace=5.0))

            ready, upcoming = await scheduler.due()
            ran = await scheduler.run_once()
            instance = await context.instances.get(PROJECT, connector_id)
            stored = await all_signals(context, PROJECT)

    assert instance.record.enabled, "an enabled instance: it waits for pushes"
    assert ready == []
    assert upcoming == NEVER, "nothing of it is ever due"
    assert ran == []
    assert instance.record.last_sync_at is None
    assert stored == []
