"""``ucf signals tail`` and ``ucf signals list``: the stored signals, in the terminal.

``tail`` follows the store the way ``tail -f`` follows a file: the newest
signals first, then each new one once, as it lands, whichever process stored
it (``ucf serve``, ``ucf worker``, ``ucf poll --store``). It reads the store
directly and needs no server.

The store orders signals by their own time, not by arrival, and a poll can
store an item updated hours ago. So each second ``tail`` reads the newest
signals until it meets a page it has seen entirely, and every ``--sweep``
seconds it rereads the whole ``--window`` (signal time) to catch late arrivals;
a set of the ids seen in that window keeps every signal to one line. A signal
whose own time is older than the window when it arrives is not shown (use
``--since`` to widen the window; ``ucf signals list`` and the API see it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from ucf.cli.errors import fail
from ucf.cli.options import DataDirOption, StoreOption
from ucf.stores.models import SignalQuery, StoredSignal, utc
from ucf.stores.protocols import Store

signals_app = typer.Typer(help="Read the signals ucf has stored.", no_args_is_help=True)

PAGE: Final = 500
PROJECT_REFRESH_SECONDS: Final = 10.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# --------------------------------------------------------------------------- parsing


_LONGEST: Final = timedelta(days=1000 * 365)
"""A duration ago must name a time a datetime holds: ``99999999d`` overflowed, a traceback."""


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``; at most a thousand years."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration; use e.g. 30s, 15m, 2h, 7d")
    try:
        span = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        span = None
    if span is None or span > _LONGEST:
        raise ValueError(f"{text!r} is longer than a thousand years")
    return span


def parse_moment(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise) or a duration ago (``15m``)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        if _DURATION.match(text.strip().lower()):  # a duration, but too long: say so
            raise
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2025-03-01T12:00Z) "
            "nor a duration ago (15m, 2h, 7d)"
        ) from None
    try:
        return utc(parsed)
    except OverflowError:  # 9999-12-31T23:59-23:59 is past year 9999 in UTC
        raise ValueError(f"{text!r} is outside the years 1-9999 in UTC") from None


# --------------------------------------------------------------------------- output


def _printable(text: str) -> str:
    """One terminal line: control and format characters (ESC, bidi overrides) become spaces,
    so a summary written by anyone on the internet cannot drive the terminal."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How one signal is printed: a readable line, or its wire JSON (``--json``)."""

    as_json: bool = False
    show_project: bool = False

    def render(self, stored: StoredSignal) -> str:
        signal = stored.signal
        if self.as_json:
            return json.dumps(signal, ensure_ascii=False, separators=(",", ":"))
        parts = [str(signal.get("timestamp", ""))]
        if self.show_project:
            parts.append(stored.project_id)
        parts += [str(signal.get("source", "")), str(signal.get("type", ""))]
        parts.append(str(signal.get("summary", "")))
        return "  ".join(_printable(part) for part in parts)


def _emit(lines: Iterable[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


# --------------------------------------------------------------------------- following


def _order(stored: StoredSignal) -> tuple[datetime, str, str]:
    return (stored.received_at, str(stored.signal.get("timestamp", "")), stored.signal_id)


class SignalFollower:
    """Hands out each signal of the followed projects once, as it becomes visible.

    ``projects`` returns the project ids to follow (called again every
    ``PROJECT_REFRESH_SECONDS``). See the module doc for what "visible" means.
    """

    def __init__(
        self,
        store: Store,
        projects: Callable[[], Awaitable[list[str]]],
        filters: SignalQuery,
        *,
        window: timedelta,
        sweep_seconds: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._projects_source = projects
        self._filters = filters
        self._window = window
        self._sweep_seconds = sweep_seconds
        self._clock = clock
        self._seen: dict[str, datetime] = {}
        self._projects: list[str] = []
        self._projects_at = -1e18
        self._swept_at = -1e18

    @property
    def projects(self) -> list[str]:
        return list(self._projects)

    def _floor(self) -> datetime:
        floor = self._clock() - self._window
        since = self._filters.since
        return since if since is not None and since < floor else floor

    async def _refresh_projects(self) -> None:
        if time.monotonic() - self._projects_at < PROJECT_REFRESH_SECONDS and self._projects:
            return
        self._projects = sorted(set(await self._projects_source()))
        self._projects_at = time.monotonic()

    async def _scan(self, project: str, floor: datetime, *, full: bool) -> list[StoredSignal]:
        """Unseen signals of ``project`` at or after ``floor``: all pages, or until a page
        holds nothing new (``full=False``)."""
        filters = SignalQuery(
            source=self._filters.source,
            type=self._filters.type,
            since=max(floor, self._filters.since) if self._filters.since else floor,
            until=self._filters.until,
        )
        fresh: list[StoredSignal] = []
        cursor: str | None = None
        while True:
            page = await self._store.signals.query(project, filters, limit=PAGE, cursor=cursor)
            new = [s for s in page.items if s.signal_id not in self._seen]
            fresh += new
            cursor = page.next_cursor
            if cursor is None or (not full and not new):
                return fresh

    def _remember(self, signals: Sequence[StoredSignal]) -> None:
        for stored in signals:
            self._seen[stored.signal_id] = _signal_time(stored)

    def _forget_before(self, floor: datetime) -> None:
        """Ids below the window can no longer come back from a scan: drop them."""
        self._seen = {sid: moment for sid, moment in self._seen.items() if moment >= floor}

    async def backlog(self, count: int | None) -> list[StoredSignal]:
        """Read the window once (all of it now counts as seen); its newest ``count``
        (None: all), oldest first."""
        await self._refresh_projects()
        floor = self._floor()
        found: list[StoredSignal] = []
        for project in self._projects:
            found += await self._scan(project, floor, full=True)
        self._remember(found)
        self._swept_at = time.monotonic()
        found.sort(key=lambda s: (_signal_time(s), s.signal_id))
        if count is None:
            return found
        return found[len(found) - count :] if count else []

    async def poll(self) -> list[StoredSignal]:
        """Signals that appeared since the last call, in arrival order."""
        await self._refresh_projects()
        floor = self._floor()
        full = time.monotonic() - self._swept_at >= self._sweep_seconds
        found: list[StoredSignal] = []
        for project in self._projects:
            found += await self._scan(project, floor, full=full)
        unique = list({s.signal_id: s for s in found}.values())
        self._remember(unique)
        if full:
            self._swept_at = time.monotonic()
            self._forget_before(floor)
        unique.sort(key=_order)
        return unique


def _signal_time(stored: StoredSignal) -> datetime:
    try:
        return utc(datetime.fromisoformat(str(stored.signal.get("timestamp"))))
    except ValueError:
        return stored.received_at


async def _all_projects(store: Store) -> list[str]:
    """Every project with a connector instance (enabled or not)."""
    projects = {record.project_id for record in await store.instances.list_enabled()}
    for record in await store.descriptors.list_all():
        projects.update(
            i.project_id for i in await store.instances.list_by_connector(record.connector_id)
        )
    return sorted(projects)


# --------------------------------------------------------------------------- commands


ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="Project id; default: every project with a connector instance.",
        show_default=False,
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Signals from this time on: ISO 8601 (2025-03-01T12:00Z) or a duration ago "
        "(15m, 2h, 7d).",
        show_default=False,
    ),
]
SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source", help="Only this connector id (e.g. github-issues).", show_default=False
    ),
]
TypeOption = Annotated[
    str | None,
    typer.Option("--type", help="Only this signal type (e.g. issue_created).", show_default=False),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print each signal's wire JSON, one per line.")
]


def open_existing_store(store_url: str | None, data_dir: Path | None) -> Store:
    """The configured store, refusing to create an empty SQLite file by reading it."""
    from ucf.service.settings import Settings
    from ucf.stores import StoreError, open_store
    from ucf.stores.url import sqlite_path, store_scheme

    try:
        settings = Settings.from_env(data_dir=data_dir, store_url=store_url)
        url = settings.store_url
        if store_scheme(url) == "sqlite" and not sqlite_path(url).exists():
            raise fail(
                f"no ucf store at {sqlite_path(url)}: start `ucf serve`, or pass --store or "
                "--data-dir of the one you use",
                1,
            )
        return open_store(url)
    except (ValueError, StoreError) as error:
        raise fail(str(error)) from None


def _moment(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_moment(text, datetime.now(UTC))
    except ValueError as error:
        raise fail(f"{what}: {error}") from None


def run_store_command(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine factory; Ctrl-C and a closed pipe end quietly, store errors in one line."""
    from ucf.stores import StoreError

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BrokenPipeError:  # `ucf signals tail | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except StoreError as error:
        raise fail(str(error), 1) from None


@signals_app.command("tail")
def tail(
    project: ProjectOption = None,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    since: SinceOption = None,
    source: SourceOption = None,
    type_: TypeOption = None,
    lines: Annotated[
        int | None,
        typer.Option(
            "--lines",
            "-n",
            min=0,
            help="How many of the newest signals to print first; default 10 (with --since: all).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between looks at the store.")
    ] = 1.0,
    window: Annotated[
        str,
        typer.Option(
            "--window",
            help="How far back (signal time) late-arriving signals are still caught.",
        ),
    ] = "1d",
    sweep: Annotated[
        float,
        typer.Option("--sweep", min=0.1, help="Seconds between full rereads of the window."),
    ] = 10.0,
) -> None:
    """Follow signals as they are stored (like tail -f); Ctrl-C to stop."""
    try:
        window_span = parse_duration(window)
    except ValueError as error:
        raise fail(f"--window: {error}") from None
    filters = SignalQuery(source=source, type=type_, since=_moment(since, "--since"))
    backlog = lines if lines is not None else (None if since is not None else 10)
    opened = open_existing_store(store, data_dir)

    async def follow() -> None:
        async with opened as handle:

            async def projects() -> list[str]:
                return [project] if project is not None else await _all_projects(handle)

            follower = SignalFollower(
                handle, projects, filters, window=window_span, sweep_seconds=sweep
            )
            first = await follower.backlog(backlog)
            followed = project or f"{len(follower.projects)} project(s)"
            typer.echo(f"following {followed} in {handle.description}; Ctrl-C to stop", err=True)
            fmt = LineFormat(as_json=as_json, show_project=project is None)
            _emit(fmt.render(s) for s in first)
            while True:
                started = time.monotonic()
                fresh = await follower.poll()
                _emit(fmt.render(s) for s in fresh)
                took = time.monotonic() - started
                await asyncio.sleep(max(interval, 2 * took))  # a big window never hogs the store

    run_store_command(follow)


@signals_app.command("list")
def list_signals(
    project: Annotated[str, typer.Option("--project", "-p", help="Project id.")],
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    since: SinceOption = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Signals before this time (same forms as --since).", show_default=False
        ),
    ] = None,
    source: SourceOption = None,
    type_: TypeOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Signals per page.")] = 50,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", help="Continue from a previous page.", show_default=False),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """One page of a project's signals, newest first; the next page's --cursor on stderr."""
    filters = SignalQuery(
        source=source,
        type=type_,
        since=_moment(since, "--since"),
        until=_moment(until, "--until"),
    )
    opened = open_existing_store(store, data_dir)

    async def page() -> None:
        async with opened as handle:
            result = await handle.signals.query(project, filters, limit=limit, cursor=cursor)
            # Nothing at all for a project no instance belongs to: most likely a misspelt
            # id (or another store). It printed nothing, like a project with no signals yet.
            known = [] if result.items or cursor else await _all_projects(handle)
            if not result.items and not cursor and project not in known:
                typer.echo(
                    f"no signals: project {project!r} has no connector instance in "
                    f"{handle.description} (projects with one: {', '.join(known) or 'none'})",
                    err=True,
                )
        fmt = LineFormat(as_json=as_json)
        _emit(fmt.render(s) for s in result.items)
        if result.next_cursor is not None:
            typer.echo(f"more: --cursor {result.next_cursor}", err=True)

    run_store_command(page)
