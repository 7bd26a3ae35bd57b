"""What every route of a running app shares: the context, the gateway, metrics, the token.

Built once in the app's lifespan and stored on ``app.state``; routes get it
with ``Depends(current_state)``, plain code with ``web_state(request)``.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from ucf.core.records import datarecord
from ucf.service.context import UcfContext
from ucf.service.webhooks import WebhookGateway, webhook_path
from ucf.service.worker_id import default_worker_id
from ucf.web.metrics import Metrics
from ucf.web.throttle import FailedAuthThrottle

if TYPE_CHECKING:  # the webhook front uses the state without FastAPI (Lambda cold starts)
    from fastapi import Request


@datarecord(frozen=False, slots=False)
class WebState:
    context: UcfContext
    gateway: WebhookGateway
    metrics: Metrics
    api_token: str = field(repr=False)
    public_url: str | None = None
    """Where providers reach this server (``--public-url``); else the request's own base."""
    public_introspection: bool = False
    """``/metrics``, ``/docs`` and ``/openapi.json`` without a token or session."""
    auth_throttle: FailedAuthThrottle = field(default_factory=FailedAuthThrottle)
    """Wrong API tokens and logins per client address (backoff), for API and dashboard."""
    worker_id: str = field(default_factory=lambda: f"{default_worker_id()}:api")
    """Lease owner of "poll now": never the in-process scheduler's, so the two never
    share a lease and poll one instance at once."""

    def public_base(self, request: Request) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def webhook_url(
        self, request: Request, connector_id: str, project_id: str, hook_id: str | None = None
    ) -> str:
        """The instance's own URL with its ``hook_id``, else the shared one."""
        return self.public_base(request) + webhook_path(connector_id, project_id, hook_id)


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.ucf
    return state
