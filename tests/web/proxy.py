"""A reverse proxy that serves ucf under a path prefix and takes the prefix off, as nginx's
``location /ucf/ { proxy_pass http://127.0.0.1:8080/; }`` does (docs/web.md).

Real HTTP on loopback (stdlib ``http.server`` in, ``http.client`` out), so a browser
talks to it as to any proxy. Whatever the browser asks outside the prefix is not
ucf's: the proxy answers it 404 and keeps its path in :attr:`PrefixProxy.outside`,
so a test can say which link, redirect, asset or script call left ucf.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final, Self
from urllib.parse import urlsplit

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


class PrefixProxy:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.upstream = ""
        """``http://host:port`` of ucf; set once it listens (it needs the proxy's URL first)."""
        self.outside: list[str] = []
        """Method and path of every request outside the prefix, in order."""
        self.relayed: list[str] = []
        """Method and path (as ucf got it) of every request passed on."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's origin; ucf is at ``url + prefix``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Relay(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test says what went wrong

            def _relay(self) -> None:
                path = urlsplit(self.path).path
                if path == proxy.prefix:  # as nginx does for a location ending in /
                    self._answer(301, [("Location", proxy.prefix + "/")], b"")
                    return
                if not path.startswith(proxy.prefix + "/"):
                    proxy.outside.append(f"{self.command} {self.path}")
                    self._answer(404, [("Content-Type", "text/plain")], b"outside ucf\n")
                    return
                target = self.path[len(proxy.prefix) :]
                proxy.relayed.append(f"{self.command} {target}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in HOP_BY_HOP
                }
                upstream = urlsplit(proxy.upstream)
                connection = http.client.HTTPConnection(
                    upstream.hostname or "127.0.0.1", upstream.port, timeout=60
                )
                try:
                    connection.request(self.command, target, body=body, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    kept = [
                        (name, value)
                        for name, value in response.getheaders()
                        if name.lower() not in HOP_BY_HOP
                    ]
                    self._answer(response.status, kept, answer)
                finally:
                    connection.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = do_DELETE = _relay

        return Relay

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
