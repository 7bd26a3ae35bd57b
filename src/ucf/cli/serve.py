"""``ucf serve``: the whole of ucf in one process — API, webhook gateway, scheduler.

The README's run command. Everything that can be wrong with the set-up is
found before a request is served and reported as one line with a non-zero
exit, never a traceback: a bad store URL, a store or data directory that
cannot be used, a master key that does not open the stored secrets, a port
already taken. The port is bound first (so ``--port 0`` picks a free one, and
the log says which), then the store and secrets are opened, then uvicorn
serves the app on that socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from ucf.cli.errors import fail
from ucf.cli.options import DataDirOption, StoreOption

if TYPE_CHECKING:
    import uvicorn

    from ucf.service.context import UcfContext
    from ucf.service.settings import Settings

log = logging.getLogger("ucf.serve")


class _StartupFailed(Exception):
    """A set-up problem found before serving: its message is the one line users see."""


def _listen(host: str, port: int) -> socket.socket:
    """Bind now, so a taken port is a clear error before anything else starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise _StartupFailed(f"cannot listen on {host}:{port}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise _StartupFailed(f"cannot listen on {host}:{port}: {reason.lower()}") from None
    sock.set_inheritable(True)
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def _open_context(settings: Settings) -> UcfContext:
    from ucf.service.context import UcfContext
    from ucf.stores.errors import StoreError

    try:
        return await UcfContext.open(settings)
    except StoreError as error:
        raise _StartupFailed(str(error)) from None
    except OSError as error:
        raise _StartupFailed(
            f"cannot use the data directory {settings.data_dir}: {error.strerror or error}"
        ) from None


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach a server bound to ``host``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _serve(
    settings: Settings,
    sock: socket.socket,
    token: str,
    public_url: str | None,
    public_introspection: bool,
) -> None:
    import uvicorn

    from ucf.service.settings import served_root_path
    from ucf.web.app import create_app

    context = await _open_context(settings)

    async def opened() -> UcfContext:
        return context

    app = create_app(
        opened,
        api_token=token,
        public_url=public_url,
        public_introspection=public_introspection,
    )
    config = uvicorn.Config(
        app,
        # The public URL's path: the prefix a proxy takes off, which the dashboard's
        # links, redirects and cookies are built under (ucf.web.prefix).
        root_path=served_root_path(public_url),
        log_config=None,
        access_log=False,  # the app logs each request as JSON, by route template
        proxy_headers=True,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    log.info(
        "ucf serving on %s (%s; data in %s)",
        _base_url(sock),
        context.store.description,
        settings.data_dir,
    )
    freezer = asyncio.create_task(_freeze_once_started(server))
    try:
        await server.serve(sockets=[sock])
    finally:
        freezer.cancel()
    if not server.started:
        raise _StartupFailed("the server did not start; see the log above")


async def _freeze_once_started(server: uvicorn.Server) -> None:
    """Freeze the heap once uvicorn has run the app's start-up, and collect the young
    generation less often while serving (see ucf.runtime.heap)."""
    from ucf.runtime.heap import freeze_startup_heap, serve_with_fewer_collections

    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.05)
    freeze_startup_heap()
    serve_with_fewer_collections()


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (0.0.0.0 for every one).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0 picks a free one).")
    ] = 8080,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            envvar="UCF_PUBLIC_URL",
            help="The URL providers reach this server at (webhook URLs, the OAuth redirect URI, "
            "schemes that sign it, Graph subscriptions); default: the URL of each request",
            show_default=False,
        ),
    ] = None,
    public_introspection: Annotated[
        bool | None,
        typer.Option(
            "--public-introspection/--private-introspection",
            help="Serve /metrics, /docs and /openapi.json without a token "
            "(UCF_PUBLIC_INTROSPECTION); default: public on loopback, private otherwise",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Serve the management API, the webhook gateway and the poll scheduler."""
    from uvicorn.loops.auto import auto_loop_factory

    from ucf.service.settings import ApiTokenError, ensure_api_token, served_public_url
    from ucf.service.settings import Settings as SettingsClass
    from ucf.stores.errors import StoreError
    from ucf.web.logs import configure_logging

    try:
        settings = SettingsClass.from_env(data_dir=data_dir, store_url=store)
    except (ValueError, StoreError) as error:
        raise fail(str(error)) from None
    if public_url is not None:
        try:
            public_url = served_public_url(public_url)
        except ValueError as error:
            raise fail(str(error)) from None
        settings = dataclasses.replace(settings, public_url=public_url)
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        token, created = ensure_api_token(settings)
    except ApiTokenError as error:
        raise fail(str(error), 1) from None
    except OSError as error:
        raise fail(
            f"cannot use the data directory {settings.data_dir}: {error.strerror or error}", 1
        ) from None
    if created:
        typer.echo(
            f"ucf: created the admin API token (kept in {settings.data_dir / 'api-token'}); "
            f"use it as 'Authorization: Bearer <token>':\n{token}",
            err=True,
        )
    introspection = next(
        (
            choice
            for choice in (public_introspection, settings.public_introspection)
            if choice is not None
        ),
        is_loopback(host),
    )
    loop_factory = auto_loop_factory()  # uvloop when installed, as uvicorn itself would
    try:
        sock = _listen(host, port)
        with sock, asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(settings, sock, token, public_url, introspection))
    except _StartupFailed as error:
        raise fail(str(error), 1) from None
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            log.info("interrupted")
        raise typer.Exit(130) from None
