"""A native connector's poll page without its list of items: a failed poll, not "nothing new".

Each native source reads its items from one member of the page: Jira's search
page ``issues``, Graph's delta page ``value``, Asana's events page ``data``. An
answer without that member (an API that changed, a proxy's or captive portal's
page) is not an empty page: read as one, the poll ended "ok, nothing new" and
stored the page's continuation (a new sync token, a deltaLink) as its
checkpoint, so the changes it stood for were never read. The poll must fail with
a reason naming the member, keep the checkpoint, and show in the instance's
health. Real parts: each provider's fake on loopback, SQLite, the real client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ucf.fakes import FakeResponse, Fault
from ucf.fakes.asana import AsanaScenario
from ucf.fakes.graph import OutlookScenario
from ucf.fakes.jira import JiraScenario
from ucf.fakes.scenario import ProviderFake, Scenario
from ucf.service.context import UcfContext
from ucf.service.poll import poll_instance

from .poll_support import open_context

PROJECT = "shape"


@dataclass(frozen=True)
class Case:
    """One native connector, its listing's route, and a page of it without the list."""

    scenario: Callable[[], Scenario]
    route: str
    page: Callable[[ProviderFake], dict[str, Any]]
    member: str


CASES = {
    # The search's last page, as Jira ends a listing, but no issues member.
    "jira": Case(JiraScenario, "/rest/api/3/search/jql", lambda fake: {"isLast": True}, "issues"),
    # A deltaLink on Graph's own host (a checkpoint the poll would store), no value.
    "outlook": Case(
        OutlookScenario,
        "/v1.0/me/mailFolders('{folder}')/messages/delta",
        lambda fake: {
            "@odata.deltaLink": fake.server.url(
                "/v1.0/me/mailFolders('inbox')/messages/delta?$deltatoken=next"
            )
        },
        "value",
    ),
    # A fresh sync token (a checkpoint the poll would store), no data.
    "asana": Case(
        AsanaScenario,
        "/api/1.0/events",
        lambda fake: {"sync": "de4774f6915eae04714ca93bb2f5ee81", "has_more": False},
        "data",
    ),
}


@pytest_asyncio.fixture(loop_scope="function")
async def context(tmp_path: Path) -> AsyncIterator[UcfContext]:
    async with await open_context(tmp_path) as ctx:
        yield ctx


@pytest.mark.parametrize("connector", sorted(CASES))
async def test_a_page_without_its_list_of_items_fails_the_poll_and_keeps_the_checkpoint(
    context: UcfContext, connector: str
) -> None:
    case = CASES[connector]
    scenario = case.scenario()
    with scenario.fake(datetime.now(UTC)) as fake:
        await context.instances.create(
            PROJECT,
            connector,
            credentials=scenario.credentials(),
            config=scenario.config(fake.base_url),
        )
        first = await poll_instance(context, PROJECT, connector)
        assert first.status == "ok", first.error
        before = await context.store.checkpoints.get(PROJECT, connector)
        assert before.value is not None
        fake.server.inject(Fault.respond(FakeResponse.json(case.page(fake))), path=case.route)

        second = await poll_instance(context, PROJECT, connector)

    assert second.status == "failed"
    assert second.error is not None
    assert f"'{case.member}'" in second.error, second.error
    after = await context.store.checkpoints.get(PROJECT, connector)
    assert after.value == before.value
    record = await context.instances.record(PROJECT, connector)
    assert record.health_state == "degraded"
    assert record.last_error is not None
    assert f"'{case.member}'" in record.last_error
