"""One boto3 DynamoDB client per store, driven from asyncio, with bounded retries.

boto3 is synchronous, so every call runs on the store's own thread pool (sized
to botocore's connection pool, so threads never queue for a socket). botocore's
own retries are switched off: it would retry a conditional write whose first
attempt timed out *after* succeeding, and the retry would then fail its
condition and turn a fresh signal into a "duplicate". We retry only what is
safe to repeat — throttling, which DynamoDB guarantees was not applied — with
exponential backoff and full jitter, a bounded number of times. Everything
else becomes one typed ``StoreError`` whose message names the problem and the fix.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import botocore.config
import botocore.exceptions

from ucf.core.records import datarecord
from ucf.core.side_by_side import settled
from ucf.stores.aws_session import aws_client
from ucf.stores.errors import (
    InvalidRecord,
    StoreConfigError,
    StoreError,
    StoreNotInitialised,
    StoreUnavailable,
)

Item = dict[str, Any]
"""A DynamoDB item in the wire format: ``{"PK": {"S": "..."}, ...}``."""

# DynamoDB guarantees a throttled request was not applied, so these are safe to repeat.
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "AccessDeniedException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
    }
)
_UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.HTTPClientError,
)


_BATCH_WRITE_MAX = 25
_BATCH_GET_MAX = 100

T = TypeVar("T")


def _key_of(request: Item) -> str:
    body = request.get("PutRequest", {}).get("Item") or request.get("DeleteRequest", {}).get("Key")
    return json.dumps([body["PK"], body["SK"]])


def _api_name(operation: str) -> str:
    """boto3's ``get_item`` as DynamoDB's docs and errors call it: ``GetItem``."""
    return "".join(word[:1].upper() + word[1:] for word in operation.split("_"))


class ConditionFailed(Exception):
    """A conditional write found the item not in the state it required.

    Internal to the DynamoDB store: each caller turns it into what it means
    there (a duplicate signal, a lost lease race, a stale checkpoint).
    """


class DynamoError(StoreError):
    """A DynamoDB error with no better-typed meaning; ``code`` is DynamoDB's error code."""

    def __init__(self, code: str, problem: str, fix: str | None = None) -> None:
        self.code = code
        super().__init__(problem, fix)


@datarecord(slots=False)
class RetryPolicy:
    """Bounded exponential backoff with full jitter for throttled requests."""

    attempts: int = 8
    base_s: float = 0.05
    cap_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """Pause before retry number ``attempt`` (1-based)."""
        return random.uniform(0.0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))


@datarecord(slots=False)
class DynamoTarget:
    """Where the table lives; parsed from ``dynamodb://TABLE?region=…&endpoint=…``."""

    table: str
    region: str | None = None
    endpoint: str | None = None

    @property
    def url(self) -> str:
        query = "&".join(
            f"{name}={value}"
            for name, value in (("region", self.region), ("endpoint", self.endpoint))
            if value
        )
        return f"dynamodb://{self.table}" + (f"?{query}" if query else "")

    @property
    def where(self) -> str:
        """The endpoint for messages, without any user:password part."""
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return f"AWS region {self.region or '(default from the environment)'}"


class DynamoClient:
    """Async facade over one boto3 client: single calls, retried and error-mapped."""

    def __init__(
        self,
        target: DynamoTarget,
        *,
        max_workers: int = 16,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.target = target
        self.retry = retry or RetryPolicy()
        config = botocore.config.Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max_workers,
            tcp_keepalive=True,
            # botocore's walk of every parameter against the model (each attribute of
            # each item) was ~8 % of a conditional put's CPU and ~38 % of a 25-item
            # BatchWriteItem's (0.83 -> 0.77 ms, 2.9 -> 1.8 ms): ~5 ms of a first
            # poll's 35 calls, and of every later page's. Nothing is lost
            # without it: a name the model lacks still stops the request before it
            # is sent (botocore's serializer cannot place it), and DynamoDB refuses
            # a malformed value itself (ValidationException: a DynamoError here).
            parameter_validation=False,
        )
        try:
            # The process's shared session (created under a lock; the client is thread-safe).
            self._client = aws_client(
                "dynamodb",
                region_name=target.region,
                endpoint_url=target.endpoint,
                config=config,
            )
        except botocore.exceptions.NoRegionError as exc:
            raise StoreConfigError(
                "no AWS region for the DynamoDB store",
                fix=f"add ?region=<region> to the store URL (dynamodb://{target.table}?region=eu-west-1) or set AWS_REGION",
            ) from exc
        except ValueError as exc:  # botocore rejects a malformed endpoint URL this way
            raise StoreConfigError(
                f"the DynamoDB endpoint {target.endpoint!r} is not a valid URL: {exc}",
                fix="use endpoint=http://host:port in the store URL",
            ) from exc
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ucf-ddb")

    @property
    def table(self) -> str:
        return self.target.table

    @property
    def events(self) -> Any:
        """botocore's event system of the client (lets tests inject wire-level faults)."""
        return self._client.meta.events

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._client.close()

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Run one DynamoDB operation (snake_case boto3 name), retrying throttling."""
        method: Callable[..., dict[str, Any]] = getattr(self._client, operation)
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await loop.run_in_executor(self._executor, lambda: method(**params))
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in THROTTLING_CODES and attempt < self.retry.attempts:
                    await asyncio.sleep(self.retry.delay(attempt))
                    continue
                raise self._translate(operation, exc, code, attempt) from exc
            except botocore.exceptions.NoCredentialsError as exc:
                raise StoreUnavailable(
                    f"no AWS credentials found for DynamoDB at {self.target.where}",
                    fix="set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                    "(any values work for a local dynalite)",
                ) from exc
            except _UNREACHABLE as exc:
                raise StoreUnavailable(
                    f"cannot reach DynamoDB at {self.target.where} ({type(exc).__name__})",
                    fix="check the endpoint and region in the store URL and that the server is running",
                ) from exc

    async def query_all(self, **params: Any) -> list[Item]:
        """Every item a query matches, following ``LastEvaluatedKey``."""
        items: list[Item] = []
        while True:
            page = await self.call("query", TableName=self.table, **params)
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if last is None:
                return items
            params["ExclusiveStartKey"] = last

    async def batch_write(self, requests: Sequence[Item]) -> None:
        """Put/delete requests in chunks of 25, re-sending what DynamoDB left unprocessed.

        BatchWriteItem refuses two requests for one key in a call; the last one wins,
        so no two chunks touch one item and they are sent side by side: a page of
        20 signals (60 derived items) is one round trip instead of three
        (``bench/coldstart.py``). It returns once every chunk is written, and a
        chunk's error is raised only after the others are done, so nothing is
        still being written when the caller goes on.
        """
        unique = list({_key_of(r): r for r in requests}.values())
        chunks = [
            unique[start : start + _BATCH_WRITE_MAX]
            for start in range(0, len(unique), _BATCH_WRITE_MAX)
        ]
        if len(chunks) == 1:
            await self._write_chunk(chunks[0])
            return
        await settled(*(self._write_chunk(chunk) for chunk in chunks))

    async def _write_chunk(self, pending: list[Item]) -> None:
        attempt = 0
        while pending:
            reply = await self.call("batch_write_item", RequestItems={self.table: pending})
            pending = reply.get("UnprocessedItems", {}).get(self.table, [])
            if pending:
                attempt += 1
                await self._backoff("BatchWriteItem", attempt)

    async def batch_get(self, keys: Sequence[Item], *, consistent: bool = True) -> list[Item]:
        """The items that exist among ``keys`` (in no particular order), 100 per call."""
        unique = list({json.dumps(k, sort_keys=True): k for k in keys}.values())
        found: list[Item] = []
        for start in range(0, len(unique), _BATCH_GET_MAX):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": unique[start : start + _BATCH_GET_MAX],
                    "ConsistentRead": consistent,
                }
            }
            attempt = 0
            while request:
                reply = await self.call("batch_get_item", RequestItems=request)
                found.extend(reply.get("Responses", {}).get(self.table, []))
                request = reply.get("UnprocessedKeys") or {}
                if request:
                    attempt += 1
                    await self._backoff("BatchGetItem", attempt)
        return found

    async def concurrently(self, calls: Iterable[Awaitable[T]]) -> list[T]:
        """Run single-item calls side by side (the pool bounds how many are in flight);
        a failure is raised once every call is over, none still writing."""
        return await settled(*calls)

    async def _backoff(self, operation: str, attempt: int) -> None:
        """Pause before re-sending the unprocessed part of a batch call."""
        if attempt >= self.retry.attempts:
            raise self._throttled(operation, attempt)
        await asyncio.sleep(self.retry.delay(attempt))

    def _translate(
        self, operation: str, exc: botocore.exceptions.ClientError, code: str, attempts: int
    ) -> Exception:
        message = exc.response.get("Error", {}).get("Message", "") or code
        if code == "ConditionalCheckFailedException":
            return ConditionFailed(message)
        if code in THROTTLING_CODES:
            return self._throttled(operation, attempts)
        if code == "ResourceNotFoundException":
            return StoreNotInitialised(
                f"the DynamoDB table '{self.target.table}' does not exist at {self.target.where}",
                fix=f"run `ucf store init --store '{self.target.url}'`",
            )
        if code in _CREDENTIAL_CODES:
            return StoreUnavailable(
                f"DynamoDB at {self.target.where} refused the request ({code})",
                fix="check the AWS credentials and the IAM permissions on the table",
            )
        if code == "ValidationException" and "size" in message.lower():
            return InvalidRecord(
                f"a record is too large for DynamoDB ({message})",
                fix="DynamoDB items are limited to 400 KB; trim the raw payload in the connector's mapping",
            )
        return DynamoError(code, f"DynamoDB {_api_name(operation)} failed: {code}: {message}")

    def _throttled(self, operation: str, attempts: int) -> StoreUnavailable:
        return StoreUnavailable(
            f"DynamoDB kept throttling {_api_name(operation)} on table '{self.target.table}' "
            f"after {attempts} attempts",
            fix="raise the table's provisioned capacity or switch it to on-demand; "
            "the operation is safe to retry later",
        )
