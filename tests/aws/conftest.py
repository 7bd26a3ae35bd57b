"""An AWS account on loopback: dynalite for DynamoDB, moto's server for Secrets Manager and SQS.

Each test gets its own table, secret prefix, API token secret and FIFO poll
queue (with its dead-letter queue), and the environment a deployed function
would have; handlers are then invoked in-process as Lambda invokes them. At
the end every handler's execution environment is closed, so the next test
starts cold, with its own environment.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.aws.events import HttpReply, LambdaContext, http_api_event, sqs_event
from tests.stores.dynalite import dynamodb_url, unique_table_name
from tests.stores.moto_server import AWS_ENV_TO_CLEAR, DUMMY_AWS_ENV
from ucf.aws.container import close_all
from ucf.aws.handlers import api
from ucf.fakes.github import GOOD_TOKEN, OWNER, REPO, WEBHOOK_SECRET, GitHubFake
from ucf.stores.url import open_store

PROJECT = "proj-1"
CONNECTOR = "github-issues"


@dataclass(frozen=True)
class Endpoints:
    dynamodb: str
    moto: str


@pytest.fixture(scope="session")
def endpoints(dynalite_endpoint: str, moto_endpoint: str) -> Endpoints:
    """The session's dynalite and moto (tests/conftest.py): each lab has its own names."""
    return Endpoints(dynalite_endpoint, moto_endpoint)


@dataclass
class Lab:
    """One deployment's worth of AWS resources, and helpers to drive its functions."""

    endpoints: Endpoints
    table: str
    secret_prefix: str
    token: str
    token_secret_arn: str
    queue_url: str
    queue_arn: str
    dead_letter_url: str
    sqs: Any
    secretsmanager: Any
    environ: dict[str, str] = field(default_factory=dict)

    # -- the API function, as API Gateway calls it

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
        token: bool = True,
        base64_body: bool = False,
    ) -> HttpReply:
        sent = dict(headers or {})
        if token:
            sent["authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("content-type", "application/json")
        event = http_api_event(
            method, path, query=query, headers=sent, body=body, base64_body=base64_body
        )
        return HttpReply.of(api.handler(event, LambdaContext(function_name="ucf-api")))

    def connect_github(self, fake: GitHubFake, project: str = PROJECT) -> dict[str, Any]:
        reply = self.call(
            "POST",
            f"/api/projects/{project}/instances",
            json_body={
                "connectorId": CONNECTOR,
                "credentials": {"token": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET},
                "config": {"baseUrl": fake.base_url, "owner": OWNER, "repo": REPO},
            },
        )
        assert reply.status == 201, reply.body
        created: dict[str, Any] = reply.json()
        return created

    def signals(self, project: str = PROJECT) -> list[dict[str, Any]]:
        reply = self.call("GET", f"/api/projects/{project}/signals", query="limit=500")
        assert reply.status == 200, reply.body
        items: list[dict[str, Any]] = reply.json()["items"]
        return items

    # -- the poll queue, as Lambda's SQS poller sees it

    def receive(self) -> list[dict[str, Any]]:
        """Every message visible now (each becomes invisible, as for a Lambda poller)."""
        found: list[dict[str, Any]] = []
        while True:
            reply = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                VisibilityTimeout=60,
            )
            batch = reply.get("Messages", [])
            if not batch:
                return found
            found += batch

    def sqs_event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return sqs_event(messages, self.queue_arn)

    def settle(self, messages: list[dict[str, Any]], response: dict[str, Any]) -> None:
        """What the event source mapping does with a partial batch response: delete the rest."""
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in failed]
        for message in done:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def credential_secrets(self) -> set[str]:
        """ARNs of the connector credential secrets ucf made under this deployment's prefix."""
        reply = self.secretsmanager.list_secrets(
            Filters=[{"Key": "name", "Values": [self.secret_prefix]}], MaxResults=100
        )
        return {entry["ARN"] for entry in reply["SecretList"]}


@pytest.fixture
def lab(endpoints: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    suffix = uuid.uuid4().hex[:10]
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoints.moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoints.moto)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoints.moto)
    secretsmanager = boto3.client(
        "secretsmanager", region_name="us-east-1", endpoint_url=endpoints.moto
    )
    dead_letter_url = sqs.create_queue(
        QueueName=f"ucf-polls-dlq-{suffix}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(
        QueueUrl=dead_letter_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"ucf-polls-{suffix}.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "1800",
            "RedrivePolicy": (
                f'{{"deadLetterTargetArn":"{dead_letter_arn}","maxReceiveCount":"3"}}'
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    token = "ucf_" + secrets.token_urlsafe(32)
    token_secret_arn = secretsmanager.create_secret(
        Name=f"ucf-admin/{suffix}/api-token", SecretString=token
    )["ARN"]
    table = unique_table_name("ucf-aws")
    prefix = f"ucf/test-{suffix}/"
    environ = {
        "UCF_STORE": dynamodb_url(endpoints.dynamodb, table),
        "UCF_SECRET_STORE": (
            f"aws-secretsmanager://?region=us-east-1&endpoint={endpoints.moto}&prefix={prefix}"
        ),
        "UCF_API_TOKEN_SECRET": token_secret_arn,
        "UCF_POLL_QUEUE_URL": queue_url,
        "UCF_ALLOW_HOSTS": "127.0.0.1",
        "UCF_DATA_DIR": str(tmp_path / "lambda-tmp"),
    }
    for name in (
        "UCF_API_TOKEN",
        "UCF_SINK_JSONL",
        "UCF_SINK_HTTP",
        "UCF_SINK_SQS",
        "UCF_SINK_EVENTBRIDGE",
        "AWS_ENDPOINT_URL_EVENTBRIDGE",
        "AWS_ENDPOINT_URL_EVENTS",
        "UCF_POLL_INTERVAL_OVERRIDE",
        "UCF_PUBLIC_URL",
        "UCF_API_BASE_PATH",
        "UCF_LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    asyncio.run(_create_table(environ["UCF_STORE"]))  # as the template does: no function does
    lab = Lab(
        endpoints=endpoints,
        table=table,
        secret_prefix=prefix,
        token=token,
        token_secret_arn=token_secret_arn,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_url=dead_letter_url,
        sqs=sqs,
        secretsmanager=secretsmanager,
        environ=environ,
    )
    try:
        yield lab
    finally:
        close_all()
        sqs.close()
        secretsmanager.close()


async def _create_table(url: str) -> None:
    store = open_store(url)
    try:
        await store.init()
    finally:
        await store.close()


@pytest.fixture
def github() -> Iterator[GitHubFake]:
    with GitHubFake(datetime.now(UTC)) as fake:
        yield fake
