"""Mail too large for SNS, read back from the S3 bucket an SES S3 action stored it in.

SNS notifications carry at most 150 KB of email; larger mail must be stored
by an S3 action, whose notification names ``bucketName`` and ``objectKey``
(the SES message id, after the rule's prefix) and carries no ``content``
(https://docs.aws.amazon.com/ses/latest/dg/receiving-email-action-s3.html).
When the instance names its ``s3Bucket``, ucf reads the object with boto3:
the instance's access key if it has one, otherwise the standard AWS
credential chain (environment, profile, instance or task role); boto3
honours ``AWS_ENDPOINT_URL_S3`` (and ``AWS_ENDPOINT_URL``) for an
S3-compatible endpoint. Only the configured bucket is ever read, whatever a
notification names.

The S3 client is made once per set of credentials (and AWS environment) and
reused by later deliveries: a new boto3 session and client for each large mail
cost tens of milliseconds of CPU (the session parses botocore's data files
again, and the client's first HTTPS connection loads its CA bundle). A client
of the standard chain keeps the keys it read (a shared credentials file
rotated under a running ucf): when S3 refuses them as unknown or expired, the
read is made again with a new client, which reads the chain again.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = ["MAX_OBJECT_BYTES", "S3Fetched", "S3MailStore"]

MAX_OBJECT_BYTES: Final = 40 * 1024 * 1024
"""SES accepts messages up to 40 MB; nothing larger is read."""

T = TypeVar("T")

_CLIENTS_KEPT: Final = 16
"""S3 clients kept (one per region, access key and AWS environment), the oldest dropped."""
_clients: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_clients_lock = threading.Lock()
_STALE_KEY_CODES: Final = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
"""S3's refusals of the keys themselves: a chain's client may hold ones rotated since."""


@dataclass(frozen=True, slots=True)
class S3Fetched:
    """The object's bytes, or why there are none (a note for the signal)."""

    body: bytes | None
    note: str | None = None


class S3MailStore:
    """Reads SES-stored messages from one bucket (the instance's ``s3Bucket``)."""

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None,
        credentials: Mapping[str, str],
    ) -> None:
        self.bucket = bucket
        self._region = region or None
        self._credentials = dict(credentials)

    def _call(self, operation: Callable[[Any], T]) -> T:
        """``operation`` with this store's kept client; once more with a new one when S3
        refuses the keys a standard-chain client read (they may have been rotated since
        it was made). The instance's own keys are what a new client would sign with too."""
        from botocore.exceptions import ClientError

        cache_key, explicit, client = self._client()
        try:
            return operation(client)
        except ClientError as error:
            if explicit or error.response.get("Error", {}).get("Code") not in _STALE_KEY_CODES:
                raise
        with _clients_lock:
            if _clients.get(cache_key) is client:
                del _clients[cache_key]
        return operation(self._client()[2])

    def _client(self) -> tuple[tuple[Any, ...], bool, Any]:
        """This store's S3 client, made by the first delivery that needs it and kept;
        with its cache key, and whether it signs with the instance's own keys."""
        key, secret = self._credentials.get("accessKeyId"), self._credentials.get("secretAccessKey")
        explicit: dict[str, Any] = {}
        if key and secret:
            explicit = {"aws_access_key_id": key, "aws_secret_access_key": secret}
            token = self._credentials.get("sessionToken")
            if token:
                explicit["aws_session_token"] = token
        # The AWS_* variables choose the endpoint, region and credential chain: a client
        # made under others (a test's endpoint, a changed profile) is not the one wanted.
        environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        cache_key = (self._region, tuple(sorted(explicit.items())), environment)
        with _clients_lock:
            client = _clients.get(cache_key)
            if client is not None:
                _clients.move_to_end(cache_key)
                return cache_key, bool(explicit), client
            client = self._new_client(explicit)
            _clients[cache_key] = client
            while len(_clients) > _CLIENTS_KEPT:
                _clients.popitem(last=False)
            return cache_key, bool(explicit), client

    def _new_client(self, explicit: Mapping[str, Any]) -> Any:
        import boto3  # imported where used: most instances never read S3
        from botocore.config import Config

        config = Config(
            connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"}
        )
        return boto3.session.Session().client(
            "s3", region_name=self._region, config=config, **explicit
        )

    def _get(self, key: str) -> S3Fetched:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{key}"
        try:
            response = self._call(lambda client: client.get_object(Bucket=self.bucket, Key=key))
            size = int(response.get("ContentLength", 0))
            if size > MAX_OBJECT_BYTES:
                response["Body"].close()
                return S3Fetched(
                    None, f"{where} is {size} bytes, more than the {MAX_OBJECT_BYTES} ucf reads"
                )
            body: bytes = response["Body"].read(MAX_OBJECT_BYTES + 1)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            return S3Fetched(None, f"could not read {where}: {code}")
        except BotoCoreError as error:
            return S3Fetched(None, f"could not read {where}: {type(error).__name__}")
        return S3Fetched(body[:MAX_OBJECT_BYTES])

    async def fetch(self, action: Mapping[str, Any], message_id: str | None) -> S3Fetched:
        """The message an S3 action stored, if it is in this store's bucket."""
        bucket = action.get("bucketName")
        if bucket != self.bucket:
            return S3Fetched(
                None,
                f"the message is stored in bucket {bucket!r}, not the configured s3Bucket "
                f"{self.bucket!r}; it was not read",
            )
        key = action.get("objectKey")
        if not isinstance(key, str) or not key:
            prefix = action.get("objectKeyPrefix")
            key = f"{prefix or ''}{message_id or ''}"
        if not key:
            return S3Fetched(None, "the S3 action names no object key")
        return await asyncio.to_thread(self._get, key)

    def check(self) -> str | None:
        """One ``HeadBucket``: None when the bucket is readable, else why not."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._call(lambda client: client.head_bucket(Bucket=self.bucket))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            return f"s3://{self.bucket}: {code}"
        except BotoCoreError as error:
            return f"s3://{self.bucket}: {type(error).__name__}"
        return None
