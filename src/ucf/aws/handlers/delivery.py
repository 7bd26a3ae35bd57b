"""Drain the outbox into the configured sinks, for a bounded time: right after an ingest,
and every minute.

Two triggers start it (``deploy/template.yaml``):

- **the table's stream**: DynamoDB Streams records for new outbox entries
  (keys only, filtered by Lambda to inserts under ``OUTBOX#``), so a signal
  stored by a webhook or a poll leaves within seconds. The records are only a
  wake-up: the function reads the outbox itself, so one invocation delivers
  everything pending, whatever the batch of records held;
- **EventBridge, every minute**: the safety net. It retries what failed
  (a batch released with its backoff) and catches anything a missed or
  dropped stream record left behind.

Both run the same :class:`~ucf.service.delivery.DeliveryWorker` as ``ucf
serve``, one per configured sink, each with its own outbox queue: it holds the
sink's lease in the store (so an overlapping invocation stands by instead of
delivering out of order), delivers batch after batch, and stops when nothing
is left, when a batch fails (it is released with its backoff), or when the time
budget is spent — whichever comes first. A batch in flight at the budget is
finished, not abandoned. An invocation that finds another one delivering to a
sink leaves that sink to it; in the rare case that the other was just
finishing, the next tick delivers what it left.

Two knobs, both in seconds:

``UCF_DELIVERY_SECONDS`` (default 45)
    The budget of one invocation, capped so that the batch in flight still
    fits before Lambda's deadline. It bounds claims: no send runs past the
    function's timeout less 5 s, and a batch the pipeline refused for some of
    its signals goes on being sorted out one by one until then, past the budget.
``UCF_DELIVERY_LEASE_SECONDS`` (default 36)
    How long a claimed batch stays hidden (shortened to twice the time left
    before the function's timeout, less 5 s, when that is less: with the
    default, a function whose timeout is under 23 s gets shorter sends, and
    one under 7 s sends nothing and says why). One send must finish in half of it:
    that is how long the pipeline may take to answer (18 s; the HTTP sink's
    timeouts are sized to it, and never wait more than 30 s), and a pipeline
    slower than that is sent the same batch again at every retry, with nothing
    behind it moving. After a failed batch, the failing invocation keeps the
    sink until the batch is due again plus this lease, so that nobody delivers
    past it; each invocation is a new worker, so the lease is sized for the
    next tick to take over: a first batch that fails at worst after 18 s, its
    first backoff (1 s) and the lease (36 s) end 55 s after the invocation
    started, so a sink outage is retried about once a minute.

With no sink configured (``UCF_SINK_HTTP``, ``UCF_SINK_SQS`` and
``UCF_SINK_EVENTBRIDGE`` unset) the function does nothing; the template does
not even create it then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from ucf.aws.container import Container

if TYPE_CHECKING:
    from ucf.service.context import UcfContext

__all__ = [
    "DEFAULT_BUDGET_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "FUNCTION",
    "DeliveryFunction",
    "handler",
]

log = logging.getLogger("ucf.aws.delivery")

DEFAULT_BUDGET_SECONDS: Final = 45.0
DEFAULT_LEASE_SECONDS: Final = 36.0
BUDGET_ENV: Final = "UCF_DELIVERY_SECONDS"
LEASE_ENV: Final = "UCF_DELIVERY_LEASE_SECONDS"
WIND_DOWN_SECONDS: Final = 5.0
"""Kept free before Lambda's deadline for the batch's settling and the hand-over."""
MIN_LEASE_SECONDS: Final = 4.0
"""A lease the time left would shorten below this (2 s an answer; a shorter configured
one stays as it is): the function sends nothing rather than a batch it cannot see through."""


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    from ucf.aws.config import AwsConfigError

    text = environ.get(name, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if not 0 < value <= 900:  # also refuses nan and inf
        raise AwsConfigError(f"{name} must be a number of seconds in (0, 900], got {text!r}")
    return value


class DeliveryFunction:
    def __init__(self, container: Container) -> None:
        self.container = container

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = event.get("Records") if isinstance(event, dict) else None
        if isinstance(records, list):
            log.info("woken by %d new outbox entr(ies) on the table's stream", len(records))
        return self.container.run(lambda: self._drain(context))

    async def _drain(self, lambda_context: Any) -> dict[str, Any]:
        environ = self.container.environ
        budget = _seconds(environ, BUDGET_ENV, DEFAULT_BUDGET_SECONDS)
        lease = _seconds(environ, LEASE_ENV, DEFAULT_LEASE_SECONDS)
        remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
        left = remaining() / 1000 - WIND_DOWN_SECONDS if callable(remaining) else None
        too_short = False
        deadline: float | None = None
        if left is not None:
            deadline = asyncio.get_running_loop().time() + left
            # The batch in flight may take half the lease, and even a budget of 0 lets
            # the first one start: a function whose timeout is shorter than that gets a
            # lease that fits, or Lambda would stop it mid-send with nothing recorded.
            fits = 2 * left
            too_short = fits < min(lease, MIN_LEASE_SECONDS)
            lease = min(lease, fits)
            budget = max(min(budget, left - lease / 2), 0.0)
        context = await self.container.context()
        sinks = context.settings.sinks
        if not sinks:
            log.info("no sink is configured (UCF_SINK_HTTP, _SQS, _EVENTBRIDGE): nothing to do")
            return {"delivered": {}}
        if too_short:
            why = (
                f"{left:.1f} s left before the function's timeout is too short to send a "
                f"batch: raise the timeout (the template sets 120 s)"
            )
            log.warning("nothing delivered: %s", why)
            return {"delivered": dict.fromkeys(sinks, 0), "errors": dict.fromkeys(sinks, why)}
        results = await asyncio.gather(
            *(self._drain_sink(context, sink, budget, lease, deadline) for sink in sinks)
        )
        return {
            "delivered": {
                sink: delivered for sink, (delivered, _) in zip(sinks, results, strict=True)
            },
            "errors": {
                sink: error for sink, (_, error) in zip(sinks, results, strict=True) if error
            },
        }

    async def _drain_sink(
        self,
        context: UcfContext,
        sink_name: str,
        budget: float,
        lease: float,
        deadline: float | None,
    ) -> tuple[int, str | None]:
        """Deliver to one sink; what it delivered and its error, never raising: the sinks
        are drained side by side, and one sink's store or internal error must neither
        fail the invocation nor leave the others' workers behind in a frozen environment
        (the next tick or stream record retries it, as after a sink's own failure).

        The worker stops claiming at the ``budget``; the ``deadline`` (the loop's time
        at the function's timeout less the wind-down) is when every send must be over:
        a batch the sink refused for some of its signals is still sorted out one by one
        up to it, after the budget too (a short timeout spends the budget at the first
        claim, and such a batch went back whole every time)."""
        from ucf.service.delivery import SINKS, DeliveryWorker
        from ucf.stores.errors import StoreError

        worker: DeliveryWorker | None = None
        error: str | None = None
        try:
            async with SINKS[sink_name](context.settings, lease=timedelta(seconds=lease)) as sink:
                worker = DeliveryWorker(
                    context,
                    sink_name,
                    sink,
                    lease=timedelta(seconds=lease),
                    owner=self.container.worker_id,
                    deadline=deadline,
                )
                timer = asyncio.get_running_loop().call_later(budget, worker.stop)
                try:
                    await worker.run_once()
                finally:
                    timer.cancel()
        except StoreError as failure:
            error = f"store error: {failure}"
        except Exception:
            log.exception("delivery to %s failed inside ucf", sink_name)
            error = "failed inside ucf (see the function's log)"
        delivered = 0 if worker is None else worker.stats.delivered
        error = error or (None if worker is None else worker.stats.last_error)
        if error:
            log.warning("delivery to %s failed, retried later: %s", sink_name, error)
        log.info("delivered %d signal(s) to %s", delivered, sink_name)
        return delivered, error


FUNCTION = DeliveryFunction(Container("delivery"))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: ``ucf.aws.handlers.delivery.handler``."""
    return FUNCTION(event, context)
