"""Credentials never follow a redirect to another origin; they do follow one home.

Two real loopback servers are two origins (same host, different ports): the
API ("home") and a stranger it redirects to. Every way a descriptor places a
credential — a named header, two Datadog headers, Trello's query parameters,
a bearer PAT, Basic, an OAuth2 token, and a header the caller set itself — is
sent to home and must arrive nowhere else, through the poll path
(``send_with_retries``) and the health check alike.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import TypeAdapter

from ucf.core import descriptor as d
from ucf.core.validation import parse_descriptor
from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault
from ucf.runtime.auth import build_auth
from ucf.runtime.http import (
    AuthFailed,
    HttpSettings,
    UpstreamError,
    create_client,
    send_with_retries,
)
from ucf.runtime.redirects import same_origin
from ucf.runtime.sources import GenericSource, SourceContext
from ucf.runtime.ssrf import EgressPolicy

SETTINGS = HttpSettings(connect_timeout=2, read_timeout=2, max_retries=0)
AUTH = TypeAdapter(d.AuthDescriptor)


def field_(key: str) -> dict[str, Any]:
    return {"key": key, "label": key, "type": "password", "required": True}


def _echo(request: FakeRequest) -> FakeResponse:
    return FakeResponse.json({"ok": True})


@pytest.fixture
def home() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.add_route("GET", "/api/items", _echo)
        fake.add_route("GET", "/api/moved-here", _echo)
        fake.add_route("POST", "/oauth/token", _token)
        yield fake


@pytest.fixture
def stranger() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.add_route(["GET", "POST"], "/landing", _echo)
        yield fake


def _token(request: FakeRequest) -> FakeResponse:
    return FakeResponse.json({"access_token": "oauth-access-5f3c9e", "token_type": "Bearer"})


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


# Each scheme: the descriptor's auth, the credentials, and the secret values to look for.
SCHEMES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "x-api-key-header": (
        {
            "method": "api_key",
            "config": {
                "delivery": "header",
                "paramName": "X-Api-Key",
                "credentialFields": [field_("apiKey")],
                "extraHeaders": {"X-Tenant": "tenant-7"},
            },
        },
        {"apiKey": "xak-0a1b2c3d4e5f"},
    ),
    "datadog-two-headers": (
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
        },
        {"apiKey": "dd-api-9f8e7d", "appKey": "dd-app-6c5b4a"},
    ),
    "trello-query-parameters": (
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
        },
        {"apiKey": "trello-key-31f2", "token": "trello-token-77a0"},
    ),
    "bearer-pat": (
        {
            "method": "pat",
            "config": {
                "delivery": "bearer",
                "paramName": "Authorization",
                "credentialFields": [field_("token")],
            },
        },
        {"token": "pat-c0ffee-1234"},
    ),
    "custom-header-name": (
        {
            "method": "api_key",
            "config": {
                "delivery": "header",
                "paramName": "Circle-Token",
                "credentialFields": [field_("apiKey")],
            },
        },
        {"apiKey": "circle-5e6f7a8b"},
    ),
    "basic": (
        {
            "method": "basic",
            "config": {"credentialFields": [field_("email"), field_("apiToken")]},
        },
        {"email": "ann@example.com", "apiToken": "basic-tok-2468"},
    ),
}


def _on_the_wire(scheme: str, credentials: dict[str, str]) -> list[str]:
    """The credential values as they travel (Basic sends ``user:password`` in base64)."""
    if scheme == "basic":
        pair = f"{credentials['email']}:{credentials['apiToken']}"
        return [base64.b64encode(pair.encode()).decode()]
    return list(credentials.values())


def _secrets(request: FakeRequest) -> str:
    """Everything of a received request a credential could hide in."""
    return request.target + "\n" + "\n".join(f"{k}: {v}" for k, v in request.headers.items())


def _assert_clean(received: FakeRequest, values: list[str]) -> None:
    seen = _secrets(received)
    for value in values:
        assert value not in seen
    for name in ("authorization", "x-api-key", "dd-api-key", "dd-application-key", "cookie"):
        assert name not in received.headers


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
async def test_cross_origin_redirect_carries_no_credential_of_any_scheme(
    home: FakeServer, stranger: FakeServer, client: httpx.AsyncClient, scheme: str
) -> None:
    auth_data, credentials = SCHEMES[scheme]
    flow = build_auth(AUTH.validate_python(auth_data), credentials, token_client=client)
    home.inject(Fault.redirect(stranger.url("/landing")), path="/api/items")

    response = await send_with_retries(
        client, client.build_request("GET", home.url("/api/items")), settings=SETTINGS, auth=flow
    )

    assert response.status_code == 200
    wire = _on_the_wire(scheme, credentials)
    (first,) = home.requests_to("/api/items")
    assert all(value in _secrets(first) for value in wire)  # home got them
    (landed,) = stranger.requests_to("/landing")
    _assert_clean(landed, wire)
    assert "x-tenant" not in landed.headers  # extraHeaders are the descriptor's too


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
async def test_same_origin_redirect_gets_the_credentials_again(
    home: FakeServer, client: httpx.AsyncClient, scheme: str
) -> None:
    auth_data, credentials = SCHEMES[scheme]
    flow = build_auth(AUTH.validate_python(auth_data), credentials, token_client=client)
    home.inject(Fault.redirect("/api/moved-here", status=301), path="/api/items")

    await send_with_retries(
        client, client.build_request("GET", home.url("/api/items")), settings=SETTINGS, auth=flow
    )

    (moved,) = home.requests_to("/api/moved-here")
    assert all(value in _secrets(moved) for value in _on_the_wire(scheme, credentials))
    if scheme == "trello-query-parameters":  # put back once, not doubled
        assert moved.query == {"key": ["trello-key-31f2"], "token": ["trello-token-77a0"]}


async def test_oauth_bearer_stays_home_and_a_401_abroad_says_why(
    home: FakeServer, stranger: FakeServer, client: httpx.AsyncClient
) -> None:
    oauth = AUTH.validate_python(
        {
            "method": "oauth2",
            "config": {
                "grant": "client_credentials",
                "authoriseUrl": home.url("/oauth/authorize"),
                "tokenUrl": home.url("/oauth/token"),
                "scopes": [],
                "credentialFields": [field_("clientId"), field_("clientSecret")],
            },
        }
    )
    flow = build_auth(
        oauth, {"clientId": "cid", "clientSecret": "csecret-4d3c"}, token_client=client
    )
    stranger.add_route("GET", "/private", lambda _: FakeResponse.json({"error": "no"}, 401))
    home.inject(Fault.redirect(stranger.url("/private")), path="/api/items")

    with pytest.raises(AuthFailed, match="redirected to another origin") as caught:
        await send_with_retries(
            client,
            client.build_request("GET", home.url("/api/items")),
            settings=SETTINGS,
            auth=flow,
        )

    assert "oauth-access-5f3c9e" not in str(caught.value)
    (first,) = home.requests_to("/api/items")
    assert first.headers["authorization"] == "Bearer oauth-access-5f3c9e"
    (landed,) = stranger.requests_to("/private")
    _assert_clean(landed, ["oauth-access-5f3c9e", "csecret-4d3c"])


async def test_caller_set_credential_headers_are_dropped_abroad(
    home: FakeServer, stranger: FakeServer, client: httpx.AsyncClient
) -> None:
    home.inject(Fault.redirect(stranger.url("/landing")), path="/api/items")
    request = client.build_request(
        "GET",
        home.url("/api/items"),
        headers={"Authorization": "Bearer sink-token-42", "X-Trace": "keep-me"},
    )

    await send_with_retries(client, request, settings=SETTINGS)

    (landed,) = stranger.requests_to("/landing")
    _assert_clean(landed, ["sink-token-42"])
    assert landed.headers["x-trace"] == "keep-me"  # only credentials are dropped


async def test_token_request_redirected_elsewhere_with_its_body_is_refused(
    home: FakeServer, stranger: FakeServer, client: httpx.AsyncClient
) -> None:
    home.inject(Fault.redirect(stranger.url("/landing"), status=307), path="/oauth/token")
    request = client.build_request(
        "POST",
        home.url("/oauth/token"),
        data={"grant_type": "client_credentials", "client_secret": "csecret-4d3c"},
    )

    with pytest.raises(UpstreamError, match="another origin, would resend the request body"):
        await send_with_retries(client, request, settings=SETTINGS)

    assert stranger.requests == []


def _descriptor(base_auth: dict[str, Any]) -> d.ConnectorDescriptor:
    return parse_descriptor(
        {
            "id": "status-api",
            "name": "Status API",
            "description": "test",
            "category": "Custom",
            "icon": "x",
            "kind": "generic",
            "version": "1.0.0",
            "auth": base_auth,
            "ingestion": {
                "mode": "polling",
                "endpoint": "{{baseUrl}}/api/items",
                "method": "GET",
                "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
                "rateLimitRpm": 600,
            },
            "fieldMapping": {
                "itemsPath": "$.items",
                "idPath": "$.id",
                "timestampPath": "$.at",
                "summaryTemplate": "{{id}}",
                "signalTypeRules": [],
            },
            "healthCheck": {
                "endpoint": "{{baseUrl}}/api/items",
                "method": "GET",
                "expectStatus": 200,
                "timeoutMs": 2000,
            },
        }
    )


async def test_health_check_follows_redirects_by_the_same_rules(
    home: FakeServer, stranger: FakeServer, client: httpx.AsyncClient
) -> None:
    auth_data, credentials = SCHEMES["x-api-key-header"]
    descriptor = _descriptor(auth_data)
    flow = build_auth(descriptor.auth, credentials, token_client=client)
    home.inject(Fault.redirect(stranger.url("/landing")), path="/api/items")

    result = await GenericSource(descriptor).health_check(
        SourceContext(
            client=client, auth=flow, config={"baseUrl": home.base_url}, settings=SETTINGS
        )
    )

    assert result.ok
    (landed,) = stranger.requests_to("/landing")
    _assert_clean(landed, list(credentials.values()))


@pytest.mark.parametrize(
    ("origin", "url", "same"),
    [
        ("https://api.example.com/a", "https://api.example.com:443/b?x=1", True),
        ("http://api.example.com/a", "https://api.example.com/b", True),  # secure upgrade
        ("https://api.example.com/a", "http://api.example.com/b", False),  # downgrade
        ("https://api.example.com/a", "https://api.example.com:8443/b", False),
        ("https://api.example.com/a", "https://evil.example.com/b", False),
        ("http://api.example.com:8080/a", "https://api.example.com/b", False),
    ],
)
def test_what_counts_as_the_same_origin(origin: str, url: str, same: bool) -> None:
    assert same_origin(httpx.URL(origin), httpx.URL(url)) is same
