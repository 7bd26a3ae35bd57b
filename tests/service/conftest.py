from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.web.test_oauth import PKCE_APP, PKCE_SECRET
from ucf.fakes.kit import FakeServer
from ucf.fakes.oauth import AuthorizationServer
from ucf.service.context import UcfContext
from ucf.service.settings import Settings


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[UcfContext]:
    """A real embedded ucf: SQLite file, local encrypted secrets, built-in catalogue loaded."""
    settings = Settings.from_env({"UCF_ALLOW_HOSTS": "127.0.0.1"}, data_dir=tmp_path)
    async with await UcfContext.open(settings) as ctx:
        yield ctx


@pytest.fixture
def provider() -> Iterator[AuthorizationServer]:
    """The fake authorization server, knowing the PKCE tool's registered app."""
    server = FakeServer()
    auth = AuthorizationServer(server, PKCE_APP, PKCE_SECRET)
    with server:
        yield auth
