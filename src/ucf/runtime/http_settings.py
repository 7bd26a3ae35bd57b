"""Every limit of the outbound HTTP path (:class:`HttpSettings`), without the HTTP stack.

:mod:`ucf.runtime.http` enforces them; the settings (:mod:`ucf.service.settings`)
only read them from the environment, so they live here, where importing them
loads no httpx: a process that makes no outbound request (a Lambda that
enqueues polls) never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ucf import __version__
from ucf.core.records import datarecord

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_USER_AGENT", "HttpSettings"]

DEFAULT_USER_AGENT: Final = f"ucf/{__version__} (+https://github.com/ucf)"


@datarecord
class HttpSettings:
    """Every limit of the outbound HTTP path, in seconds and bytes."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    pool_timeout: float = 10.0
    attempt_timeout: float = 60.0
    """The whole of one attempt: connecting, every redirect hop and the entire body."""
    max_response_bytes: int = 10 * 1024 * 1024
    user_agent: str = DEFAULT_USER_AGENT
    max_retries: int = 4
    max_total_retry_wait: float = 120.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    follow_redirects: bool = True
    max_redirects: int = 5
    max_connections: int = 100
    max_keepalive_connections: int = 20

    def timeout(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.pool_timeout,
        )
