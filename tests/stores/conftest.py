"""Every store test runs once per backend.

A backend is a function that turns the pytest request (for any session
fixtures it needs, e.g. a running server) and a fresh temporary directory into a
store URL that nobody else uses. ``store_url`` is parametrised over
``STORE_BACKENDS``; ``store`` opens it. Concurrency tests hand the URL to child
processes, so a backend only has to be reachable by URL.

To add a backend, add an entry to ``STORE_BACKENDS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.stores.dynalite import dynamodb_url, unique_table_name
from ucf.stores import Store, open_store


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'ucf.db'}"


def _dynamodb_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return dynamodb_url(request.getfixturevalue("dynalite_endpoint"), unique_table_name())


StoreBackend = Callable[[pytest.FixtureRequest, Path], str]

STORE_BACKENDS: dict[str, StoreBackend] = {
    "sqlite": _sqlite_url,
    "dynamodb": _dynamodb_url,
}


@pytest.fixture(params=list(STORE_BACKENDS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend: StoreBackend = STORE_BACKENDS[request.param]
    return backend(request, tmp_path)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url) as opened:
        yield opened
