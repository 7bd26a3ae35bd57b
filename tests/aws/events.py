"""Lambda events as AWS sends them, and the context object Lambda passes beside them.

Shapes follow the AWS documentation: "Working with AWS Lambda proxy
integrations for HTTP APIs" (payload format 2.0), "Lambda proxy integration"
for REST APIs (format 1.0), "Using Lambda with Amazon SQS" and "EventBridge
scheduled events". Only what API Gateway really fills in is filled in.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

ACCOUNT = "123456789012"
REGION = "us-east-1"
API_ID = "r3pmxmplak"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
SOURCE_IP = "203.0.113.7"
USER_AGENT = "GitHub-Hookshot/a8d9b36"


@dataclass
class LambdaContext:
    """What Lambda passes as the handler's second argument (the parts handlers use)."""

    function_name: str = "ucf-test"
    timeout_seconds: float = 300.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        left = self.timeout_seconds - (time.monotonic() - self.started)
        return max(int(left * 1000), 0)


def _request_times() -> tuple[str, int]:
    now = datetime.now(UTC)
    return now.strftime("%d/%b/%Y:%H:%M:%S +0000"), int(now.timestamp() * 1000)


def _headers(headers: dict[str, str] | None, body: bytes | None) -> dict[str, str]:
    merged = {
        "host": DOMAIN,
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
        "x-forwarded-for": SOURCE_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    merged.update({name.lower(): value for name, value in (headers or {}).items()})
    if body is not None:
        merged["content-length"] = str(len(body))
    return merged


def _encoded_body(body: bytes | None, base64_body: bool) -> str | None:
    if body is None:
        return None
    return base64.b64encode(body).decode("ascii") if base64_body else body.decode("utf-8")


def http_api_event(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    base64_body: bool = False,
    cookies: list[str] | None = None,
    stage: str = "$default",
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for the template's ``ANY /{proxy+}`` route.

    ``path`` is the path the client sent; the event holds it decoded, as API Gateway
    hands it over ("API Gateway decodes URL-encoded request parameters before passing
    them to your backend integration": AWS, "Create routes for HTTP APIs in API
    Gateway"): ``rawPath`` and ``requestContext.http.path`` alike. On a ``stage``
    other than ``$default`` the client's path starts with it (``/dev/…``), and so do
    both, while the route's ``proxy`` parameter does not.
    """
    route = "ANY /" if path == "/" else "ANY /{proxy+}"
    proxied = unquote(path)
    path = proxied if stage == "$default" else f"/{stage}{proxied}"
    when, epoch = _request_times()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": _headers(headers, body),
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": DOMAIN,
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": SOURCE_IP,
                "userAgent": USER_AGENT,
            },
            "requestId": uuid.uuid4().hex[:16] + "=",
            "routeKey": route,
            "stage": stage,
            "time": when,
            "timeEpoch": epoch,
        },
        "isBase64Encoded": base64_body,
    }
    if proxied != "/":
        event["pathParameters"] = {"proxy": proxied.lstrip("/")}
    if query:
        event["queryStringParameters"] = {
            name: ",".join(values) for name, values in parse_qs(query).items()
        }
    if cookies:
        event["cookies"] = cookies
    encoded = _encoded_body(body, base64_body)
    if encoded is not None:
        event["body"] = encoded
    return event


def rest_api_event(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    base64_body: bool = False,
    stage: str = "prod",
) -> dict[str, Any]:
    """A REST API (payload 1.0) proxy event: ``path`` without the stage, as API Gateway sends it."""
    merged = _headers(headers, body)
    when, epoch = _request_times()
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": merged,
        "multiValueHeaders": {name: [value] for name, value in merged.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "2gxmpl",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "extendedRequestId": "JJbxmplHYosFVYQ=",
            "requestTime": when,
            "path": f"/{stage}{path}",
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": API_ID,
            "requestTimeEpoch": epoch,
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": SOURCE_IP, "userAgent": USER_AGENT},
            "domainName": DOMAIN,
            "apiId": API_ID,
        },
        "body": _encoded_body(body, base64_body),
        "isBase64Encoded": base64_body,
    }


@dataclass(frozen=True)
class HttpReply:
    """An API Gateway proxy response, decoded as API Gateway decodes it for the client."""

    status: int
    headers: dict[str, str]
    body: bytes
    cookies: tuple[str, ...] = ()

    @classmethod
    def of(cls, response: dict[str, Any]) -> HttpReply:
        raw = response.get("body") or ""
        body = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
        return cls(int(response["statusCode"]), headers, body, tuple(response.get("cookies", ())))

    def json(self) -> Any:
        return json.loads(self.body)


def scheduled_event(at: datetime, *, rule: str = "ucf-poll-schedule") -> dict[str, Any]:
    """An EventBridge "Scheduled Event" for the minute ``at``."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS poller builds from messages ``ReceiveMessage`` returned."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


def dynamodb_stream_event(
    keys: list[dict[str, Any]], table_stream_arn: str, *, event_name: str = "INSERT"
) -> dict[str, Any]:
    """The event Lambda's DynamoDB Streams poller builds for a ``KEYS_ONLY`` stream
    ("Using AWS Lambda with Amazon DynamoDB"): one record per written item's key."""
    now = int(time.time())
    return {
        "Records": [
            {
                "eventID": uuid.uuid4().hex,
                "eventName": event_name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "ApproximateCreationDateTime": now,
                    "Keys": key,
                    "SequenceNumber": str(100000000000000000000 + number),
                    "SizeBytes": len(json.dumps(key)),
                    "StreamViewType": "KEYS_ONLY",
                },
                "eventSourceARN": table_stream_arn,
            }
            for number, key in enumerate(keys)
        ]
    }
