"""``ucf serve`` as a child process: the user sees the real server, not a stand-in.

The child runs in its own session, so a Ctrl-C in the terminal reaches the
sandbox alone; the sandbox then stops its own activity first and the server
last (SIGTERM: uvicorn drains requests and the scheduler stores the page it
is on). Everything the server logs goes to a file; its address is read from
its own "serving on" line, so ``--port 0`` works like it does for ``ucf serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Final

__all__ = ["ServeFailed", "ServeProcess"]

BOOT: Final = "import sys; sys.argv[0] = 'ucf'; from ucf.cli.main import app; app()"
"""The ``ucf`` console script's entry point, run by this very interpreter."""

SERVING_PREFIX: Final = "ucf serving on "
LINE_LIMIT: Final = 1024 * 1024
"""Longest log line read from the child (a JSON line with a traceback in it)."""


class ServeFailed(Exception):
    """The server did not start, or stopped on its own; the message says why."""


class ServeProcess:
    """One ``ucf serve`` child: started, watched, stopped."""

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int,
        env: Mapping[str, str],
        log_path: Path,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.env = dict(env)
        self.log_path = log_path
        self.on_error = on_error
        self.base_url: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._log: IO[str] | None = None
        self._tail: deque[str] = deque(maxlen=5)
        self._serving: asyncio.Future[str] | None = None
        self.stopping = False

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def start(self, ready_within: float = 60.0) -> str:
        """Spawn the server and return its base URL once it says it is serving."""
        self._log = self.log_path.open("a", encoding="utf-8")
        self._serving = asyncio.get_running_loop().create_future()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BOOT,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
        self._reader = asyncio.create_task(self._read(), name="ucf serve output")
        exited = asyncio.ensure_future(self._process.wait())
        either: set[asyncio.Future[Any]] = {self._serving, exited}
        try:
            done, _ = await asyncio.wait(
                either, timeout=ready_within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
        if self._serving in done and not self._serving.cancelled():
            self.base_url = self._serving.result()
            return self.base_url
        if not done:
            raise ServeFailed(
                f"ucf serve did not start within {ready_within:.0f} s: {self.last_words()}"
            )
        await self._drain()
        raise ServeFailed(f"ucf serve ended before serving ({self.last_words()})")

    def last_words(self) -> str:
        """Why the server ended, for an error message: how it exited, its last complaints."""
        code = self.returncode
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit code {code}"
        said = " / ".join(_message_of(line) for line in list(self._tail)[-2:])
        return f"{how}; {said}" if said else f"{how}, nothing logged"

    async def wait(self) -> int:
        """Until the server exits, by itself or because it was stopped."""
        if self._process is None:
            raise RuntimeError("the server was never started")
        return await self._process.wait()

    async def stop(self, grace: float = 40.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        process = self._process
        self.stopping = True
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await self._drain()
        return self.returncode

    def kill(self) -> None:
        """At once, for a second Ctrl-C: whatever the server was doing is abandoned."""
        self.stopping = True
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def _drain(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), timeout=5.0)
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._log is not None:
            self._log.close()
            self._log = None

    async def _read(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        while True:
            try:
                raw = await process.stdout.readline()
            except ValueError:  # a line over LINE_LIMIT: skip it, keep reading
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self._log is not None:
                self._log.write(line + "\n")
                self._log.flush()
            if _complains(line):
                self._tail.append(line)
            self._watch(line)

    def _watch(self, line: str) -> None:
        record = _json_object(line)
        if record is None:
            return
        message = str(record.get("message", ""))
        if (
            self._serving is not None
            and not self._serving.done()
            and record.get("logger") == "ucf.serve"
            and message.startswith(SERVING_PREFIX)
        ):
            self._serving.set_result(message[len(SERVING_PREFIX) :].split()[0])
        elif record.get("level") in ("error", "critical") and self.on_error is not None:
            self.on_error(message)


def _json_object(line: str) -> dict[str, object] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _complains(line: str) -> bool:
    """An error, or a plain line (the CLI's own one-line errors are not JSON)."""
    record = _json_object(line)
    if record is None:
        return bool(line.strip())
    return record.get("level") in ("error", "critical")


def _message_of(line: str) -> str:
    record = _json_object(line)
    return str(record.get("message", line)) if record is not None else line
