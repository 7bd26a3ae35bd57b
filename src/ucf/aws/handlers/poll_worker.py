"""SQS → ``poll_instance`` for each message, reporting only the failed ones.

The event source mapping must enable ``ReportBatchItemFailures`` (the template
does): the response lists the messages to redeliver, so one broken instance
does not make SQS hand the others out again. What counts as failed is
:func:`ucf.aws.polling.poll_messages`'s decision.

Lambda's deadline: polls are asked to stop after the page they are storing
once the invocation has :data:`STOP_MARGIN_SECONDS` left, so every stored
page's checkpoint is saved before Lambda would cut the invocation off. An
instance stopped early is still due, and the next tick continues it from its
checkpoint. (Were an invocation killed anyway, nothing is lost: a page's
signals are one atomic write, the checkpoint moves after it, and the lease
lapses after a minute.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from ucf.aws.container import Container

__all__ = ["FUNCTION", "STOP_MARGIN_SECONDS", "PollWorkerFunction", "handler"]

log = logging.getLogger("ucf.aws.poll_worker")

STOP_MARGIN_SECONDS: Final = 60.0
"""Time kept back for the page in flight: a read timeout (30 s) plus a retry or two."""


def _seconds_left(lambda_context: Any) -> float | None:
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else None


class PollWorkerFunction:
    def __init__(self, container: Container) -> None:
        self.container = container

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.container.run(lambda: self._handle(event, context))

    async def _handle(self, event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
        from ucf.aws.polling import poll_messages

        records = event.get("Records") or []
        messages = [(str(r.get("messageId")), str(r.get("body", ""))) for r in records]
        context = await self.container.context()
        # Build the HTTP client before the poll's store round trips, so its CA bundle
        # loads while they wait (ucf.runtime.trust), not after them.
        context.http  # noqa: B018
        stop = asyncio.Event()
        left = _seconds_left(lambda_context)
        timer = (
            asyncio.get_running_loop().call_later(max(left - STOP_MARGIN_SECONDS, 0.0), stop.set)
            if left is not None
            else None
        )
        try:
            outcome = await poll_messages(
                context, messages, worker_id=self.container.worker_id, stop=stop
            )
        finally:
            if timer is not None:
                timer.cancel()
        if outcome.failed:
            log.warning(
                "%d of %d message(s) failed and will be redelivered",
                len(outcome.failed),
                len(messages),
            )
        return outcome.response()


FUNCTION = PollWorkerFunction(Container("poll-worker"))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: ``ucf.aws.handlers.poll_worker.handler``."""
    return FUNCTION(event, context)
