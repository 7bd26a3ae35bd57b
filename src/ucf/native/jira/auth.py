"""How ucf signs in to Jira Cloud: an API token, or OAuth 2.0 (3LO) through Atlassian's gateway.

* **API token** (Basic): ``Authorization: Basic base64(email:api_token)`` sent
  to the site itself, ``https://your-site.atlassian.net``
  (https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/).
* **OAuth 2.0 (3LO)**: ``Authorization: Bearer <access token>``, and the
  requests go to ``https://api.atlassian.com/ex/jira/{cloudId}/…`` instead of
  the site (https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/).
  Access tokens last an hour; each refresh at ``https://auth.atlassian.com/oauth/token``
  returns a new refresh token and invalidates the old one (rotating refresh
  tokens), so the engine's :class:`~ucf.native.OAuth2Flow` stores the new
  credentials before it uses them.

Which one runs is decided by the credentials the instance holds: an access or
refresh token means OAuth, else email + API token. The source builds every URL
against ``siteUrl``; :class:`GatewayRouting` moves OAuth requests to the gateway,
so the poll, the health check and the webhook handler never care which it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import httpx

from ucf.native import AuthFailed, CredentialsChanged, HttpSettings, OAuth2Config, OAuth2Flow

__all__ = ["ATLASSIAN", "AtlassianEndpoints", "GatewayRouting", "jira_auth", "uses_oauth"]

OAUTH_TOKEN_KEYS: Final = ("accessToken", "refreshToken")


@dataclass(frozen=True, slots=True)
class AtlassianEndpoints:
    """Where OAuth 2.0 (3LO) calls go; tests point both at a local fake."""

    gateway: str = "https://api.atlassian.com"
    token_url: str = "https://auth.atlassian.com/oauth/token"  # noqa: S105 - a URL

    def api_base(self, cloud_id: str) -> str:
        return f"{self.gateway.rstrip('/')}/ex/jira/{cloud_id}"

    def configured(self, config: Mapping[str, str]) -> AtlassianEndpoints:
        """These, or the instance's ``authUrl``/``gatewayUrl`` settings (the descriptor's
        consent uses the same ones, so a test server stands in for both)."""
        auth, gateway = config.get("authUrl", "").strip(), config.get("gatewayUrl", "").strip()
        return AtlassianEndpoints(
            gateway=gateway.rstrip("/") or self.gateway,
            token_url=f"{auth.rstrip('/')}/oauth/token" if auth else self.token_url,
        )


ATLASSIAN: Final = AtlassianEndpoints()

_OAUTH: Final = OAuth2Config.model_validate(
    {
        "authoriseUrl": "https://auth.atlassian.com/authorize",
        "tokenUrl": ATLASSIAN.token_url,
        "scopes": ["read:jira-work", "read:jira-user", "offline_access"],
        "rotatesRefreshToken": True,
        "credentialFields": [
            {"key": key, "label": key, "type": "password", "required": False}
            for key in ("clientId", "clientSecret", "accessToken", "refreshToken")
        ],
    }
)


def uses_oauth(credentials: Mapping[str, str]) -> bool:
    return any(credentials.get(key) for key in OAUTH_TOKEN_KEYS)


class GatewayRouting(httpx.Auth):
    """Sends requests built against the site through the OAuth gateway, then signs them.

    ``https://your-site.atlassian.net/rest/api/3/myself`` becomes
    ``https://api.atlassian.com/ex/jira/{cloudId}/rest/api/3/myself``; any
    other URL (the token endpoint) is left alone.
    """

    requires_request_body = True

    def __init__(self, inner: OAuth2Flow, *, site: str, api_base: str) -> None:
        self._inner = inner
        self._site = site.rstrip("/")
        self._api = api_base.rstrip("/")

    @property
    def credentials(self) -> dict[str, str]:
        return self._inner.credentials

    def _route(self, request: httpx.Request) -> None:
        url = str(request.url)
        if url == self._site or url.startswith(self._site + "/"):
            request.url = httpx.URL(self._api + url[len(self._site) :])
            request.headers["Host"] = request.url.netloc.decode("ascii")

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuth2 auth refreshes tokens asynchronously; use an AsyncClient")
        yield request  # pragma: no cover - makes this a generator

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._route(request)
        flow = self._inner.async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return


def jira_auth(
    credentials: Mapping[str, str],
    *,
    config: Mapping[str, str],
    token_client: httpx.AsyncClient,
    on_rotate: CredentialsChanged | None,
    now: Callable[[], datetime],
    settings: HttpSettings,
    endpoints: AtlassianEndpoints = ATLASSIAN,
) -> httpx.Auth:
    """Basic or OAuth 2.0 (3LO), by the credentials present (see the module doc).

    Raises :class:`AuthFailed` naming what is missing (never a value) before
    any request is made.
    """
    if uses_oauth(credentials):
        endpoints = endpoints.configured(config)
        cloud_id = (config.get("cloudId") or "").strip()
        if not cloud_id:
            raise AuthFailed(
                "Jira OAuth 2.0 needs the site's cloudId in the settings (the 'id' that "
                "GET https://api.atlassian.com/oauth/token/accessible-resources returns)"
            )
        if not credentials.get("accessToken"):
            missing = [k for k in ("clientId", "clientSecret") if not credentials.get(k)]
            if missing:
                raise AuthFailed(
                    f"Jira OAuth 2.0 can only refresh with {' and '.join(missing)} set"
                )
        flow = OAuth2Flow(
            _OAUTH,
            credentials,
            token_url=endpoints.token_url,
            token_client=token_client,
            on_rotate=on_rotate,
            now=now,
            settings=settings,
            sleep=asyncio.sleep,
        )
        site = config.get("siteUrl") or ""
        return GatewayRouting(flow, site=site, api_base=endpoints.api_base(cloud_id))
    email, token = credentials.get("email"), credentials.get("apiToken")
    if not email or not token:
        missing = [k for k, v in (("email", email), ("apiToken", token)) if not v]
        raise AuthFailed(
            f"Jira needs {' and '.join(missing)} (an Atlassian account email and an API token), "
            "or OAuth 2.0 credentials"
        )
    return httpx.BasicAuth(email, token)
