"""Auth flows against real local servers: what the fake API and token endpoint saw.

Every placement style is asserted on the wire (the fake's request log), and
OAuth2 runs against a fake token endpoint that issues, expires, rotates and
revokes tokens the way RFC 6749 providers (Slack, Atlassian, Sentry) do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import pytest_asyncio
from pydantic import TypeAdapter

from ucf.core import descriptor as d
from ucf.fakes import FakeRequest, FakeResponse, FakeServer
from ucf.runtime.auth import ACCESS_TOKEN_EXPIRES_AT, CredentialMissing, build_auth, exchange_code
from ucf.runtime.http import AuthFailed, HttpSettings, create_client, send_with_retries
from ucf.runtime.ssrf import EgressDenied, EgressPolicy

SETTINGS = HttpSettings(connect_timeout=2, read_timeout=2, max_retries=2, backoff_base=0.01)
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
AUTH = TypeAdapter(d.AuthDescriptor)


def auth_of(data: dict[str, Any]) -> Any:
    return AUTH.validate_python(data)


def field_(key: str, *, required: bool = True) -> dict[str, Any]:
    return {"key": key, "label": key, "type": "password", "required": required}


@dataclass
class Provider:
    """A token endpoint and an API that accepts only the tokens it issued and has not expired."""

    rotate: bool = True
    lifetime: int | None = 3600
    live_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=lambda: {"refresh-1"})
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(2))
    token_calls: list[dict[str, list[str]]] = field(default_factory=list)

    def token(self, request: FakeRequest) -> FakeResponse:
        form = parse_qs(request.body.decode())
        self.token_calls.append(form)
        grant = form.get("grant_type", [""])[0]
        if grant == "refresh_token":
            refresh = form.get("refresh_token", [""])[0]
            if refresh not in self.refresh_tokens:
                return FakeResponse.json({"error": "invalid_grant"}, 400)
        n = next(self.counter)
        access = f"access-{n}"
        self.live_tokens.add(access)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer"}
        if self.lifetime is not None:
            body["expires_in"] = self.lifetime
        if grant == "refresh_token" and self.rotate:
            self.refresh_tokens = {f"refresh-{n}"}  # the old one dies at once
            body["refresh_token"] = f"refresh-{n}"
        return FakeResponse.json(body)

    def api(self, request: FakeRequest) -> FakeResponse:
        header = request.headers.get("authorization", "")
        if header.removeprefix("Bearer ") in self.live_tokens:
            return FakeResponse.json({"ok": True})
        return FakeResponse.json({"message": "Bad credentials"}, 401)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    """A fresh fake per test (starting one takes about a millisecond)."""
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def provider(server: FakeServer) -> Provider:
    state = Provider()
    server.add_route("POST", "/oauth/token", state.token)
    server.add_route("GET", "/api/me", state.api)
    return state


@pytest.fixture
def plain_api(server: FakeServer) -> FakeServer:
    server.add_route("GET", "/api/me", lambda _: {"ok": True})
    return server


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


async def get(client: httpx.AsyncClient, auth: httpx.Auth, url: str) -> httpx.Response:
    return await send_with_retries(
        client, client.build_request("GET", url), settings=SETTINGS, auth=auth
    )


# --------------------------------------------------------------------------- static schemes


async def test_pagerduty_key_arrives_as_token_header_with_its_prefix(
    plain_api: FakeServer, client: httpx.AsyncClient
) -> None:
    auth = auth_of(
        {
            "method": "api_key",
            "config": {
                "delivery": "header",
                "paramName": "Authorization",
                "valuePrefix": "Token token=",
                "credentialFields": [field_("apiKey")],
                "extraHeaders": {"Accept": "application/vnd.pagerduty+json;version=2"},
            },
        }
    )
    flow = build_auth(auth, {"apiKey": "pd-secret-123"}, token_client=client)
    await get(client, flow, plain_api.url("/api/me"))
    seen = plain_api.requests_to("/api/me")[0]
    assert seen.headers["authorization"] == "Token token=pd-secret-123"
    assert seen.headers["accept"] == "application/vnd.pagerduty+json;version=2"


async def test_trello_key_and_token_both_arrive_as_query_parameters(
    plain_api: FakeServer, client: httpx.AsyncClient
) -> None:
    auth = auth_of(
        {
            "method": "api_key",
            "config": {
                "delivery": "query",
                "paramName": "key",
                "credentialKey": "apiKey",
                "credentialFields": [field_("apiKey"), field_("token")],
                "additionalCredentials": [
                    {"credential": "token", "delivery": "query", "paramName": "token"}
                ],
            },
        }
    )
    flow = build_auth(auth, {"apiKey": "k1", "token": "t/2&x"}, token_client=client)
    await get(client, flow, plain_api.url("/api/me?filter=createCard"))
    seen = plain_api.requests_to("/api/me")[0]
    assert seen.query == {"filter": ["createCard"], "key": ["k1"], "token": ["t/2&x"]}
    assert "authorization" not in seen.headers


async def test_datadog_api_and_application_keys_arrive_as_two_headers(
    plain_api: FakeServer, client: httpx.AsyncClient
) -> None:
    auth = auth_of(
        {
            "method": "api_key",
            "config": {
                "delivery": "header",
                "paramName": "DD-API-KEY",
                "credentialFields": [field_("apiKey"), field_("appKey")],
                "additionalCredentials": [
                    {
                        "credential": "appKey",
                        "delivery": "header",
                        "paramName": "DD-APPLICATION-KEY",
                    }
                ],
            },
        }
    )
    flow = build_auth(auth, {"apiKey": "dd-api", "appKey": "dd-app"}, token_client=client)
    await get(client, flow, plain_api.url("/api/me"))
    seen = plain_api.requests_to("/api/me")[0]
    assert (seen.headers["dd-api-key"], seen.headers["dd-application-key"]) == ("dd-api", "dd-app")


async def test_github_pat_arrives_as_bearer_with_the_api_version_headers(
    plain_api: FakeServer, client: httpx.AsyncClient
) -> None:
    auth = auth_of(
        {
            "method": "pat",
            "config": {
                "delivery": "bearer",
                "paramName": "Authorization",
                "credentialFields": [field_("token"), field_("webhookSecret", required=False)],
                "extraHeaders": {
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                },
            },
        }
    )
    flow = build_auth(auth, {"token": "ghp_abc"}, token_client=client)
    await get(client, flow, plain_api.url("/api/me"))
    seen = plain_api.requests_to("/api/me")[0]
    assert seen.headers["authorization"] == "Bearer ghp_abc"
    assert seen.headers["x-github-api-version"] == "2022-11-28"
    assert seen.headers["accept"] == "application/vnd.github+json"


async def test_confluence_basic_pair_is_email_and_api_token(
    plain_api: FakeServer, client: httpx.AsyncClient
) -> None:
    auth = auth_of(
        {
            "method": "basic",
            "config": {"credentialFields": [field_("email"), field_("apiToken")]},
        }
    )
    flow = build_auth(auth, {"email": "a@b.co", "apiToken": "ATATT-x"}, token_client=client)
    await get(client, flow, plain_api.url("/api/me"))
    expected = "Basic " + base64.b64encode(b"a@b.co:ATATT-x").decode()
    assert plain_api.requests_to("/api/me")[0].headers["authorization"] == expected


async def test_sentry_legacy_key_sends_an_empty_password_when_it_is_optional(
    plain_api: FakeServer, client: httpx.AsyncClient
) -> None:
    auth = auth_of(
        {
            "method": "basic",
            "config": {"credentialFields": [field_("key"), field_("unused", required=False)]},
        }
    )
    flow = build_auth(auth, {"key": "legacy"}, token_client=client)
    await get(client, flow, plain_api.url("/api/me"))
    expected = "Basic " + base64.b64encode(b"legacy:").decode()
    assert plain_api.requests_to("/api/me")[0].headers["authorization"] == expected


async def test_no_auth_sends_no_credentials(
    plain_api: FakeServer, client: httpx.AsyncClient
) -> None:
    flow = build_auth(auth_of({"method": "none"}), {}, token_client=client)
    await get(client, flow, plain_api.url("/api/me"))
    assert "authorization" not in plain_api.requests_to("/api/me")[0].headers


async def test_a_missing_credential_is_named_before_any_request(client: httpx.AsyncClient) -> None:
    auth = auth_of(
        {
            "method": "api_key",
            "config": {
                "delivery": "header",
                "paramName": "X-Key",
                "credentialFields": [field_("apiKey")],
            },
        }
    )
    with pytest.raises(CredentialMissing, match="credential 'apiKey' is not set"):
        build_auth(auth, {"other": "value"}, token_client=client)


# --------------------------------------------------------------------------- oauth2


def oauth(server: FakeServer, **config: Any) -> Any:
    return auth_of(
        {
            "method": "oauth2",
            "config": {
                "authoriseUrl": "https://example.com/authorize",
                "tokenUrl": server.url("/oauth/token"),
                "scopes": ["read"],
                "credentialFields": [
                    field_("clientId"),
                    field_("clientSecret"),
                    field_("refreshToken", required=config.get("grant") != "client_credentials"),
                ],
                **config,
            },
        }
    )


class Persisted:
    """The ``on_rotate`` callback: records what the secret store would have stored, and when."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.saved: list[dict[str, str]] = []
        self.api_calls_before_save: list[int] = []

    async def __call__(self, credentials: dict[str, str]) -> None:
        self.api_calls_before_save.append(len(self.server.requests_to("/api/me")))
        self.saved.append(credentials)


async def test_an_expired_access_token_is_refreshed_before_the_request(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    persisted = Persisted(server)
    credentials = {
        "clientId": "cid",
        "clientSecret": "csecret",
        "refreshToken": "refresh-1",
        "accessToken": "access-old",
        ACCESS_TOKEN_EXPIRES_AT: (NOW - timedelta(minutes=1)).isoformat(),
    }
    flow = build_auth(
        oauth(server), credentials, token_client=client, on_rotate=persisted, now=lambda: NOW
    )
    response = await get(client, flow, server.url("/api/me"))

    assert response.json() == {"ok": True}
    api_calls = server.requests_to("/api/me")
    assert [r.headers["authorization"] for r in api_calls] == [
        "Bearer access-2"
    ]  # old one never sent
    assert provider.token_calls == [
        {
            "grant_type": ["refresh_token"],
            "refresh_token": ["refresh-1"],
            "client_id": ["cid"],
            "client_secret": ["csecret"],
        }
    ]
    saved = persisted.saved[-1]
    assert saved["accessToken"] == "access-2"
    assert saved[ACCESS_TOKEN_EXPIRES_AT] == (NOW + timedelta(hours=1)).isoformat()


async def test_only_the_tokens_are_handed_on_to_be_stored(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    """The client id and secret a run holds may be the registered OAuth app's, filled in
    for it: written into the instance's own entry, they would outlive the app's next
    secret rotation there (and undo an operator's change made since the run began)."""
    persisted = Persisted(server)
    credentials = {"clientId": "app-id", "clientSecret": "app-secret", "refreshToken": "refresh-1"}
    flow = build_auth(
        oauth(server), credentials, token_client=client, on_rotate=persisted, now=lambda: NOW
    )
    assert (await get(client, flow, server.url("/api/me"))).status_code == 200

    assert persisted.saved == [
        {
            "accessToken": "access-2",
            "refreshToken": "refresh-2",
            ACCESS_TOKEN_EXPIRES_AT: (NOW + timedelta(hours=1)).isoformat(),
        }
    ]


async def test_a_token_that_is_still_valid_is_used_without_asking_the_token_endpoint(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    provider.live_tokens.add("access-live")
    credentials = {
        "clientId": "cid",
        "clientSecret": "csecret",
        "refreshToken": "refresh-1",
        "accessToken": "access-live",
        ACCESS_TOKEN_EXPIRES_AT: (NOW + timedelta(minutes=30)).isoformat(),
    }
    flow = build_auth(oauth(server), credentials, token_client=client, now=lambda: NOW)
    await get(client, flow, server.url("/api/me"))
    await get(client, flow, server.url("/api/me"))
    assert provider.token_calls == []


async def test_a_401_triggers_one_refresh_and_one_retry(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    credentials = {
        "clientId": "cid",
        "clientSecret": "csecret",
        "refreshToken": "refresh-1",
        "accessToken": "revoked-by-provider",  # no expiry known: used until the API objects
    }
    flow = build_auth(oauth(server), credentials, token_client=client, now=lambda: NOW)
    response = await get(client, flow, server.url("/api/me"))
    assert response.status_code == 200
    sent = [r.headers["authorization"] for r in server.requests_to("/api/me")]
    assert sent == ["Bearer revoked-by-provider", "Bearer access-2"]
    assert len(provider.token_calls) == 1


async def test_a_401_gives_its_connection_back_before_the_refresh_waits_for_one(
    server: FakeServer, provider: Provider
) -> None:
    """The refresh after a 401 (which may also wait for another run's turn) goes through
    the same pool: a 401 still holding its connection meanwhile could starve it, down to
    a deadlock when every connection is such a 401 (here the pool's only one)."""
    settings = replace(SETTINGS, max_connections=1, pool_timeout=2)
    credentials = {
        "clientId": "cid",
        "clientSecret": "csecret",
        "refreshToken": "refresh-1",
        "accessToken": "revoked-by-provider",
    }
    async with create_client(settings, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
        flow = build_auth(
            oauth(server), credentials, token_client=client, now=lambda: NOW, settings=settings
        )
        response = await send_with_retries(
            client, client.build_request("GET", server.url("/api/me")), settings=settings, auth=flow
        )
    assert response.status_code == 200
    assert len(provider.token_calls) == 1


async def test_a_rotated_refresh_token_is_persisted_before_the_new_token_is_used(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    persisted = Persisted(server)
    credentials = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-1"}
    flow = build_auth(
        oauth(server), credentials, token_client=client, on_rotate=persisted, now=lambda: NOW
    )
    await get(client, flow, server.url("/api/me"))

    assert persisted.saved[0]["refreshToken"] == "refresh-2"
    assert persisted.api_calls_before_save == [0]  # stored before the API saw the new token
    assert provider.refresh_tokens == {"refresh-2"}  # and the provider already killed refresh-1

    # The next refresh (after a 401) uses the rotated token, not the dead one.
    provider.live_tokens.clear()
    await get(client, flow, server.url("/api/me"))
    assert provider.token_calls[-1]["refresh_token"] == ["refresh-2"]
    assert persisted.saved[-1]["refreshToken"] == "refresh-3"


async def test_a_deadline_that_cuts_the_save_of_a_rotated_token_leaves_the_retry_the_live_one(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    """The attempt deadline lands while the rotated refresh token is being saved: the
    save goes on, and the retry must use the new token, not the one the provider has
    already killed (that would fail the poll as "credentials refused" and back it off)."""
    saved: list[dict[str, str]] = []
    request: asyncio.Task[httpx.Response] | None = None

    async def save_after_the_deadline(credentials: dict[str, str]) -> None:
        assert request is not None
        # Until the deadline cancels the request (no event says so; the flag stays up
        # while the cancelled request waits for this save, so the look cannot miss it).
        while not request.cancelling() and not request.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        saved.append(credentials)

    credentials = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-1"}
    flow = build_auth(
        oauth(server),
        credentials,
        token_client=client,
        on_rotate=save_after_the_deadline,
        now=lambda: NOW,
    )
    settings = HttpSettings(read_timeout=2, attempt_timeout=2, max_retries=1, backoff_base=0.01)
    request = asyncio.create_task(
        send_with_retries(
            client,
            client.build_request("GET", server.url("/api/me")),
            settings=settings,
            auth=flow,
        )
    )
    response = await asyncio.wait_for(request, timeout=30)

    assert response.json() == {"ok": True}
    assert [call["refresh_token"] for call in provider.token_calls] == [["refresh-1"]]
    assert [entry["refreshToken"] for entry in saved] == ["refresh-2"]


class Keeper:
    """A ``CredentialKeeper`` over one stored credential set that several flows share, as
    the runs of one instance share its secret entry (``ucf.service.secret_turns``)."""

    def __init__(self, stored: dict[str, str]) -> None:
        self.stored = dict(stored)
        self.turns = 0
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    async def __call__(self, credentials: dict[str, str]) -> None:
        merged = {**self.stored, **credentials}  # the tokens, merged as the secret store does
        if ACCESS_TOKEN_EXPIRES_AT not in credentials:
            merged.pop(ACCESS_TOKEN_EXPIRES_AT, None)  # a token without expiry drops the old
        self.stored = merged

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[dict[str, str] | None]:
        async with self._lock:
            self.turns += 1
            yield dict(self.stored)


async def test_two_runs_whose_token_expired_refresh_once_and_both_use_the_new_token(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    """A poll and the upkeep of one instance started with the same tokens. The provider
    rotates refresh tokens: the second to refresh with refresh-1 would be refused."""
    credentials = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-1"}
    keeper = Keeper(credentials)
    poll, upkeep = (
        build_auth(
            oauth(server), credentials, token_client=client, on_rotate=keeper, now=lambda: NOW
        )
        for _ in range(2)
    )
    responses = await asyncio.gather(
        get(client, poll, server.url("/api/me")), get(client, upkeep, server.url("/api/me"))
    )

    assert [r.status_code for r in responses] == [200, 200]
    assert [call["refresh_token"] for call in provider.token_calls] == [["refresh-1"]]
    assert keeper.stored["refreshToken"] == "refresh-2"
    sent = {r.headers["authorization"] for r in server.requests_to("/api/me")}
    assert sent == {"Bearer access-2"}
    assert keeper.turns == 2


async def test_a_token_another_run_stored_is_taken_instead_of_refreshing(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    expired = {
        "clientId": "cid",
        "clientSecret": "csecret",
        "refreshToken": "refresh-1",
        "accessToken": "access-old",
        ACCESS_TOKEN_EXPIRES_AT: (NOW - timedelta(minutes=1)).isoformat(),
    }
    provider.live_tokens.add("access-9")
    keeper = Keeper(
        expired
        | {
            "refreshToken": "refresh-9",
            "accessToken": "access-9",
            ACCESS_TOKEN_EXPIRES_AT: (NOW + timedelta(minutes=50)).isoformat(),
        }
    )
    flow = build_auth(
        oauth(server), expired, token_client=client, on_rotate=keeper, now=lambda: NOW
    )
    response = await get(client, flow, server.url("/api/me"))

    assert response.json() == {"ok": True}
    assert provider.token_calls == []
    assert [r.headers["authorization"] for r in server.requests_to("/api/me")] == [
        "Bearer access-9"
    ]


async def test_a_stored_token_that_is_expiring_too_is_refreshed_with_the_stored_refresh_token(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    provider.refresh_tokens = {"refresh-9"}  # another run rotated refresh-1 out
    expired_at = (NOW - timedelta(minutes=1)).isoformat()
    mine = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-1"}
    keeper = Keeper(
        mine
        | {
            "refreshToken": "refresh-9",
            "accessToken": "access-8",
            ACCESS_TOKEN_EXPIRES_AT: expired_at,
        }
    )
    flow = build_auth(oauth(server), mine, token_client=client, on_rotate=keeper, now=lambda: NOW)
    response = await get(client, flow, server.url("/api/me"))

    assert response.status_code == 200
    assert [call["refresh_token"] for call in provider.token_calls] == [["refresh-9"]]
    assert keeper.stored["refreshToken"] == "refresh-2"


async def test_concurrent_requests_with_an_expired_token_share_one_refresh(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    credentials = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-1"}
    flow = build_auth(oauth(server), credentials, token_client=client, now=lambda: NOW)
    responses = await asyncio.gather(*(get(client, flow, server.url("/api/me")) for _ in range(5)))
    assert {r.status_code for r in responses} == {200}
    assert len(provider.token_calls) == 1


async def test_a_revoked_refresh_token_fails_once_with_a_secret_free_auth_error(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    credentials = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-revoked"}
    flow = build_auth(oauth(server), credentials, token_client=client, now=lambda: NOW)
    with pytest.raises(AuthFailed) as caught:
        await get(client, flow, server.url("/api/me"))
    message = str(caught.value)
    assert "refused the refresh_token grant (invalid_grant)" in message
    assert "refresh-revoked" not in message
    assert "csecret" not in message
    assert len(provider.token_calls) == 1  # not retried
    assert server.requests_to("/api/me") == []


async def test_a_401_after_a_fresh_token_is_final_not_a_refresh_loop(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    server.add_route("GET", "/api/scoped", lambda _: FakeResponse.json({"message": "no"}, 401))
    credentials = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-1"}
    flow = build_auth(oauth(server), credentials, token_client=client, now=lambda: NOW)
    with pytest.raises(AuthFailed, match="credentials rejected"):
        await get(client, flow, server.url("/api/scoped"))
    assert len(provider.token_calls) == 1
    assert len(server.requests_to("/api/scoped")) == 1


async def test_client_credentials_grant_uses_basic_client_auth_and_caches_the_token(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    flow = build_auth(
        oauth(server, grant="client_credentials", clientAuth="basic"),
        {"clientId": "app", "clientSecret": "s3cret"},
        token_client=client,
        now=lambda: NOW,
    )
    await get(client, flow, server.url("/api/me"))
    await get(client, flow, server.url("/api/me"))
    assert provider.token_calls == [{"grant_type": ["client_credentials"], "scope": ["read"]}]
    token_request = server.requests_to("/oauth/token")[0]
    assert (
        token_request.headers["authorization"]
        == "Basic " + base64.b64encode(b"app:s3cret").decode()
    )


async def test_a_token_endpoint_that_answers_200_with_an_error_is_an_auth_failure(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    server.add_route(
        "POST", "/oauth/slack", lambda _: {"ok": False, "error": "invalid_refresh_token"}
    )
    auth = oauth(server)
    auth = auth.model_copy(
        update={"config": auth.config.model_copy(update={"token_url": server.url("/oauth/slack")})}
    )
    flow = build_auth(
        auth, {"clientId": "c", "clientSecret": "s", "refreshToken": "r"}, token_client=client
    )
    with pytest.raises(AuthFailed, match=r"refused the grant \(invalid_refresh_token\)"):
        await get(client, flow, server.url("/api/me"))


async def test_token_requests_obey_the_ssrf_guard(
    client: httpx.AsyncClient, server: FakeServer
) -> None:
    auth = oauth(server)
    auth = auth.model_copy(
        update={
            "config": auth.config.model_copy(update={"token_url": "http://169.254.169.254/token"})
        }
    )
    flow = build_auth(
        auth, {"clientId": "c", "clientSecret": "s", "refreshToken": "r"}, token_client=client
    )
    with pytest.raises(EgressDenied):
        await get(client, flow, server.url("/api/me"))


# --------------------------------------------------------------------------- provider quirks


async def test_a_form_encoded_token_answer_is_read_and_a_json_request_is_sent_when_asked(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """GitHub answers a form unless it honours Accept; Notion and Atlassian take JSON."""
    seen: list[FakeRequest] = []

    def token(request: FakeRequest) -> FakeResponse:
        seen.append(request)
        return FakeResponse(
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            body=b"access_token=gho_fake0form&scope=repo&token_type=bearer",
        )

    server.add_route("POST", "/oauth/token", token)
    credentials = await exchange_code(
        oauth(server, tokenRequest="json").config,
        code="the-code",
        redirect_uri="http://ucf.test/oauth/callback",
        code_verifier=None,
        client_id="app",
        client_secret="s3cret",
        token_url=server.url("/oauth/token"),
        client=client,
        settings=SETTINGS,
        now=NOW,
    )
    assert credentials == {"accessToken": "gho_fake0form"}  # no refresh token, no expiry
    assert seen[0].headers["accept"] == "application/json"
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].json() == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "http://ucf.test/oauth/callback",
        "client_id": "app",
        "client_secret": "s3cret",
    }


async def test_a_refusal_names_the_providers_code_and_description_without_trace_ids(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    server.add_route(
        "POST",
        "/oauth/token",
        lambda _: FakeResponse.json(
            {
                "error": "invalid_grant",
                "error_description": "AADSTS50173: The provided grant has expired due to it "
                "being revoked. Trace ID: 0f1e Correlation ID: 9a8b Timestamp: 2026-12-05",
                "error_codes": [50173],
            },
            400,
        ),
    )
    flow = build_auth(
        oauth(server),
        {"clientId": "c", "clientSecret": "s", "refreshToken": "r"},
        token_client=client,
    )
    with pytest.raises(AuthFailed) as caught:
        await get(client, flow, server.url("/api/me"))
    message = str(caught.value)
    assert (
        "(invalid_grant: AADSTS50173: The provided grant has expired due to it being revoked.)"
        in message
    )
    assert "Trace ID" not in message
    assert caught.value.status == 400


async def test_without_a_refresh_token_the_token_is_used_until_rejected_then_reconnect(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """GitHub OAuth apps: no expiry, no refresh token; a 401 means the grant is gone."""
    live = {"gho_live"}
    server.add_route(
        "GET",
        "/api/me",
        lambda request: FakeResponse.json(
            {"ok": True}
            if request.headers.get("authorization") in {f"Bearer {t}" for t in live}
            else {"message": "Bad credentials"},
            200 if request.headers.get("authorization") in {f"Bearer {t}" for t in live} else 401,
        ),
    )
    credentials = {
        "clientId": "c",
        "clientSecret": "s",
        "accessToken": "gho_live",
        ACCESS_TOKEN_EXPIRES_AT: (NOW - timedelta(hours=1)).isoformat(),  # even if it says so
    }
    flow = build_auth(oauth(server), credentials, token_client=client, now=lambda: NOW)
    assert (await get(client, flow, server.url("/api/me"))).status_code == 200
    live.clear()  # the user revoked the app
    with pytest.raises(AuthFailed, match=r"issued no refresh token .*: reconnect the account"):
        await get(client, flow, server.url("/api/me"))
    assert server.requests_to("/oauth/token") == []


async def test_a_stored_token_the_api_just_rejected_is_refreshed_not_taken_again(
    server: FakeServer, provider: Provider, client: httpx.AsyncClient
) -> None:
    """The stored set differs only by an expiry this flow did not have: its access token
    is the one the API refused, so the refresh goes ahead."""
    mine = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-1"}
    mine["accessToken"] = "revoked-by-provider"
    later = (NOW + timedelta(minutes=30)).isoformat()
    keeper = Keeper(mine | {ACCESS_TOKEN_EXPIRES_AT: later})
    flow = build_auth(oauth(server), mine, token_client=client, on_rotate=keeper, now=lambda: NOW)
    response = await get(client, flow, server.url("/api/me"))

    assert response.status_code == 200
    sent = [r.headers["authorization"] for r in server.requests_to("/api/me")]
    assert sent == ["Bearer revoked-by-provider", "Bearer access-2"]
    assert [call["refresh_token"] for call in provider.token_calls] == [["refresh-1"]]
