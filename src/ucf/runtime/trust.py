"""The CA certificates an HTTPS client trusts, loaded on a thread while start-up waits.

Loading certifi's bundle into a TLS context parses ~120 certificates: about
15 ms of CPU (more on a small Lambda), paid by every cold start that builds an
HTTP client, before its first request. The certificates are needed only at
the first TLS handshake, and a cold start spends that time waiting on its
store anyway (the lease, the connector, the credentials and the checkpoint are
all round trips), so :class:`BackgroundTrust` starts the load on a thread when
the client is built and :class:`BackgroundTrustTransport` waits for it before
its first ``https`` request.

The load holds the GIL while it parses (CPython's ``load_verify_locations``
does not release it), so it overlaps only with the event loop's I/O waits,
never with Python work: it can make start-up no slower than loading inline,
and as much faster as the waits it hides behind.

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
from concurrent.futures import Future
from typing import Any, Final

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


class BackgroundTrust:
    """A TLS context for an HTTPS client whose CA bundle loads on a thread of its own.

    Nothing may use :attr:`context` for a handshake before :meth:`ready`
    returns: the thread is the only one touching it until then, and the
    future's completion is what hands it over.
    """

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self._loaded: Future[None] = Future()
        self._ready = True
        if verify is True:
            self.context = default_client_context()
            self._ready = False
            threading.Thread(target=self._load, name=LOAD_THREAD_NAME, daemon=True).start()
        elif verify is False:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        else:
            self.context = verify  # a caller's own context (tests trust their own CA with it)
        if self._ready:
            self._loaded.set_result(None)

    def _load(self) -> None:
        try:
            import certifi

            self.context.load_verify_locations(cafile=certifi.where())
        except BaseException as error:  # handed to whoever waits, raised there
            self._loaded.set_exception(error)
        else:
            self._loaded.set_result(None)

    async def ready(self) -> None:
        """Return once the certificates are loaded; raise what loading them raised."""
        if self._ready:
            return
        await asyncio.wrap_future(self._loaded)
        self._ready = True

    def wait(self, timeout: float | None = None) -> None:
        """The same, from synchronous code (tests)."""
        self._loaded.result(timeout)


class BackgroundTrustTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, its CA bundle loading from the moment it is built."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True, **options: Any) -> None:
        self.trust = BackgroundTrust(verify)
        super().__init__(verify=self.trust.context, **options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            await self.trust.ready()
        return await super().handle_async_request(request)
