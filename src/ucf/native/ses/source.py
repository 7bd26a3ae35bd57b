"""The ``ses`` source: push only (SNS), so no schedule; its own health check.

There is nothing to poll: SES hands each received email to SNS, and SNS to
ucf's webhook. :meth:`SesSource.normalise` still maps saved notifications
(``ucf map --descriptor ses --sample notifications.json --poll`` takes a JSON
array of SES ``Received`` notifications), with the same identities as the
webhook path.

The health check is what can go wrong on ucf's side: the configured topic must
be a well-formed SNS topic ARN (a typo there refuses every message), and when
the instance reads large mail from S3 its bucket must answer ``HeadBucket``
with the instance's (or the ambient) AWS credentials.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import httpx

from ucf.native import (
    ConfigError,
    ConnectorDescriptor,
    HealthResult,
    HttpSettings,
    MappingResult,
    Page,
    PollSchedule,
    SourceContext,
)
from ucf.native.ses.notification import Received, normalise_notifications
from ucf.native.ses.s3 import S3MailStore
from ucf.native.ses.sns import endpoints_from_environment
from ucf.native.ses.webhooks import SesWebhooks

__all__ = ["TOPIC_ARN", "AwsKeys", "SesSource"]

TOPIC_ARN: Final = re.compile(
    r"arn:aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?"
)
"""``arn:<partition>:sns:<region>:<account>:<topic>`` (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html)."""
REJECTED_CODES: Final = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)


class AwsKeys(httpx.Auth):
    """The instance's AWS keys, kept for boto3 (S3); adds nothing to an HTTP request.

    Requests to SNS (certificates, confirmations) carry no credentials: the keys
    never leave in a header. The health check reads them from here, as a
    source's context carries its credentials only inside its auth.
    """

    def __init__(self, credentials: Mapping[str, str]) -> None:
        self.values = {
            key: credentials[key]
            for key in ("accessKeyId", "secretAccessKey", "sessionToken")
            if credentials.get(key)
        }

    def __repr__(self) -> str:
        return f"AwsKeys({sorted(self.values)})"


class SesSource:
    """Inbound email through SES → SNS → ucf."""

    schedule: PollSchedule | None = None

    def __init__(self, descriptor: ConnectorDescriptor) -> None:
        self.descriptor = descriptor
        self.webhooks = SesWebhooks.for_endpoints(endpoints_from_environment())

    def auth(
        self,
        credentials: Mapping[str, str],
        *,
        config: Mapping[str, str],
        token_client: httpx.AsyncClient,
        on_rotate: Any,
        now: Callable[[], datetime],
        settings: HttpSettings,
    ) -> httpx.Auth:
        return AwsKeys(credentials)

    def fetch_delta(
        self,
        context: SourceContext,
        checkpoint: str | None,
        *,
        now: datetime,
        max_pages: int | None = None,
    ) -> AsyncIterator[Page]:
        raise ConfigError(
            "ses receives email through SNS deliveries only; there is nothing to poll"
        )

    def normalise(self, items: Sequence[Any], *, project_id: str, now: datetime) -> MappingResult:
        return normalise_notifications(
            [Received(item if isinstance(item, dict) else {}) for item in items],
            connector_id=self.descriptor.id,
            project_id=project_id,
            now=now,
        )

    async def health_check(self, context: SourceContext) -> HealthResult:
        started = time.monotonic()

        def result(error: str | None, failure: Any = "failed") -> HealthResult:
            latency = (time.monotonic() - started) * 1000
            if error is None:
                return HealthResult(ok=True, status=None, latency_ms=latency)
            return HealthResult(
                ok=False, status=None, latency_ms=latency, error=error, failure=failure
            )

        topic = context.config.get("topicArn", "").strip()
        if not topic:
            return result("config field(s) topicArn need a value")
        if TOPIC_ARN.fullmatch(topic) is None:
            return result(
                f"topicArn {topic!r} is not an SNS topic ARN "
                "(arn:aws:sns:<region>:<account-id>:<topic-name>)"
            )
        bucket = context.config.get("s3Bucket", "").strip()
        if not bucket:
            return result(None)
        credentials = context.auth.values if isinstance(context.auth, AwsKeys) else {}
        store = S3MailStore(bucket, region=context.config.get("region"), credentials=credentials)
        problem = await asyncio.to_thread(store.check)
        if problem is None:
            return result(None)
        code = problem.rsplit(": ", 1)[-1]
        return result(problem, "rejected" if code in REJECTED_CODES else "unavailable")
