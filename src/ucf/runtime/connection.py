"""One place that builds what a connector needs to call its upstream.

Every caller — a poll, a health check, Test Connection in the setup flow, the
CLI, a native webhook handler fetching a full object — needs the same three
things for one set of credentials: the auth flow (descriptor-driven, or a
native connector's own ``auth()`` hook), the HTTP client with its settings and
SSRF guard, and the instance's rate gate. :func:`connect` builds them; callers
differ only in where credentials come from and where rotated tokens go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from ucf.core.sign_in import sign_in_method
from ucf.runtime.auth import CredentialsChanged, build_auth
from ucf.runtime.http import HttpSettings
from ucf.runtime.polling import RateGate
from ucf.runtime.sources import Source, SourceContext

__all__ = ["AuthHook", "connect"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuthHook(Protocol):
    """A native connector's own auth, for schemes a descriptor cannot express
    (Jira's choice of Basic or OAuth 3LO by which credentials are present)."""

    def auth(
        self,
        credentials: Mapping[str, str],
        *,
        config: Mapping[str, str],
        token_client: httpx.AsyncClient,
        on_rotate: CredentialsChanged | None,
        now: Callable[[], datetime],
        settings: HttpSettings,
    ) -> httpx.Auth: ...


def connect(
    source: Source,
    *,
    credentials: Mapping[str, str],
    config: Mapping[str, str],
    client: httpx.AsyncClient,
    settings: HttpSettings | None = None,
    on_rotate: CredentialsChanged | None = None,
    rate_gate: RateGate | None = None,
    now: Callable[[], datetime] = _utc_now,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> SourceContext:
    """The context ``source`` runs in for one instance's credentials and settings.

    Raises :class:`~ucf.runtime.auth.CredentialMissing` (an ``AuthFailed``)
    when a required credential is absent, before any request is made.
    """
    settings = settings or HttpSettings()
    hook: Any = getattr(source, "auth", None)
    if callable(hook):
        auth: httpx.Auth = hook(
            credentials,
            config=config,
            token_client=client,
            on_rotate=on_rotate,
            now=now,
            settings=settings,
        )
    else:
        auth = build_auth(
            # As the instance's check reads them: stored without authMethod (from before
            # it was stored), the method the credentials complete, not ``auth`` blindly.
            sign_in_method(source.descriptor, credentials),
            credentials,
            token_client=client,
            on_rotate=on_rotate,
            now=now,
            config=config,
            settings=settings,
            sleep=sleep,
        )
    return SourceContext(
        client=client,
        auth=auth,
        config=config,
        settings=settings,
        rate_gate=rate_gate,
        sleep=sleep,
    )
