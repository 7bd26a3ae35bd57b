"""A script connects GitHub PRs with OAuth through the API alone.

GitHub PRs' OAuth sign-in requires a webhook secret no consent gives. ``POST
…/oauth/start`` takes it as ``credentials`` beside the settings; the callback stores
it on the instance it creates, so a signed delivery is accepted with no dashboard
step. The provider is the sandbox's GitHub fake, with the settings ``ucf sandbox``
names for a consent from another project.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from tests.service.test_oauth_held_credentials import files_text
from tests.web.conftest import Web, open_web, web_settings
from tests.web.test_oauth import come_back, consent, secret_count
from tests.web.test_oauth_providers import register_sandbox_app
from ucf.fakes import github
from ucf.fakes.scenario import Scenario
from ucf.sandbox.fleet import Provider as SandboxProvider
from ucf.sandbox.fleet import catalogue

PROJECT = "proj-script"
CONNECTOR = "github-prs"
INSTANCE = f"/api/projects/{PROJECT}/instances/{CONNECTOR}"
SECRET = "whsec-script-7c2f9a41e0"


@pytest_asyncio.fixture(loop_scope="function")
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    async with open_web(web_settings(tmp_path)) as opened:
        yield opened


@pytest.fixture
def sandbox() -> Iterator[SandboxProvider]:
    [(descriptor, scenario)] = [pair for pair in catalogue() if pair[0].id == CONNECTOR]
    fake = scenario.fake(datetime.now(UTC))
    with fake:
        yield SandboxProvider(descriptor, scenario, fake)


def settings(sandbox: SandboxProvider) -> dict[str, str]:
    scenario: Scenario = sandbox.scenario
    return {**scenario.config(sandbox.fake.base_url), **sandbox.consent_settings()}


async def test_a_script_connects_github_prs_and_its_webhook_secret_verifies_deliveries(
    web: Web, sandbox: SandboxProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await register_sandbox_app(web, sandbox)
    answers: list[str] = []

    started = await web.client.post(
        f"{INSTANCE}/oauth/start",
        json={"config": settings(sandbox), "credentials": {"webhookSecret": SECRET}},
    )
    assert started.status_code == 200, started.text
    answers.append(started.text)
    done = await come_back(web, await consent(started.json()["authorizeUrl"]))
    assert done.status_code == 200, done.text
    assert "GitHub Pull Requests connected" in done.text
    answers.append(done.text)

    instance = await web.client.get(INSTANCE)
    assert instance.status_code == 200, instance.text
    answers.append(instance.text)
    body = instance.json()
    assert body["authMethod"] == "oauth2"
    assert set(body["credentials"]) >= {"accessToken", "webhookSecret"}
    hook = urlsplit(body["webhookUrl"]).path

    sample = sandbox.scenario.webhook_samples()[0]
    foreign = github.sign_delivery(sample, url=hook)  # the fake's own secret, not ours
    refused = await web.anonymous.post(hook, content=foreign.body, headers=dict(foreign.headers))
    assert refused.status_code == 401, refused.text
    delivery = github.sign_delivery(sample, url=hook, secret=SECRET)
    accepted = await web.anonymous.post(hook, content=delivery.body, headers=dict(delivery.headers))
    assert accepted.is_success, accepted.text
    answers.append(accepted.text)
    signals = (await web.client.get(f"/api/projects/{PROJECT}/signals")).json()["items"]
    assert [s["type"] for s in signals] == list(sample.expected_types)
    polled = await web.client.post(f"{INSTANCE}/poll")
    assert polled.json()["status"] == "ok", polled.text  # the consent's token signs in
    for path in (INSTANCE, f"{INSTANCE}/status", f"/api/projects/{PROJECT}/instances"):
        answers.append((await web.client.get(path)).text)

    for answer in answers:
        assert SECRET not in answer
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in logged
    plain = files_text(tmp_path)
    assert github.OAUTH_CLIENT_ID in plain  # a plain record: the files were read
    assert SECRET not in plain


async def test_the_start_refuses_what_the_consent_gives_and_asks_for_what_it_does_not(
    web: Web, sandbox: SandboxProvider, tmp_path: Path
) -> None:
    """Checked as the setup form checks them, every problem at its path in one 422 (the
    settings' too), before anyone is sent to the provider; nothing stored, and no value
    sent comes back."""
    await register_sandbox_app(web, sandbox)
    before = secret_count(tmp_path)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"config": settings(sandbox)}, ["credentials.webhookSecret"]),
        (
            {
                "config": settings(sandbox),
                "credentials": {
                    "webhookSecret": SECRET,
                    "clientId": "mine-1",
                    "clientSecret": "mine-2",
                    "accessToken": "mine-3",
                    "refreshToken": "mine-4",
                },
            },
            [
                "credentials.clientId",
                "credentials.clientSecret",
                "credentials.accessToken",
                "credentials.refreshToken",
            ],
        ),
        (
            {"config": settings(sandbox), "credentials": {"webhookSecret": SECRET, "token": "x"}},
            ["credentials.token"],  # the personal token's, not the consent's
        ),
        (
            {
                "config": settings(sandbox),
                "credentials": {"webhookSecret": SECRET, "authMethod": "pat"},
            },
            ["credentials.authMethod"],  # the consent's own method, always
        ),
        (
            {
                "config": {**settings(sandbox), "owner": ["x"]},
                "credentials": {"webhookSecret": ["not", "a", "string"]},
            },
            # Not a string: said once, not "required" as well.
            ["config.owner", "credentials.webhookSecret"],
        ),
        (
            {"config": settings(sandbox), "credentials": "whsec"},
            ["body.credentials"],
        ),
    ]
    for sent, paths in cases:
        refused = await web.client.post(f"{INSTANCE}/oauth/start", json=sent)
        assert refused.status_code == 422, refused.text
        assert [p["path"] for p in refused.json()["error"]["details"]] == paths, sent
        for value in ("mine-1", "mine-2", "mine-3", "mine-4", SECRET):
            assert value not in refused.text
    for raw in (
        b'{"credentials": {"webhookSecret": "s\\ud800"}}',  # a lone surrogate
        b'{"credentials": {"\\ud800": "x"}}',
        b'{"credentials": {"webhookSecret": null}}',
        b'{"credentials": {"webhookSecret": {"nested": "x"}}}',
    ):
        odd = await web.client.post(
            f"{INSTANCE}/oauth/start", content=raw, headers={"Content-Type": "application/json"}
        )
        assert odd.status_code == 422, (raw, odd.text)
    given = (
        await web.client.post(
            f"{INSTANCE}/oauth/start",
            json={"config": settings(sandbox), "credentials": {"accessToken": "mine-3"}},
        )
    ).json()["error"]["details"]
    assert "given by the consent" in given[0]["message"]
    assert isinstance(sandbox.fake, github.GitHubFake)
    assert sandbox.fake.auth.exchanged == 0
    assert secret_count(tmp_path) == before


async def test_the_openapi_document_describes_the_credentials_of_a_start(web: Web) -> None:
    spec = (await web.client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/projects/{projectId}/instances/{connectorId}/oauth/start"]
    assert "credentials it does not give" in operation["post"]["summary"]
    body = spec["components"]["schemas"]["OAuthStart"]["properties"]
    assert "webhookSecret" in body["credentials"]["description"]
