"""httpcore's pool takes turns and cleans up on asyncio's primitives, anyio's once anyio runs.

Each scenario runs in a fresh interpreter: the test process itself has anyio's
backend loaded (pytest plug-ins), and what is checked is a process that never
loaded it, as a Lambda poll worker is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio
import httpcore
import pytest

from ucf.runtime import pool_sync
from ucf.runtime.ssrf import EgressPolicy, GuardedNetworkBackend

# A client with one connection, against a loopback server that answers a request only
# once the script lets it (so nothing here depends on how long anything takes).
SCRIPT = r"""
import asyncio, json, sys
import httpx
from ucf.runtime.http import HttpSettings, create_client
from ucf.runtime.ssrf import EgressPolicy

LOAD_ANYIO = sys.argv[1] == "anyio"
BACKEND = "anyio._backends._asyncio"

async def main():
    if LOAD_ANYIO:  # as in `ucf serve`, where Starlette runs on anyio
        import anyio.lowlevel
        await anyio.lowlevel.checkpoint()
    release = asyncio.Event()
    served = []

    async def answer(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            served.append(head.split(b" ", 2)[1].decode())
            if b"/held" in head:
                await release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = HttpSettings(max_connections=1, max_keepalive_connections=1, pool_timeout=0.05)
    out = {}
    async with create_client(settings, EgressPolicy(frozenset({"127.0.0.1", "localhost"}))) as client:
        out["first"] = (await client.get(base + "/first")).text
        if sys.argv[1] == "mixed":  # `ucf serve`: a poll ran before the first HTTP request
            import anyio.lowlevel
            await anyio.lowlevel.checkpoint()
        # The one connection is busy: a second request gives up with PoolTimeout.
        held = asyncio.ensure_future(client.get(base + "/held"))
        while "/held" not in served:
            await asyncio.sleep(0)
        try:
            await client.get(base + "/waits")
            out["waits"] = "answered"
        except Exception as exc:
            out["waits"] = type(exc).__name__
        # Cancelled from outside while waiting for the pool: a cancellation, not a timeout.
        queued = asyncio.ensure_future(client.get(base + "/queued", timeout=httpx.Timeout(30.0)))
        for _ in range(20):
            await asyncio.sleep(0)
        queued.cancel()
        try:
            await queued
            out["queued"] = "answered"
        except asyncio.CancelledError:
            out["queued"] = "cancelled"
        except Exception as exc:
            out["queued"] = type(exc).__name__
        # Cancelled while the server holds its answer: the pool must let the connection go.
        held.cancel()
        try:
            await held
        except asyncio.CancelledError:
            out["held"] = "cancelled"
        release.set()
        out["after"] = (await client.get(base + "/after")).text
        # A name, resolved by the guard (asyncio's lookup, under its timeout).
        out["named"] = (await client.get(f"http://localhost:{port}/named")).text
    server.close()
    out["anyio_backend"] = BACKEND in sys.modules
    print(json.dumps(out))

asyncio.run(main())
"""


def _run(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


EXPECTED = {
    "first": "ok",
    "waits": "PoolTimeout",
    "queued": "cancelled",
    "held": "cancelled",
    "after": "ok",
    "named": "ok",
}


def test_a_pool_without_anyio_times_out_waits_and_frees_a_cancelled_request() -> None:
    result = _run("asyncio")

    assert {key: result[key] for key in EXPECTED} == EXPECTED
    assert result["anyio_backend"] is False  # ~21 ms of a cold start not paid


def test_a_pool_in_a_process_running_anyio_behaves_the_same() -> None:
    result = _run("anyio")

    assert {key: result[key] for key in EXPECTED} == EXPECTED
    assert result["anyio_backend"] is True


def test_a_pool_whose_first_objects_came_before_anyio_loaded_behaves_the_same() -> None:
    """Its connection's locks are asyncio's, later events and deadlines anyio's."""
    result = _run("mixed")

    assert {key: result[key] for key in EXPECTED} == EXPECTED
    assert result["anyio_backend"] is True


def test_httpcore_reads_its_asyncio_primitives_from_the_name_install_replaces() -> None:
    # If httpcore stops reading them from a module-level ``anyio``, install() leaves it be;
    # this test then says why the cold start grew again.
    from httpcore import _synchronization

    pool_sync.install()

    assert getattr(_synchronization, "anyio", None) is pool_sync.PRIMITIVES
    assert httpcore.__version__.startswith("1.")


async def test_with_anyio_running_every_primitive_is_anyios_own() -> None:
    await anyio.lowlevel.checkpoint()  # the test process runs anyio's backend
    primitives = pool_sync.PRIMITIVES

    assert isinstance(primitives.Lock(), anyio.Lock)
    assert isinstance(primitives.Event(), anyio.Event)
    assert isinstance(primitives.Semaphore(2, max_value=2), anyio.Semaphore)
    assert isinstance(primitives.CancelScope(shield=True), anyio.CancelScope)


async def test_anyios_shield_does_not_hold_back_asyncios_cancellation() -> None:
    """Why a shield may do nothing while anyio does not run: it would not stop an
    asyncio cancellation either, the only kind a process without anyio's backend has."""
    reached: list[str] = []
    shielded = asyncio.Event()

    async def clean_up() -> None:
        with anyio.CancelScope(shield=True):
            reached.append("shielded")
            shielded.set()
            await asyncio.Event().wait()
            reached.append("finished")

    task = asyncio.ensure_future(clean_up())
    await shielded.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert reached == ["shielded"]


async def _handled_cancellation() -> asyncio.Task[Any]:
    """The current task, after a cancellation it caught and carried on from (as a
    shutdown's clean-up does): ``cancelling()`` stays 1."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)
    assert task.cancelling() == 1
    return task


async def test_a_deadline_in_a_task_that_handled_a_cancellation_still_times_out() -> None:
    """A pool wait that expires after the task caught an earlier cancellation is a
    ``TimeoutError`` (httpcore's ``PoolTimeout``), as ``anyio.fail_after``'s is: not a
    ``CancelledError`` the task was never sent."""

    async def wait_under(deadline: Any) -> str:
        await _handled_cancellation()
        try:
            with deadline(0):
                await asyncio.Event().wait()
        except TimeoutError:
            return "timeout"
        except asyncio.CancelledError:
            return "cancelled"
        return "answered"

    assert await asyncio.ensure_future(wait_under(anyio.fail_after)) == "timeout"
    assert await asyncio.ensure_future(wait_under(pool_sync.Deadline)) == "timeout"


async def test_a_lookup_timeout_after_a_handled_cancellation_is_a_connect_timeout() -> None:
    """The SSRF guard's name lookup (like the asyncio backend's connect and TLS handshake)
    is bounded by ``asyncio.timeout``, whose expiry after a cancellation the task caught
    is a ``TimeoutError`` only from CPython 3.11.3 (gh-102780: 3.11.0-3.11.2 compared
    ``uncancel()`` with 0 and let a ``CancelledError`` the task was never sent out).
    ucf requires that release (the test below)."""

    async def never_answers(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []

    backend = GuardedNetworkBackend(EgressPolicy.from_env({}), resolver=never_answers)

    async def connect() -> str:
        await _handled_cancellation()
        try:
            await backend.connect_tcp("api.example.com", 443, timeout=0)
        except httpcore.ConnectTimeout:
            return "timeout"
        except asyncio.CancelledError:
            return "cancelled"
        return "connected"

    assert await asyncio.ensure_future(connect()) == "timeout"


def test_ucf_requires_the_first_python_whose_timeout_survives_a_handled_cancellation() -> None:
    """``requires-python`` and the lock agree on 3.11.3 (see the test above): on an
    earlier 3.11, uv and pip refuse to install ucf instead of letting a connect timeout
    after a settled cancellation cancel the poll."""
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lock = tomllib.loads((root / "uv.lock").read_text())
    assert project["requires-python"] == lock["requires-python"] == ">=3.11.3"
