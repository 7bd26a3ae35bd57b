"""One Lambda execution environment's long-lived state: an event loop and what is open on it.

Lambda runs one invocation at a time per execution environment and freezes
it in between, so whatever is opened once — the :class:`UcfContext` with its
DynamoDB and Secrets Manager clients, the HTTP connection pool, the gateway's
caches — serves every later ("warm") invocation of that environment. It is
opened lazily, by the first invocation, and never per request.

Objects bound to an event loop (httpx's pool, asyncio locks and events) must
always meet the same loop, so a container owns one loop, driven by one
dedicated thread: a handler is the plain synchronous function Lambda calls,
and it hands its coroutine to that thread and waits. The thread also keeps
the loop away from whatever the calling thread has (tests call handlers from
inside pytest-asyncio, whose loop must not be touched).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import socket
import sys
import threading
from asyncio import AbstractEventLoop, new_event_loop, set_event_loop
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

if TYPE_CHECKING:
    from ucf.service.context import UcfContext
    from ucf.service.settings import Settings

__all__ = ["Container", "close_all"]

log = logging.getLogger("ucf.aws")

T = TypeVar("T")

Builder = Callable[[contextlib.AsyncExitStack], Awaitable[T]]
"""Builds a resource; registers on the stack whatever must be closed with the container."""

_CONTEXT: Final = "context"
_CONTAINERS: list[Container] = []
_CONTAINERS_LOCK = threading.Lock()
_frozen = False


def _instance_name() -> str:
    """Lambda's log stream name is unique per execution environment; a hostname is not."""
    return os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME") or socket.gethostname()


class Container:
    """The loop, the context and other once-per-environment resources of one function."""

    def __init__(self, name: str, environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self._environ = environ
        self._lock = threading.Lock()
        self._loop: AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stack = contextlib.AsyncExitStack()
        self._resources: dict[str, Any] = {}
        self.worker_id = self._new_worker_id()
        with _CONTAINERS_LOCK:
            _CONTAINERS.append(self)

    def _new_worker_id(self) -> str:
        # Lease owner of this environment's polls. Lambda environments may share a
        # hostname and a pid, and an owner may re-take its own lease, so the id
        # carries a random part: two environments must never look like one.
        return f"lambda:{self.name}:{_instance_name()}:{secrets.token_hex(4)}"

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def settings(self) -> Settings:
        from ucf.aws.config import lambda_settings

        return lambda_settings(self.environ)

    # -- running work on the container's loop

    def _started(self) -> tuple[AbstractEventLoop, ThreadPoolExecutor]:
        with self._lock:
            if self._loop is None or self._executor is None:
                _configure_logging(self.environ)
                _report_regex_cache()
                loop = new_event_loop()
                self._executor = ThreadPoolExecutor(
                    max_workers=1,
                    thread_name_prefix=f"ucf-{self.name}",
                    initializer=set_event_loop,
                    initargs=(loop,),
                )
                self._loop = loop
            return self._loop, self._executor

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` to completion on the container's loop; its result or its exception."""
        loop, executor = self._started()

        async def call() -> T:
            return await work()

        return executor.submit(loop.run_until_complete, call()).result()

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a synchronous ``function`` on the loop's thread (Mangum drives the loop itself)."""
        _, executor = self._started()
        return executor.submit(function, *args).result()

    # -- resources opened once per environment

    async def once(self, key: str, build: Builder[T]) -> T:
        """The resource ``key``, built on first use and kept until :meth:`close`.

        A build that fails is not remembered: the next invocation tries again
        (a throttled Secrets Manager at a cold start must not poison the environment).
        """
        if key in self._resources:
            return cast(T, self._resources[key])
        with _collector_paused():
            value = await build(self._stack)
        self._resources[key] = value
        return value

    async def context(self) -> UcfContext:
        """The environment's one :class:`UcfContext`, opened on first use."""
        return await self.once(_CONTEXT, self._open_context)

    async def _open_context(self, stack: contextlib.AsyncExitStack) -> UcfContext:
        from ucf.service.context import UcfContext

        # The template creates the table (ucf.service.context: provisioned), and a
        # function opens a secret store or syncs the catalogue only if its job needs it.
        context = await UcfContext.open(self.settings(), on_demand=True, provisioned=True)
        stack.push_async_callback(context.close)
        log.info("%s: opened the store and secret store (cold start)", self.name)
        return context

    # -- the end

    def close(self) -> None:
        """Close every resource, stop the loop and its thread (tests; a graceful shutdown).

        The container can be used again afterwards: the next invocation starts afresh,
        as in a new execution environment (with a new worker id).
        """
        with self._lock:
            loop, executor = self._loop, self._executor
            self._loop = self._executor = None
        if loop is None or executor is None:
            return
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        self._resources = {}
        try:
            executor.submit(loop.run_until_complete, stack.aclose()).result()
        finally:
            executor.submit(loop.run_until_complete, loop.shutdown_asyncgens()).result()
            executor.submit(loop.close).result()
            executor.shutdown(wait=True)
            self.worker_id = self._new_worker_id()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a resource is built; a start-up's objects frozen after.

    Building the context or the app imports most of ucf and its libraries and
    allocates hundreds of thousands of long-lived objects; the collector would
    walk all of them several times over (full collections included) and find
    nothing to free: about a fifth of a cold start's CPU (``bench/coldstart.py``).
    The pause lasts one build, so garbage cannot pile up while an invocation
    works. After the first build, everything alive is moved out of the
    collector's sight (``gc.freeze``): it lives as long as the environment, and
    warm invocations no longer pay for walking it. Once per process only: a
    process that builds many containers (the tests) freezes once.
    """
    global _frozen
    if not gc.isenabled():  # a build inside a build, or a host that manages gc itself
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        if not _frozen:
            _frozen = True
            gc.freeze()


def close_all() -> None:
    """Close every container of this process (tests run many "environments" in one process)."""
    with _CONTAINERS_LOCK:
        containers = list(_CONTAINERS)
    for container in containers:
        container.close()


def _report_regex_cache() -> None:
    """Say once per environment (logging is set up only now) what the artifact's regex
    cache did at import: at INFO when a shipped file goes unused, whose ~15-20 ms of a
    cold start's CPU are then lost without another sign (a runtime whose ``re`` is not
    the build's); at DEBUG otherwise. Nothing on any request's path."""
    cache = sys.modules.get("ucf.aws.regex_cache")
    found = None if cache is None else cache.outcome()
    if found is None:
        return  # the handlers' package was not imported (tests building a container)
    if found.unused_file:
        log.info("regex cache not used: %s", found.why)
    else:
        log.debug("regex cache: %s", found.why)


def _configure_logging(environ: Mapping[str, str]) -> None:
    """Credentials masked in every record; the root level from ``UCF_LOG_LEVEL``.

    Lambda's runtime has already put its own handler (to CloudWatch) on the root
    logger; the redaction filter goes on it, so no record reaches the logs
    unmasked. In Lambda the root level defaults to INFO (the runtime leaves it at
    WARNING) unless the function's log-level setting (``AWS_LAMBDA_LOG_LEVEL``)
    already chose one; elsewhere (tests) it is only changed when asked.
    """
    from ucf.runtime.redaction import install_redaction

    level = environ.get("UCF_LOG_LEVEL", "").upper()
    in_lambda = bool(environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    if not level and in_lambda and not environ.get("AWS_LAMBDA_LOG_LEVEL"):
        level = "INFO"
    if level in logging.getLevelNamesMapping():
        logging.getLogger().setLevel(level)
    install_redaction()
