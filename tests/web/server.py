"""A real ``ucf serve`` subprocess on a free port, with everything it prints kept.

The server is started with ``--port 0`` and announces its address in its first
log lines; its stdout and stderr are read by threads into :attr:`output` so a
test can assert on every line it ever logged (the no-secrets test does).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

UCF = str(Path(sys.executable).parent / "ucf")
_LISTENING = re.compile(r"ucf serving on (http://[^ ]+) ")


def ucf_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything ucf reads, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCF_")}
    env.update(extra)
    return env


class LiveServer:
    def __init__(
        self, data_dir: Path, env: Mapping[str, str], *args: str, startup_timeout: float = 30
    ) -> None:
        self.data_dir = data_dir
        self.env = dict(env)
        self.args = args
        self.startup_timeout = startup_timeout
        self.output: list[str] = []
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []
        self._announced = threading.Event()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.output.append(line)
            found = _LISTENING.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._announced.set()

    def start(self) -> Self:
        self.output.clear()
        self.url = ""
        self._announced.clear()
        self._process = subprocess.Popen(
            [UCF, "serve", "--port", "0", "--data-dir", str(self.data_dir), *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self._process.stdout, self._process.stderr)
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + self.startup_timeout
        if not self._announced.wait(self.startup_timeout):
            self.stop()
            raise RuntimeError("ucf serve did not start:\n" + "".join(self.output))
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("ucf serve never became healthy:\n" + "".join(self.output))

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> int | None:
        """SIGTERM, as a service manager would; the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        self._process = None
        return process.returncode

    @property
    def log(self) -> str:
        return "".join(self.output)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
