"""What a Lambda function of ucf reads from its environment, checked before anything opens.

The variables are those of ``ucf serve`` (:class:`~ucf.service.settings.Settings`)
plus a few only Lambda needs. A Lambda execution environment keeps nothing:
its disk is private to it and gone when it is recycled, and many run at once.
So the settings that would keep state on that disk — an SQLite store, local
encrypted secrets, a JSONL sink — are refused here with a message naming the
variable and the fix, instead of "working" and losing data.

Lambda-only variables:

``UCF_API_TOKEN_SECRET``
    Secrets Manager id (name or ARN) of the admin API token, a plain string
    (the template generates it). ``UCF_API_TOKEN`` works too but puts the token
    in the function's configuration, readable by anyone who can read that.
``UCF_POLL_QUEUE_URL``
    The SQS queue the schedule fills and the poll worker drains.
``UCF_PUBLIC_URL``
    The base URL providers reach (a custom domain); default: the request's host.
``UCF_API_BASE_PATH``
    A custom domain's base path to strip (default ``/``); a stage needs none.
``UCF_LOG_LEVEL``
    ``INFO`` by default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ucf.service.settings import Settings

__all__ = [
    "API_TOKEN_ENV",
    "API_TOKEN_SECRET_ENV",
    "AwsConfigError",
    "aws_client",
    "check_api_token_configured",
    "lambda_settings",
    "load_api_token",
]

log = logging.getLogger("ucf.aws")

API_TOKEN_ENV: Final = "UCF_API_TOKEN"  # noqa: S105 - a variable name
API_TOKEN_SECRET_ENV: Final = "UCF_API_TOKEN_SECRET"  # noqa: S105 - a variable name
DATA_DIR_ENV: Final = "UCF_DATA_DIR"


class AwsConfigError(ValueError):
    """The function's configuration cannot work; the message names the variable and the fix."""


def lambda_settings(environ: Mapping[str, str]) -> Settings:
    """:class:`Settings` from a Lambda's environment, refusing state on the local disk.

    The data directory defaults to ``$TMPDIR/ucf`` (``/tmp`` is the only writable
    place in Lambda); nothing durable is kept there.
    """
    from ucf.service.settings import Settings

    data_dir = Path(environ.get(DATA_DIR_ENV) or _default_data_dir())
    try:
        settings = Settings.from_env(environ, data_dir=data_dir)
    except ValueError as error:
        raise AwsConfigError(str(error)) from None
    if not settings.store_url.lower().startswith("dynamodb:"):
        raise AwsConfigError(
            "UCF_STORE must name a DynamoDB table (dynamodb://TABLE?region=…) in Lambda: "
            "each execution environment has its own disk, lost when it is recycled, so an "
            "SQLite store would lose data and disagree between concurrent invocations"
        )
    secret_url = (settings.secret_store_url or "").lower()
    if not secret_url.startswith("aws-secretsmanager:"):
        raise AwsConfigError(
            "UCF_SECRET_STORE must be aws-secretsmanager://?region=… in Lambda: the local "
            "secret store keeps its key and secrets on the execution environment's own disk"
        )
    if settings.jsonl_sink is not None:
        raise AwsConfigError(
            "UCF_SINK_JSONL cannot work in Lambda (the file would live on a disk that is "
            "recycled); use UCF_SINK_SQS, UCF_SINK_EVENTBRIDGE or UCF_SINK_HTTP, or unset it"
        )
    return settings


def _default_data_dir() -> Path:
    import tempfile  # here: it loads shutil, random and the archive modules, rarely needed

    return Path(tempfile.gettempdir()) / "ucf"


def aws_client(service: str, environ: Mapping[str, str]) -> Any:
    """A boto3 client with explicit timeouts and bounded retries.

    Region and endpoint come from the standard AWS variables (``AWS_REGION``,
    which Lambda sets, and ``AWS_ENDPOINT_URL_<SERVICE>`` for a local server).
    """
    from botocore.config import Config

    from ucf.stores.aws_session import aws_client as shared_session_client

    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
    config = Config(
        connect_timeout=5,
        read_timeout=10,
        retries={"mode": "standard", "total_max_attempts": 4},
    )
    return shared_session_client(service, region_name=region, config=config)


def check_api_token_configured(environ: Mapping[str, str]) -> None:
    """Refuse, without reading it, an environment that names no admin API token.

    The API function checks this at its cold start and reads the token
    (:func:`load_api_token`, a Secrets Manager round trip) on the first request
    that needs it, not for the webhook deliveries that never do.
    """
    if (
        not environ.get(API_TOKEN_SECRET_ENV, "").strip()
        and not environ.get(API_TOKEN_ENV, "").strip()
    ):
        raise AwsConfigError(
            f"no admin API token: set {API_TOKEN_SECRET_ENV} to the Secrets Manager id of "
            f"the token (the template does), or {API_TOKEN_ENV} to the token itself"
        )


async def load_api_token(environ: Mapping[str, str]) -> str:
    """The admin API token: from Secrets Manager (``UCF_API_TOKEN_SECRET``), else ``UCF_API_TOKEN``.

    Every execution environment must agree on it (the dashboard's session keys
    derive from it too), so a Lambda never invents one the way ``ucf serve`` does.
    """
    check_api_token_configured(environ)
    secret_id = environ.get(API_TOKEN_SECRET_ENV, "").strip()
    if secret_id:
        token = await asyncio.to_thread(_read_token_secret, secret_id, environ)
    else:
        token = environ.get(API_TOKEN_ENV, "").strip()
    from ucf.service.settings import WeakApiToken, check_api_token

    try:
        return check_api_token(token, f"the secret {secret_id}" if secret_id else API_TOKEN_ENV)
    except WeakApiToken as weak:
        raise AwsConfigError(str(weak)) from None


def _read_token_secret(secret_id: str, environ: Mapping[str, str]) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    client = aws_client("secretsmanager", environ)
    try:
        reply = client.get_secret_value(SecretId=secret_id)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise AwsConfigError(
            f"cannot read the API token secret {secret_id!r} ({code}): check that it exists "
            f"and that the function's role may call secretsmanager:GetSecretValue on it"
        ) from None
    except BotoCoreError as error:
        raise AwsConfigError(
            f"cannot reach Secrets Manager for the API token: {type(error).__name__}"
        ) from None
    finally:
        client.close()
    value = reply.get("SecretString")
    if not isinstance(value, str) or not value.strip():
        raise AwsConfigError(
            f"the API token secret {secret_id!r} has no SecretString; store the token as plain text"
        )
    return value.strip()
