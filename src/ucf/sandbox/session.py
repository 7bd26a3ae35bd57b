"""One sandbox run: fakes up, ``ucf serve`` up, every connector connected, activity, a summary.

The order matters for a clean stop. Start: fakes, then the server (its own
process), then the instances through the management API (create, test
connection, first poll — what a user does in the dashboard). Stop, whether by
Ctrl-C, SIGTERM or ``--duration``: the activity first, then a last look at the
server's counters, then the server (SIGTERM, it drains), then the fakes, then
the throw-away data directory. A second Ctrl-C kills the server at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx

from ucf.cli.invocation import ucf_command
from ucf.runtime.ssrf import ALLOW_HOSTS_ENV
from ucf.sandbox.console import Reporter
from ucf.sandbox.fleet import Fleet, Provider
from ucf.sandbox.live import PROJECT, Activity, Deck, MetricsSnapshot, Tally, Watcher
from ucf.sandbox.server import ServeFailed, ServeProcess
from ucf.stores.url import ENV_STORE, resolve_store_url

__all__ = ["SandboxError", "SandboxOptions", "run_sandbox", "server_environment"]

T = TypeVar("T")

POLL_INTERVAL_ENV: Final = "UCF_POLL_INTERVAL_OVERRIDE"
ISOLATED_ENV: Final = frozenset(
    {
        ENV_STORE,
        "UCF_SECRET_STORE",
        "UCF_DATA_DIR",
        "UCF_API_TOKEN",
        "UCF_SCHEDULER",
        "UCF_PUBLIC_URL",
        POLL_INTERVAL_ENV,
    }
)
"""Settings the sandbox decides for its server, whatever the user's shell exports:
it must never write into a real store or run without its scheduler, nor hand out
webhook URLs on a deployment's host (a stage path there kept its server from starting:
``ucf serve`` takes no path)."""
LOOPBACK: Final = "127.0.0.1"
WATCH_EVERY: Final = 1.0
SETUP_CONCURRENCY: Final = 4
READY_TIMEOUT: Final = 90.0


class SandboxError(Exception):
    """The sandbox could not run; the message is the one line the user sees."""


class _Stopped(Exception):
    """Ctrl-C, SIGTERM or the end of ``--duration`` while waiting for something."""


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    port: int = 8080
    data_dir: Path | None = None
    duration: float | None = None
    """Seconds of live activity, then stop by itself; None: until Ctrl-C."""
    every: float = 1.5
    """Seconds between two events."""
    poll_interval: float = 5.0
    quiet: bool = False
    seed: int | None = None


def server_environment(
    base: Mapping[str, str], *, token: str, poll_interval: float
) -> dict[str, str]:
    """The server's environment: the user's, minus store settings, plus the sandbox's own.

    ``UCF_ALLOW_HOSTS`` gains the loopback address the fakes listen on — for
    this server only; the SSRF guard of any other ucf is untouched.
    """
    env = {key: value for key, value in base.items() if key not in ISOLATED_ENV}
    allowed = [host.strip() for host in base.get(ALLOW_HOSTS_ENV, "").split(",") if host.strip()]
    env[ALLOW_HOSTS_ENV] = ",".join(dict.fromkeys([*allowed, LOOPBACK]))
    env["UCF_API_TOKEN"] = token
    env[POLL_INTERVAL_ENV] = f"{poll_interval:g}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def choose_port(requested: int) -> tuple[int, str | None]:
    """``requested`` if it is free on loopback, else 0 (any) and why."""
    if requested == 0:
        return 0, None
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ucf serve binds
        probe.bind((LOOPBACK, requested))
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        return 0, f"port {requested} is not available ({reason}); using a free one instead"
    finally:
        probe.close()
    return requested, None


@contextlib.contextmanager
def _data_dir(chosen: Path | None) -> Iterator[tuple[Path, bool]]:
    """The directory to use and whether it is thrown away at the end."""
    if chosen is not None:
        try:
            chosen.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SandboxError(
                f"cannot use the data directory {chosen}: {error.strerror or error}"
            ) from None
        yield chosen.resolve(), False
        return
    made = Path(tempfile.mkdtemp(prefix="ucf-sandbox-"))
    try:
        yield made, True
    finally:
        shutil.rmtree(made, ignore_errors=True)


async def _unless_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> T:
    """``awaitable``'s result, unless ``stop`` is set first (then it is cancelled)."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise _Stopped


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {response.status_code}"
    message = f"{error.get('message', '')} (HTTP {response.status_code})"
    details = error.get("details")
    if isinstance(details, list) and details:
        message += ": " + "; ".join(
            f"{d.get('path')}: {d.get('message')}" for d in details if isinstance(d, dict)
        )
    return message


def _store_option(data_dir: Path) -> str:
    """How a CLI command finds the sandbox's store: ``--data-dir``, unless the user's
    ``UCF_STORE`` would win over it (then the SQLite URL itself)."""
    if os.environ.get(ENV_STORE):
        return "--store " + resolve_store_url(None, {"UCF_DATA_DIR": str(data_dir)})
    return f"--data-dir {data_dir}"


class Sandbox:
    """The running parts of one sandbox, and what to do with them."""

    def __init__(self, options: SandboxOptions, reporter: Reporter) -> None:
        self.options = options
        self.reporter = reporter
        self.stop = asyncio.Event()
        self.tally = Tally()
        self.server: ServeProcess | None = None
        self.live_started: float | None = None
        self.live_seconds = 0.0
        self.final: MetricsSnapshot | None = None
        self.health: dict[str, str] = {}

    # -- signals

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.stop.is_set():
            self.reporter.line(f"\n{name}: stopping the sandbox (again to stop at once)…", "cyan")
            self.stop.set()
        elif self.server is not None:
            self.reporter.line(f"{name} again: stopping ucf serve at once", "cyan")
            self.server.kill()

    # -- the run

    async def run(self) -> None:
        options = self.options
        token = "ucf_sandbox_" + secrets.token_urlsafe(24)
        rng = random.Random(options.seed)
        with _data_dir(options.data_dir) as (data_dir, temporary):
            self.reporter.line("ucf sandbox: starting the fakes of the catalogue APIs…", "cyan")
            with Fleet.running(datetime.now(UTC)) as fleet:
                port, note = choose_port(options.port)
                if note:
                    self.reporter.line(note, "yellow")
                self.server = ServeProcess(
                    data_dir=data_dir,
                    port=port,
                    env={
                        **server_environment(
                            os.environ, token=token, poll_interval=options.poll_interval
                        ),
                        **fleet.server_environment(),
                    },
                    log_path=data_dir / "serve.log",
                    on_error=lambda message: self.reporter.event("serve", "error", message),
                )
                try:
                    await self._with_server(fleet, token, rng, data_dir, temporary)
                except httpx.HTTPError as error:  # the server went away while setting up
                    raise SandboxError(
                        f"ucf serve stopped answering ({type(error).__name__}; "
                        f"{self.server.last_words()})"
                    ) from None
                finally:
                    code = await self.server.stop()
                if code not in (0, -signal.SIGTERM, -signal.SIGKILL, 130, None):
                    self.reporter.line(
                        f"ucf serve stopped with code {code}; see {data_dir / 'serve.log'}",
                        "yellow",
                    )
            if self.live_started is not None:
                self._summary(data_dir, temporary)

    async def _with_server(
        self, fleet: Fleet, token: str, rng: random.Random, data_dir: Path, temporary: bool
    ) -> None:
        assert self.server is not None
        self.reporter.line("starting ucf serve…", "cyan")
        try:
            base = await _unless_stopped(self.server.start(READY_TIMEOUT), self.stop)
        except ServeFailed as error:
            raise SandboxError(str(error)) from None
        timeout = httpx.Timeout(30.0, connect=5.0)
        auth = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(base_url=base, headers=auth, timeout=timeout) as api,
            httpx.AsyncClient(timeout=timeout) as hooks,
        ):
            await _unless_stopped(self._ready(api), self.stop)
            urls = await _unless_stopped(self._connect(api, fleet), self.stop)
            dashboard = await _unless_stopped(self._dashboard(api), self.stop)
            self._where_to_look(base, token, data_dir, temporary, dashboard)
            watcher = Watcher(api, self.reporter, self.tally)
            await _unless_stopped(watcher.baseline(), self.stop)
            activity = Activity(fleet, hooks, urls, self.reporter, rng, self.tally, time.monotonic)
            self.live_started = time.monotonic()
            await self._live(activity, watcher)
            with contextlib.suppress(httpx.HTTPError):
                await asyncio.wait_for(watcher.look(), timeout=10)
                self.final = watcher.metrics
            self.health = dict(watcher.health)
            if not temporary:
                await self._disable(api, fleet)

    async def _ready(self, api: httpx.AsyncClient) -> None:
        """Until ``/healthz`` answers (the app's start-up, store included, is done)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                response = await api.get("/healthz")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.server is not None and self.server.returncode is not None:
                raise SandboxError(f"ucf serve ended ({self.server.last_words()})")
            if time.monotonic() > deadline:
                raise SandboxError("ucf serve never answered /healthz; see its log")
            await asyncio.sleep(0.2)

    async def _dashboard(self, api: httpx.AsyncClient) -> str | None:
        """The dashboard's address, when this build of ``ucf serve`` has one at ``/``."""
        with contextlib.suppress(httpx.HTTPError):
            response = await api.get("/", follow_redirects=True)
            if response.status_code == 200 and "html" in response.headers.get("content-type", ""):
                return str(response.url)
        return None

    # -- connecting

    async def _connect(self, api: httpx.AsyncClient, fleet: Fleet) -> dict[str, str]:
        """Every connector connected: created (or re-pointed), tested, polled once."""
        self.reporter.line(
            f"connecting {len(fleet.providers)} connectors to project '{PROJECT}' "
            "through the management API…",
            "cyan",
        )
        slots = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(provider: Provider) -> tuple[str, str | None]:
            async with slots:
                return provider.connector_id, await self._connect_one(api, provider)

        results = await asyncio.gather(*(one(p) for p in fleet.providers))
        return {connector: url for connector, url in results if url is not None}

    async def _connect_one(self, api: httpx.AsyncClient, provider: Provider) -> str | None:
        connector = provider.connector_id
        base = f"/api/projects/{PROJECT}/instances"
        body = provider.instance_body()
        response = await api.post(base, json=body)
        verb = "connected"
        if response.status_code == 409:  # a kept data directory: point it at today's fakes
            patch = {k: body[k] for k in ("config", "credentials", "enabled")}
            response = await api.patch(f"{base}/{connector}", json=patch)
            verb = "re-connected"
        if response.status_code not in (200, 201):
            raise SandboxError(f"cannot connect {connector}: {_error_of(response)}")
        webhook_url = response.json().get("webhookUrl")
        parts = [verb]
        test = await api.post(f"{base}/{connector}/test")
        if test.status_code == 200:
            result = test.json()
            if result.get("ok"):
                parts.append(f"test connection ok in {result.get('latencyMs')} ms")
            else:
                parts.append(f"test connection FAILED: {result.get('error')}")
        else:
            parts.append(f"test connection: {_error_of(test)}")
        if provider.polls:
            poll = await api.post(f"{base}/{connector}/poll")
            if poll.status_code == 200:
                result = poll.json()
                parts.append(
                    f"first poll {result.get('status')}: {result.get('pages')} page(s), "
                    f"{result.get('inserted')} signal(s)"
                )
            else:
                parts.append(f"first poll: {_error_of(poll)}")
        if webhook_url:
            parts.append("webhooks on")
        app = provider.oauth_app
        if app is not None:  # "Connect with …" in the dashboard works offline too
            registered = await api.put(
                f"/api/connectors/{connector}/oauth-client",
                json={"clientId": app[0], "clientSecret": app[1]},
            )
            if registered.status_code == 204:
                settings = " ".join(f"{k}={v}" for k, v in provider.consent_settings().items())
                parts.append(
                    f"OAuth app registered (Connect with it from another project, with {settings})"
                )
            else:
                parts.append(f"OAuth app: {_error_of(registered)}")
        self.reporter.event("setup", connector, ", ".join(parts))
        return webhook_url if isinstance(webhook_url, str) else None

    async def _disable(self, api: httpx.AsyncClient, fleet: Fleet) -> None:
        """Kept data: the fakes are gone, so a later ``ucf serve`` must not poll them."""
        for provider in fleet.providers:
            with contextlib.suppress(httpx.HTTPError):
                await api.patch(
                    f"/api/projects/{PROJECT}/instances/{provider.connector_id}",
                    json={"enabled": False},
                )

    # -- live

    async def _live(self, activity: Activity, watcher: Watcher) -> None:
        assert self.server is not None
        play = asyncio.create_task(self._loop(activity.play, Deck(activity.rng)), name="activity")
        watch = asyncio.create_task(self._watch(watcher), name="watcher")
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.stop.wait()),
            asyncio.ensure_future(self.server.wait()),
        ]
        if self.options.duration is not None:
            waiters.append(asyncio.ensure_future(asyncio.sleep(self.options.duration)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (play, watch, *waiters):
                task.cancel()
            await asyncio.gather(play, watch, *waiters, return_exceptions=True)
            self.live_seconds = time.monotonic() - (self.live_started or time.monotonic())
        if self.server.returncode is not None and not self.server.stopping:
            raise SandboxError(f"ucf serve stopped on its own ({self.server.last_words()})")
        if not self.stop.is_set():
            self.reporter.line(
                f"\n--duration {self.options.duration:g} s is over: stopping…", "cyan"
            )

    async def _loop(self, play: Callable[[Any], Awaitable[None]], deck: Deck) -> None:
        for kind in deck:
            try:
                await play(kind)
            except httpx.HTTPError as error:
                self.reporter.event("serve", "unreachable", f"{kind}: {type(error).__name__}")
            await asyncio.sleep(self.options.every)

    async def _watch(self, watcher: Watcher) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                await watcher.look()
            except httpx.HTTPError as error:
                self.reporter.event("serve", "unreachable", f"watching: {type(error).__name__}")

    # -- the end

    def _summary(self, data_dir: Path, temporary: bool) -> None:
        t = self.tally
        rows: list[tuple[str, str]] = []
        final = self.final
        if final is not None:
            by_connector: dict[str, dict[str, int]] = {}
            for (connector, via), count in sorted(final.ingested.items()):
                by_connector.setdefault(connector, {})[via] = count
            rows.append(
                (
                    "signals stored",
                    f"{final.total()} (by poll {final.total('poll')}, "
                    f"by webhook {final.total('webhook')}) from {len(by_connector)} connector(s)",
                )
            )
            rows.append(
                (
                    "per connector",
                    ", ".join(
                        f"{connector} "
                        + " + ".join(f"{n} {via}" for via, n in sorted(counts.items()))
                        for connector, counts in by_connector.items()
                    ),
                )
            )
        rows.append(
            (
                "webhooks",
                f"{t.webhooks_sent} sent, {t.webhooks_accepted} accepted "
                f"({t.webhook_signals} new signals); {t.redeliveries_deduplicated} of "
                f"{t.redeliveries} redeliveries deduplicated; {t.ignored_answered_202} of "
                f"{t.ignored_sent} unmapped events ignored (202)",
            )
        )
        counted = "?" if final is None else str(sum(final.verification_failures.values()))
        rows.append(
            (
                "tampered",
                f"{t.tampered_sent} sent, {t.tampered_rejected} rejected with 401; "
                f"the server counted {counted} verification failure(s)",
            )
        )
        rows.append(("upstream", f"{t.upstream_changes} items created or changed in the fakes"))
        rows.append(("faults", f"{t.faults} injected; {t.health_changes} health change(s) seen"))
        if self.health:
            states: dict[str, int] = {}
            for state in self.health.values():
                states[state] = states.get(state, 0) + 1
            rows.append(
                ("health now", ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
            )
        if t.unexpected:
            rows.append(("unexpected", f"{len(t.unexpected)}: " + "; ".join(t.unexpected[:5])))
        rows.append(
            (
                "data",
                f"{data_dir} (removed)"
                if temporary
                else f"{data_dir} (kept; sandbox instances disabled)",
            )
        )
        self.reporter.table(f"\nsandbox summary after {self.live_seconds:.0f} s of activity", rows)

    def _where_to_look(
        self, base: str, token: str, data_dir: Path, temporary: bool, dashboard: str | None
    ) -> None:
        rows = [
            ("API", f"{base}/api"),
            ("token", token),
            (
                "try",
                f"curl -s -H 'Authorization: Bearer {token}' "
                f"'{base}/api/projects/{PROJECT}/signals?limit=5'",
            ),
        ]
        if dashboard is not None:
            signs_in = dashboard.rstrip("/") != base
            rows.append(
                ("dashboard", f"{base}/" + (" (sign in with the token)" if signs_in else ""))
            )
        rows += [
            (
                "signals",
                f"{ucf_command()} signals tail --project {PROJECT} {_store_option(data_dir)}",
            ),
            ("webhooks", f"{base}/api/webhooks/{{connectorId}}/{PROJECT}"),
            ("metrics", f"{base}/metrics"),
            ("API docs", f"{base}/docs"),
            ("server log", str(data_dir / "serve.log")),
            (
                "data",
                f"{data_dir} (removed on exit; --data-dir DIR keeps it)"
                if temporary
                else str(data_dir),
            ),
        ]
        self.reporter.table("\nucf sandbox is running — where to look:", rows)
        duration = self.options.duration
        ending = f"stops after {duration:g} s" if duration is not None else "Ctrl-C to stop"
        self.reporter.line(
            f"Every instance polls every {self.options.poll_interval:g} s "
            f"({POLL_INTERVAL_ENV}; the catalogue's own intervals are minutes); "
            f"an event every {self.options.every:g} s; {ending}.\n",
            "dim",
        )


async def _main(options: SandboxOptions, reporter: Reporter) -> None:
    sandbox = Sandbox(options, reporter)
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, sandbox.on_signal, signum)
    try:
        await sandbox.run()
    except _Stopped:
        reporter.line("stopped before the sandbox was ready.", "cyan")
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def run_sandbox(options: SandboxOptions, reporter: Reporter) -> None:
    """Run until Ctrl-C, SIGTERM or ``options.duration``; :class:`SandboxError` if it cannot."""
    asyncio.run(_main(options, reporter))
