"""The one ASGI app: management API, webhook gateway, ``/healthz``, ``/metrics``, OpenAPI.

:func:`create_app` takes :class:`~ucf.service.settings.Settings` (the app
opens its own :class:`~ucf.service.context.UcfContext` at start-up) or a
factory returning a context (``ucf serve`` opens it first, so a wrong master
key is a one-line error before the port is taken; tests share one). The
lifespan closes the context either way.

Background work runs in the lifespan too: each :class:`BackgroundService`
(``run()`` until ``stop()``) is started after the context opens and stopped
before it closes. :func:`default_services` gives the poll scheduler (unless
``UCF_SCHEDULER=0``) and one outbox deliverer per configured sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from ucf import __version__
from ucf.core.descriptor import ConnectorDescriptor
from ucf.runtime.redaction import SECRETS
from ucf.service.context import UcfContext
from ucf.service.settings import Settings, ensure_api_token
from ucf.service.webhooks import WebhookGateway
from ucf.web import api, dashboard, webhooks
from ucf.web.access import introspection_access
from ucf.web.api import DESCRIPTOR_BODY
from ucf.web.errors import ErrorBody, install_error_handlers
from ucf.web.front import Receive, Scope, Send, WebhookFront, match, misdirected
from ucf.web.metrics import Metrics
from ucf.web.middleware import DEFAULT_BODY_LIMIT, RequestMiddleware
from ucf.web.prefix import public_path, root_of
from ucf.web.state import WebState, web_state

__all__ = ["BackgroundService", "ContextFactory", "UcfApp", "create_app", "default_services"]

log = logging.getLogger("ucf.web")

ContextFactory = Callable[[], Awaitable[UcfContext]]

STOP_GRACE_SECONDS = 30.0
"""How long background services get to finish after stop() (the scheduler's own
grace, 20 s, lets polls store their page first)."""


class BackgroundService(Protocol):
    """Something that runs for the life of the app: the scheduler, an outbox deliverer."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class PollWaker(Protocol):
    """A service that polls sooner when woken (the scheduler, after a requested poll)."""

    def wake(self) -> None: ...


ServiceFactory = Callable[[WebState], Sequence[BackgroundService]]


def default_services(state: WebState) -> list[BackgroundService]:
    """The scheduler, in-process, reporting every poll to ``/metrics``, and one
    outbox deliverer per configured sink (``UCF_SINK_JSONL``, ``UCF_SINK_HTTP``)."""
    from ucf.service.delivery import delivery_services
    from ucf.service.scheduler import Scheduler

    services: list[BackgroundService] = []
    if state.context.settings.scheduler:
        services.append(Scheduler(state.context, on_result=state.metrics.observe_poll))
    services.extend(delivery_services(state.context))
    return services


async def _supervised(service: BackgroundService) -> None:
    """A crashed background service is logged; it never takes the API down with it."""
    try:
        await service.run()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background service %s stopped with an error", type(service).__name__)


class UcfApp(FastAPI):
    """The app, with the webhook front ahead of FastAPI's own ``__call__``.

    A delivery (``POST|HEAD /api/webhooks/…``) is answered by
    :class:`~ucf.web.front.WebhookFront` in raw ASGI, before Starlette's
    middleware stack, router and request objects (``bench/webhook.py``);
    every other request goes through the app unchanged.
    """

    webhook_front: WebhookFront

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The front's answered(), without its coroutine between this and the delivery's.
        target = match(scope) if scope["type"] == "http" else None
        if target is None and scope["type"] == "http":
            target = misdirected(scope)  # a GET of a webhook URL: its 405 is the front's
        if target is not None:
            await self.webhook_front(target, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    source: Settings | ContextFactory | WebState,
    *,
    api_token: str | None = None,
    public_url: str | None = None,
    services: ServiceFactory = default_services,
    body_limit: int = DEFAULT_BODY_LIMIT,
    public_introspection: bool | None = None,
) -> UcfApp:
    """The app. ``api_token``: else ``ensure_api_token`` (``UCF_API_TOKEN`` or the data dir's).

    ``source`` may also be a :class:`WebState` already built (the Lambda API builds
    it for its webhook front and the app, made later, shares its gateway and
    metrics): the app then uses it as it is and leaves closing its context to its
    owner.

    ``public_introspection``: serve ``/metrics``, ``/docs`` and ``/openapi.json`` to
    anyone; else the settings' ``UCF_PUBLIC_INTROSPECTION``; else private (admin token
    or dashboard session). ``ucf serve`` makes them public when bound to loopback.
    """
    metrics = source.metrics if isinstance(source, WebState) else Metrics()

    async def open_context() -> UcfContext:
        if isinstance(source, Settings):
            return await UcfContext.open(source)
        if isinstance(source, WebState):
            return source.context
        return await source()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(source, WebState):
            async with _running(app, source, services):
                yield
            return
        context = await open_context()
        try:
            token = api_token or ensure_api_token(context.settings)[0]
            SECRETS.add(token)
            state = WebState(
                context=context,
                gateway=WebhookGateway(context, observer=metrics),
                metrics=metrics,
                api_token=token,
                public_url=public_url or context.settings.public_url,
                public_introspection=bool(
                    context.settings.public_introspection
                    if public_introspection is None
                    else public_introspection
                ),
            )
            async with _running(app, state, services):
                yield
        finally:
            await context.close()

    app = UcfApp(
        title="ucf",
        version=__version__,
        summary="Universal Connector Framework: connectors, instances, signals, webhooks.",
        lifespan=lifespan,
        docs_url=None,  # served below, behind introspection_access
        openapi_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(webhooks.router)
    app.include_router(api.router)
    app.include_router(api.authoring)
    app.include_router(dashboard.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness and store reachability")
    async def healthz(request: Request) -> JSONResponse:
        state = web_state(request)
        try:
            await state.context.store.descriptors.get("healthz")
        except Exception as error:  # any store failure means "not ready", never a 500
            log.warning("health check: the store is not reachable: %s", error)
            return JSONResponse({"status": "unavailable", "store": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "version": __version__})

    introspection = [Depends(introspection_access)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=introspection)
    async def openapi_document(request: Request) -> JSONResponse:
        document = app.openapi()
        root = root_of(request.scope)
        if root:  # served under a prefix: the paths below are relative to it
            document = {**document, "servers": [{"url": root}]}
        return JSONResponse(document)

    @app.get("/docs", include_in_schema=False, dependencies=introspection)
    async def api_docs(request: Request) -> HTMLResponse:
        openapi_url = public_path(request.scope, "/openapi.json")
        return get_swagger_ui_html(openapi_url=openapi_url, title="ucf — API")

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        dependencies=introspection,
        responses={
            200: {"content": {metrics.content_type.split(";")[0]: {}}},
            401: {"model": ErrorBody, "description": "Private: admin token or dashboard session"},
        },
    )
    async def prometheus(request: Request) -> Response:
        state = web_state(request)
        try:
            await metrics.refresh(state.context)
        except Exception as error:  # serve the counters even when the store is down
            log.warning("metrics: cannot read the outbox lag: %s", error)
        return Response(metrics.render(), media_type=metrics.content_type)

    app.webhook_front = WebhookFront(functools.partial(web_state_of, app))  # no lambda frame
    app.add_middleware(RequestMiddleware, metrics=metrics, body_limit=body_limit)
    _document_descriptor_bodies(app)
    return app


def web_state_of(app: FastAPI) -> WebState:
    """The running app's state; the front asks for it with every delivery. Read as an item:
    ``app.state.ucf`` is found by Starlette's ``State.__getattr__`` only after the
    ordinary lookup has raised and caught an ``AttributeError`` (458 -> 100 ns)."""
    state: WebState = app.state["ucf"]
    return state


@contextlib.asynccontextmanager
async def _running(app: FastAPI, state: WebState, services: ServiceFactory) -> AsyncIterator[None]:
    """The state on ``app.state`` and the background services running, for the app's life."""
    app.state.ucf = state
    running = list(services(state))
    for service in running:
        if isinstance(service, PollWaker):  # the in-process scheduler
            state.gateway.wake_on_poll_request(service.wake)
    tasks = [asyncio.create_task(_supervised(s), name=f"ucf {type(s).__name__}") for s in running]
    try:
        yield
    finally:
        for service in running:
            service.stop()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _document_descriptor_bodies(app: FastAPI) -> None:
    """Give descriptor bodies the descriptor language's JSON Schema in ``/openapi.json``.

    The routes take a plain JSON object (the service validates it in full and
    reports every problem with its path, which pydantic-in-FastAPI would not),
    so the schema is attached here: its definitions become components.
    """
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = plain()
        descriptor = ConnectorDescriptor.model_json_schema(
            by_alias=True, mode="validation", ref_template="#/components/schemas/{model}"
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in {
            **descriptor.pop("$defs", {}),
            "ConnectorDescriptor": descriptor,
        }.items():
            if name in components:
                raise RuntimeError(f"OpenAPI component {name!r} is defined twice")
            components[name] = definition
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if operation.pop(DESCRIPTOR_BODY, False):
                    content = operation["requestBody"]["content"]["application/json"]
                    content["schema"] = {"$ref": "#/components/schemas/ConnectorDescriptor"}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
