"""What a crash test's forked children run (see ``crash_support.Zygote``).

Each function is the body of a process that is about to be SIGKILLed: it runs
after the zygote's imports, with the job's environment, and returns an exit code.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

WORKER_ID = "crash-test-worker"  # reused, so a killed run's lease is taken back at once


def poll_once(directory: str) -> int:
    """What ``ucf worker --once`` runs: every due poll, once; 0 if all of them were ok."""
    from ucf.service.context import UcfContext
    from ucf.service.scheduler import Scheduler
    from ucf.service.settings import Settings

    async def main() -> int:
        settings = Settings.from_env(data_dir=Path(directory))
        async with await UcfContext.open(settings) as context:
            results = await Scheduler(context, WORKER_ID, 1).run_once()
        return 0 if all(r.status == "ok" for r in results) else 1

    return asyncio.run(main())


KILL_POINTS = ("before-commit", "after-commit")
"""Where ``serve`` can SIGKILL itself: when the gateway hands its n-th verified, mapped
delivery to the ingest (before the store's write), or when that ingest has returned
(committed, the 200 not yet written)."""


def serve(directory: str, port: str, kill_point: str = "", nth: str = "0") -> int:
    """``ucf serve --port PORT --data-dir DIRECTORY``, as the console script runs it.

    With a ``kill_point``, the process SIGKILLs itself at that point of its
    ``nth`` ingest (counting from its start): the only way to land a kill
    between two statements every time, rather than by luck.
    """
    from ucf.cli.main import app
    from ucf.service.ingest import SignalIngestor

    if kill_point:
        assert kill_point in KILL_POINTS, kill_point
        _kill_at(SignalIngestor, kill_point, int(nth))
    app(["serve", "--port", port, "--data-dir", directory], prog_name="ucf")
    return 0


def _kill_at(ingestor: type[Any], point: str, nth: int) -> None:
    original: Callable[..., Awaitable[Any]] = ingestor.ingest
    seen = 0

    async def ingest(self: Any, mapped: Sequence[Any], **kwargs: Any) -> Any:
        nonlocal seen
        seen += 1
        if point == "before-commit" and seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        outcome = await original(self, mapped, **kwargs)
        if point == "after-commit" and seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return outcome

    ingestor.ingest = ingest
