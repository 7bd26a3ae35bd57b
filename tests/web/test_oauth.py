"""OAuth consent ("Connect with …") through the real app and a fake authorization server.

The provider is the Slack fake: its consent page and its ``oauth.v2.access``
answer like Slack's (HTTP 200 ``ok: false`` errors, comma-separated scopes,
rotating refresh tokens). A generic RFC 6749 server with PKCE stands in for
providers that support it. The browser is played by an httpx client that
follows what a browser follows: the consent form, then the redirect back.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from tests.web.conftest import Web, open_web, web_settings
from ucf.fakes import Fault
from ucf.fakes.oauth import AuthorizationServer
from ucf.fakes.slack import CHANNEL, CLIENT_ID, CLIENT_SECRET, SlackFake

PROJECT = "proj-oauth"
INSTANCE = f"/api/projects/{PROJECT}/instances/slack"


@pytest.fixture
def slack() -> Iterator[SlackFake]:
    with SlackFake(datetime.now(UTC)) as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="function")
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    async with open_web(web_settings(tmp_path)) as opened:
        yield opened


def slack_config(fake: SlackFake) -> dict[str, str]:
    return {"baseUrl": fake.base_url, "signInUrl": fake.base_url, "channel": CHANNEL}


async def register(web: Web) -> None:
    put = await web.client.put(
        "/api/connectors/slack/oauth-client",
        json={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
    )
    assert put.status_code == 204, put.text


async def start(web: Web, fake: SlackFake) -> str:
    started = await web.client.post(f"{INSTANCE}/oauth/start", json={"config": slack_config(fake)})
    assert started.status_code == 200, started.text
    url: str = started.json()["authorizeUrl"]
    return url


async def consent(authorize_url: str, *, decision: str = "allow") -> str:
    """What the user's browser does at the provider: open the page, press a button.
    Returns the URL the provider sends the browser back to."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(authorize_url)
        assert page.status_code == 200, page.text
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action is not None
        answer = await browser.post(
            httpx.URL(authorize_url).join(action.group(1)),
            data={**fields, "decision": decision},
        )
        assert answer.status_code == 302
        return answer.headers["location"]


async def come_back(web: Web, location: str, **kw: Any) -> httpx.Response:
    parts = urlsplit(location)
    assert parts.path == "/oauth/callback"
    return await web.anonymous.get(f"{parts.path}?{parts.query}", **kw)


def secret_count(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "secrets.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM secrets").fetchone()[0])


async def test_the_operator_registers_an_app_and_the_secret_never_comes_back(web: Web) -> None:
    unregistered = await web.client.post(f"{INSTANCE}/oauth/start", json={})
    assert unregistered.status_code == 400
    assert "no OAuth app is registered" in unregistered.json()["error"]["message"]
    before = await web.client.get("/api/connectors/slack/oauth-client")
    assert before.json() == {
        "clientId": None,
        "redirectUri": "http://ucf.test/oauth/callback",
        "configured": False,
    }
    await register(web)
    after = await web.client.get("/api/connectors/slack/oauth-client")
    assert after.json() == {
        "clientId": CLIENT_ID,
        "redirectUri": "http://ucf.test/oauth/callback",
        "configured": True,
    }
    assert CLIENT_SECRET not in after.text
    not_oauth = await web.client.put(
        "/api/connectors/trello/oauth-client", json={"clientId": "a", "clientSecret": "b"}
    )
    assert not_oauth.status_code == 422
    assert (await web.client.get("/api/connectors/nope/oauth-client")).status_code == 404


async def test_a_consent_started_through_the_api_checks_its_settings_first(
    web: Web, slack: SlackFake
) -> None:
    """The settings went unchecked into the consent URL and the flow: an omitted
    ``signInUrl`` made ``/oauth/v2/authorize?…`` (its default not applied), a list made
    ``['x']/oauth/…``, a lone surrogate a 500, and a missing channel was refused only
    after the user had consented, the tokens thrown away."""
    await register(web)
    start_url = f"{INSTANCE}/oauth/start"
    defaults = await web.client.post(start_url, json={"config": {"channel": CHANNEL}})
    assert defaults.status_code == 200, defaults.text
    assert defaults.json()["authorizeUrl"].startswith("https://slack.com/oauth/v2/authorize?")
    for config, paths in (
        ({"signInUrl": ["x"], "channel": CHANNEL}, ["config.signInUrl"]),
        ({"signInUrl": "javascript:alert(1)//", "channel": CHANNEL}, ["config.signInUrl"]),
        ({"nope": "1", "channel": CHANNEL}, ["config.nope"]),
        ({"baseUrl": slack.base_url}, ["config.channel"]),
    ):
        refused = await web.client.post(start_url, json={"config": config})
        assert refused.status_code == 422, refused.text
        assert [p["path"] for p in refused.json()["error"]["details"]] == paths
    surrogate = await web.client.post(
        start_url,
        content=b'{"config": {"channel": "C\\ud800"}}',
        headers={"Content-Type": "application/json"},
    )
    assert surrogate.status_code == 422, surrogate.text
    assert slack.auth.exchanged == 0


async def test_the_oauth_apps_page_says_which_field_is_wrong_and_bounds_it_as_the_api(
    web: Web,
) -> None:
    """The dashboard's form went straight to the service: a client id of any length was
    stored (the API refuses over 500), and a refusal flashed 'the OAuth client is not
    valid' without saying which field or why."""
    from html import unescape

    from tests.web.test_editor_pages import login

    csrf = await login(web)
    form = f"/projects/{PROJECT}/oauth-apps/slack"
    for fields, said in (
        ({"clientId": "x" * 501, "clientSecret": "s"}, "the client id is longer than 500"),
        ({"clientId": "cid", "clientSecret": "  "}, "the client secret must not be empty"),
    ):
        refused = await web.anonymous.post(form, data={"csrf": csrf, **fields})
        assert refused.status_code == 303
        page = await web.anonymous.get(refused.headers["location"])
        assert said in unescape(page.text), fields
    assert (await web.client.get("/api/connectors/slack/oauth-client")).json()["clientId"] is None


async def test_connect_with_slack_creates_the_instance_and_it_polls(
    web: Web, slack: SlackFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await register(web)
    url = await start(web, slack)
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/oauth/v2/authorize"
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == ["http://ucf.test/oauth/callback"]
    assert query["scope"] == ["channels:history,groups:history,reactions:read"]
    assert len(query["state"][0]) >= 40
    assert "code_challenge" not in query  # Slack's descriptor does not claim PKCE

    back = await consent(url)
    code = parse_qs(urlsplit(back).query)["code"][0]
    done = await come_back(web, back)
    assert done.status_code == 200, done.text
    assert "Slack connected" in done.text
    assert f'url=/projects/{PROJECT}/instances/slack"' in done.text
    assert slack.auth.exchanged == 1

    instance = (await web.client.get(INSTANCE)).json()
    assert set(instance["credentials"]) >= {"accessToken", "refreshToken"}
    assert "clientSecret" not in instance["credentials"]  # the app's, not the instance's
    polled = await web.client.post(f"{INSTANCE}/poll")
    assert polled.json()["status"] == "ok", polled.text
    assert polled.json()["inserted"] > 0

    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("ucf"))
    assert "oauth/callback" in logged  # the access log saw the callback, without its query
    for secret in (code, query["state"][0], CLIENT_SECRET, *slack.auth.access_tokens):
        assert secret not in logged
    assert secret not in json.dumps(instance)


async def test_a_state_works_once_and_a_replay_creates_nothing(
    web: Web, slack: SlackFake, tmp_path: Path
) -> None:
    await register(web)
    back = await consent(await start(web, slack))
    assert (await come_back(web, back)).status_code == 200
    await web.client.delete(INSTANCE)
    secrets_before = secret_count(tmp_path)
    replayed = await come_back(web, back)
    assert replayed.status_code == 400
    assert "already used or has expired" in replayed.text
    assert (await web.client.get(INSTANCE)).status_code == 404
    assert secret_count(tmp_path) == secrets_before


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda q: q.pop("state"), "has no state"),
        (lambda q: q.update(state=["forged-state-value"]), "already used or has expired"),
    ],
)
async def test_a_missing_or_unknown_state_is_refused(
    web: Web, slack: SlackFake, mangle: Any, reason: str
) -> None:
    await register(web)
    back = await consent(await start(web, slack))
    parts = urlsplit(back)
    query = parse_qs(parts.query)
    mangle(query)
    forged = "&".join(f"{k}={v[0]}" for k, v in query.items())
    refused = await web.anonymous.get(f"{parts.path}?{forged}")
    assert refused.status_code == 400
    assert reason in refused.text
    assert slack.auth.exchanged == 0
    assert (await web.client.get(INSTANCE)).status_code == 404


async def test_the_user_says_no_and_nothing_is_stored(
    web: Web, slack: SlackFake, tmp_path: Path
) -> None:
    await register(web)
    before = secret_count(tmp_path)
    back = await consent(await start(web, slack), decision="deny")
    assert "error=access_denied" in back
    refused = await come_back(web, back)
    assert refused.status_code == 400
    assert "did not grant access (access_denied)" in refused.text
    # Started for an instance that does not exist yet: the way back is its setup.
    assert f'href="/projects/{PROJECT}/connectors/slack/connect">Back to the setup' in refused.text
    assert (await web.client.get(INSTANCE)).status_code == 404
    assert secret_count(tmp_path) == before


async def test_a_denied_consent_leads_back_to_where_it_was_started(
    web: Web, slack: SlackFake
) -> None:
    """The refusal's page linked to the dashboard's home: the user, who may have pressed
    Cancel by mistake, had to find the project and the connector again. A refusal the
    state cannot place (replayed, forged) still leads home."""
    await register(web)
    user = await dashboard_user(web)
    connect = f"/projects/{PROJECT}/connectors/slack/connect"
    settings = {f"config.{k}": v for k, v in slack_config(slack).items()}
    assert (await user.post(f"{connect}/configuration", settings)).status_code == 303
    opened = await user.post(f"{connect}/oauth")
    back = urlsplit(await consent(onward_target(opened), decision="deny"))
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    denied = await user.get(back.path, **query)
    assert denied.status_code == 400
    assert f'href="{connect}">Back to the setup' in denied.text
    assert "Connect with Slack" in (await user.get(connect)).text  # the draft is still there
    replayed = await user.get(back.path, **query)
    assert 'href="/">Back to the dashboard' in replayed.text

    assert (await come_back(web, await consent(await start(web, slack)))).status_code == 200
    opened = await user.post(f"/projects/{PROJECT}/instances/slack/reconnect")
    back = urlsplit(await consent(onward_target(opened), decision="deny"))
    denied = await user.get(back.path, **{k: v[0] for k, v in parse_qs(back.query).items()})
    assert denied.status_code == 400
    assert f'href="/projects/{PROJECT}/instances/slack">Back to the instance' in denied.text


async def test_a_token_endpoint_that_fails_leaves_nothing_behind(
    web: Web, slack: SlackFake, tmp_path: Path
) -> None:
    await register(web)
    before = secret_count(tmp_path)
    back = await consent(await start(web, slack))
    slack.server.inject(Fault.status(503), path="/oauth.v2.access", method="POST", times=10)
    refused = await come_back(web, back)
    assert refused.status_code == 400
    assert "did not exchange the code" in refused.text
    assert (await web.client.get(INSTANCE)).status_code == 404
    assert secret_count(tmp_path) == before


async def test_a_redirect_uri_the_app_did_not_register_never_reaches_ucf(
    web: Web, slack: SlackFake
) -> None:
    await register(web)
    slack.auth.redirect_uris = {"https://ucf.example.com/oauth/callback"}
    async with httpx.AsyncClient() as browser:
        page = await browser.get(await start(web, slack))
    assert page.status_code == 400
    assert "redirect_uri did not match" in page.text


async def test_a_revoked_app_puts_the_instance_in_error_and_reconnect_keeps_its_checkpoint(
    web: Web, slack: SlackFake
) -> None:
    await register(web)
    assert (await come_back(web, await consent(await start(web, slack)))).status_code == 200
    assert (await web.client.post(f"{INSTANCE}/poll")).json()["status"] == "ok"
    checkpoint = await web.state.context.store.checkpoints.get(PROJECT, "slack")
    assert checkpoint.value is not None

    slack.auth.revoke_all()
    failed = (await web.client.post(f"{INSTANCE}/poll")).json()
    assert failed["status"] == "failed"
    status = (await web.client.get(f"{INSTANCE}/status")).json()
    assert status["healthState"] == "error"
    assert "credentials rejected" in status["lastError"]

    again = await come_back(web, await consent(await start(web, slack)))
    assert again.status_code == 200
    assert "reconnected" in again.text
    kept = await web.state.context.store.checkpoints.get(PROJECT, "slack")
    assert (kept.value, kept.version) == (checkpoint.value, checkpoint.version)
    assert (await web.client.post(f"{INSTANCE}/poll")).json()["status"] == "ok"


async def test_an_edit_between_the_start_and_the_callback_keeps_the_consents_tokens(
    web: Web, slack: SlackFake
) -> None:
    """A consent started through the API creates the instance at its callback. An edit of
    the connector in between that makes a setting required left the settings unfit: the
    callback refused, and the tokens went with the spent code (the user consented for
    nothing). The tokens still sign in, so the setup flow takes them with the settings
    and asks only for what is missing."""
    await register(web)
    user = await dashboard_user(web)
    url = await start(web, slack)
    current = (await web.client.get("/api/connectors/slack")).json()
    edited = {k: v for k, v in current.items() if k not in {"builtIn", "createdAt", "updatedAt"}}
    edited["configFields"].append(
        {"key": "region", "label": "Region", "type": "text", "required": True}
    )
    assert (await web.client.put("/api/connectors/slack", json=edited)).is_success

    back = urlsplit(await consent(url))
    landed = await user.get(back.path, **{k: v[0] for k, v in parse_qs(back.query).items()})
    assert landed.status_code == 200, landed.text
    assert "was edited since this connection started" in landed.text
    assert "config.region" in landed.text
    assert (await web.client.get(INSTANCE)).status_code == 404
    onward = urlsplit(onward_target(landed))
    connect = f"/projects/{PROJECT}/connectors/slack/connect"
    assert onward.path == f"{connect}/oauth-return"
    returned = await user.get(onward.path, ticket=parse_qs(onward.query)["ticket"][0])
    assert returned.status_code == 303, returned.text
    page = await user.get(connect, step="configuration")
    assert f'value="{CHANNEL}"' in page.text  # the consent's settings came along
    settings = {f"config.{k}": v for k, v in {**slack_config(slack), "region": "eu"}.items()}
    assert (await user.post(f"{connect}/configuration", settings)).status_code == 303
    confirmed = await user.post(f"{connect}/confirm")
    assert confirmed.status_code == 303, confirmed.text
    instance = (await web.client.get(INSTANCE)).json()
    assert set(instance["credentials"]) >= {"accessToken", "refreshToken"}
    assert slack.auth.exchanged == 1  # one consent, one code
    assert (await web.client.post(f"{INSTANCE}/poll")).json()["status"] == "ok"


async def test_a_credential_no_consent_gives_is_asked_for_without_blaming_an_edit(
    web: Web, slack: SlackFake
) -> None:
    """A connector whose consent method requires a credential the provider does not give
    (GitHub PRs' webhook secret; here Slack's, made required before the start). A start
    through the API without it is refused before anyone is sent to the provider (it used
    to go through, and the callback handed the tokens to the setup flow). A reconnect's
    start counts the instance's own; should the instance be deleted while the user is at
    the provider, its tokens go to the setup flow, and the page said the connector "was
    edited since this connection started", which nobody had done: it says what the
    consent does not give."""
    current = (await web.client.get("/api/connectors/slack")).json()
    edited = {k: v for k, v in current.items() if k not in {"builtIn", "createdAt", "updatedAt"}}
    [secret] = [
        f for f in edited["auth"]["config"]["credentialFields"] if f["key"] == "webhookSecret"
    ]
    secret["required"] = True
    assert (await web.client.put("/api/connectors/slack", json=edited)).is_success
    await register(web)
    user = await dashboard_user(web)
    refused = await web.client.post(f"{INSTANCE}/oauth/start", json={"config": slack_config(slack)})
    assert refused.status_code == 422, refused.text
    assert [p["path"] for p in refused.json()["error"]["details"]] == ["credentials.webhookSecret"]

    with_secret = {"config": slack_config(slack), "credentials": {"webhookSecret": "sig-9f3e7a"}}
    started = await web.client.post(f"{INSTANCE}/oauth/start", json=with_secret)
    assert started.status_code == 200, started.text
    assert (await come_back(web, await consent(started.json()["authorizeUrl"]))).is_success
    assert (await web.client.get(INSTANCE)).json()["credentials"]["webhookSecret"].startswith("•")

    reconnect = await start(web, slack)  # the instance's own secret counts
    assert (await web.client.delete(INSTANCE)).status_code == 204
    back = urlsplit(await consent(reconnect))
    landed = await user.get(back.path, **{k: v[0] for k, v in parse_qs(back.query).items()})
    assert landed.status_code == 200, landed.text
    assert "Slack needs more than the consent gives" in landed.text
    assert "credentials.webhookSecret" in landed.text
    assert "was edited" not in landed.text
    assert (await web.client.get(INSTANCE)).status_code == 404
    assert urlsplit(onward_target(landed)).path.endswith("/connect/oauth-return")


async def test_a_setting_an_edit_removed_before_the_callback_is_dropped_not_refused(
    web: Web, slack: SlackFake
) -> None:
    """The consent's settings were checked at its start; one the connector no longer
    declares at the callback is dropped, as saving an instance drops it, and the
    instance is created with the tokens (it was refused as an unknown setting)."""
    await register(web)
    current = (await web.client.get("/api/connectors/slack")).json()
    edited = {k: v for k, v in current.items() if k not in {"builtIn", "createdAt", "updatedAt"}}
    edited["configFields"].append({"key": "team", "label": "Team", "type": "text"})
    assert (await web.client.put("/api/connectors/slack", json=edited)).is_success
    started = await web.client.post(
        f"{INSTANCE}/oauth/start", json={"config": {**slack_config(slack), "team": "ops"}}
    )
    assert started.status_code == 200, started.text
    edited["configFields"].pop()
    assert (await web.client.put("/api/connectors/slack", json=edited)).is_success
    done = await come_back(web, await consent(started.json()["authorizeUrl"]))
    assert done.status_code == 200, done.text
    assert "Slack connected" in done.text
    instance = (await web.client.get(INSTANCE)).json()
    assert "team" not in instance["config"]
    assert set(instance["credentials"]) >= {"accessToken", "refreshToken"}


# --------------------------------------------------------------------------- PKCE


ACME_SITE = {
    "id": "1324a887-45db-1bf4-1e99-ef0ff456d421",
    "name": "acme",
    "url": "https://acme.atlassian.net",
    "scopes": ["read:jira-work"],
}
SITES: list[dict[str, Any]] = []
"""What the fake's accessible-resources answers (Atlassian's shape: the token's sites)."""
PKCE_APP = "pkce-client"
PKCE_SECRET = "pkce-client-secret-3f9a"


@pytest.fixture
def provider() -> Iterator[AuthorizationServer]:
    from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer

    server = FakeServer()
    auth = AuthorizationServer(server, PKCE_APP, PKCE_SECRET)

    def me(request: FakeRequest) -> FakeResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in auth.access_tokens:
            return FakeResponse.json({"error": "invalid_token"}, status=401)
        return FakeResponse.json({"id": "me"})

    server.add_route("GET", "/me", me)

    def resources(request: FakeRequest) -> FakeResponse:
        """Atlassian's accessible-resources: the sites this token may use."""
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in auth.access_tokens:
            return FakeResponse.json({"code": 401, "message": "Unauthorized"}, status=401)
        return FakeResponse.json(SITES)

    server.add_route("GET", "/oauth/token/accessible-resources", resources)
    SITES[:] = [ACME_SITE]
    with server:
        yield auth


def pkce_descriptor(base_url: str) -> dict[str, Any]:
    return {
        "id": "pkce-tool",
        "name": "PKCE Tool",
        "description": "An OAuth 2.0 provider that supports PKCE",
        "category": "Custom",
        "icon": "key",
        "kind": "generic",
        "version": "1.0.0",
        "configFields": [{"key": "baseUrl", "label": "Base URL", "type": "url"}],
        "auth": {
            "method": "oauth2",
            "config": {
                "authoriseUrl": "{{baseUrl}}/oauth/authorize",
                "tokenUrl": "{{baseUrl}}/oauth/token",
                "scopes": ["read", "offline"],
                "pkce": True,
                "clientAuth": "basic",
                "authorizeParams": {"prompt": "consent"},
                "credentialFields": [
                    {"key": "clientId", "label": "Client id", "type": "text", "required": True},
                    {
                        "key": "clientSecret",
                        "label": "Secret",
                        "type": "password",
                        "required": True,
                    },
                    {"key": "accessToken", "label": "Access", "type": "password", "required": True},
                    {
                        "key": "refreshToken",
                        "label": "Refresh",
                        "type": "password",
                        "required": False,
                    },
                ],
            },
        },
        "ingestion": {
            "mode": "polling",
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "rateLimitRpm": 60,
            "intervalSeconds": 300,
        },
        "fieldMapping": {
            "itemsPath": "$.items[*]",
            "idPath": "$.id",
            "timestampPath": "$.at",
            "summaryTemplate": "{{title}}",
            "signalTypeRules": [],
        },
        "healthCheck": {
            "endpoint": "{{baseUrl}}/me",
            "method": "GET",
            "expectStatus": 200,
            "timeoutMs": 2000,
        },
    }


async def test_pkce_and_basic_client_auth_from_the_descriptor_alone(
    web: Web, provider: AuthorizationServer
) -> None:
    base = provider.server.base_url
    assert (await web.client.post("/api/connectors", json=pkce_descriptor(base))).status_code == 201
    put = await web.client.put(
        "/api/connectors/pkce-tool/oauth-client",
        json={"clientId": PKCE_APP, "clientSecret": PKCE_SECRET},
    )
    assert put.status_code == 204
    started = await web.client.post(
        f"/api/projects/{PROJECT}/instances/pkce-tool/oauth/start",
        json={"config": {"baseUrl": base}},
    )
    url = started.json()["authorizeUrl"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["prompt"] == ["consent"]
    assert query["scope"] == ["read offline"]

    # A challenge the provider recorded that is not ours: the verifier ucf sends fails.
    forged = copy.deepcopy(query)
    forged["code_challenge"] = ["A" * 43]
    tampered_url = url.split("?")[0] + "?" + "&".join(f"{k}={v[0]}" for k, v in forged.items())
    refused = await come_back(web, await consent(tampered_url))
    assert refused.status_code == 400
    assert "did not exchange the code" in refused.text

    started = await web.client.post(
        f"/api/projects/{PROJECT}/instances/pkce-tool/oauth/start",
        json={"config": {"baseUrl": base}},
    )
    done = await come_back(web, await consent(started.json()["authorizeUrl"]))
    assert done.status_code == 200, done.text
    tested = await web.client.post(f"/api/projects/{PROJECT}/instances/pkce-tool/test")
    assert tested.json()["ok"] is True, tested.text


# --------------------------------------------------------------------------- dashboard


async def dashboard_user(web: Web) -> Any:
    from tests.web.test_dashboard import Browser

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web.app), base_url="http://ucf.test"
    )
    user = Browser(client)
    assert (await user.login()).status_code == 303
    await user.get(f"/projects/{PROJECT}/connectors")
    return user


def onward_target(page: httpx.Response) -> str:
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1).replace("&amp;", "&")


async def test_the_setup_flow_connects_with_slack_bound_to_the_browser_that_started_it(
    web: Web, slack: SlackFake
) -> None:
    user = await dashboard_user(web)
    connect = f"/projects/{PROJECT}/connectors/slack/connect"
    page = await user.get(connect, step="credentials")
    assert "Connect with Slack" not in page.text
    assert "OAuth apps" in page.text  # no app yet: the page says what to do, tokens can be pasted
    assert 'name="credentials.accessToken"' in page.text

    await register(web)
    # With a consent the settings come first: the consent and token URLs use them.
    page = await user.get(connect)
    assert 'name="config.signInUrl"' in page.text
    settings = {f"config.{k}": v for k, v in slack_config(slack).items()}
    assert (await user.post(f"{connect}/configuration", settings)).status_code == 303
    page = await user.get(connect, step="credentials")
    assert "Connect with Slack" in page.text
    assert 'name="credentials.accessToken"' not in page.text  # the consent provides it
    assert 'name="credentials.clientSecret"' not in page.text  # the operator's app does

    opened = await user.post(f"{connect}/oauth")
    assert opened.status_code == 200
    cookie = opened.headers["set-cookie"].lower()
    assert "ucf_oauth=" in cookie
    assert "samesite=lax" in cookie
    assert "path=/oauth/callback" in cookie
    authorize = onward_target(opened)
    assert authorize.startswith(slack.base_url + "/oauth/v2/authorize?")  # the typed sign-in URL
    assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == ["http://ucf.test/oauth/callback"]

    # Another browser (without the binding cookie) cannot finish it, and spends the state.
    back = urlsplit(await consent(authorize))
    stranger = await web.anonymous.get(f"{back.path}?{back.query}")
    assert stranger.status_code == 400
    assert "another browser session" in stranger.text
    assert slack.auth.exchanged == 0

    opened = await user.post(f"{connect}/oauth")
    back = urlsplit(await consent(onward_target(opened)))
    landed = await user.get(back.path, **{k: v[0] for k, v in parse_qs(back.query).items()})
    assert landed.status_code == 200, landed.text
    onward = urlsplit(onward_target(landed))
    assert onward.path == f"{connect}/oauth-return"
    returned = await user.get(onward.path, ticket=parse_qs(onward.query)["ticket"][0])
    assert returned.status_code == 303
    assert returned.headers["location"].endswith("step=test")
    test_step = await user.get(connect, step="test")
    assert "Connected with Slack" in test_step.text

    tested = await user.post(f"{connect}/test")
    assert tested.status_code == 303
    assert "Connection works" in (await user.get(connect, step="test")).text
    confirmed = await user.post(f"{connect}/confirm")
    assert confirmed.status_code == 303, confirmed.text
    instance = (await web.client.get(INSTANCE)).json()
    assert set(instance["credentials"]) >= {"accessToken", "refreshToken"}
    polled = await web.client.post(f"{INSTANCE}/poll")
    assert polled.json()["status"] == "ok", polled.text
    for text in user.seen:
        assert CLIENT_SECRET not in text
        for token in slack.auth.access_tokens | slack.auth.refresh_tokens:
            assert token not in text

    page = await user.get(f"/projects/{PROJECT}/instances/slack")
    assert "Reconnect" in page.text
    assert "from the registered OAuth app" in page.text


async def test_a_setting_read_after_the_consent_fills_the_instance_atlassian_style(
    web: Web, provider: AuthorizationServer
) -> None:
    base = provider.server.base_url
    descriptor = pkce_descriptor(base)
    descriptor["id"] = "three-lo"
    descriptor["configFields"].append(
        {"key": "cloudId", "label": "Cloud id", "type": "text", "required": False}
    )
    oauth = descriptor["auth"]["config"]
    oauth["authorizeParams"] = {"audience": "api.atlassian.com", "prompt": "consent"}
    oauth["afterConsent"] = [
        {
            "endpoint": "{{baseUrl}}/oauth/token/accessible-resources",
            "path": "$[0].id",
            "configField": "cloudId",
        }
    ]
    assert (await web.client.post("/api/connectors", json=descriptor)).status_code == 201
    put = await web.client.put(
        "/api/connectors/three-lo/oauth-client",
        json={"clientId": PKCE_APP, "clientSecret": PKCE_SECRET},
    )
    assert put.status_code == 204
    start_url = f"/api/projects/{PROJECT}/instances/three-lo/oauth/start"
    body = {"config": {"baseUrl": base}}

    SITES.clear()  # the account can reach no site
    started = await web.client.post(start_url, json=body)
    query = parse_qs(urlsplit(started.json()["authorizeUrl"]).query)
    assert (query["audience"], query["prompt"]) == (["api.atlassian.com"], ["consent"])
    refused = await come_back(web, await consent(started.json()["authorizeUrl"]))
    assert refused.status_code == 400
    assert "has no cloudId" in refused.text
    assert (await web.client.get(f"/api/projects/{PROJECT}/instances/three-lo")).status_code == 404

    SITES.append(ACME_SITE)
    started = await web.client.post(start_url, json=body)
    done = await come_back(web, await consent(started.json()["authorizeUrl"]))
    assert done.status_code == 200, done.text
    instance = (await web.client.get(f"/api/projects/{PROJECT}/instances/three-lo")).json()
    assert instance["config"]["cloudId"] == "1324a887-45db-1bf4-1e99-ef0ff456d421"

    # An edit then makes a setting required that the instance lacks: a reconnect says
    # so before the consent (review36 feared its tokens would be lost at the callback),
    # and once the setting is saved it replaces the tokens in place.
    descriptor["configFields"].append(
        {"key": "region", "label": "Region", "type": "text", "required": True}
    )
    assert (await web.client.put("/api/connectors/three-lo", json=descriptor)).is_success
    instance_url = f"/api/projects/{PROJECT}/instances/three-lo"
    refused = await web.client.post(start_url, json={})
    assert refused.status_code == 422, refused.text
    assert [d["path"] for d in refused.json()["error"]["details"]] == ["config.region"]
    saved = await web.client.patch(instance_url, json={"config": {"region": "eu"}})
    assert saved.status_code == 200, saved.text
    instances = web.state.context.instances
    before = await instances.secrets(await instances.record(PROJECT, "three-lo"))
    started = await web.client.post(start_url, json={})
    assert started.status_code == 200, started.text
    again = await come_back(web, await consent(started.json()["authorizeUrl"]))
    assert again.status_code == 200, again.text
    after = await instances.secrets(await instances.record(PROJECT, "three-lo"))
    token = "accessToken"
    assert after.credentials.get(token) not in (None, before.credentials.get(token))
