"""Real loopback servers for the AWS Secrets Manager tests.

moto's *standalone* server speaks the real AWS wire protocol over HTTP, so the
store under test goes through boto3, botocore's retries and our error mapping
exactly as against AWS. (moto's in-process mock decorators would patch botocore
itself and test less.) :class:`ThrottlingProxy` sits in front of it to produce
the ``ThrottlingException`` responses a real account returns under load.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from moto.server import ThreadedMotoServer

from tests.stores.forwarding import forward_post

# Dummy credentials for moto, and no way for boto3 to find the developer's own.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
AWS_ENV_TO_CLEAR = ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ROLE_ARN")


@contextmanager
def running_moto_server() -> Iterator[str]:
    """Start moto's server on a free loopback port (the OS picks it); yield its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class ThrottlingProxy:
    """Answers the first ``throttle_first`` requests with ThrottlingException, forwards the rest.

    ``requests`` counts every request received, so a test can check how many
    attempts the client made before it succeeded or gave up.
    """

    def __init__(self, upstream: str, *, throttle_first: int) -> None:
        self.requests = 0
        self._throttle_first = throttle_first
        self._lock = threading.Lock()
        upstream_parts = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with proxy._lock:
                    proxy.requests += 1
                    throttle = proxy.requests <= proxy._throttle_first
                if throttle:
                    payload = json.dumps(
                        {"__type": "ThrottlingException", "message": "Rate exceeded"}
                    ).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                forward_post(self, upstream_parts, body)

            def log_message(self, format: str, *args: object) -> None:
                """Keep test output quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
