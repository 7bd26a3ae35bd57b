"""Importing a handler module does no work: the cold start happens on the first invocation."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.aws.conftest import Lab
from tests.aws.events import LambdaContext, http_api_event, scheduled_event
from ucf.fakes.github import WEBHOOK_SECRET, GitHubFake

HEAVY = ("fastapi", "boto3", "botocore", "httpx", "pydantic", "mangum", "ucf.service.context")


@pytest.mark.parametrize("module", ["api", "schedule", "poll_worker", "delivery"])
def test_importing_a_handler_loads_no_framework_store_or_aws_sdk(module: str) -> None:
    probe = (
        "import json, sys\n"
        f"import ucf.aws.handlers.{module} as handler\n"
        "assert callable(handler.handler)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert json.loads(loaded.stdout) == []


# What no first invocation below may import: the web stack is the API function's
# alone, httpx's command-line client (click, rich) and the local secret store
# (cryptography, SQLite) are never used on Lambda, and a native connector's code is
# loaded only when one of its instances runs (these deliver a GitHub instance's work).
NEVER_ON_FIRST_CALL = (
    "fastapi",
    "starlette",
    "mangum",
    "jinja2",
    "ucf.web",
    "httpx._main",
    "click",
    "rich",
    "ucf.stores.secrets.local",
    "cryptography",
    "ucf.native.asana",
    "ucf.native.jira",
    "ucf.native.outlook",
    "ucf.native.ses",
)

# And what each function's job does not need: the schedule only decides what is due
# (no HTTP client, no descriptor models or compiled descriptor, no secret store); delivery only reads the
# outbox and sends (no descriptor models, mapping engine or JSONPath, no catalogue).
NOT_FOR_ITS_JOB: dict[str, tuple[str, ...]] = {
    "schedule": (
        "httpx",
        "jsonpath",
        "pydantic",
        "ucf.core.descriptor",
        "ucf.core.mapping",
        "ucf.core.validation",
        "ucf.core.sanitiser",
        "ucf.runtime.auth",
        "ucf.runtime.http",
        "ucf.runtime.sources",
        "ucf.service.poll",
        "ucf.stores.secrets.aws",
    ),
    # Reading secrets does not load what names a new one (python-ulid, whose import
    # reads the installed distributions' metadata); a page whose signals all pass the
    # sanitiser's fast path stays wire objects (no signal models).
    "poll_worker": ("ulid", "ucf.core.signal"),
    "delivery": (
        "jsonpath",
        "pydantic",
        "pydantic_core",
        "ucf.core.descriptor",
        "ucf.core.mapping",
        "ucf.core.sanitiser",
        "ucf.catalogue",
        "ucf.service.connectors",
        "ucf.service.poll",
        "ucf.stores.secrets.aws",
    ),
}

FIRST_CALL = """
import json, sys
from tests.aws.events import LambdaContext
import ucf.aws.handlers.{module} as handler
response = handler.handler(json.loads(sys.argv[1]), LambdaContext())
loaded = [m for m in {never!r} if m in sys.modules and sys.modules[m] is not None]
print(json.dumps({{"response": response, "loaded": loaded}}))
"""


# A webhook delivery on the API function: answered by the front, so the management
# app (FastAPI, its routes, the dashboard and its templates) is neither imported nor built;
# and a descriptor connector's delivery calls no upstream, so no HTTP client stack (httpx
# and what it stands on), no poll machinery and no health checks are loaded for it; nor
# Starlette (and anyio under it) for the request's base URL. The metrics count without
# prometheus_client (its exposition stack): the first scrape imports it. A shipped
# connector stored as a sync would leave it is read alone: no catalogue sync, so no
# native-connector registry (its entry-point scan). Reading the instance's secret
# does not load what names a new one (python-ulid). A signal that passes the
# sanitiser's fast path stays a wire object: no signal models.
NEVER_FOR_A_DELIVERY = (
    "prometheus_client",
    "ucf.runtime.native",
    "ulid",
    "ucf.core.signal",
    "fastapi",
    "jinja2",
    "ucf.web.app",
    "ucf.web.api",
    "ucf.web.dashboard",
    "ucf.web.middleware",
    "starlette",
    "anyio",
    "httpx",
    "httpcore",
    "h11",
    "ucf.runtime.http",
    "ucf.runtime.polling",
    "ucf.runtime.sources",
    "ucf.runtime.ssrf",
    "ucf.service.poll",
    "ucf.service.health",
    "ucf.service.oauth",
    *NEVER_ON_FIRST_CALL[NEVER_ON_FIRST_CALL.index("httpx._main") :],
)


def first_call(
    module: str, event: dict[str, object], never: tuple[str, ...] = NEVER_ON_FIRST_CALL
) -> dict[str, object]:
    """``module``'s handler imported and invoked once in a fresh interpreter (the lab's env)."""
    never = never + NOT_FOR_ITS_JOB.get(module, ())
    probe = FIRST_CALL.format(module=module, never=never)
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(event)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_first_poll_schedule_and_delivery_import_only_what_their_job_needs(
    lab: Lab, github: GitHubFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.connect_github(github)
    monkeypatch.setenv("UCF_SINK_HTTP", "http://127.0.0.1:9/unused")  # delivery's job exists

    tick = first_call("schedule", scheduled_event(datetime.now(UTC)))
    assert (tick["response"], tick["loaded"]) == ({"due": 1, "enqueued": 1, "nextDueAt": None}, [])

    messages = lab.receive()
    polled = first_call("poll_worker", lab.sqs_event(messages))
    assert (polled["response"], polled["loaded"]) == ({"batchItemFailures": []}, [])
    assert lab.signals(), "the worker's poll stored the instance's issues"

    delivery = first_call("delivery", scheduled_event(datetime.now(UTC)))
    assert delivery["loaded"] == []
    response = delivery["response"]
    assert isinstance(response, dict)
    assert response["delivered"] == {"http": 0}  # it did try: the poll's signals were due
    assert "could not connect" in response["errors"]["http"]


def test_a_first_webhook_delivery_on_the_api_function_never_loads_the_management_app(
    lab: Lab, github: GitHubFake
) -> None:
    lab.connect_github(github)
    body = json.dumps(
        {
            "action": "opened",
            "issue": {
                "id": 4242,
                "number": 42,
                "title": "Cold delivery",
                "updated_at": "2025-03-01T12:00:00Z",
                "labels": [],
            },
        }
    ).encode()
    mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    event = http_api_event(
        "POST",
        "/api/webhooks/github-issues/proj-1",
        headers={
            "content-type": "application/json",
            "x-github-event": "issues",
            "x-github-delivery": "cold-1",
            "x-hub-signature-256": f"sha256={mac}",
        },
        body=body,
    )

    delivered = first_call("api", event, NEVER_FOR_A_DELIVERY)

    response = delivered["response"]
    assert isinstance(response, dict)
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == {"received": 1, "inserted": 1, "duplicates": 0}
    assert delivered["loaded"] == []
    assert [signal["summary"] for signal in lab.signals()] == ["#42 Cold delivery"]


def test_the_functions_leave_the_table_to_the_template_and_say_when_it_is_missing(
    lab: Lab,
) -> None:
    """No DescribeTable at a cold start: the template creates the table (test_template.py
    holds it to the store's schema); a missing one fails the first call by name, and no
    function, the API's included, creates it."""
    import boto3

    from tests.aws.events import http_api_event
    from ucf.aws.handlers import api, schedule
    from ucf.stores.errors import StoreNotInitialised

    dynamodb = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=lab.endpoints.dynamodb
    )
    try:
        dynamodb.delete_table(TableName=lab.table)  # the lab made it as the template does
        dynamodb.get_waiter("table_not_exists").wait(TableName=lab.table)

        with pytest.raises(StoreNotInitialised, match="does not exist"):
            schedule.handler(scheduled_event(datetime.now(UTC)), LambdaContext())
        listed = api.handler(
            http_api_event(
                "GET", "/api/connectors", headers={"authorization": f"Bearer {lab.token}"}
            ),
            LambdaContext(function_name="ucf-api"),
        )
        assert listed["statusCode"] == 500, listed  # a JSON 500; the log names the table

        with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):  # nor created it
            dynamodb.describe_table(TableName=lab.table)
    finally:
        dynamodb.close()
