"""The public webhook gateway: ``POST|HEAD /api/webhooks/{connectorId}/{projectId}[/{hookId}]``.

The instance's own URL ends in its random hook id and cannot be guessed; the
shared one (connector and project only) keeps working for deliveries that
verify, but refuses handshakes that hand over a secret (Notion, Asana).

Deliveries are answered by :class:`~ucf.web.front.WebhookFront` before the
app sees them (raw ASGI, none of the app's middleware, router or request
objects: ``bench/webhook.py``); it finds the target (404), reads the body
under the limit while it streams in (413), and hands the rest to
:class:`~ucf.service.webhooks.WebhookGateway`, whose outcome becomes the
response. No bearer token here — every delivery is verified per connector.

The routes below are what ``/openapi.json`` documents; the front matches the
same paths and methods, so their endpoints never run.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from ucf.web.errors import ErrorBody
from ucf.web.front import BodyTimeout

__all__ = ["BodyTimeout", "router"]

router = APIRouter(tags=["webhooks"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in {
        400: "Not a JSON object, or no event type",
        401: "Verification failed (no detail is given)",
        403: "A handshake handing over a secret, sent to the shared URL: use the instance's own",
        404: "Unknown connector, or no enabled instance of it in the project",
        405: "HEAD without a handshake (any other method but POST and HEAD: Allow names both)",
        408: "The body took longer than 30 s to arrive",
        413: "Body over the limit (256 KB by default)",
        429: "Over the instance's deliveries per minute (or, unverified, the sender's)",
    }.items()
}


async def _served_by_the_front(request: Request) -> Response:
    """Never reached through the app's ``__call__``: :class:`~ucf.web.app.UcfApp` hands
    every request these routes match to the front first."""
    raise RuntimeError(f"{request.method} {request.url.path} bypassed the webhook front")


ConnectorId = Annotated[str, Path(alias="connectorId")]
ProjectId = Annotated[str, Path(alias="projectId")]
HookId = Annotated[str, Path(alias="hookId")]


@router.post(
    "/api/webhooks/{connectorId}/{projectId}",
    summary="Receive a webhook delivery",
    responses={
        200: {"description": "Stored: {received, inserted, duplicates}"},
        202: {"description": "An event type the connector does not handle: stored nowhere"},
        **_ERRORS,
    },
)
async def receive_webhook(
    request: Request,
    connector_id: ConnectorId,
    project_id: ProjectId,
) -> Response:
    return await _served_by_the_front(request)


@router.head(
    "/api/webhooks/{connectorId}/{projectId}",
    summary="Answer a provider's HEAD handshake (Trello)",
    responses={200: {"description": "Handshake answered"}, **_ERRORS},
)
async def webhook_handshake(
    request: Request,
    connector_id: ConnectorId,
    project_id: ProjectId,
) -> Response:
    return await _served_by_the_front(request)


@router.post(
    "/api/webhooks/{connectorId}/{projectId}/{hookId}",
    summary="Receive a webhook delivery at the instance's own URL",
    responses={
        200: {"description": "Stored: {received, inserted, duplicates}"},
        202: {"description": "An event type the connector does not handle: stored nowhere"},
        **_ERRORS,
    },
)
async def receive_hook(
    request: Request,
    connector_id: ConnectorId,
    project_id: ProjectId,
    hook_id: HookId,
) -> Response:
    return await _served_by_the_front(request)


@router.head(
    "/api/webhooks/{connectorId}/{projectId}/{hookId}",
    summary="Answer a provider's HEAD handshake at the instance's own URL",
    responses={200: {"description": "Handshake answered"}, **_ERRORS},
)
async def hook_handshake(
    request: Request,
    connector_id: ConnectorId,
    project_id: ProjectId,
    hook_id: HookId,
) -> Response:
    return await _served_by_the_front(request)
