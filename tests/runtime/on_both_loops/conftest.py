"""The tests in this folder run on both event loops ucf runs on.

``ucf serve`` runs on uvloop when it is installed (as uvicorn would), the
worker, the CLI and Lambda on asyncio's own loop. The network backend under
httpcore talks to the loop's transports directly, and uvloop's differ from
asyncio's (they are not ``asyncio.Transport`` subclasses, their sockets are
stand-ins): so its tests, and the guarded client's, run on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
