"""What the SIGKILL suites share: a fork server, the store backends, and the kill count.

A crash test launches a process, kills it, and launches it again, dozens of
times. Most of a fresh Python process's start is importing ucf (1–2 s on a
busy 2-core machine), which is not what is under test and would dominate the
run. So children are forked from a *zygote*: one process that imports ucf
once and then forks a child per launch. A forked child starts from the
imports on: it opens the store, runs migrations and the catalogue sync, polls
or serves, exactly as ``ucf worker --once`` or ``ucf serve`` would after their
imports, and it is killed with a real SIGKILL by its pid.

``UCF_CRASH_KILLS`` (default 20) is the number of kills of every crash test;
``UCF_CRASH_SEED`` replays a failure (each test prints its seed on failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import pytest_asyncio

from tests.stores.dynalite import DUMMY_AWS_ENV, dynamodb_url, unique_table_name

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("UCF_CRASH_KILLS", "20"))
SEED = int(os.environ.get("UCF_CRASH_SEED", str(random.SystemRandom().randrange(10**6))))

PRELOAD = (
    "ucf.cli.main",
    "ucf.cli.serve",
    "ucf.service.context",
    "ucf.service.scheduler",
    "ucf.web.app",
    "ucf.stores.sqlite",
    "ucf.stores.dynamodb",
    "uvicorn",
    "boto3",
    "tests.service.crash_children",
)
"""Imported once by the zygote, so no launch pays for them."""

ZYGOTE = """
import importlib, importlib.metadata, json, os, sys, traceback
for name in sys.argv[1:]:
    importlib.import_module(name)
for entry_point in importlib.metadata.entry_points(group="ucf.native_sources"):
    entry_point.load()  # the native connectors, which the catalogue sync imports
replies = sys.stdout
replies.write(json.dumps({"ready": os.getpid()}) + "\\n")
replies.flush()
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.environ.clear()
            os.environ.update(job["env"])
            module, _, function = job["target"].partition(":")
            code = getattr(importlib.import_module(module), function)(*job["args"])
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)
    replies.write(json.dumps({"pid": pid}) + "\\n")
    replies.flush()
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\\n")
    replies.flush()
"""
"""Imports ``argv`` and the native connectors, says it is ready, then reads one job a line (target ``module:function``, args, env, log file), forks it, answers
its pid, waits for it and answers its exit code (negative: the signal that killed it)."""


class Child:
    """One forked launch: its pid, and its exit code once the zygote has reaped it."""

    def __init__(self, pid: int, log: Path, exited: asyncio.Task[int]) -> None:
        self.pid = pid
        self.log = log
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        """The exit code; cancelling this wait leaves the child be."""
        return await asyncio.shield(self._exited)

    async def kill(self) -> int:
        """SIGKILL, unless it already ended; the exit code."""
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        return await self._exited

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


class Zygote:
    """The fork server: ``launch`` runs ``module:function(*args)`` in a fresh fork, one at a time."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._process: asyncio.subprocess.Process | None = None
        self._launches = 0
        self._current: Child | None = None

    async def __aenter__(self) -> Self:
        self._logs.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ZYGOTE,
            *PRELOAD,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=(self._logs / "zygote.log").open("ab"),
        )
        await self._reply()  # imported: from now on a launch costs a fork
        return self

    async def reap(self) -> None:
        """Kill the running child, if any: a test hands the zygote on with nothing running."""
        if self._current is not None:
            await self._current.kill()
            self._current = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.reap()
        process = self._process
        if process is not None and process.stdin is not None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def _reply(self) -> dict[str, int]:
        assert self._process is not None
        assert self._process.stdout is not None
        line = await self._process.stdout.readline()
        if not line:
            zygote_log = (self._logs / "zygote.log").read_text(errors="replace")
            raise RuntimeError(f"the zygote died:\n{zygote_log[-4000:]}")
        reply: dict[str, int] = json.loads(line)
        return reply

    async def launch(self, target: str, args: Sequence[str], env: Mapping[str, str]) -> Child:
        assert self._process is not None
        assert self._process.stdin is not None
        if self._current is not None:
            await self._current.wait()  # the zygote runs one child at a time
        self._launches += 1
        log = self._logs / f"launch-{self._launches}.log"
        job = {"target": target, "args": list(args), "env": dict(env), "log": str(log)}
        self._process.stdin.write(json.dumps(job).encode() + b"\n")
        await self._process.stdin.drain()
        pid = (await self._reply())["pid"]

        async def exited() -> int:
            return (await self._reply())["exit"]

        self._current = Child(pid, log, asyncio.create_task(exited()))
        return self._current


def child_env(directory: Path, store_url: str | None, **extra: str) -> dict[str, str]:
    """The test's environment minus anything ucf reads, plus one data directory and store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCF_")}
    env.update(
        UCF_ALLOW_HOSTS="127.0.0.1",
        UCF_SINK_JSONL=str(directory / "signals.jsonl"),
        UCF_DATA_DIR=str(directory),
        **DUMMY_AWS_ENV,
        **extra,
    )
    if store_url is not None:
        env["UCF_STORE"] = store_url
    return env


@dataclass
class Backend:
    """Where a crash test's data lives: a SQLite file per data directory, or a dynalite table."""

    name: str
    dynalite: str | None = None
    _urls: dict[Path, str] = field(default_factory=dict)

    def store_url(self, directory: Path) -> str:
        """The store of one data directory (a fresh table the first time, on DynamoDB)."""
        if directory not in self._urls:
            if self.dynalite is None:
                self._urls[directory] = f"sqlite:///{(directory / 'ucf.db').as_posix().lstrip('/')}"
            else:
                self._urls[directory] = dynamodb_url(self.dynalite, unique_table_name("ucf-crash"))
        return self._urls[directory]

    def env(self, directory: Path, **extra: str) -> dict[str, str]:
        return child_env(directory, self.store_url(directory), **extra)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_zygote(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Zygote]:
    """One zygote per test module: its imports are paid once, not per test."""
    async with Zygote(tmp_path_factory.mktemp("crash-logs")) as started:
        yield started


@pytest_asyncio.fixture(loop_scope="module")
async def zygote(module_zygote: Zygote) -> AsyncIterator[Zygote]:
    """The module's zygote, with whatever a test left running killed after it."""
    yield module_zygote
    await module_zygote.reap()
