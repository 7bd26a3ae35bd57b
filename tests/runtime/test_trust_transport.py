"""BackgroundTrustTransport with ucf's own network backend keeps httpx's pool options."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import pytest

from ucf.runtime.trust import BackgroundTrustTransport


class RefusingBackend(httpcore.AsyncNetworkBackend):
    """Counts connection attempts and refuses each (a real backend's failure, no socket)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.attempts += 1
        raise httpcore.ConnectError("refused")

    async def sleep(self, seconds: float) -> None:
        """httpcore's back-off between retries, not waited for here."""


async def test_retries_reach_the_pool_built_on_a_network_backend() -> None:
    """``retries=1`` means a second connection attempt, as with httpx's own pool."""
    backend = RefusingBackend()
    transport = BackgroundTrustTransport(trust_env=False, retries=1, network_backend=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://example.invalid/")

    assert backend.attempts == 2


def test_a_proxy_is_refused_rather_than_dropped_with_a_network_backend() -> None:
    with pytest.raises(TypeError, match="proxy"):
        BackgroundTrustTransport(
            proxy="http://proxy.invalid:3128", network_backend=RefusingBackend()
        )
