"""A real DynamoDB-compatible server (dynalite, from npm) on a free loopback port.

The DynamoDB store is tested against a server that speaks the DynamoDB wire
protocol, not against in-process mocks: the request shapes, condition
expressions and error codes our store relies on are exercised for real.
``scripts/bootstrap --test`` (run by ``make test``) installs dynalite into
``node_modules``; if it is missing the fixture fails loudly instead of skipping,
so a green run always means the DynamoDB backend was tested.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.stores.forwarding import forward_post

REPO_ROOT = Path(__file__).resolve().parents[2]
DYNALITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "dynalite"

# boto3 refuses to sign requests without credentials and a region; dynalite
# ignores both. Subprocesses (the concurrency tests) inherit these too.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "ucf-test",
    "AWS_SECRET_ACCESS_KEY": "ucf-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

_START_TIMEOUT_S = 20.0

_SURVIVING_ABORTS = (
    "node",
    "-e",
    "process.on('uncaughtException', (error) => {"
    " if (error && error.code === 'ECONNRESET' && error.message === 'aborted') return;"
    " console.error(error); process.exit(1) });"
    " require(process.argv[1])",
)
"""Run dynalite's CLI (the next argument: node leaves it at argv[1]) surviving clients that die.

dynalite throws from its request's ``error`` handler when a client disconnects
before its request is complete (``aborted``), which exits the server; DynamoDB
simply never applies a request it did not receive whole. The SIGKILL tests kill
clients mid-request by design, so this one error is dropped; any other still exits.
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def run_dynalite(*, create_table_ms: int = 0) -> Iterator[str]:
    """Start dynalite (in memory) on a free loopback port; yield its endpoint URL.

    Tables become ACTIVE after ``create_table_ms`` (dynalite's default is 500 ms;
    the suite makes a fresh table per test, so 0 keeps it fast).
    """
    if not DYNALITE_BIN.exists():
        pytest.fail(
            f"dynalite is not installed ({DYNALITE_BIN} is missing); "
            "run `scripts/bootstrap --test` (or `make test`, which runs it) to install it from npm",
            pytrace=False,
        )
    port = free_port()
    log = (REPO_ROOT / ".pytest_cache").resolve()
    log.mkdir(exist_ok=True)
    stderr_path = log / f"dynalite-{port}.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                *_SURVIVING_ABORTS,
                str(DYNALITE_BIN.resolve()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--createTableMs",
                str(create_table_ms),
                "--deleteTableMs",
                "0",
                "--updateTableMs",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not _accepts_connections(port):
            if proc.poll() is not None:
                pytest.fail(
                    f"dynalite exited with code {proc.returncode} before listening on port {port}: "
                    f"{stderr_path.read_text(errors='replace').strip()[-500:]}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"dynalite did not listen on port {port} within {_START_TIMEOUT_S:.0f} s",
                    pytrace=False,
                )
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr_path.unlink(missing_ok=True)


@contextmanager
def dummy_aws_environment() -> Iterator[None]:
    """Dummy credentials and region for boto3, restored afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in DUMMY_AWS_ENV.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def dynalite_endpoint() -> Iterator[str]:
    """One dynalite for the whole session; tests isolate themselves by table name."""
    with dummy_aws_environment(), run_dynalite() as endpoint:
        yield endpoint


def dynamodb_url(endpoint: str, table: str) -> str:
    return f"dynamodb://{table}?region=us-east-1&endpoint={endpoint}"


def unique_table_name(prefix: str = "ucf-test") -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"


class FaultProxy:
    """A loopback HTTP proxy in front of dynalite that misbehaves on request.

    DynamoDB's faults — throttling, a batch that leaves items unprocessed, a
    connection cut mid-call — are produced at the wire, so the store under test
    meets them through boto3 exactly as it would in AWS. ``inject(operation,
    fault, times)`` arms the next ``times`` calls of one operation (``PutItem``,
    ``BatchWriteItem``…) with a fault: one of the constants below, or any other
    DynamoDB error code (``"AccessDeniedException"``), answered as DynamoDB would.
    ``seen`` counts every call received per operation.
    """

    # DynamoDB's three ways of saying "slow down"; each means the request was not applied.
    THROTTLE = "ThrottlingException"
    OVER_CAPACITY = "ProvisionedThroughputExceededException"
    OVER_LIMIT = "RequestLimitExceeded"
    UNPROCESSED = "unprocessed"
    DISCONNECT = "disconnect"

    def __init__(self, upstream: str) -> None:
        self.seen: Counter[str] = Counter()
        self._armed: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        upstream_parts = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                with proxy._lock:
                    proxy.seen[operation] += 1
                    armed = proxy._armed.get(operation)
                    fault = armed.pop(0) if armed else None
                if fault == FaultProxy.DISCONNECT:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == FaultProxy.UNPROCESSED:
                    request = json.loads(body)
                    self._reply(200, {"UnprocessedItems": request["RequestItems"]})
                    return
                if fault is not None:  # any other fault is an error code DynamoDB returns
                    self._reply(
                        400,
                        {
                            "__type": f"com.amazonaws.dynamodb.v20120810#{fault}",
                            "message": f"{fault} (injected by the test proxy)",
                        },
                    )
                    return
                forward_post(self, upstream_parts, body)

            def _reply(self, status: int, payload: dict[str, object]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                """Keep test output quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def inject(self, operation: str, fault: str, times: int = 1) -> None:
        with self._lock:
            self._armed.setdefault(operation, []).extend([fault] * times)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
