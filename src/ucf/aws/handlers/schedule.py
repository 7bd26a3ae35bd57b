"""EventBridge, every minute → one SQS poll request per instance that is due.

The due rules are ``ucf worker``'s (:mod:`ucf.aws.polling`); this function only
lists and enqueues, so it stays short however many instances there are, and
the polls themselves scale out on the queue's consumers. The tick is the
scheduled event's ``time``: a retried or doubled invocation of one tick
enqueues nothing twice on the FIFO queue.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ucf.aws.container import Container

if TYPE_CHECKING:
    from ucf.aws.polling import PollQueue

__all__ = ["FUNCTION", "ScheduleFunction", "handler", "tick_of"]

log = logging.getLogger("ucf.aws.schedule")


def tick_of(event: dict[str, Any], now: datetime) -> str:
    """The scheduled event's ``time`` (the same on every retry), else the current minute."""
    value = event.get("time") if isinstance(event, dict) else None
    if isinstance(value, str) and value:
        return value
    return now.astimezone(UTC).replace(second=0, microsecond=0).isoformat()


class ScheduleFunction:
    def __init__(self, container: Container) -> None:
        self.container = container

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.container.run(lambda: self._tick(event))

    async def _tick(self, event: dict[str, Any]) -> dict[str, Any]:
        from ucf.aws.polling import enqueue_due

        context = await self.container.context()
        queue = await self.container.once("poll-queue", self._open_queue)
        report = await enqueue_due(
            context,
            queue,
            tick=tick_of(event, context.clock()),
            worker_id=self.container.worker_id,
        )
        log.info(
            "%d instance(s) due, %d poll request(s) enqueued; next due %s",
            report.due,
            report.enqueued,
            report.next_due_at.isoformat() if report.next_due_at else "never",
        )
        return report.to_json()

    async def _open_queue(self, stack: contextlib.AsyncExitStack) -> PollQueue:
        from ucf.aws.polling import PollQueue

        queue = PollQueue.from_env(self.container.environ)
        stack.callback(queue.close)
        return queue


FUNCTION = ScheduleFunction(Container("schedule"))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: ``ucf.aws.handlers.schedule.handler``."""
    return FUNCTION(event, context)
