"""The cloud secret store: one AWS Secrets Manager secret per credential set.

A new secret is named ``<prefix><ULID>`` (prefix ``ucf/`` by default, so IAM
policies can scope ucf to ``arn:aws:secretsmanager:*:*:secret:ucf/*``); its
SecretString is the credential set as JSON, and its ARN is the ref instances
keep. Rotation writes a new version (``PutSecretValue``), so AWS keeps the
previous one as ``AWSPREVIOUS``.

Deletion uses ``ForceDeleteWithoutRecovery``: deleting a connector instance
should end the life of its credentials there and then. A recovery window would
keep a credential the user believes gone restorable for 7–30 days (and billed),
and the credentials can always be reissued by the provider. Operators who want
a safety net should rely on AWS Backup or versioned exports, not on ucf.

boto3 is synchronous, so calls run in worker threads. Throttling and transient
failures are retried by botocore's "standard" retry mode (exponential backoff
with jitter, bounded by ``max_attempts``); what still fails is mapped to our
typed errors with a message naming the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

from ucf.stores.aws_session import aws_client
from ucf.stores.errors import StoreError
from ucf.stores.secrets.base import (
    SecretDecryptionError,
    SecretNotFound,
    SecretRefError,
    SecretStoreConfigError,
    SecretStoreUnavailable,
    decode_credential_set,
    encode_credential_set,
)

DEFAULT_PREFIX = "ucf/"
DEFAULT_MAX_ATTEMPTS = 4  # worst-case throttling wait ≈ 1 + 2 + 4 s

_NAME_CHARS = re.compile(r"[A-Za-z0-9/_+=.@-]*")
_NOT_FOUND = frozenset({"ResourceNotFoundException"})
_THROTTLED = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_DENIED = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "IncompleteSignature",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
    }
)


class _SecretCallInProgress(threading.local):
    active = False


_IN_SECRET_CALL = _SecretCallInProgress()


class _DropPayloadLogs(logging.Filter):
    """Drop botocore's DEBUG wire logs (request params, response bodies) made during our calls.

    botocore logs whole request and response bodies at DEBUG — for us, the
    SecretString. A flag local to the worker thread marks our calls, so the
    debug logs of other services (DynamoDB) are left alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not _IN_SECRET_CALL.active


_PAYLOAD_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.hooks", "botocore.auth")


def _install_payload_filter() -> None:
    for name in _PAYLOAD_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(existing, _DropPayloadLogs) for existing in target.filters):
            target.addFilter(_DropPayloadLogs())


class AwsSecretsManagerStore:
    """Credential sets in AWS Secrets Manager; refs are secret ARNs (names are accepted too)."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        where: str,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if not _NAME_CHARS.fullmatch(prefix):
            raise SecretStoreConfigError(
                f"the secret name prefix {prefix!r} has characters AWS does not allow in names",
                "use letters, digits and /_+=.@-",
            )
        self._client = client
        self._prefix = prefix
        self._where = where
        self._max_attempts = max_attempts
        _install_payload_filter()

    @classmethod
    async def connect(
        cls,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> AwsSecretsManagerStore:
        """Build the boto3 client (credentials from the usual AWS chain) off the event loop."""
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        config = Config(
            # total_max_attempts counts the first request; botocore's "max_attempts" does not.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

        def build() -> Any:
            return aws_client(
                "secretsmanager", region_name=region, endpoint_url=endpoint_url, config=config
            )

        try:
            client = await asyncio.to_thread(build)
        except NoRegionError:
            raise SecretStoreConfigError(
                "no AWS region is configured for Secrets Manager",
                "add ?region=… to the secret store URL or set AWS_REGION",
            ) from None
        where = (
            f"AWS Secrets Manager at {endpoint_url}"
            if endpoint_url
            else f"AWS Secrets Manager in {client.meta.region_name}"
        )
        return cls(client, prefix=prefix, where=where, max_attempts=max_attempts)

    async def put(self, ref: str | None, values: Mapping[str, str]) -> str:
        """Create a secret (``ref=None``), or write a new version of ``ref``; return its ARN.

        A ``ref`` that is a *name* not yet in use is created under that name; an
        ARN must already exist, since AWS chooses ARNs.
        """
        secret_string = encode_credential_set(values).decode()
        if ref is None:
            # Imported to name a new secret only: python-ulid looks its own version up in
            # the installed distributions' metadata when imported (~5 ms), which a
            # process that only reads secrets (a Lambda webhook delivery) need not pay.
            from ulid import ULID

            return await self._create(f"{self._prefix}{ULID()}", secret_string)
        _check_ref(ref)
        try:
            response = await self._call(
                "put_secret_value", ref, SecretId=ref, SecretString=secret_string
            )
        except SecretNotFound:
            if ref.startswith("arn:"):
                raise
            return await self._create(ref, secret_string)
        return str(response["ARN"])

    async def get(self, ref: str) -> dict[str, str]:
        _check_ref(ref)
        response = await self._call("get_secret_value", ref, SecretId=ref)
        return decode_credential_set(response.get("SecretString", b""), ref)

    async def rotate(
        self, ref: str, values: Mapping[str, str], *, keep_previous: bool = True
    ) -> None:
        _check_ref(ref)
        secret_string = encode_credential_set(values).decode()
        await self._call("put_secret_value", ref, SecretId=ref, SecretString=secret_string)
        if not keep_previous:
            await self._deprecate_previous(ref)

    async def _deprecate_previous(self, ref: str) -> None:
        """Take ``AWSPREVIOUS`` off the version a rotation replaced.

        ``PutSecretValue`` moves the label to the version it replaces, which stays
        readable by it (``GetSecretValue`` with ``VersionStage=AWSPREVIOUS``). A version
        without labels is deprecated: no stage names it, and Secrets Manager deletes it
        (deleting a single version is not an API of its own; deleting the secret would
        change the ref every instance keeps).
        """
        described = await self._call("describe_secret", ref, SecretId=ref)
        for version, stages in (described.get("VersionIdsToStages") or {}).items():
            if "AWSPREVIOUS" in stages and "AWSCURRENT" not in stages:
                await self._call(
                    "update_secret_version_stage",
                    ref,
                    SecretId=ref,
                    VersionStage="AWSPREVIOUS",
                    RemoveFromVersionId=version,
                )

    async def delete(self, ref: str) -> None:
        _check_ref(ref)
        with contextlib.suppress(SecretNotFound):  # already gone: deleting is idempotent
            await self._call("delete_secret", ref, SecretId=ref, ForceDeleteWithoutRecovery=True)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)

    async def _create(self, name: str, secret_string: str) -> str:
        response = await self._call(
            "create_secret",
            name,
            Name=name,
            SecretString=secret_string,
            Description="Connector credentials managed by ucf",
            Tags=[{"Key": "managed-by", "Value": "ucf"}],
        )
        return str(response["ARN"])

    async def _call(self, operation: str, ref: str, **params: Any) -> dict[str, Any]:
        method = getattr(self._client, operation)

        def call() -> dict[str, Any]:
            _IN_SECRET_CALL.active = True
            try:
                result: dict[str, Any] = method(**params)
                return result
            finally:
                _IN_SECRET_CALL.active = False

        try:
            return await asyncio.to_thread(call)
        except Exception as exc:
            raise self._translate(exc, operation, ref) from None

    def _translate(self, exc: Exception, operation: str, ref: str) -> Exception:
        """One typed error per failure, with a message a person can act on."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            ParamValidationError,
        )

        action = _ACTIONS.get(operation, operation)
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            message = str(error.get("Message", "")).rstrip(".")
            if code in _NOT_FOUND or (
                code == "InvalidRequestException" and "deletion" in message.lower()
            ):
                return SecretNotFound(ref)
            if code in _THROTTLED:
                return SecretStoreUnavailable(
                    f"{self._where} kept throttling the request to {action} {ref!r}, even after {self._max_attempts} attempts",
                    "lower the polling rate or raise the Secrets Manager request quota",
                )
            if code in _DENIED:
                return SecretStoreUnavailable(
                    f"{self._where} refused to {action} {ref!r}: {code}: {message}",
                    f"check the AWS credentials and that they allow secretsmanager:{operation_name(operation)}",
                )
            if code == "DecryptionFailure":
                return SecretDecryptionError(
                    f"{self._where} could not decrypt {ref!r} with its KMS key: {message}",
                    "allow kms:Decrypt on the secret's KMS key for ucf's role",
                )
            if code in {"InternalServiceError", "InternalFailure", "ServiceUnavailable"}:
                return SecretStoreUnavailable(
                    f"{self._where} failed to {action} {ref!r} ({code}), even after {self._max_attempts} attempts",
                    "try again later",
                )
            return StoreError(
                f"{self._where} rejected the request to {action} {ref!r}: {code}: {message}"
            )
        if isinstance(exc, NoCredentialsError):
            return SecretStoreUnavailable(
                "no AWS credentials were found for Secrets Manager",
                "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an IAM role",
            )
        if isinstance(exc, ConnectionError | HTTPClientError):
            return SecretStoreUnavailable(
                f"cannot reach {self._where} to {action} {ref!r}: {type(exc).__name__}",
                "check the endpoint/region in the secret store URL and the network",
            )
        if isinstance(exc, ParamValidationError):
            # Its text can quote parameter values; never pass it on.
            return StoreError(
                f"ucf built an invalid {operation_name(operation)} request for {ref!r}"
            )
        if isinstance(exc, BotoCoreError):
            return SecretStoreUnavailable(
                f"could not {action} {ref!r} in {self._where}: {type(exc).__name__}",
                "check the AWS configuration",
            )
        return exc

    def __repr__(self) -> str:
        return f"AwsSecretsManagerStore(where={self._where!r}, prefix={self._prefix!r})"

    __str__ = __repr__


_ACTIONS = {
    "create_secret": "create",
    "get_secret_value": "read",
    "put_secret_value": "update",
    "delete_secret": "delete",
    "describe_secret": "describe",
    "update_secret_version_stage": "retire the previous version of",
}


def operation_name(operation: str) -> str:
    """``get_secret_value`` → ``GetSecretValue``, the name IAM policies use."""
    return "".join(part.capitalize() for part in operation.split("_"))


def _check_ref(ref: str) -> None:
    if isinstance(ref, str) and ref.startswith("local:"):
        raise SecretRefError(
            f"ref {ref!r} belongs to the local secret store, but this ucf uses AWS Secrets Manager",
            "store the connector's credentials again, or set UCF_SECRET_STORE=local:",
        )
    if (
        not isinstance(ref, str)
        or not ref
        or not (ref.startswith("arn:") or _NAME_CHARS.fullmatch(ref))
    ):
        raise SecretRefError(
            f"{ref!r} is not a Secrets Manager secret ARN or name", "use the ref returned by put()"
        )
