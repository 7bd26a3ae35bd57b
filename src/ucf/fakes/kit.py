"""The fake-upstream kit: real HTTP servers on loopback that misbehave on cue.

Connector fakes (GitHub, Linear, Trello, …) are built on :class:`FakeServer`;
the same fakes power the tests and ``ucf sandbox``. A fake is a real server on
``127.0.0.1`` with an ephemeral port, running on its own event loop in a
background thread, so sync code, async code and subprocesses can all talk to
it, and a test's slow client never stalls it.

Writing a fake is registering handlers::

    server = FakeServer()

    @server.route("GET", "/repos/{owner}/{repo}/issues")
    def issues(request: FakeRequest) -> FakeResponse:
        page = int(request.param("page", "1"))
        return FakeResponse.json([...], headers={"Link": f'<{request.url_for("/…")}>; rel="next"'})

and scripting faults is one line: ``server.inject(Fault.rate_limited(retry_after=2),
path="/repos/{owner}/{repo}/issues", times=1)`` — the next matching request
gets the fault, later ones reach the handler again.

The HTTP/1.1 framing is h11's, written out by hand where a fault needs to break
it (truncated bodies, dropped connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import ipaddress
import itertools
import json
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import httpx

from ucf.core.signal import iso_utc

_T = TypeVar("_T")

# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class FakeRequest:
    """What the fake received: everything a handler or a test assertion needs."""

    method: str
    target: str  # path and query as sent
    headers: httpx.Headers
    body: bytes
    scheme: str = "http"
    path_params: Mapping[str, str] = field(default_factory=dict)
    received_at: float = field(default_factory=time.time)

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, list[str]]:
        """Every query parameter with all its values, in order."""
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def param(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not)."""
        return json.loads(self.body)

    def url_for(self, path: str) -> str:
        """An absolute URL on this server as the client addressed it (its Host header).

        Pagination links built this way keep working whether the client used
        ``localhost`` or ``127.0.0.1``.
        """
        return f"{self.scheme}://{self.headers.get('host', '127.0.0.1')}{path}"


# --------------------------------------------------------------------------- responses


Body = bytes | Iterable[bytes]


@dataclass(frozen=True)
class FakeResponse:
    """What to send back.

    ``body`` is bytes (sent with a Content-Length) or an iterable of chunks
    (sent chunked, ``chunk_delay`` seconds apart; it may be endless, to prove a
    client stops reading). ``delay`` holds the headers back; ``declared_length``
    lies about Content-Length; ``close`` drops the connection after the body.
    """

    status: int = 200
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = ()
    body: Body = b""
    delay: float = 0.0
    chunk_delay: float = 0.0
    declared_length: int | None = None
    close: bool = False

    @classmethod
    def json(
        cls,
        data: Any,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> FakeResponse:
        merged = {"Content-Type": "application/json", **(headers or {})}
        return cls(status=status, headers=merged, body=json.dumps(data).encode())

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> FakeResponse:
        merged = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        return cls(status=status, headers=merged, body=text.encode())

    def header_items(self) -> list[tuple[str, str]]:
        items = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        return [(str(k), str(v)) for k, v in items]


HandlerResult = FakeResponse | dict[str, Any] | list[Any]
Handler = Callable[[FakeRequest], HandlerResult | Awaitable[HandlerResult]]
CallNext = Callable[[], Awaitable[FakeResponse]]


def _as_response(result: HandlerResult) -> FakeResponse:
    return result if isinstance(result, FakeResponse) else FakeResponse.json(result)


# --------------------------------------------------------------------------- faults


class _Disconnect(Exception):
    """Raised inside the server to drop the connection without a response."""


class Fault:
    """A scripted misbehaviour; ``apply`` wraps the real handler.

    Build them with the named constructors (``Fault.rate_limited()``, …); a new
    kind of fault is a subclass overriding :meth:`apply`.
    """

    name = "fault"

    async def apply(self, request: FakeRequest, call_next: CallNext) -> FakeResponse:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Fault.{self.name}"

    @staticmethod
    def respond(response: FakeResponse, name: str = "respond") -> Fault:
        """Answer with ``response`` instead of the handler."""
        return _Canned(response, name)

    @staticmethod
    def rate_limited(
        retry_after: float | str | None = 1,
        *,
        status: int = 429,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Fault:
        """HTTP 429 (or e.g. GitHub's 403) with ``Retry-After`` and any provider headers."""
        merged: dict[str, str] = {}
        if retry_after is not None:
            merged["Retry-After"] = str(retry_after)
        merged.update(headers or {})
        payload = {"message": "rate limit exceeded"} if body is None else body
        return _Canned(FakeResponse.json(payload, status, merged), "rate_limited")

    @staticmethod
    def status(code: int, *, body: Any = None, headers: Mapping[str, str] | None = None) -> Fault:
        """An error status (500, 503, 529…) with a JSON body."""
        payload = {"message": f"fake upstream error {code}"} if body is None else body
        return _Canned(FakeResponse.json(payload, code, headers), f"status({code})")

    @staticmethod
    def slow(seconds: float) -> Fault:
        """Hold the response back ``seconds`` (past the client's read timeout)."""
        return _Slow(seconds)

    @staticmethod
    def drip(interval: float, chunk: int = 1) -> Fault:
        """The handler's response, its body sent ``chunk`` bytes every ``interval`` seconds.

        Every read arrives well within a read timeout, yet the whole answer takes
        as long as the body is long: the slow-drip that only a total deadline stops.
        """
        return _Drip(interval, chunk)

    @staticmethod
    def malformed_json(body: bytes = b'{"items": [{"id": 1, "title": "cut') -> Fault:
        """HTTP 200 declaring JSON, with a body that is not."""
        response = FakeResponse(200, {"Content-Type": "application/json"}, body)
        return _Canned(response, "malformed_json")

    @staticmethod
    def truncated() -> Fault:
        """The handler's response with a Content-Length larger than the body, then close."""
        return _Truncated()

    @staticmethod
    def disconnect() -> Fault:
        """Close the connection without answering."""
        return _DropConnection()

    @staticmethod
    def redirect(location: str, status: int = 302) -> Fault:
        """Redirect elsewhere, e.g. to ``http://169.254.169.254/latest/meta-data``."""
        response = FakeResponse(status, {"Location": location})
        return _Canned(response, f"redirect({location})")

    @staticmethod
    def expired_token(
        *, body: Any = None, headers: Mapping[str, str] | None = None, status: int = 401
    ) -> Fault:
        """401 as an OAuth2 resource server says it (RFC 6750), to drive a refresh."""
        merged = {
            "WWW-Authenticate": 'Bearer error="invalid_token", '
            'error_description="The access token expired"',
            **(headers or {}),
        }
        payload = (
            {"error": "invalid_token", "error_description": "The access token expired"}
            if body is None
            else body
        )
        return _Canned(FakeResponse.json(payload, status, merged), "expired_token")


class _Canned(Fault):
    def __init__(self, response: FakeResponse, name: str) -> None:
        self._response = response
        self.name = name

    async def apply(self, request: FakeRequest, call_next: CallNext) -> FakeResponse:
        return self._response


class _Slow(Fault):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.name = f"slow({seconds})"

    async def apply(self, request: FakeRequest, call_next: CallNext) -> FakeResponse:
        return replace(await call_next(), delay=self.seconds)


class _Drip(Fault):
    def __init__(self, interval: float, chunk: int) -> None:
        self.interval = interval
        self.chunk = max(1, chunk)
        self.name = f"drip({interval}, {chunk})"

    async def apply(self, request: FakeRequest, call_next: CallNext) -> FakeResponse:
        response = await call_next()
        body = response.body if isinstance(response.body, bytes) else b"".join(response.body)
        pieces = [body[at : at + self.chunk] for at in range(0, len(body), self.chunk)]
        return replace(response, body=pieces, chunk_delay=self.interval)


class _Truncated(Fault):
    name = "truncated"

    async def apply(self, request: FakeRequest, call_next: CallNext) -> FakeResponse:
        response = await call_next()
        body = response.body if isinstance(response.body, bytes) else b"".join(response.body)
        if not body:
            body = b'{"items": []}'
        return replace(response, body=body[: len(body) // 2], declared_length=len(body), close=True)


class _DropConnection(Fault):
    name = "disconnect"

    async def apply(self, request: FakeRequest, call_next: CallNext) -> FakeResponse:
        raise _Disconnect


@dataclass
class _ScriptedFault:
    fault: Fault
    methods: frozenset[str] | None
    path: re.Pattern[str] | None
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or self.path.fullmatch(path) is not None


# --------------------------------------------------------------------------- routing


_PARAM: Final = re.compile(r"\{(\w+)(?::path)?\}")


def compile_path(pattern: str) -> re.Pattern[str]:
    """``/repos/{owner}/{repo}/issues`` → a regex; ``{rest:path}`` spans slashes."""
    parts: list[str] = []
    position = 0
    for match in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[position : match.start()]))
        spans_slashes = match.group(0).endswith(":path}")
        parts.append(f"(?P<{match.group(1)}>{'.+' if spans_slashes else '[^/]+'})")
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("".join(parts))


@dataclass(frozen=True)
class _Route:
    methods: frozenset[str]
    path: re.Pattern[str]
    handler: Handler


def _methods(method: str | Iterable[str] | None) -> frozenset[str] | None:
    if method is None:
        return None
    return frozenset({method.upper()} if isinstance(method, str) else {m.upper() for m in method})


# --------------------------------------------------------------------------- server


class FakeServer:
    """A real HTTP/1.1 server on a free loopback port, with routes and scripted faults.

    Use it as a context manager (``with`` or ``async with``) or call
    :meth:`start`/:meth:`stop`. Handlers run on the server's own loop: keep them
    quick (use ``FakeResponse.delay`` to be slow).
    """

    def __init__(self, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None):
        self._host = host
        self._ssl = ssl_context
        self._routes: list[_Route] = []
        self._faults: list[_ScriptedFault] = []
        self._log: list[FakeRequest] = []
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    # -- registration ------------------------------------------------------

    def add_route(self, method: str | Iterable[str], path: str, handler: Handler) -> None:
        """Serve ``method path`` with ``handler`` (HEAD is answered by GET routes)."""
        methods = _methods(method)
        assert methods is not None
        with self._lock:
            self._routes.append(_Route(methods, compile_path(path), handler))

    def route(self, method: str | Iterable[str], path: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_route`."""

        def register(handler: Handler) -> Handler:
            self.add_route(method, path, handler)
            return handler

        return register

    def inject(
        self,
        fault: Fault,
        *,
        path: str | None = None,
        method: str | Iterable[str] | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` requests matching ``path``/``method`` get ``fault``.

        ``path`` is a route pattern (``/items``, ``/repos/{owner}/{repo}/issues``)
        or None for any path. Faults queue up in injection order.
        """
        scripted = _ScriptedFault(
            fault, _methods(method), None if path is None else compile_path(path), times
        )
        with self._lock:
            self._faults.append(scripted)

    def call_between_requests(self, function: Callable[[], _T]) -> _T:
        """``function()``, run on the server's own thread between two requests.

        Handlers run there one at a time, so a dataset changed this way is never
        seen half-changed by a request in flight (``ucf sandbox`` adds activity
        while ``ucf serve`` is polling the fake). Not running: called right here.
        """
        loop = self._loop
        if loop is None or self._thread is None or threading.current_thread() is self._thread:
            return function()

        async def call() -> _T:
            return function()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[FakeRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[FakeRequest]:
        pattern = compile_path(path)
        return [r for r in self.requests if pattern.fullmatch(r.path)]

    @property
    def handler_errors(self) -> list[BaseException]:
        """Exceptions raised by handlers (each was answered with a 500)."""
        with self._lock:
            return list(self._errors)

    def reset(self) -> None:
        """Forget requests, faults and handler errors; keep routes (between tests)."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._errors.clear()

    # -- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake server is not running; start() it first")
        return self._port

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def start(self) -> Self:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self._host, 0, ssl=self._ssl)
                )
                self._port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="ucf-fake-upstream", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = self._loop = self._server = None
        self._port = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- serving ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(connection, reader)
                if request is None:
                    break
                keep_alive = await self._respond(connection, writer, request)
                if not keep_alive or connection.our_state is not h11.DONE:
                    break
                if connection.their_state is not h11.DONE:
                    break
                connection.start_next_cycle()
        except (_Disconnect, ConnectionError, h11.ProtocolError, ssl.SSLError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # stop() cancels open connections; ending quietly keeps asyncio's
            # stream callback from logging the cancellation as an error.
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read_request(
        self, connection: h11.Connection, reader: asyncio.StreamReader
    ) -> FakeRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return FakeRequest(
                    method=head.method.decode("ascii").upper(),
                    target=head.target.decode("ascii", "replace"),
                    headers=httpx.Headers([(k, v) for k, v in head.headers]),
                    body=bytes(body),
                    scheme="https" if self._ssl is not None else "http",
                )
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    def _take_fault(self, request: FakeRequest) -> Fault | None:
        with self._lock:
            self._log.append(request)
            for scripted in self._faults:
                if scripted.remaining > 0 and scripted.matches(request.method, request.path):
                    scripted.remaining -= 1
                    return scripted.fault
            return None

    def _find_route(self, request: FakeRequest) -> tuple[_Route | None, dict[str, str], bool]:
        """The route for the request, its path parameters, and whether the path exists."""
        with self._lock:
            routes = list(self._routes)
        path_exists = False
        for route in routes:
            match = route.path.fullmatch(request.path)
            if match is None:
                continue
            path_exists = True
            wanted = {request.method} | ({"GET"} if request.method == "HEAD" else set())
            if route.methods & wanted:
                return route, match.groupdict(), True
        return None, {}, path_exists

    async def _dispatch(self, request: FakeRequest) -> FakeResponse:
        route, params, path_exists = self._find_route(request)
        if route is None:
            status = 405 if path_exists else 404
            return FakeResponse.json(
                {"message": "Method Not Allowed" if path_exists else "Not Found"}, status
            )
        try:
            result = route.handler(replace(request, path_params=params))
            if inspect.isawaitable(result):
                result = await result
            return _as_response(result)
        except Exception as exc:
            with self._lock:
                self._errors.append(exc)
            return FakeResponse.json({"message": f"fake handler raised {type(exc).__name__}"}, 500)

    async def _respond(
        self, connection: h11.Connection, writer: asyncio.StreamWriter, request: FakeRequest
    ) -> bool:
        fault = self._take_fault(request)
        if fault is None:
            response = await self._dispatch(request)
        else:
            response = await fault.apply(request, lambda: self._dispatch(request))
        if response.delay:
            await asyncio.sleep(response.delay)

        headers = [(k, v) for k, v in response.header_items() if k.lower() != "content-length"]
        streamed = not isinstance(response.body, bytes)
        if response.declared_length is not None:
            headers.append(("Content-Length", str(response.declared_length)))
        elif isinstance(response.body, bytes):
            headers.append(("Content-Length", str(len(response.body))))
        if response.close:
            headers.append(("Connection", "close"))

        async def send(event: h11.Event) -> None:
            data = connection.send(event)
            if data:
                writer.write(data)
                await writer.drain()

        await send(h11.Response(status_code=response.status, headers=headers))
        if request.method == "HEAD":
            await send(h11.EndOfMessage())
            return not response.close
        if streamed:
            assert not isinstance(response.body, bytes)
            for chunk in response.body:
                await send(h11.Data(data=chunk))
                if response.chunk_delay:
                    await asyncio.sleep(response.chunk_delay)
        else:
            assert isinstance(response.body, bytes)
            if response.body:
                await send(h11.Data(data=response.body))
        if response.declared_length is not None and (
            not isinstance(response.body, bytes) or len(response.body) != response.declared_length
        ):
            return False  # the body broke its own framing; hang up mid-message
        await send(h11.EndOfMessage())
        return not response.close


# --------------------------------------------------------------------------- helpers


def iso_seconds(moment: datetime.datetime) -> str:
    """ISO 8601 in UTC, whole seconds, ``Z``: how GitHub, PagerDuty and Sentry's REST APIs write times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(moment: datetime.datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``: Linear, Notion, Trello, Confluence, Datadog."""
    return iso_utc(moment)


def endless(chunk: bytes = b"x" * 65536) -> Iterator[bytes]:
    """A body that never ends: proves a client stops reading at its cap."""
    return itertools.repeat(chunk)


@dataclass(frozen=True)
class TlsPair:
    """A throwaway CA-less certificate: the server's context and a client context trusting it."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def make_tls_pair(hostnames: Iterable[str] = ("localhost",)) -> TlsPair:
    """A self-signed certificate for ``hostnames`` (names or IPs), valid for a day.

    Lets a fake serve HTTPS under a public-looking name, so tests prove that
    SNI and certificate checks use the URL's host even when the connection goes
    to a resolved IP.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names = list(hostnames)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return TlsPair(server=server, client=client)
