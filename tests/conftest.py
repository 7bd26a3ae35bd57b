"""Servers every part of the suite shares: one of each per pytest process.

Starting dynalite (a Node process) or moto's server costs seconds on a loaded
machine, so the store, secret-store and AWS tests use the same two, each test
isolating itself by its own table, secret prefix and queue names. Under
pytest-xdist (``make test``) each worker process has its own pair, on ports the
OS picks, so workers never see each other's data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stores.dynalite import dynalite_endpoint
from tests.stores.moto_server import running_moto_server

__all__ = ["dynalite_endpoint", "moto_endpoint"]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server (Secrets Manager, SQS) for the session; tests isolate by name."""
    with running_moto_server() as url:
        yield url


# --------------------------------------------------------------------------- pytest-xdist

#: Started first: the longest tests of the suite (SIGKILL loops, 1-4 minutes
#: each). ``make test`` runs ``--dist worksteal``, which gives each worker a
#: contiguous share of the collected tests and lets idle workers take the rest,
#: so the first test starts at once and overlaps everything else instead of
#: trailing behind it.
RUN_FIRST = (
    "tests/service/test_crash_safety.py",
    "tests/service/test_webhook_crash_safety.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (see ``RUN_FIRST``); the rest keep their order."""
    items.sort(key=lambda item: not item.nodeid.startswith(RUN_FIRST))
