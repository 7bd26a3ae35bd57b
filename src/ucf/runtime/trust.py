"""The CA certificates an HTTPS client trusts, loaded on a thread while start-up waits.

Loading certifi's bundle into a TLS context parses ~120 certificates: about
15 ms of CPU (more on a small Lambda), paid by every cold start that builds an
HTTP client, before its first request. The certificates are needed only at
the first TLS handshake, and a cold start spends that time waiting on its
store anyway (the lease, the connector, the credentials and the checkpoint are
all round trips), so :class:`BackgroundTrust` starts the load on a thread when
the client is built and :class:`BackgroundTrustTransport` waits for it before
its first ``https`` request.

CPython releases the GIL around OpenSSL's ``SSL_CTX_load_verify_locations``
(``Modules/_ssl.c``), so the load runs beside Python work as well as beside
the event loop's I/O waits; nothing but the loading thread touches the
context until :meth:`BackgroundTrust.ready` hands it over. A process forked
while the bundle loads has no loading thread: it loads the bundle itself
right after the fork (:func:`_after_fork_in_child`).

The context is ``ssl.create_default_context(cafile=certifi.where())``, which
is what httpx builds for ``verify=True`` with ``trust_env=False``; a test
holds the two equal setting by setting and certificate by certificate.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import threading
import weakref
from concurrent.futures import Future
from typing import Any, Final

import httpcore
import httpx

__all__ = [
    "LOAD_THREAD_NAME",
    "BackgroundTrust",
    "BackgroundTrustTransport",
    "default_client_context",
]

LOAD_THREAD_NAME: Final = "ucf-ca-bundle"


def default_client_context() -> ssl.SSLContext:
    """``ssl.create_default_context()``'s settings for a client, with no certificate loaded yet.

    The same steps as the standard library's function for ``Purpose.SERVER_AUTH``,
    minus its ``load_verify_locations`` / ``load_default_certs`` call.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if sys.version_info >= (3, 13):  # create_default_context is stricter from 3.13 on
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    keylog_file = os.environ.get("SSLKEYLOGFILE")
    if keylog_file and not sys.flags.ignore_environment and hasattr(context, "keylog_filename"):
        context.keylog_filename = keylog_file
    return context


_loading: weakref.WeakSet[BackgroundTrust] = weakref.WeakSet()
"""Every context whose bundle a thread was started for, for :func:`_after_fork_in_child`."""


def _after_fork_in_child() -> None:
    """A fork copies only the thread that forked: a bundle still loading in the parent
    would never be loaded in the child, whose first HTTPS request would wait for ever.
    The child loads what is missing itself, before it runs anything else."""
    for trust in list(_loading):
        trust._own_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class BackgroundTrust:
    """A TLS context for an HTTPS client whose CA bundle loads on a thread of its own.

    Nothing may use :attr:`context` for a handshake before :meth:`ready`
    returns: the thread is the only one touching it until then, and the
    future's completion is what hands it over. A process forked meanwhile
    loads the bundle itself (:func:`_after_fork_in_child`).
    """

    def __init__(self, verify: ssl.SSLContext | bool = True, *, load_now: bool = True) -> None:
        self._loaded: Future[None] = Future()
        self._finished = False
        self._error: BaseException | None = None
        """What loading raised, once finished: plain data, which a forked child reads."""
        self._ready = True
        self._unstarted = [True]
        """Emptied by the one call that starts the load (``list.pop`` is atomic, and
        unlike a lock a fork cannot copy it held)."""
        if verify is True:
            self.context = default_client_context()
            self._ready = False
            if load_now:
                self.load()
        elif verify is False:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        else:
            self.context = verify  # a caller's own context (tests trust their own CA with it)
        if self._ready:
            self._loaded.set_result(None)

    def load(self) -> None:
        """Start loading the bundle on its thread, if nothing started it yet.

        A context made with ``load_now=False`` loads when this is called (its owner
        expects an ``https`` request soon) or, at the latest, when :meth:`ready` is
        first awaited: a client that only ever speaks plain ``http`` never loads it.
        """
        if self._ready:
            return
        _loading.add(self)  # first: a fork from here on loads it in the child
        try:
            self._unstarted.pop()
        except IndexError:  # started already
            return
        threading.Thread(target=self._load, name=LOAD_THREAD_NAME, daemon=True).start()

    def _load(self) -> None:
        self._load_bundle()
        self._settle(self._loaded)

    def _load_bundle(self) -> None:
        try:
            import certifi

            self.context.load_verify_locations(cafile=certifi.where())
        except BaseException as error:  # handed to whoever waits, raised there
            self._error = error
        self._finished = True

    def _settle(self, loaded: Future[None]) -> None:
        if self._error is None:
            loaded.set_result(None)
        else:
            loaded.set_exception(self._error)

    def _own_in_child(self) -> None:
        """In a forked child: a new future (the parent's may never complete here, and its
        lock may have been held by a thread the child does not have), settled with the
        load's outcome, loading the bundle first if the parent's thread had not.

        The parent's thread may have been part-way through (it loads without the
        GIL): loading the whole file again into the same context is safe, OpenSSL
        skipping the certificates already in its store.
        """
        if self._ready:
            return
        self._unstarted.clear()  # loaded here: no thread of its own in this process
        if not self._finished:
            self._error = None
            self._load_bundle()
        loaded: Future[None] = Future()
        self._settle(loaded)
        self._loaded = loaded

    async def ready(self) -> None:
        """Return once the certificates are loaded; raise what loading them raised."""
        if self._ready:
            return
        self.load()
        await asyncio.wrap_future(self._loaded)
        self._ready = True

    def wait(self, timeout: float | None = None) -> None:
        """The same, from synchronous code (tests)."""
        self.load()
        self._loaded.result(timeout)


_POOL_OPTIONS: Final = ("http1", "http2", "uds", "local_address", "retries", "socket_options")
"""httpx's transport options it hands its connection pool (besides limits and TLS)."""


class BackgroundTrustTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, its CA bundle loading from the moment it is built
    (with ``load_now=False``: from :meth:`expect`, or its first ``https`` request).

    With ``network_backend``, its connection pool is httpx's with that backend
    (httpx offers no hook for it): ucf's asyncio sockets (:mod:`ucf.runtime.network`),
    behind the SSRF guard or not, and the pool's locks and events from asyncio too
    (:mod:`ucf.runtime.pool_sync`), so no request loads anyio's backend. httpx's
    pool options (``retries``, ``http2``, ...) reach that pool as they reach httpx's;
    a ``proxy`` is refused rather than silently dropped (it needs httpx's proxy pool).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),  # noqa: B008 - httpx's default, immutable
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        load_now: bool = True,
        **options: Any,
    ) -> None:
        if network_backend is not None and options.get("proxy") is not None:
            raise TypeError("BackgroundTrustTransport: a network_backend's pool takes no proxy")
        self.trust = BackgroundTrust(verify, load_now=load_now)
        super().__init__(verify=self.trust.context, limits=limits, **options)
        if network_backend is not None:
            from ucf.runtime.pool_sync import install

            install()
            self._pool = httpcore.AsyncConnectionPool(
                ssl_context=self.trust.context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=network_backend,
                **{name: options[name] for name in _POOL_OPTIONS if name in options},
            )

    def expect(self, url: str) -> None:
        """A request to ``url`` is coming: an ``https`` one starts the bundle's load now,
        so that it runs while the caller's other work waits (a plain ``http`` one needs none)."""
        if not url.startswith("http://"):
            self.trust.load()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            try:
                await self.trust.ready()
            except Exception as error:
                # As httpx reports a handshake that fails: every caller handles httpx's
                # errors (retries, the poll's and the gateway's error paths), not OSError.
                raise httpx.ConnectError(
                    f"the CA certificates could not be loaded: {type(error).__name__}: {error}",
                    request=request,
                ) from error
        return await super().handle_async_request(request)
