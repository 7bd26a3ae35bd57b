"""SQS → ``poll_instance`` for each message, reporting only the failed ones.

The event source mapping must enable ``ReportBatchItemFailures`` (the template
does): the response lists the messages to redeliver, so one broken instance
does not make SQS hand the others out again. What counts as failed is
:func:`ucf.aws.polling.poll_messages`'s decision.

Lambda's deadline: polls are asked to stop after the page they are storing
once the invocation has :data:`STOP_MARGIN_SECONDS` left, so every stored
page's checkpoint is saved before Lambda would cut the invocation off. An
instance stopped early is still due, and the next tick continues it from its
checkpoint. A fetch still running with :data:`FETCH_MARGIN_SECONDS` left (a
slow upstream, retries) is abandoned, as at ``UCF_POLL_TIMEOUT``: that poll
fails, recorded in its instance's health with its backoff, and the others of
the batch are answered. (Were an invocation killed anyway, nothing is lost: a
page's signals are one atomic write, the checkpoint moves after it, and the
lease lapses after a minute; but every message of the batch would wait out
the queue's visibility timeout.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from ucf.aws.container import Container

__all__ = [
    "FETCH_MARGIN_SECONDS",
    "FUNCTION",
    "STOP_MARGIN_SECONDS",
    "PollWorkerFunction",
    "handler",
]

log = logging.getLogger("ucf.aws.poll_worker")

STOP_MARGIN_SECONDS: Final = 60.0
"""Time kept back for the page in flight: a read timeout (30 s) plus a retry or two."""
FETCH_MARGIN_SECONDS: Final = 20.0
"""Time kept back after the last fetch, whatever the upstream does: to store the page
fetched last and answer Lambda. A fetch still running then is abandoned."""


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
        stop = asyncio.Event()
        left = _seconds_left(lambda_context)
        loop = asyncio.get_running_loop()
        timer = (
            loop.call_later(max(left - STOP_MARGIN_SECONDS, 0.0), stop.set)
            if left is not None
            else None
        )
        # A slow upstream's fetch must not outlast the invocation: Lambda would cut it
        # off with every poll of the batch, and SQS would hold all their messages.
        fetch_until = None if left is None else loop.time() + left - FETCH_MARGIN_SECONDS
        try:
            outcome = await poll_messages(
                context,
                messages,
                worker_id=self.container.worker_id,
                stop=stop,
                fetch_until=fetch_until,
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
