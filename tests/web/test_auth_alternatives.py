"""A connector with two ways to sign in: Linear's personal API key, or "Connect with Linear".

Linear's descriptor keeps the key as ``auth`` and offers OAuth 2.0 in
``authAlternatives``. The Linear fake answers GraphQL for either (the key
verbatim, the OAuth token as ``Bearer``), and a fake authorization server
mounted on it issues tokens the API accepts, so the consent, the stored
method and the poll that follows all run through real HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from tests.web.conftest import Web, open_web, web_settings
from tests.web.support import TOKEN
from tests.web.test_oauth import come_back, consent, dashboard_user, onward_target
from ucf.catalogue import builtin_descriptors
from ucf.core.descriptor import AUTH_METHOD_KEY, ConnectorDescriptor
from ucf.core.validation import validate_descriptor
from ucf.fakes.linear import API_KEY, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, LinearFake
from ucf.fakes.oauth import AuthorizationServer

PROJECT = "proj-alt"
INSTANCE = f"/api/projects/{PROJECT}/instances/linear"
CLIENT_ID = OAUTH_CLIENT_ID
CLIENT_SECRET = OAUTH_CLIENT_SECRET


def linear_descriptor() -> ConnectorDescriptor:
    (raw,) = (d for d in builtin_descriptors() if d["id"] == "linear")
    return ConnectorDescriptor.model_validate(raw)


@pytest.fixture
def linear() -> Iterator[tuple[LinearFake, AuthorizationServer]]:
    with LinearFake(datetime.now(UTC)) as fake:
        # Linear's fake authorization server: the tokens it issues are the ones the
        # GraphQL endpoint accepts as Bearer.
        yield fake, fake.auth


@pytest_asyncio.fixture(loop_scope="function")
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    async with open_web(web_settings(tmp_path)) as opened:
        yield opened


def config(fake: LinearFake) -> dict[str, str]:
    return {"baseUrl": fake.base_url, "signInUrl": fake.base_url}


async def register(web: Web) -> None:
    put = await web.client.put(
        "/api/connectors/linear/oauth-client",
        json={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
    )
    assert put.status_code == 204, put.text


# --------------------------------------------------------------------------- the descriptor


def test_an_instance_signs_in_with_auth_unless_its_credentials_name_an_alternative() -> None:
    descriptor = linear_descriptor()
    assert descriptor.auth_for({"apiKey": "k"}).method == "api_key"
    assert descriptor.auth_for({AUTH_METHOD_KEY: "oauth2"}).method == "oauth2"
    assert descriptor.auth_for({AUTH_METHOD_KEY: "basic"}).method == "api_key"  # not offered
    assert descriptor.consent() is not None
    assert descriptor.consent_marker() == {AUTH_METHOD_KEY: "oauth2"}
    keys = [f.key for f in descriptor.credential_fields()]
    assert keys.count("webhookSecret") == 1  # shared by both methods, listed once
    assert {f.key for f in descriptor.credential_fields(descriptor.auth)} == {
        "apiKey",
        "webhookSecret",
    }


def test_alternatives_are_validated_with_their_paths() -> None:
    raw: dict[str, Any] = json.loads(json.dumps(linear_descriptor().to_json()))
    oauth = raw["authAlternatives"][0]
    raw["authAlternatives"] = [
        {**oauth, "config": {**oauth["config"], "clientIdKey": "appId"}},
        {"method": "api_key", "config": raw["auth"]["config"]},
        {"method": "none"},
    ]
    _, found = validate_descriptor(raw)
    problems = {(p.path, p.message.split(" (")[0]) for p in found}
    assert ("authAlternatives[0].config.credentialFields", "no credential field 'appId'") in (
        problems
    )
    assert any(
        path == "authAlternatives[1].method" and "second 'api_key'" in message
        for path, message in problems
    )
    assert any(
        path == "authAlternatives[2].method" and "no way to sign in" in message
        for path, message in problems
    )


# --------------------------------------------------------------------------- the API


async def test_connect_with_linear_stores_the_method_and_polls_with_bearer(
    web: Web, linear: tuple[LinearFake, AuthorizationServer]
) -> None:
    fake, server = linear
    await register(web)
    started = await web.client.post(f"{INSTANCE}/oauth/start", json={"config": config(fake)})
    assert started.status_code == 200, started.text
    url = started.json()["authorizeUrl"]
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/oauth/authorize"
    assert query["scope"] == ["read"]
    assert query["code_challenge_method"] == ["S256"]  # Linear supports PKCE

    done = await come_back(web, await consent(url))
    assert done.status_code == 200, done.text
    assert server.exchanged == 1
    instance = (await web.client.get(INSTANCE)).json()
    assert instance["authMethod"] == "oauth2"
    assert AUTH_METHOD_KEY not in instance["credentials"]  # shown as authMethod, not a secret
    assert "apiKey" not in instance["credentials"]

    fake.keys.clear()  # only the OAuth token can read now: the poll must send it as Bearer
    polled = await web.client.post(f"{INSTANCE}/poll")
    assert polled.json()["status"] == "ok", polled.text
    assert polled.json()["inserted"] > 0


async def test_an_instance_with_a_key_keeps_signing_in_with_the_key(
    web: Web, linear: tuple[LinearFake, AuthorizationServer]
) -> None:
    fake, _ = linear
    await register(web)  # an app registered changes nothing for a key-based instance
    created = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={"connectorId": "linear", "config": config(fake), "credentials": {"apiKey": API_KEY}},
    )
    assert created.status_code == 201, created.text
    assert created.json()["authMethod"] == "api_key"
    fake.oauth_tokens.clear()
    polled = await web.client.post(f"{INSTANCE}/poll")
    assert polled.json()["status"] == "ok", polled.text


async def test_pasted_oauth_tokens_choose_the_oauth_method_without_naming_it(
    web: Web, linear: tuple[LinearFake, AuthorizationServer]
) -> None:
    fake, server = linear
    server.refresh_tokens.add("pasted-refresh-token")  # from a consent made elsewhere
    created = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={
            "connectorId": "linear",
            "config": config(fake),
            "credentials": {
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "refreshToken": "pasted-refresh-token",
            },
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["authMethod"] == "oauth2"  # the one method they complete, stored

    fake.keys.clear()  # only the OAuth token reads: the poll must refresh and send Bearer
    polled = await web.client.post(f"{INSTANCE}/poll")
    assert polled.json()["status"] == "ok", polled.text
    assert server.refreshed == 1


async def test_an_unknown_method_or_a_missing_field_of_the_chosen_one_is_refused(
    web: Web, linear: tuple[LinearFake, AuthorizationServer]
) -> None:
    fake, _ = linear
    for credentials, path in (
        ({AUTH_METHOD_KEY: "pat", "apiKey": API_KEY}, "credentials.authMethod"),
        ({AUTH_METHOD_KEY: "oauth2", "accessToken": "t"}, "credentials.refreshToken"),
        ({}, "credentials.apiKey"),
    ):
        refused = await web.client.post(
            f"/api/projects/{PROJECT}/instances",
            json={"connectorId": "linear", "config": config(fake), "credentials": credentials},
        )
        assert refused.status_code == 422, refused.text
        paths = [d["path"] for d in refused.json()["error"]["details"]]
        assert path in paths, paths


# --------------------------------------------------------------------------- the setup flow


async def test_the_setup_flow_offers_the_consent_beside_the_key(
    web: Web, linear: tuple[LinearFake, AuthorizationServer]
) -> None:
    fake, _ = linear
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web.app), base_url="http://ucf.test"
    ) as browser:
        login = await browser.get("/login", params={"next": "/"})
        nonce = re.search(r'name="nonce" value="([^"]+)"', login.text)
        assert nonce is not None
        await browser.post("/login", data={"token": TOKEN, "nonce": nonce.group(1), "next": "/"})
        connect = f"/projects/{PROJECT}/connectors/linear/connect"

        without_app = await browser.get(connect)
        assert "Connect with Linear" not in without_app.text
        assert "OAuth apps" in without_app.text  # how to get the button
        assert 'name="credentials.apiKey"' in without_app.text

        await register(web)
        settings_first = await browser.get(connect)
        csrf = re.search(r'name="csrf" value="([^"]+)"', settings_first.text)
        assert csrf is not None
        saved = await browser.post(
            f"{connect}/configuration",
            data={"csrf": csrf.group(1), **{f"config.{k}": v for k, v in config(fake).items()}},
        )
        assert saved.status_code == 303
        page = await browser.get(connect, params={"step": "credentials"})
        assert "Connect with Linear" in page.text
        assert "Or enter the credentials yourself" in page.text
        assert 'name="credentials.apiKey"' in page.text
        assert 'name="credentials.refreshToken"' not in page.text  # the consent fills it


def test_consent_lookups_are_validated_with_their_paths() -> None:
    raw: dict[str, Any] = json.loads(json.dumps(linear_descriptor().to_json()))
    raw["authAlternatives"][0]["config"]["afterConsent"] = [
        {"endpoint": "{{config.nowhere}}/sites", "path": "$[", "configField": "siteId"},
        {
            "endpoint": "{{baseUrl}}/sites",
            "path": "$.id",
            "wherePath": "$.url",
            "configField": "baseUrl",
        },
    ]
    _, found = validate_descriptor(raw)
    at = "authAlternatives[0].config.afterConsent"
    paths = {p.path for p in found}
    assert {
        f"{at}[0].path",  # a JSONPath that does not parse
        f"{at}[0].endpoint",  # a setting that does not exist
        f"{at}[0].configField",
        f"{at}[1]",  # wherePath without equalsConfig
    } <= paths, paths
    assert not any(p.startswith(f"{at}[1].") for p in paths), paths


async def test_the_setup_flow_connects_linear_by_consent_and_the_instance_uses_it(
    web: Web, linear: tuple[LinearFake, AuthorizationServer]
) -> None:
    """Settings, Connect with Linear, the provider's page, back to Test, Confirm: the
    instance signs in with OAuth (Bearer) from its first poll, not with the key."""
    fake, server = linear
    await register(web)
    user = await dashboard_user(web)
    connect = f"/projects/{PROJECT}/connectors/linear/connect"
    await user.get(connect)
    settings = {f"config.{k}": v for k, v in config(fake).items()}
    assert (await user.post(f"{connect}/configuration", settings)).status_code == 303
    opened = await user.post(f"{connect}/oauth")
    back = urlsplit(await consent(onward_target(opened)))
    landed = await user.get(back.path, **{k: v[0] for k, v in parse_qs(back.query).items()})
    assert landed.status_code == 200, landed.text
    onward = urlsplit(onward_target(landed))
    returned = await user.get(onward.path, ticket=parse_qs(onward.query)["ticket"][0])
    assert returned.headers["location"].endswith("step=test")
    credentials_step = await user.get(connect, step="credentials")
    assert "Connected with Linear" in credentials_step.text
    assert 'name="credentials.webhookSecret"' in credentials_step.text  # the method's own
    assert 'name="credentials.apiKey"' not in credentials_step.text

    assert (await user.post(f"{connect}/test")).status_code == 303
    assert "Connection works" in (await user.get(connect, step="test")).text
    assert (await user.post(f"{connect}/confirm")).status_code == 303
    assert server.exchanged == 1
    instance = (await web.client.get(INSTANCE)).json()
    assert instance["authMethod"] == "oauth2"
    fake.keys.clear()
    polled = await web.client.post(f"{INSTANCE}/poll")
    assert polled.json()["status"] == "ok", polled.text
