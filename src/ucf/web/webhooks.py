"""The public webhook gateway: ``POST|HEAD /api/webhooks/{connectorId}/{projectId}[/{hookId}]``.

The instance's own URL ends in its random hook id and cannot be guessed; the
shared one (connector and project only) keeps working for deliveries that
verify, but refuses handshakes that hand over a secret (Notion, Asana).

Thin on purpose: it finds the target (404), reads the body under the limit
while it streams in (413), and hands the rest to
:class:`~ucf.service.webhooks.WebhookGateway`, whose outcome becomes the
response. No bearer token here — every delivery is verified per connector.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from ucf.service.errors import ServiceError
from ucf.service.webhooks import (
    Delivery,
    HandshakeAnswer,
    WebhookOutcome,
    read_limited,
)
from ucf.stores.errors import StoreError
from ucf.web.errors import ErrorBody, error_answer
from ucf.web.state import WebState, current_state, web_state

router = APIRouter(tags=["webhooks"])

BODY_TIMEOUT_SECONDS = 30.0
"""A delivery trickling in slower than this (at most 256 KB) holds a connection for
nothing: providers send their whole body at once."""


class BodyTimeout(ServiceError):
    status = 408
    code = "request_timeout"


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in {
        400: "Not a JSON object, or no event type",
        401: "Verification failed (no detail is given)",
        403: "A handshake handing over a secret, sent to the shared URL: use the instance's own",
        404: "Unknown connector, or no enabled instance of it in the project",
        405: "HEAD without a handshake",
        408: "The body took longer than 30 s to arrive",
        413: "Body over the limit (256 KB by default)",
        429: "Over the instance's deliveries per minute (or, unverified, the sender's)",
    }.items()
}


def _registered_url(request: Request, state: WebState) -> str:
    """The URL the provider was given: the public base (if set) plus path and query as sent."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    base = state.public_base(request)
    query = request.scope.get("query_string", b"")
    return base + path + ("?" + query.decode("latin-1") if query else "")


def _render(outcome: WebhookOutcome) -> Response:
    if isinstance(outcome, HandshakeAnswer):
        answer = outcome.response
        return Response(
            content=answer.body,
            status_code=answer.status,
            media_type=answer.media_type,
            headers=dict(answer.headers),
        )
    return JSONResponse(outcome.to_json(), status_code=outcome.status)


async def _receive(
    request: Request,
    connector_id: str,
    project_id: str,
    state: WebState,
    hook_id: str | None = None,
) -> Response:
    gateway = state.gateway
    target = await gateway.target(connector_id, project_id, hook_id)
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            body = await read_limited(
                request.stream(),
                limit=gateway.max_bytes,
                declared_length=request.headers.get("content-length"),
            )
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {BODY_TIMEOUT_SECONDS:.0f} s") from None
    delivery = Delivery(
        method=request.method,
        body=body,
        headers=request.headers,
        query=request.query_params,
        url=_registered_url(request, state),
        client=request.client.host if request.client is not None else None,
    )
    return _render(await gateway.receive(target, delivery))


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
    state: Annotated[WebState, Depends(current_state)],
) -> Response:
    return await _receive(request, connector_id, project_id, state)


@router.head(
    "/api/webhooks/{connectorId}/{projectId}",
    summary="Answer a provider's HEAD handshake (Trello)",
    responses={200: {"description": "Handshake answered"}, **_ERRORS},
)
async def webhook_handshake(
    request: Request,
    connector_id: ConnectorId,
    project_id: ProjectId,
    state: Annotated[WebState, Depends(current_state)],
) -> Response:
    return await _receive(request, connector_id, project_id, state)


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
    state: Annotated[WebState, Depends(current_state)],
) -> Response:
    return await _receive(request, connector_id, project_id, state, hook_id)


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
    state: Annotated[WebState, Depends(current_state)],
) -> Response:
    return await _receive(request, connector_id, project_id, state, hook_id)


class GatewayLane:
    """ASGI middleware: webhook deliveries go straight to :func:`_receive`.

    A delivery needs none of the management app's machinery — its router
    scanning every API and dashboard route, FastAPI's dependency solving,
    the exception middleware — and each cost CPU per delivery
    (``bench/webhook.py``). The lane sits inside
    :class:`~ucf.web.middleware.RequestMiddleware`, so request ids, the access
    log line, metrics by route template and the last-resort JSON 500 are the
    same code as for every route; it matches with the gateway routes' own
    ``matches`` (same paths, same methods, same path parameters, ``route`` set
    in the scope for the metrics label) and answers errors with the app's own
    handlers (:func:`~ucf.web.errors.error_answer`). Anything else — another
    path, another method — goes on to the app unchanged, as do the routes
    themselves, which stay registered for ``/openapi.json``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes = [route for route in router.routes if isinstance(route, APIRoute)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "HEAD"):
            for route in self._routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    await self._answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        params: dict[str, str] = scope["path_params"]
        try:
            response = await _receive(
                request,
                params["connectorId"],
                params["projectId"],
                web_state(request),
                params.get("hookId"),
            )
        except (ServiceError, StoreError, HTTPException) as error:
            response = error_answer(request, error)
        await response(scope, receive, send)
