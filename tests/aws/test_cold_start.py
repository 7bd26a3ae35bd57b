"""Importing a handler module does no work: the cold start happens on the first invocation."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    # sanitiser's fast path stays wire objects (no signal models). The stored descriptor
    # is run through its plain view: no pydantic, no descriptor models. The first page is
    # parsed by json: pydantic-core's parser is imported only once it would repay it.
    # A descriptor connector's poll does not load the native-connector registry, nor
    # the store's records of reads, of webhook deliveries (a poll only writes) and of its
    # set-up (no store init, no catalogue sync). The HTTP client's pool takes turns on
    # asyncio's locks and events, not anyio's backend (ucf.runtime.pool_sync).
    "poll_worker": (
        "anyio._backends._asyncio",
        "ulid",
        "ucf.core.signal",
        "pydantic",
        "pydantic_core",
        "ucf.core.descriptor",
        "ucf.runtime.native",
        "ucf.stores.read_models",
        "ucf.stores.delivery_health",
        "ucf.stores.reports",
    ),
    "delivery": (
        "anyio._backends._asyncio",  # the sink's sockets and pool are asyncio's
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

# And none of ucf's classes a first invocation builds is made by @dataclass itself: each
# costs ~0.45 ms at import (six methods compiled), where @datarecord makes the same
# dataclass for a quarter of that (ucf.core.records).
FIRST_CALL = """
import json, ssl, sys
from tests.aws.events import LambdaContext
ca_loads = []
load_ca = ssl.SSLContext.load_verify_locations
def counted(self, *args, **kwargs):
    ca_loads.append(kwargs.get("cafile") or (args[0] if args else None))
    return load_ca(self, *args, **kwargs)
ssl.SSLContext.load_verify_locations = counted
import ucf.aws.handlers.{module} as handler
response = handler.handler(json.loads(sys.argv[1]), LambdaContext())
loaded = [m for m in {never!r} if m in sys.modules and sys.modules[m] is not None]
dataclasses = sorted(
    name + "." + cls.__qualname__
    for name, module in list(sys.modules.items())
    if name.startswith("ucf.") and module is not None
    for cls in vars(module).values()
    if isinstance(cls, type) and cls.__module__ == name
    and "__dataclass_fields__" in cls.__dict__ and "__record_repr__" not in cls.__dict__
)
print(json.dumps({{
    "response": response, "loaded": loaded, "dataclasses": dataclasses, "ca_loads": len(ca_loads)
}}))
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
# sanitiser's fast path stays a wire object: no signal models. The stored descriptor
# is read as a plain view (ucf.core.descriptor_view): no pydantic, no descriptor models;
# the body is parsed by json (pydantic-core's parser waits until a process has read enough).
NEVER_FOR_A_DELIVERY = (
    "pydantic",
    "pydantic_core",
    "ucf.core.descriptor",
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
    return _probe(FIRST_CALL.format(module=module, never=never), json.dumps(event))


def _probe(code: str, *args: str) -> dict[str, Any]:
    """``python -c code *args`` from the checkout; the JSON object its last line prints."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_first_poll_schedule_and_delivery_import_only_what_their_job_needs(
    lab: Lab, github: GitHubFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.connect_github(github)
    monkeypatch.setenv("UCF_SINK_HTTP", "http://127.0.0.1:9/unused")  # delivery's job exists

    tick = first_call("schedule", scheduled_event(datetime.now(UTC)))
    assert (tick["response"], tick["loaded"]) == ({"due": 1, "enqueued": 1, "nextDueAt": None}, [])
    assert tick["dataclasses"] == []

    messages = lab.receive()
    polled = first_call("poll_worker", lab.sqs_event(messages))
    assert (polled["response"], polled["loaded"]) == ({"batchItemFailures": []}, [])
    assert polled["dataclasses"] == []
    # Every endpoint here is plain http (the GitHub fake, DynamoDB, Secrets Manager):
    # no CA bundle is parsed for them (~15 ms of CPU each time).
    assert polled["ca_loads"] == 0
    assert lab.signals(), "the worker's poll stored the instance's issues"

    delivery = first_call("delivery", scheduled_event(datetime.now(UTC)))
    assert (delivery["loaded"], delivery["dataclasses"]) == ([], [])
    assert delivery["ca_loads"] == 0  # a plain-http sink
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
    assert (delivered["loaded"], delivered["dataclasses"]) == ([], [])
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


RECORDED_CALL = """
import json, sys
from tests.aws import aws_calls
aws_calls.record(together=json.loads(sys.argv[2]), during=json.loads(sys.argv[3]))
from tests.aws.events import LambdaContext
import ucf.aws.handlers.{module} as handler
response = handler.handler(json.loads(sys.argv[1]), LambdaContext())
print(json.dumps({{
    "response": response,
    "calls": aws_calls.CALLS,
    "apart": aws_calls.APART,
    "not_during": aws_calls.NOT_DURING,
}}))
"""


def recorded_first_call(
    module: str,
    event: dict[str, object],
    together: list[tuple[str, ...]],
    during: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``module``'s first invocation in a fresh interpreter, its AWS calls recorded
    (tests/aws/aws_calls.py): each group of ``together`` must be in flight at once,
    and each call of ``during`` while its module is imported."""
    return _probe(
        RECORDED_CALL.format(module=module),
        json.dumps(event),
        json.dumps(together),
        json.dumps(during or {}),
    )


def signed_issue_event(number: int, delivery: str) -> dict[str, Any]:
    body = json.dumps(
        {
            "action": "opened",
            "issue": {
                "id": 4200 + number,
                "number": number,
                "title": "Cold delivery",
                "updated_at": "2025-03-01T12:00:00Z",
                "labels": [],
            },
        }
    ).encode()
    mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return http_api_event(
        "POST",
        "/api/webhooks/github-issues/proj-1",
        headers={
            "content-type": "application/json",
            "x-github-event": "issues",
            "x-github-delivery": delivery,
            "x-hub-signature-256": f"sha256={mac}",
        },
        body=body,
    )


def test_a_first_webhook_delivery_makes_eleven_aws_calls_in_seven_rounds(
    lab: Lab, github: GitHubFake
) -> None:
    """On AWS each call is a round trip: a call that comes back, or one made after
    another it used to run beside, fails this test (docs/aws.md lists them)."""
    lab.connect_github(github)

    delivered = recorded_first_call(
        "api",
        signed_issue_event(43, "cold-calls-1"),
        together=[
            # 1. Where it goes: the connector and the instance, side by side (404s).
            ("GetItem CONNECTOR/DESCRIPTOR", "GetItem PROJECT/CONNECTOR_INSTANCE"),
            # 2. What it is verified with: the instance's secret and the registered
            #    OAuth app of a connector with a consent flow.
            ("GetSecretValue", "GetItem RECORD/RECORD"),
            # 3-4. The instance's budget (a read, then a conditional write: 429s).
            # 5-7. The ingest (commit, derive, finish), with the instance's health
            #    (the first verified delivery a process sees) written beside it.
            ("PutItem DEDUP/DEDUP", "UpdateItem PROJECT/CONNECTOR_INSTANCE"),
        ],
    )

    assert delivered["response"]["statusCode"] == 200, delivered["response"]
    assert delivered["apart"] == []
    assert Counter(delivered["calls"]) == Counter(
        {
            "GetItem CONNECTOR/DESCRIPTOR": 1,
            "GetItem PROJECT/CONNECTOR_INSTANCE": 2,  # the target; the health write's read
            "GetSecretValue": 1,
            "GetItem RECORD/RECORD": 1,
            "GetItem RATE/BUCKET": 1,
            "PutItem RATE/BUCKET": 1,
            "PutItem DEDUP/DEDUP": 1,
            "UpdateItem PROJECT/CONNECTOR_INSTANCE": 1,
            "BatchWriteItem 2": 1,  # the signal and its pointer (no sink, no outbox entry)
            "BatchWriteItem 1": 1,  # the dedup item, finished
        }
    )
    assert [signal["summary"] for signal in lab.signals()] == ["#43 Cold delivery"]


def test_a_first_poll_reads_its_connector_secrets_and_checkpoint_once_side_by_side(
    lab: Lab, github: GitHubFake
) -> None:
    lab.connect_github(github)
    first_call("schedule", scheduled_event(datetime.now(UTC)))

    polled = recorded_first_call(
        "poll_worker",
        lab.sqs_event(lab.receive()),
        together=[
            # Under the lease: the credentials (the instance's secret, the registered
            # OAuth app), the checkpoint and the first request's token (the bucket's read).
            (
                "GetSecretValue",
                "GetItem RECORD/RECORD",
                "GetItem PROJECT/CHECKPOINT",
                "GetItem RATE/BUCKET",
            ),
            ("BatchWriteItem 25", "BatchWriteItem 25"),  # a page's derived items
        ],
    )

    assert polled["response"] == {"batchItemFailures": []}
    assert polled["apart"] == []
    calls = Counter(polled["calls"])
    # Read once to decide it is due, then passed on (to the poll, to the credentials).
    assert calls["GetItem CONNECTOR/DESCRIPTOR"] == 1
    assert (calls["GetSecretValue"], calls["GetItem RECORD/RECORD"]) == (1, 1)
    assert calls["GetItem PROJECT/CHECKPOINT"] == 1
    # The instance is read to lease and poll it; its health after a success is
    # written without reading it again.
    assert calls["GetItem PROJECT/CONNECTOR_INSTANCE"] == 1
    # Each page's derived items (two a signal) go in chunks of 25 sent side by side.
    assert calls["PutItem DEDUP/DEDUP"] == len(lab.signals()) > 25, calls


def test_a_first_poll_takes_its_lease_beside_its_connector_read_while_the_poll_machinery_loads(
    lab: Lab, github: GitHubFake
) -> None:
    """The connector's read and the lease's write are a poll's first two round trips: sent
    side by side, before the HTTP stack and the poll machinery (~60 ms of CPU) are
    imported, so they wait for DynamoDB meanwhile rather than one after the other,
    after them."""
    lab.connect_github(github)
    first_call("schedule", scheduled_event(datetime.now(UTC)))

    polled = recorded_first_call(
        "poll_worker",
        lab.sqs_event(lab.receive()),
        together=[("GetItem CONNECTOR/DESCRIPTOR", "UpdateItem LEASE/LEASE")],
        during={
            "GetItem CONNECTOR/DESCRIPTOR": "ucf.service.poll",
            "UpdateItem LEASE/LEASE": "ucf.service.poll",
        },
    )

    assert polled["response"] == {"batchItemFailures": []}
    assert (polled["apart"], polled["not_during"]) == ([], [])
    assert sorted(polled["calls"][:2]) == ["GetItem CONNECTOR/DESCRIPTOR", "UpdateItem LEASE/LEASE"]
    assert polled["calls"].count("UpdateItem LEASE/LEASE") == 1  # taken once, not again
    assert lab.signals(), "the poll stored the instance's issues"


# The patterns a first invocation compiles itself, the artifact's regex cache in place
# (ucf.aws.regex_cache): re's parser runs only for a pattern the cache does not hold.
COMPILED_ITSELF = """
import json, re._parser, sys
from tests.aws.events import LambdaContext
parse, compiled = re._parser.parse, []
def counted(pattern, flags=0, state=None):
    compiled.append(str(pattern)[:60])
    return parse(pattern, flags, state)
re._parser.parse = counted
import ucf.aws.handlers.{module} as handler
response = handler.handler(json.loads(sys.argv[1]), LambdaContext())
print(json.dumps({{"response": response, "compiled": compiled}}))
"""


def test_a_first_poll_with_the_artifacts_regex_cache_compiles_almost_no_pattern_itself(
    lab: Lab, github: GitHubFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "regex-cache.marshal"
    subprocess.run(  # as make -C deploy app builds the artifact's
        [sys.executable, "-m", "ucf.aws.regex_cache", str(cache)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    lab.connect_github(github)
    first_call("schedule", scheduled_event(datetime.now(UTC)))
    monkeypatch.setenv("UCF_REGEX_CACHE", str(cache))

    polled = _probe(
        COMPILED_ITSELF.format(module="poll_worker"), json.dumps(lab.sqs_event(lab.receive()))
    )

    assert polled["response"] == {"batchItemFailures": []}
    assert lab.signals(), "the worker's poll stored the instance's issues"
    # ~200 without the cache (urllib3, botocore, httpx, h11, the standard library, ucf);
    # left: a few compiled on first use (a redaction rule, botocore's region check).
    assert len(polled["compiled"]) <= 8, polled["compiled"]
