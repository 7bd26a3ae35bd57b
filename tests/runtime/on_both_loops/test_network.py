"""The asyncio network backend under httpcore: real sockets on loopback, real TLS.

Each test stands up a plain asyncio server that misbehaves in one way (stays
silent, hangs up, never reads, never answers the TLS hello, sends more than
the reader keeps up with) and checks that the stream reports it the way
httpcore expects: its own exception types, an empty read at the end, timeouts
honoured, and no more held in memory than the high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpcore
import pytest

from ucf.fakes import make_tls_pair
from ucf.runtime import network
from ucf.runtime.network import AsyncioBackend, AsyncioStream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _serve(handler: Handler, **options: Any) -> AsyncIterator[int]:
    """A server whose connections are all closed when the block ends, so any
    transport still open after a test (a ResourceWarning) is the client's."""
    handlers: set[asyncio.Task[None]] = set()

    async def tidy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (asyncio.CancelledError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(tidy, "127.0.0.1", 0, **options)
    port = server.sockets[0].getsockname()[1]
    async with server:
        try:
            yield port
        finally:
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)


async def _connect(port: int) -> httpcore.AsyncNetworkStream:
    return await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2.0)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_bytes_written_come_back_in_order_and_an_empty_read_marks_the_end() -> None:
    async with _serve(_echo) as port:
        stream = await _connect(port)
        payload = bytes(range(256)) * 4096  # 1 MiB, more than one read and past the high-water mark
        await stream.write(payload, timeout=2.0)
        received = bytearray()
        while len(received) < len(payload):
            chunk = await stream.read(65536, timeout=2.0)
            assert 0 < len(chunk) <= 256 * 1024  # one transport read at most
            received += chunk
        assert bytes(received) == payload
        assert isinstance(stream, AsyncioStream)
        stream._transport.write_eof()  # the echo server then hangs up (uvloop's socket
        # stand-in offers no shutdown(); the transport does it on both loops)
        assert await stream.read(65536, timeout=2.0) == b""
        await stream.aclose()


async def test_reads_hand_over_whole_chunks_as_many_as_fit() -> None:
    protocol = network._StreamProtocol(asyncio.get_running_loop())
    for piece in (b"a" * 10, b"b" * 10, b"c" * 10):
        protocol.data_received(piece)
    assert protocol.take(15) == b"a" * 10  # the next chunk would not fit: not cut in two
    assert protocol.take(100) == b"b" * 10 + b"c" * 10  # both fit: one piece
    protocol.data_received(b"x" * 100)
    assert protocol.take(64) == b"x" * 100  # a chunk larger than asked for comes whole
    assert protocol.buffered == 0
    assert not protocol.chunks


async def test_a_silent_server_makes_a_read_time_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with _serve(silent) as port:
        stream = await _connect(port)
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(1024, timeout=0.2)
        await stream.aclose()


async def test_an_idle_connection_reads_as_readable_once_the_server_hangs_up() -> None:
    hang_up = asyncio.Event()

    async def closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hang_up.wait()
        writer.close()

    async with _serve(closer) as port:
        stream = await _connect(port)
        assert stream.get_extra_info("is_readable") is False
        hang_up.set()
        for _ in range(100):
            if stream.get_extra_info("is_readable"):
                break
            await asyncio.sleep(0.01)
        assert stream.get_extra_info("is_readable") is True
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
        assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
        assert stream.get_extra_info("ssl_object") is None
        await stream.aclose()


async def test_writing_to_a_closed_connection_is_a_write_error() -> None:
    async def closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with _serve(closer) as port:
        stream = await _connect(port)
        assert await stream.read(1024, timeout=2.0) == b""
        with pytest.raises(httpcore.WriteError):
            await stream.write(b"GET / HTTP/1.1\r\n\r\n", timeout=2.0)


async def test_a_server_that_never_reads_makes_a_write_time_out() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with _serve(deaf) as port:
        stream = await _connect(port)
        with pytest.raises(httpcore.WriteTimeout):
            await stream.write(b"x" * (64 * 1024 * 1024), timeout=0.3)
        await stream.aclose()


async def test_a_refused_connection_is_a_connect_error_worded_alike_on_both_loops() -> None:
    # The words reach users ("could not connect (Connection refused)" in a health
    # check): the system's name for the error, not each loop's own phrasing
    # (asyncio: "Connect call failed ('127.0.0.1', 8443)"; uvloop: "Connection refused").
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpcore.ConnectError) as refused:
        await _connect(port)
    assert str(refused.value) == os.strerror(errno.ECONNREFUSED)


async def test_a_reader_that_falls_behind_stops_the_socket_being_read() -> None:
    size = 8 * 1024 * 1024

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"y" * size)
        await writer.drain()
        writer.close()

    async with _serve(flood) as port:
        stream = await _connect(port)
        assert isinstance(stream, AsyncioStream)
        protocol = stream._protocol
        # The server sends all it can while nobody reads, until reading pauses: waited
        # for, not slept on, as a process stalled on a busy machine reads nothing meanwhile
        # (stopped for half a second, it still held less than the mark after a 0.3 s sleep).
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 30  # bounds a broken run only
        while not protocol.reading_paused:
            assert loop.time() < give_up, "reading never paused while nobody read"
            await asyncio.sleep(0.01)
        held_at_most = network.READ_HIGH_WATER + 256 * 1024  # one transport read past the mark
        total = 0
        while chunk := await stream.read(65536, timeout=2.0):
            assert protocol.buffered <= held_at_most
            total += len(chunk)
        assert total == size


async def test_tls_is_verified_against_the_server_name() -> None:
    tls = make_tls_pair(["api.partner.example"])

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello over tls")
        await writer.drain()
        await reader.read()

    async with _serve(hello, ssl=tls.server) as port:
        stream = await _connect(port)
        secure = await stream.start_tls(tls.client, "api.partner.example", timeout=2.0)
        assert await secure.read(1024, timeout=2.0) == b"hello over tls"
        assert secure.get_extra_info("ssl_object") is not None
        await secure.aclose()

        stream = await _connect(port)
        with pytest.raises(httpcore.ConnectError):
            await stream.start_tls(tls.client, "elsewhere.example", timeout=2.0)


async def test_a_server_that_never_answers_the_tls_hello_times_out() -> None:
    tls = make_tls_pair()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with _serve(mute) as port:
        stream = await _connect(port)
        with pytest.raises(httpcore.ConnectTimeout):
            await stream.start_tls(tls.client, "localhost", timeout=0.3)


async def test_closing_releases_the_socket_even_with_unsent_bytes() -> None:
    # A write that timed out (or a request cancelled mid-body) leaves bytes the
    # server never read; closing must not wait for them to drain, or the socket
    # stays open for as long as the server stays deaf.
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with _serve(deaf) as port:
        stream = await _connect(port)
        with pytest.raises(httpcore.WriteTimeout):
            await stream.write(b"x" * (64 * 1024 * 1024), timeout=0.3)
        sock = stream.get_extra_info("socket")
        await stream.aclose()
        assert sock.fileno() == -1  # closed by the time aclose returns


async def test_closing_a_tls_connection_does_not_wait_for_the_server_to_answer() -> None:
    # httpcore drops a connection after a refused body, a cancelled request or an
    # idle expiry. Waiting for the server's close_notify (asyncio's graceful TLS
    # shutdown, up to 30 s) would hold the socket open, and keep reading whatever
    # the server still sends, long after the request was given up.
    tls = make_tls_pair(["localhost"])
    release = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def handshake_then_ignore() -> None:
            conn, _ = listener.accept()
            with tls.server.wrap_socket(conn, server_side=True) as secure:
                secure.sendall(b"ready")  # the handshake is done on both sides
                release.wait(5)  # never reads again, so never answers close_notify

        server = threading.Thread(target=handshake_then_ignore, daemon=True)
        server.start()
        try:
            stream = await _connect(port)
            secure = await stream.start_tls(tls.client, "localhost", timeout=2.0)
            assert await secure.read(1024, timeout=2.0) == b"ready"
            sock = secure.get_extra_info("socket")
            await secure.aclose()
            assert sock.fileno() == -1  # closed by the time aclose returns
        finally:
            release.set()
            server.join(5)


async def test_a_server_that_answers_and_half_closes_mid_upload_is_read_and_closed_cleanly() -> (
    None
):
    # A server may refuse a large upload early (a 413), shut its side and drain
    # the rest: the answer must still be read, and closing the stream afterwards
    # (the transport having closed itself once its buffer emptied) must not fail.
    async def refuse_early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"answer")
        writer.write_eof()
        while await reader.read(65536):
            pass
        writer.close()

    async with _serve(refuse_early) as port:
        stream = await _connect(port)
        with contextlib.suppress(httpcore.WriteError):
            await stream.write(b"u" * (8 * 1024 * 1024), timeout=2.0)
        assert await stream.read(1024, timeout=2.0) == b"answer"
        assert await stream.read(1024, timeout=2.0) == b""
        sock = stream.get_extra_info("socket")
        await stream.aclose()
        assert sock.fileno() == -1  # closed by the time aclose returns
