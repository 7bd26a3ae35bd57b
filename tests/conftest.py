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
#: each), so under ``-n`` they overlap the rest instead of trailing behind it.
RUN_FIRST = (
    "tests/service/test_crash_safety.py",
    "tests/service/test_webhook_crash_safety.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put each of the longest tests (``RUN_FIRST``) at the head of a worker's share.

    ``make test`` runs ``--dist worksteal``: the collected tests are cut into one
    contiguous share per worker (sizes ``remaining // workers_left``, as the
    scheduler cuts them), each worker runs its share from the front, and an idle
    worker takes the tail of a busy one's. So the long tests go one to a share,
    round robin, at its front: they start at once on different workers, and
    nobody steals them. Every worker collects the same order, as xdist requires.
    Without xdist they simply run first.
    """
    first = [item for item in items if item.nodeid.startswith(RUN_FIRST)]
    rest = [item for item in items if not item.nodeid.startswith(RUN_FIRST)]
    workerinput = getattr(config, "workerinput", None)
    workers = int(workerinput["workercount"]) if workerinput else 1
    ordered: list[pytest.Item] = []
    remaining = len(items)
    for share in range(workers):
        size = remaining // (workers - share)
        remaining -= size
        lead = first[share::workers]
        take = max(size - len(lead), 0)
        ordered += lead + rest[:take]
        rest = rest[take:]
    items[:] = ordered + rest
