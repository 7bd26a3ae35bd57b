"""httpcore's network backend on plain asyncio: sockets without anyio in between.

httpcore reaches the network through an ``AsyncNetworkBackend``; on asyncio its
own is :class:`httpcore.AnyIOBackend`, which puts anyio's socket streams and a
cancel scope (``fail_after``) around every read and write. A poll of a page
pays that on each of the page's reads, and again on every pool check, where
anyio looks the socket's peer address up to answer "is it readable". This
backend does the same work with asyncio's own transport and a small protocol:

* a read that finds bytes already received returns them at once, with no
  timer and no await; one that has to wait arms a single timer for its timeout;
* a write hands the bytes to the transport and only waits (with its timeout)
  when the transport says its buffer is full;
* TLS is ``loop.start_tls`` on the same connection, bounded by the connect
  timeout, verifying the certificate against ``server_hostname`` as before;
* closing aborts, as anyio's stream did: the socket is closed when ``aclose``
  returns, whatever the server still has to read or to say (close_notify).

It connects where it is told: :class:`ucf.runtime.ssrf.GuardedNetworkBackend`
sits in front of it, resolves and checks every address, and passes one of the
checked addresses, so the SSRF guard's connect-time check is unchanged. The
response size cap is counted above httpcore (:class:`ucf.runtime.http.CappedTransport`),
and what this layer holds unread is bounded (:data:`READ_HIGH_WATER`).
Errors are httpcore's own (``ConnectError``, ``ReadTimeout`` …), as with the
anyio backend, so httpx and :mod:`ucf.runtime.http` see no difference.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import ssl
from collections.abc import Iterable
from typing import Any, Final, cast

import httpcore
from httpcore._utils import is_socket_readable

READ_HIGH_WATER: Final = 512 * 1024
"""Received bytes held before the socket stops being read (until the reader catches up)."""

HAPPY_EYEBALLS_DELAY: Final = 0.25
"""Seconds before the next address of a name is tried beside the first (anyio's default)."""

READ_LOW_WATER: Final = 128 * 1024
"""Reading resumes once what is held falls below this."""


class _StreamProtocol(asyncio.Protocol):
    """Collects what the transport receives; one reader and one writer wait on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None

    # ---- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports (``ucf serve`` runs on uvloop) are
        # not subclasses of asyncio.Transport, though they offer all it does.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_HIGH_WATER and not self.reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake_reader()
        return None  # close the transport: an HTTP client never writes after the server's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake_reader()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- used by the stream

    def take(self, max_bytes: int) -> bytes:
        """What has been received, in whole chunks: as many as fit in ``max_bytes``, or the
        first alone when it is larger (the caller checked there is one).

        httpcore asks for 64 KiB at a time; a page that arrived as one 150 KiB
        chunk would be cut into three, each a copy, and each piece climbs the
        whole stack of async iterators (httpcore, httpx, the size cap) on its
        own. Handing it over whole measured 70-100 µs less CPU per page.
        A chunk is at most what the transport reads at once (256 KiB), and
        the size cap is counted above, per piece, so it still refuses the
        same bodies; only how far past it one read may reach changes.
        """
        chunks = self.chunks
        chunk = chunks.popleft()
        if chunks and len(chunk) + len(chunks[0]) <= max_bytes:
            pieces = [chunk]
            size = len(chunk)
            while chunks and size + len(chunks[0]) <= max_bytes:
                piece = chunks.popleft()
                pieces.append(piece)
                size += len(piece)
            chunk = b"".join(pieces)
        self.buffered -= len(chunk)
        if self.reading_paused and self.buffered < READ_LOW_WATER and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return chunk

    async def wait_readable(self, limit: float | None) -> None:
        """Until something arrives or the connection ends; :class:`_Expired` after ``limit`` s.

        One timer rather than ``asyncio.timeout``: this runs on every read that
        finds nothing received yet, and the timer is all a single wait needs.
        """
        waiter = self._loop.create_future()
        self._read_waiter = waiter
        try:
            await _within(self._loop, waiter, limit)
        finally:
            self._read_waiter = None

    async def wait_drained(self, limit: float | None) -> None:
        """Until the transport takes writes again or the connection ends; or :class:`_Expired`."""
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        try:
            await _within(self._loop, waiter, limit)
        finally:
            self._drain_waiter = None


async def _within(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None], limit: float | None
) -> None:
    timer = None if limit is None else loop.call_later(limit, _expire, waiter)
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()


class _Expired(Exception):
    """A wait's timer ran out (mapped to httpcore's read or write timeout by the waiter)."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection (plain or TLS) as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(
        self,
        max_bytes: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> bytes:
        protocol = self._protocol
        if not protocol.chunks:
            if protocol.eof or protocol.lost:
                return self._at_end()
            try:
                await protocol.wait_readable(timeout)
            except _Expired:
                raise httpcore.ReadTimeout("timed out reading from the server") from None
            if not protocol.chunks:
                return self._at_end()
        return protocol.take(max_bytes)

    def _at_end(self) -> bytes:
        error = self._protocol.error
        if error is not None:
            raise httpcore.ReadError(str(error) or type(error).__name__)
        return b""  # httpcore reads an empty read as the server closing

    async def write(
        self,
        buffer: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if protocol.writing_paused:
            try:
                await protocol.wait_drained(timeout)
            except _Expired:
                raise httpcore.WriteTimeout("timed out writing to the server") from None
            if protocol.lost:
                raise httpcore.WriteError("the connection closed while writing")

    async def aclose(self) -> None:
        # At once, as anyio's stream did: httpcore closes a connection it has
        # given up on (a refused body, a cancelled request, an idle expiry), so
        # nothing still queued is wanted. ``close()`` would keep the socket open
        # until a deaf server read the unsent bytes, and on TLS until the server
        # answered close_notify (up to 30 s, reading all it sends meanwhile).
        # A connection already lost is left alone: CPython 3.11's transport
        # fails on abort() once a close() that waited for its buffer has run.
        if not self._protocol.lost:
            self._transport.abort()
            # abort() closes the socket in a callback: let it run, so the socket
            # is closed when this returns (as anyio's was), even if the caller
            # then blocks the loop (a test stopping its fake server).
            await asyncio.sleep(0)

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # the connection went away during the handshake
            self._transport.close()
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        protocol.transport = transport  # typed as asyncio's; uvloop's is no subclass of it
        return AsyncioStream(transport, protocol)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":
            # An idle pooled connection that has anything to read was closed (or
            # spoken to out of turn) by the server: httpcore then drops it.
            protocol = self._protocol
            if protocol.chunks or protocol.eof or protocol.lost:
                return True
            return is_socket_readable(transport.get_extra_info("socket"))
        return None


def _connect_failure(exc: OSError) -> str:
    """``Connection refused``: the system's name for why a connect failed.

    The words reach users (a health check's "could not connect (…)"), and each
    loop phrases the same failure its own way: asyncio "Connect call failed
    ('203.0.113.7', 443)", uvloop "[Errno 111] Connection refused".
    """
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`AsyncioStream` connections.

    :class:`ucf.runtime.ssrf.GuardedNetworkBackend` hands it checked IP addresses.
    The HTTP sink (the operator's own URL, not guarded) hands it the URL's host:
    asyncio resolves the name and, on asyncio's own loop (Lambda, ``ucf worker``),
    tries its addresses as anyio's backend did, a new attempt every
    :data:`HAPPY_EYEBALLS_DELAY` seconds while earlier ones are still connecting
    (RFC 8305); uvloop takes them one after the other. Unix sockets are not offered (httpcore's base
    class refuses them).
    """

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        # uvloop (``ucf serve``) takes no happy_eyeballs_delay: there a name's
        # addresses are tried one after the other.
        staggered: dict[str, Any] = (
            {"happy_eyeballs_delay": HAPPY_EYEBALLS_DELAY}
            if isinstance(loop, asyncio.BaseEventLoop)
            else {}
        )
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    lambda: _StreamProtocol(loop), host, port, local_addr=local, **staggered
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore.ConnectError(_connect_failure(exc)) from exc
        sock: socket.socket = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)  # typed as asyncio's: see connection_made

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
