"""The API function: the same app as ``ucf serve``, reached through API Gateway events."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.aws.conftest import CONNECTOR, PROJECT, Lab
from tests.aws.events import DOMAIN, HttpReply, LambdaContext, http_api_event, rest_api_event
from ucf.aws.config import AwsConfigError
from ucf.aws.container import close_all
from ucf.aws.handlers import api, poll_worker, schedule
from ucf.fakes.github import GOOD_TOKEN, OWNER, REPO, WEBHOOK_SECRET, GitHubFake
from ucf.service.webhooks import webhook_path
from ucf.web.dashboard.rendering import STATIC

WEBHOOK = f"/api/webhooks/{CONNECTOR}/{PROJECT}"
STAGED = {"2.0": "", "1.0": "/prod"}
"""What starts the path of every URL a client uses, by payload: nothing on the HTTP API's
``$default`` stage (``http_api_event``), the stage of a REST API (``rest_api_event``)."""


def github_headers(body: bytes, *, event: str = "issues", delivery: str = "d-1") -> dict[str, str]:
    mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": f"sha256={mac}",
    }


def test_management_api_answers_only_with_the_token_from_secrets_manager(lab: Lab) -> None:
    anonymous = lab.call("GET", "/api/connectors", token=False)
    assert anonymous.status == 401

    listed = lab.call("GET", "/api/connectors")
    assert listed.status == 200, listed.body
    assert CONNECTOR in {item["id"] for item in listed.json()["items"]}
    assert lab.token.encode() not in listed.body


def test_rest_api_events_reach_the_same_app(lab: Lab, github: GitHubFake) -> None:
    lab.connect_github(github)
    listing = rest_api_event(
        "GET",
        f"/api/projects/{PROJECT}/instances",
        headers={"Authorization": f"Bearer {lab.token}"},
    )
    body = b'{"action":"opened","issue":{"id":5,"number":5,"title":"v1 \xc3\xa9","labels":[]}}'
    webhook = rest_api_event(
        "POST", WEBHOOK, headers=github_headers(body), body=body, base64_body=True
    )

    listed = HttpReply.of(api.handler(listing, LambdaContext()))
    received = HttpReply.of(api.handler(webhook, LambdaContext()))

    assert listed.status == 200, listed.body
    [instance] = listed.json()["items"]
    assert instance["connectorId"] == CONNECTOR
    assert received.status == 200, received.body
    assert [s["summary"] for s in lab.signals()] == ["#5 v1 é"]


def test_instances_show_the_webhook_url_on_the_api_gateway_host(
    lab: Lab, github: GitHubFake
) -> None:
    created = lab.connect_github(github)

    assert created["webhookUrl"].startswith(f"https://{DOMAIN}{WEBHOOK}/")
    assert created["sharedWebhookUrl"] == f"https://{DOMAIN}{WEBHOOK}"
    assert WEBHOOK_SECRET not in json.dumps(created)


@pytest.mark.parametrize("public", ["https://ucf.example.com/?", " https://ucf.example.com/ "])
def test_instances_show_the_webhook_url_on_the_public_url_as_the_settings_read_it(
    lab: Lab, github: GitHubFake, monkeypatch: pytest.MonkeyPatch, public: str
) -> None:
    """The API read ``UCF_PUBLIC_URL`` raw: ``…/?`` showed ``…/?/api/webhooks/…``, a URL
    no provider could deliver to."""
    monkeypatch.setenv("UCF_PUBLIC_URL", public)

    created = lab.connect_github(github)

    assert created["sharedWebhookUrl"] == f"https://ucf.example.com{WEBHOOK}"
    assert created["webhookUrl"].startswith(f"https://ucf.example.com{WEBHOOK}/")


def test_base64_webhook_body_is_verified_on_its_exact_bytes(lab: Lab, github: GitHubFake) -> None:
    lab.connect_github(github)
    payload = {
        "action": "opened",
        "issue": {
            "id": 777,
            "number": 77,
            "title": "Drucker brennt 🔥 — «dringend»",
            "updated_at": "2025-03-01T12:00:00Z",
            "labels": [],
        },
    }
    # Tabs, CRLF line ends and non-ASCII: any re-encoding on the way changes the bytes.
    body = json.dumps(payload, indent="\t", ensure_ascii=False).replace("\n", "\r\n").encode()
    body += b"\r\n"

    stored = lab.call(
        "POST", WEBHOOK, body=body, headers=github_headers(body), token=False, base64_body=True
    )
    tampered = body.replace(b"dringend", b"DRINGEND")
    refused = lab.call(
        "POST",
        WEBHOOK,
        body=tampered,
        headers=github_headers(body, delivery="d-2"),
        token=False,
        base64_body=True,
    )

    assert stored.status == 200, stored.body
    assert stored.json()["inserted"] == 1
    assert refused.status == 401
    [signal] = lab.signals()
    assert signal["summary"] == "#77 Drucker brennt 🔥 — «dringend»"


def test_a_body_that_is_not_utf8_is_verified_before_it_is_refused_as_json(
    lab: Lab, github: GitHubFake
) -> None:
    lab.connect_github(github)
    body = b'{"action":"opened","issue":{"title":"\xff\xfe\x00 binary"}}'

    signed = lab.call(
        "POST", WEBHOOK, body=body, headers=github_headers(body), token=False, base64_body=True
    )
    forged = lab.call(
        "POST",
        WEBHOOK,
        body=body[:-2] + b"!}",
        headers=github_headers(body),
        token=False,
        base64_body=True,
    )

    assert signed.status == 400, signed.body  # the signature held; the body is not JSON
    assert forged.status == 401


def test_webhook_bodies_over_256_kb_are_refused(lab: Lab, github: GitHubFake) -> None:
    lab.connect_github(github)
    body = b'{"action":"opened","padding":"' + b"x" * (300 * 1024) + b'"}'

    reply = lab.call(
        "POST", WEBHOOK, body=body, headers=github_headers(body), token=False, base64_body=True
    )

    assert reply.status == 413
    assert lab.signals() == []


@pytest.mark.parametrize(
    "path",
    [f"/api/webhooks/{'c' * 3000}/{PROJECT}", f"/api/webhooks/{CONNECTOR}/{'p' * 3000}"],
    ids=["connector id", "project id"],
)
def test_an_id_too_long_for_a_dynamodb_key_is_the_gateways_one_404(
    lab: Lab, github: GitHubFake, path: str
) -> None:
    """DynamoDB refuses a key over 2 048 bytes; the sender must still get the 404 every
    unknown target gets, not a 422 naming the store."""
    lab.connect_github(github)
    body = b"{}"

    reply = lab.call("POST", path, body=body, headers=github_headers(body), token=False)

    assert reply.status == 404, reply.body
    assert reply.json()["error"]["message"] == "no webhook endpoint at this URL"


def test_no_log_line_shows_an_instances_own_webhook_url(
    lab: Lab, github: GitHubFake, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook id at the end of the URL is as secret as a credential (docs/security.md):
    on Lambda, where records at INFO reach CloudWatch, no line may hold it; ucf's access
    line names the route template instead."""
    created = lab.connect_github(github)
    path = created["webhookUrl"].removeprefix(f"https://{DOMAIN}")
    hook_id = path.rsplit("/", 1)[1]
    body = b'{"action":"opened","issue":{"id":3,"number":3,"title":"logged?","labels":[]}}'
    caplog.set_level(logging.INFO)

    received = lab.call("POST", path, body=body, headers=github_headers(body), token=False)
    refused = lab.call("POST", path, body=body, headers=github_headers(b"{}"), token=False)

    assert (received.status, refused.status) == (200, 401)
    lines = [record.getMessage() for record in caplog.records]
    assert "POST /api/webhooks/{connectorId}/{projectId}/{hookId} 200" in lines
    assert [line for line in lines if hook_id in line] == []


@pytest.mark.parametrize("payload", ["2.0", "1.0"])
def test_a_forwarded_port_list_is_still_a_delivery_not_a_failed_invocation(
    lab: Lab, github: GitHubFake, payload: str
) -> None:
    """A proxy in front of API Gateway adds its own X-Forwarded-Port, and API Gateway joins
    the two ("443,443"); Mangum reads the header as one integer and failed the whole
    invocation (API Gateway's bare 500, the provider retrying for nothing)."""
    lab.connect_github(github)
    body = b'{"action":"opened","issue":{"id":4,"number":4,"title":"behind a CDN","labels":[]}}'
    if payload == "2.0":
        headers = {**github_headers(body), "x-forwarded-port": "443,443"}
        event = http_api_event("POST", WEBHOOK, headers=headers, body=body)
    else:
        event = rest_api_event("POST", WEBHOOK, headers=github_headers(body), body=body)
        event["multiValueHeaders"]["x-forwarded-port"] = ["8443", "443"]

    reply = HttpReply.of(api.handler(event, LambdaContext()))

    assert reply.status == 200, reply.body
    assert [s["summary"] for s in lab.signals()] == ["#4 behind a CDN"]


LAMBDA_RESPONSE_LIMIT = 6_291_556
"""Bytes of the JSON a synchronous invocation may return: past them Lambda fails the
invocation ("Response payload size exceeded") and API Gateway answers its bare 500."""


async def _store_large_signals(store_url: str, count: int) -> None:
    from tests.stores.builders import signal_write
    from ucf.stores import open_store
    from ucf.stores.models import SignalWrite

    async with open_store(store_url) as store:
        for number in range(count):
            base = signal_write(str(number), project_id=PROJECT)
            raw = {"body": "Grüße aus Köln — " * 10_000}  # a long mail, as email connectors map it
            await store.signals.ingest(
                [
                    SignalWrite(
                        dedup_key=base.dedup_key,
                        project_id=PROJECT,
                        connector_id=CONNECTOR,
                        signal={**base.signal, "raw": raw},
                        received_at=base.received_at,
                    )
                ]
            )


@pytest.mark.parametrize(
    ("runtime", "count"), [("AWS_Lambda_python3.12", 40), ("AWS_Lambda_python3.11", 20)]
)
def test_an_answer_over_lambdas_response_limit_is_a_clear_error_not_a_failed_invocation(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, runtime: str, count: int
) -> None:
    """The runtime writes the response as JSON (raw UTF-8 from python3.12 on, the
    template's; every non-ASCII character escaped before): a page of long signals passes
    its 6 MB long before anything else does."""
    monkeypatch.setenv("AWS_EXECUTION_ENV", runtime)
    asyncio.run(_store_large_signals(lab.environ["UCF_STORE"], count))
    event = http_api_event(
        "GET",
        f"/api/projects/{PROJECT}/signals",
        query="limit=50",
        headers={"authorization": f"Bearer {lab.token}"},
    )

    response = api.handler(event, LambdaContext())
    few = lab.call("GET", f"/api/projects/{PROJECT}/signals", query="limit=2")

    ascii_only = runtime.endswith("3.11")
    assert len(json.dumps(response, ensure_ascii=ascii_only).encode()) <= LAMBDA_RESPONSE_LIMIT
    reply = HttpReply.of(response)
    assert reply.status == 400
    error = reply.json()["error"]
    assert error["code"] == "response_too_large"
    assert "limit" in error["message"]
    assert few.status == 200
    assert len(few.json()["items"]) == 2


def test_dashboard_pages_and_binary_assets_come_through_api_gateway(lab: Lab) -> None:
    login = lab.call("GET", "/login", token=False)
    home = lab.call("GET", "/", token=False)
    icon = sorted(name for name in STATIC.rglob("*.svg"))[0]
    asset = lab.call("GET", "/static/dashboard/" + icon.relative_to(STATIC).as_posix(), token=False)

    assert login.status == 200
    assert login.headers["content-type"].startswith("text/html")
    assert b"<form" in login.body
    assert home.status in (302, 303, 307)
    assert "/login" in home.headers["location"]
    assert asset.status == 200
    assert asset.body == Path(icon).read_bytes()


def test_the_dashboard_under_a_rest_api_stage_links_and_redirects_under_it(lab: Lab) -> None:
    """A REST API is reached at ``https://…/prod/…`` and hands ucf the path without the
    stage: the dashboard's links, redirects and cookies named ``/login``, outside the
    API. They carry the stage now, read from the event (no setting)."""
    home = HttpReply.of(api.handler(rest_api_event("GET", "/", stage="prod"), LambdaContext()))
    login = HttpReply.of(api.handler(rest_api_event("GET", "/login"), LambdaContext()))

    assert home.status == 303
    assert home.headers["location"] == "/prod/login?next=/"
    assert login.status == 200
    assert b'action="/prod/login"' in login.body
    assert b'data-root="/prod"' in login.body
    assert b'href="/static/' not in login.body


def test_an_http_api_stage_other_than_default_is_served_under_it(
    lab: Lab, github: GitHubFake
) -> None:
    """On an HTTP API stage ``dev`` every path starts with ``/dev``: each was a 404
    unless ``UCF_API_BASE_PATH`` said so, and the dashboard's links left the stage. The
    webhook URLs shown are the stage's, and a delivery to them is stored."""
    auth = {"authorization": f"Bearer {lab.token}", "content-type": "application/json"}
    body = json.dumps(
        {
            "connectorId": CONNECTOR,
            "credentials": {"token": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET},
            "config": {"baseUrl": github.base_url, "owner": OWNER, "repo": REPO},
        }
    ).encode()
    staged = http_api_event(
        "POST", f"/api/projects/{PROJECT}/instances", headers=auth, body=body, stage="dev"
    )
    created = HttpReply.of(api.handler(staged, LambdaContext()))
    home = HttpReply.of(api.handler(http_api_event("GET", "/", stage="dev"), LambdaContext()))
    login = HttpReply.of(api.handler(http_api_event("GET", "/login", stage="dev"), LambdaContext()))

    assert created.status == 201, created.body
    assert created.json()["sharedWebhookUrl"] == f"https://{DOMAIN}/dev{WEBHOOK}"
    assert home.status == 303
    assert home.headers["location"] == "/dev/login?next=/"
    assert any("Path=/dev/login" in cookie for cookie in login.cookies), login.cookies

    delivery = b'{"action":"opened","issue":{"id":7,"number":7,"title":"staged","labels":[]}}'
    path = created.json()["webhookUrl"].removeprefix(f"https://{DOMAIN}/dev")
    received = HttpReply.of(
        api.handler(
            http_api_event(
                "POST", path, headers=github_headers(delivery), body=delivery, stage="dev"
            ),
            LambdaContext(),
        )
    )
    assert received.status == 200, received.body
    assert [s["summary"] for s in lab.signals()] == ["#7 staged"]


def test_the_dashboard_under_a_custom_domains_base_path_links_under_it(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A custom domain's API mapping ``ucf`` (``UCF_API_BASE_PATH=/ucf``): the base path
    is taken off for the routes and is the prefix of every link and redirect."""
    monkeypatch.setenv("UCF_API_BASE_PATH", "/ucf")
    close_all()  # a new execution environment, reading the setting

    home = HttpReply.of(api.handler(http_api_event("GET", "/ucf/"), LambdaContext()))
    login = HttpReply.of(api.handler(http_api_event("GET", "/ucf/login"), LambdaContext()))

    assert home.status == 303
    assert home.headers["location"] == "/ucf/login?next=/"
    assert b'action="/ucf/login"' in login.body


def test_an_execution_environment_opens_the_store_once_and_reuses_it(lab: Lab) -> None:
    first = lab.call("GET", "/healthz", token=False)
    app = api.FUNCTION.app
    assert app is not None
    context = app.state.ucf.context
    second = lab.call("GET", "/healthz", token=False)

    assert first.status == second.status == 200
    assert api.FUNCTION.app is app
    assert app.state.ucf.context is context


def test_without_an_api_token_the_api_fails_naming_the_setting(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UCF_API_TOKEN_SECRET")
    event = http_api_event("GET", "/healthz")

    with pytest.raises(AwsConfigError, match="UCF_API_TOKEN_SECRET"):
        api.handler(event, LambdaContext())


def test_a_webhook_delivery_is_answered_without_reading_the_admin_token(
    lab: Lab, github: GitHubFake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lab.connect_github(github)
    close_all()  # a new execution environment, whose token secret cannot be read
    monkeypatch.setenv("UCF_API_TOKEN_SECRET", "ucf-admin/no-such-secret")
    body = b'{"action":"opened","issue":{"id":9,"number":9,"title":"no token read","labels":[]}}'

    received = lab.call("POST", WEBHOOK, body=body, headers=github_headers(body), token=False)
    listed = lab.call("GET", "/api/connectors")

    assert received.status == 200, received.body
    assert listed.status == 503  # the first request that needs the token reads it
    assert json.loads(listed.body)["error"]["code"] == "unavailable"
    assert "ucf-admin/no-such-secret" in caplog.text
    monkeypatch.setenv("UCF_API_TOKEN_SECRET", lab.token_secret_arn)
    assert lab.call("GET", "/api/connectors").status == 200  # tried again, not remembered
    assert [s["summary"] for s in lab.signals()] == ["#9 no token read"]


def test_a_get_of_a_webhook_url_is_a_405_allowing_post_and_head_without_the_app(
    lab: Lab, github: GitHubFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GET of a webhook URL (pasted into a browser) built the management app, reading
    the admin token, to answer ``Allow: POST``, though HEAD is served too. The front
    answers it, naming both, in the JSON error shape."""
    created = lab.connect_github(github)
    close_all()  # a new execution environment, whose token secret cannot be read
    monkeypatch.setenv("UCF_API_TOKEN_SECRET", "ucf-admin/no-such-secret")

    for path in (WEBHOOK, created["webhookUrl"].removeprefix(f"https://{DOMAIN}")):
        answer = lab.call("GET", path, token=False)
        assert answer.status == 405, answer.body
        assert answer.headers["allow"] == "POST, HEAD"
        assert answer.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("UCF_STORE", "sqlite:///tmp/ucf.db", "UCF_STORE"),
        ("UCF_SECRET_STORE", "local:", "UCF_SECRET_STORE"),
        ("UCF_SINK_JSONL", "/tmp/signals.jsonl", "UCF_SINK_JSONL"),
    ],
)
def test_state_on_a_lambdas_own_disk_is_refused(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(AwsConfigError, match=named):
        schedule.handler({}, LambdaContext())
    with pytest.raises(AwsConfigError, match=named):
        poll_worker.handler({"Records": []}, LambdaContext())


@pytest.mark.parametrize("payload", ["2.0", "1.0"])
@pytest.mark.parametrize(
    "host",
    [
        "[::1]:8080",
        "[2001:db8::7]",
        "ucf.example.com:https",
        "ucf.example.com:€",  # past Latin-1: Mangum encodes header values as UTF-8
        "ucf.example.com:٨٠",  # digits int() reads, and Mangum too, but not ASCII ones
    ],
)
def test_a_host_mangum_cannot_split_is_answered_not_a_failed_invocation(
    lab: Lab, github: GitHubFake, payload: str, host: str
) -> None:
    """Mangum splits ``Host`` at its colon into a name and an integer port for the ASGI
    ``server``, and an IPv6 literal (or a port that is no number) failed the whole
    invocation: API Gateway's bare 500, a provider retrying for nothing."""
    lab.connect_github(github)
    body = b'{"action":"opened","issue":{"id":6,"number":6,"title":"over IPv6","labels":[]}}'
    headers = {**github_headers(body), "host": host}
    maker = http_api_event if payload == "2.0" else rest_api_event
    delivery = maker("POST", WEBHOOK, headers=headers, body=body)
    delivered = HttpReply.of(api.handler(delivery, LambdaContext()))
    listing = maker(
        "GET",
        f"/api/projects/{PROJECT}/instances",
        headers={"authorization": f"Bearer {lab.token}", "host": host},
    )
    listed = HttpReply.of(api.handler(listing, LambdaContext()))

    assert delivered.status == 200, delivered.body
    assert [s["summary"] for s in lab.signals()] == ["#6 over IPv6"]
    assert listed.status == 200, listed.body
    [instance] = listed.json()["items"]
    if host.startswith("["):  # a valid host[:port] names the webhook URLs, as under uvicorn
        assert instance["sharedWebhookUrl"] == f"https://{host}{STAGED[payload]}{WEBHOOK}"


@pytest.mark.parametrize("payload", ["2.0", "1.0"])
def test_a_url_signed_delivery_verifies_when_its_hook_url_holds_percent_escapes(
    lab: Lab, payload: str
) -> None:
    """Trello signs the callback URL it was given, escapes and all. A project id with a
    space or an accent is escaped in the URL ucf shows; API Gateway's HTTP API hands the
    path over decoded (``rawPath``), a REST API escaped, and Mangum decodes it either
    way: the URL ucf rebuilt to verify had a bare space, and every delivery was a 401."""
    from urllib.parse import quote, urlsplit

    from ucf.fakes.trello import TrelloScenario

    trello = TrelloScenario()
    project = "équipe web"
    created = lab.call(
        "POST",
        f"/api/projects/{quote(project, safe='')}/instances",
        json_body={
            "connectorId": "trello",
            "credentials": trello.credentials(),
            "config": trello.config("http://127.0.0.1:9"),
        },
    )
    assert created.status == 201, created.body
    url = created.json()["webhookUrl"]
    assert "/%C3%A9quipe%20web/" in url
    path = urlsplit(url).path
    # Through a REST API, ucf shows (and Trello signs) the URL under the stage.
    url = url.replace(path, STAGED[payload] + path)
    delivery = trello.sign(trello.webhook_samples()[0], url=url, at=datetime.now(UTC))
    maker = http_api_event if payload == "2.0" else rest_api_event
    event = maker("POST", path, headers=dict(delivery.headers), body=delivery.body)

    reply = HttpReply.of(api.handler(event, LambdaContext()))

    assert reply.status == 200, reply.body
    assert reply.json()["inserted"] == 1


async def _trello_hook_id(project: str) -> str:
    """A Trello instance of ``project``, made as ``ucf`` would on this deployment's store
    (the management API cannot name a project holding a ``/``); its hook id."""
    from ucf.fakes.trello import TrelloScenario
    from ucf.service.context import UcfContext
    from ucf.service.settings import Settings

    trello = TrelloScenario()
    async with await UcfContext.open(Settings.from_env()) as context:
        instance = await context.instances.create(
            project,
            "trello",
            credentials=trello.credentials(),
            config=trello.config("http://127.0.0.1:9"),
        )
    assert instance.hook_id is not None
    return instance.hook_id


@pytest.mark.parametrize("payload", ["2.0", "1.0"])
@pytest.mark.parametrize("project", ["a%41", "50% off", "team/x", "ü/%2F x", "a?b=c&d", "a%3Fb#c"])
def test_a_trello_delivery_reaches_a_project_whose_id_holds_a_percent_or_a_slash(
    lab: Lab, payload: str, project: str
) -> None:
    """ucf shows ``a%41`` as ``a%2541`` and ``team/x`` as ``team%2Fx`` in the hook URL
    Trello signs. API Gateway's HTTP API decodes the path once, and Mangum decoded it
    again: ``a%41`` became ``aA`` (another project's URL: 404). A ``/`` of the project
    id split the path into one segment too many (404 too), and the URL rebuilt to
    verify Trello's signature had a bare ``/`` where Trello signed ``%2F`` (401). A ``?``
    or ``#`` decoded by API Gateway is the project's, not a query's or a fragment's."""
    from ucf.fakes.trello import TrelloScenario

    hook_id = asyncio.run(_trello_hook_id(project))
    path = webhook_path("trello", project, hook_id)
    trello = TrelloScenario()
    url = f"https://{DOMAIN}{STAGED[payload]}{path}"
    delivery = trello.sign(trello.webhook_samples()[0], url=url, at=datetime.now(UTC))
    maker = http_api_event if payload == "2.0" else rest_api_event
    event = maker("POST", path, headers=dict(delivery.headers), body=delivery.body)

    reply = HttpReply.of(api.handler(event, LambdaContext()))

    assert reply.status == 200, reply.body
    assert reply.json()["inserted"] == 1


def test_an_instance_whose_secret_cannot_be_read_answers_a_json_503_through_api_gateway(
    lab: Lab, github: GitHubFake, caplog: pytest.LogCaptureFixture
) -> None:
    """A credential secret edited in the Secrets Manager console into something that is
    not a credential set: the delivery is answered a JSON 503 the provider retries (no
    traceback, no stored value, no reason for the sender), and the log and the instance's
    health say why."""
    created = lab.connect_github(github)
    [arn] = lab.credential_secrets()
    lab.secretsmanager.put_secret_value(SecretId=arn, SecretString=f"{WEBHOOK_SECRET} pasted")
    body = b'{"action":"opened","issue":{"id":9,"number":9,"title":"t","labels":[]}}'

    with caplog.at_level(logging.INFO):
        shared = lab.call("POST", WEBHOOK, body=body, headers=github_headers(body), token=False)
        own = lab.call(
            "POST",
            created["webhookUrl"].removeprefix(f"https://{DOMAIN}"),
            body=body,
            headers=github_headers(body, delivery="d-2"),
            token=False,
        )

    for reply in (shared, own):
        assert reply.status == 503, reply.body
        assert reply.headers.get("content-type") == "application/json"
        assert reply.json()["error"]["code"] == "webhook_misconfigured"
        assert WEBHOOK_SECRET.encode() not in reply.body
        assert b"Traceback" not in reply.body
        assert b"credential set" not in reply.body
    assert "is not a ucf credential set" in caplog.text
    assert WEBHOOK_SECRET not in caplog.text
    assert lab.signals() == []
    instance = lab.call("GET", f"/api/projects/{PROJECT}/instances/{CONNECTOR}").json()
    assert instance["deliveryFailures"] >= 1


@pytest.mark.parametrize("payload", ["2.0", "1.0"])
@pytest.mark.parametrize("project", ["a%2Fb", "a?b", "a%3Fb&c=d", "50% off#x"])
def test_the_management_api_reaches_a_project_whose_id_holds_an_escape_or_a_question_mark(
    lab: Lab, payload: str, project: str
) -> None:
    """The same path as under ``ucf serve`` (the id escaped once, ``a%252Fb``) names the
    same project through API Gateway: decoded once by an HTTP API (``rawPath``), where a
    second decoding made ``a%2Fb`` ``a/b`` (one segment too many) and a ``?`` the start of
    a query; left escaped by a REST API."""
    from urllib.parse import quote

    asyncio.run(_trello_hook_id(project))
    path = f"/api/projects/{quote(project, safe='')}/instances"
    headers = {"authorization": f"Bearer {lab.token}"}
    maker = http_api_event if payload == "2.0" else rest_api_event

    listed = HttpReply.of(api.handler(maker("GET", path, headers=headers), LambdaContext()))
    one = HttpReply.of(
        api.handler(maker("GET", f"{path}/trello", headers=headers), LambdaContext())
    )

    assert listed.status == 200, listed.body
    assert [i["projectId"] for i in listed.json()["items"]] == [project]
    assert one.status == 200, one.body
    assert one.json()["projectId"] == project
