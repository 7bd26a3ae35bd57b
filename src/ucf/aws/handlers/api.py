"""API Gateway → ucf under Mangum: webhook gateway, management API, dashboard.

What Mangum drives is a :class:`~ucf.web.front.FrontDoor`: webhook deliveries
are answered by the same :class:`~ucf.web.front.WebhookFront` as under
``ucf serve``, without FastAPI (a function that only receives deliveries never
imports or builds it); any other request builds the app,
:func:`ucf.web.app.create_app`, exactly what ``ucf serve`` runs, on first need.
Both share one :class:`~ucf.web.state.WebState` (context, gateway and its
caches, metrics, token), built on the first invocation of an execution
environment and kept; the admin token is read from Secrets Manager by the
first request other than a delivery (a delivery never needs it), and a
failure to read it answers that request with a JSON 503 and is tried again by
the next; the app's lifespan is entered once, not per request —
Mangum's own lifespan handling would open and close the store around every
request, so it is switched off. The in-process scheduler and outbox
deliverers are not started here: on AWS they are functions of their own.

Works with HTTP APIs (payload 2.0, what the template deploys) and REST APIs
(payload 1.0), on any stage; for a custom domain's base path, set
``UCF_API_BASE_PATH``. The stage or base path the client's path starts with is
the app's ``root_path`` (:func:`_under_prefix`), so the dashboard's links stay
under it. Mangum decodes base64 bodies (API Gateway encodes
binary ones), so the webhook gateway verifies signatures on the exact bytes
the provider sent. API Gateway refuses bodies over 10 MB and Lambda payloads
over 6 MB before ucf sees them; the gateway's own 256 KB limit applies to
everything else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from ucf.aws.container import Container

if TYPE_CHECKING:
    from ucf.web.app import BackgroundService, UcfApp
    from ucf.web.front import ASGIApp
    from ucf.web.state import WebState

__all__ = ["FUNCTION", "ApiFunction", "handler"]

log = logging.getLogger("ucf.aws.api")

Adapter = Callable[[dict[str, Any], Any], dict[str, Any]]


def _no_background_services(state: WebState) -> Sequence[BackgroundService]:
    """Polling and delivery run as functions of their own on AWS, never inside the API."""
    return ()


class ApiFunction:
    """The API Gateway handler of one execution environment."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self._app: UcfApp | None = None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        adapter = self.container.run(self._adapter)
        response = self.container.call(adapter, _forwarded_port_readable(event), context)
        return _within_response_limit(response)

    @property
    def app(self) -> UcfApp | None:
        """The management app, once a request other than a delivery has built it."""
        return self._app

    async def _adapter(self) -> Adapter:
        return await self.container.once("api", self._start)

    async def _start(self, stack: contextlib.AsyncExitStack) -> Adapter:
        from mangum import Mangum

        from ucf.aws.config import AwsConfigError, check_api_token_configured, load_api_token
        from ucf.runtime.redaction import SECRETS
        from ucf.service.webhooks import WebhookGateway
        from ucf.web.front import FrontDoor, WebhookFront
        from ucf.web.metrics import Metrics
        from ucf.web.state import WebState

        environ = self.container.environ
        try:
            check_api_token_configured(environ)  # read on the first management request
            context = await self.container.context()  # the one every function opens
        except AwsConfigError as error:
            log.error("the API cannot start: %s", error)
            raise
        metrics = Metrics()
        state = WebState(
            context=context,
            gateway=WebhookGateway(context, observer=metrics),
            metrics=metrics,
            # Webhook deliveries never read the admin token, so its Secrets Manager round
            # trip waits for the first request that does (below). Until then the state
            # holds a random one that nothing reads and nobody could present.
            api_token=secrets.token_urlsafe(32),
            # The settings' reading of UCF_PUBLIC_URL (checked, "https://x/?" as
            # "https://x"), not the raw variable: that one made every URL shown
            # "https://x/?/api/webhooks/…" while the schedule function used the checked one.
            public_url=context.settings.public_url,
            public_introspection=bool(context.settings.public_introspection),
            # "Poll now" takes the instance's lease under this owner: unique per environment.
            worker_id=f"{self.container.worker_id}:api",
        )

        async def management_app() -> ASGIApp:
            from ucf.web.app import create_app

            try:
                token = await load_api_token(environ)
            except AwsConfigError as error:  # a 503 now; the next request tries again
                log.error("the API cannot answer other requests than webhooks: %s", error)
                raise
            SECRETS.add(token)
            state.api_token = token
            app = create_app(state, services=_no_background_services)
            await stack.enter_async_context(app.router.lifespan_context(app))
            self._app = app
            log.info("api: management app built")
            return app

        stack.callback(self._forget)
        # Mangum logs "METHOD path status" for every request at INFO, and the path of a
        # delivery ends in the instance's hook id, as secret as a credential; ucf's own
        # access line names the route template instead. Its errors (WARNING and up) stay.
        logging.getLogger("mangum.http").setLevel(logging.WARNING)
        log.info("api: started (cold start)")
        return Mangum(
            FrontDoor(WebhookFront(lambda: state), management_app),
            lifespan="off",
            api_gateway_base_path=environ.get("UCF_API_BASE_PATH") or "/",
            custom_handlers=_host_tolerant_handlers(),
        )

    def _forget(self) -> None:
        self._app = None


RESPONSE_LIMIT_BYTES: Final = 6_291_556
"""The JSON a synchronous invocation may return ("Response payload size exceeded maximum
allowed payload size (6291556 bytes)"): past it Lambda fails the invocation, and API
Gateway answers its bare 500 with nothing to say why."""


def _within_response_limit(response: dict[str, Any]) -> dict[str, Any]:
    """``response``, or a JSON 400 saying to ask for less when Lambda could not return it.

    Only a body that could pass the limit (12 bytes a character, a character
    beyond the BMP escaped) is measured; every other answer is left untouched.
    """
    body = response.get("body")
    if not isinstance(body, str) or len(body) * 12 < RESPONSE_LIMIT_BYTES:
        return response
    size = _returned_size(response)
    if size <= RESPONSE_LIMIT_BYTES:
        return response
    log.warning("answered 400: the response was %d bytes, over Lambda's limit", size)
    from ucf.web.refusals import error_json

    message = (
        f"the answer is {size / 1e6:.1f} MB as Lambda returns it, over the "
        f"{RESPONSE_LIMIT_BYTES / 1e6:.1f} MB a function may return; ask for less "
        "(a smaller limit)"
    )
    return {
        "statusCode": 400,
        "headers": {"content-type": "application/json"},
        "body": error_json("response_too_large", message).decode(),
        "isBase64Encoded": False,
        **({"multiValueHeaders": {}} if "multiValueHeaders" in response else {}),
    }


def _returned_size(response: dict[str, Any]) -> int:
    """Bytes of ``response`` as the Python runtime writes it: raw UTF-8 on python3.12 and
    later, every non-ASCII character escaped (6 bytes, 12 beyond the BMP) before
    (awslambdaric's marshaller, by ``AWS_EXECUTION_ENV``)."""
    runtime = os.environ.get("AWS_EXECUTION_ENV", "").removeprefix("AWS_Lambda_python")
    major, _, minor = runtime.partition(".")
    raw = major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (3, 12)
    return len(json.dumps(response, ensure_ascii=not raw).encode())


_PORT = re.compile(r"[0-9]{1,5}")


def _forwarded_port_readable(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with an ``X-Forwarded-Port`` Mangum can read (one number), or without one.

    Mangum reads the header as a single integer for the ASGI ``server`` and fails
    the whole invocation on anything else, while proxies append to it: a CDN in front
    of API Gateway makes it ``443,443`` (payload 2.0 joins repeated headers with
    commas; 1.0 lists them in ``multiValueHeaders``). The last port is the nearest
    proxy's; a value with none is dropped (Mangum then assumes 80). ucf builds URLs
    from ``Host`` and uses ``server`` only without one, so nothing else changes.
    """
    fixed: dict[str, Any] | None = None
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field)
        if not isinstance(headers, dict):
            continue
        for name, value in headers.items():
            if name.lower() != "x-forwarded-port":
                continue
            values = value if isinstance(value, list) else [value]
            items = [part.strip() for v in values if isinstance(v, str) for part in v.split(",")]
            port = next((part for part in reversed(items) if _PORT.fullmatch(part)), None)
            readable: Any = None if port is None else [port] if isinstance(value, list) else port
            if readable == value:
                continue
            if fixed is None:
                fixed = dict(event)
            kept = {key: item for key, item in fixed[field].items() if key != name}
            fixed[field] = kept if readable is None else {**kept, name: readable}
    return event if fixed is None else fixed


def _mangum_reads_host(host: str) -> bool:
    """What Mangum's ``get_server_and_port`` can split: a name, or one ``name:digits``."""
    _, colon, port = host.partition(":")
    return not colon or (":" not in port and port.isascii() and port.isdigit())


def _server_of(host: str, forwarded_port: Any) -> tuple[str, int] | None:
    """The ASGI ``server`` for a Host Mangum cannot split: ``[::1]:8080`` is
    ``("::1", 8080)``; a Host that is no ``host[:port]`` at all gives None (allowed by
    ASGI), and ucf then builds no URL from it."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(f"//{host}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    if port is None:
        port = int(forwarded_port) if str(forwarded_port).isdigit() else 80
    return parts.hostname, port


def _host_tolerant_handlers() -> list[type[Any]]:
    """Mangum's API Gateway handlers (payload 2.0 and 1.0), but answering a request whose
    ``Host`` Mangum cannot split, where Mangum failed the whole invocation, and reading
    an HTTP API's path as API Gateway hands it over (decoded once, see below).

    Mangum splits ``Host`` at its colon into a name and an integer port for the ASGI
    ``server``, so an IPv6 literal (``[::1]:8080``) or a port that is no number raised
    before ucf saw the request: API Gateway answered its bare 500. Such a request is
    read with the Host left out (so Mangum builds everything else as usual), then
    given its Host back, with the ``server`` :func:`_server_of` reads from it.
    """
    from mangum.handlers import APIGateway, HTTPGateway

    def tolerant(gateway: type[Any], *, decoded_path: bool) -> type[Any]:
        class HostTolerant(gateway):  # type: ignore[misc]
            event: dict[str, Any]
            config: dict[str, Any]

            @property
            def scope(self) -> dict[str, Any]:
                scope = self._scope()
                if decoded_path:
                    scope["path"] = _http_api_path(self.event, self.config)
                return _under_prefix(scope, self.event)

            def _scope(self) -> dict[str, Any]:
                event = self.event
                host = _header(event, "host")
                if host is None or _mangum_reads_host(host):
                    return super().scope  # type: ignore[no-any-return]
                self.event = _without_header(event, "host")
                try:
                    scope: dict[str, Any] = super().scope
                finally:
                    self.event = event
                # Encoded as Mangum encodes every header value (UTF-8): a Host past
                # Latin-1 must not fail the invocation this class exists to answer.
                scope["headers"] = [*scope["headers"], [b"host", host.encode()]]
                scope["server"] = _server_of(host, _header(event, "x-forwarded-port"))
                scope["aws.event"] = event
                return scope

        HostTolerant.__name__ = f"HostTolerant{gateway.__name__}"
        return HostTolerant

    # Mangum's HTTPGateway reads every event with a "version" (HTTP APIs, payload 2.0
    # and 1.0); its APIGateway the REST API's, whose path still holds its escapes.
    return [tolerant(HTTPGateway, decoded_path=True), tolerant(APIGateway, decoded_path=False)]


def _http_api_path(event: dict[str, Any], config: dict[str, Any]) -> str:
    """The path of an HTTP API event, as the client meant it: decoded once, by API Gateway.

    "API Gateway decodes URL-encoded request parameters before passing them to your
    backend integration" (AWS, "Create routes for HTTP APIs in API Gateway",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html):
    a request for ``/api/webhooks/trello/a%2541/…`` arrives with the path
    ``/api/webhooks/trello/a%41/…`` (payload 2.0 ``rawPath`` and ``requestContext.http.path``
    alike; 1.0 ``path``). Mangum decodes it a second time (``unquote``), which made the
    project ``a%41`` into ``aA``: another project's URL, or none. So the path is taken as
    API Gateway gives it, only the configured base path taken off, as Mangum does. A
    ``%2F`` has become a ``/`` by then; :func:`ucf.web.front.match` reads such a path.
    """
    if event.get("version") == "2.0":
        path = event["requestContext"]["http"]["path"]
    else:
        path = event["path"]
    if not isinstance(path, str) or not path:
        return "/"
    base = config.get("api_gateway_base_path") or "/"
    if base != "/":
        base = base if base.startswith("/") else f"/{base}"
        if path.startswith(base):
            path = path[len(base) :]
    # A stage other than $default starts the path an HTTP API hands over ("/prod/…"):
    # without it the routes see the app's own path, as on the $default stage.
    stage = event.get("requestContext", {}).get("stage")
    named = isinstance(stage, str) and stage not in ("", "$default")
    if named and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
        path = path[len(stage) + 1 :] or "/"
    return path or "/"


def _under_prefix(scope: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """``scope`` with the prefix the browser's path had, and the routes do not, as ASGI's
    ``root_path`` (``path`` keeps it, as under uvicorn): the stage of a REST API
    (``/prod``), an HTTP API's stage other than ``$default``, a custom domain's base path.

    The dashboard builds its links, redirects and cookies under it (ucf.web.prefix), and
    URLs built on the request (the webhook URLs shown without ``UCF_PUBLIC_URL``, the
    OAuth redirect URI) hold it, as the client must send them. It is what the client's
    path (``requestContext``'s, the whole of it) has before the path routed on.
    """
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return scope
    if event.get("version") == "2.0":
        http = context.get("http")
        visible = http.get("path") if isinstance(http, dict) else None
    else:
        visible = context.get("path")
        visible = unquote(visible) if isinstance(visible, str) else None
    routed = scope["path"]
    if not isinstance(visible, str) or not routed.startswith("/"):
        return scope
    if routed == "/" and not visible.endswith("/"):
        visible += "/"  # "/prod", routed as "/"
    if not visible.endswith(routed):
        return scope
    root = visible[: len(visible) - len(routed)].rstrip("/")
    if not root.startswith("/"):
        return scope
    scope["root_path"] = root
    scope["path"] = root + routed
    return scope


def _header(event: dict[str, Any], name: str) -> str | None:
    """The value of header ``name`` as Mangum reads it (1.0: its listed values joined)."""
    found: str | None = None
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field)
        if not isinstance(headers, dict):
            continue
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == name:
                if isinstance(value, list):
                    value = ", ".join(value)
                if isinstance(value, str):
                    found = value
    return found


def _without_header(event: dict[str, Any], name: str) -> dict[str, Any]:
    fixed = dict(event)
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field)
        if isinstance(headers, dict):
            fixed[field] = {
                key: value
                for key, value in headers.items()
                if not (isinstance(key, str) and key.lower() == name)
            }
    return fixed


FUNCTION = ApiFunction(Container("api"))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: ``ucf.aws.handlers.api.handler``."""
    return FUNCTION(event, context)
