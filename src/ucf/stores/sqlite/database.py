"""One SQLite file, one connection, one thread: the async face of stdlib ``sqlite3``.

Every call runs on a dedicated single-thread executor that owns the connection,
so calls from one process are serialised without locks of our own and the event
loop never blocks on disk. Writes run in ``BEGIN IMMEDIATE`` transactions: the
file's write lock is taken before the first read, so a read-decide-write
sequence (dedup, CAS, leases, token buckets) is atomic across processes too.
Other processes wait up to ``busy_timeout`` for the lock.

Group commit: writes that arrive while the thread is busy (concurrent webhook
deliveries, a bucket draw beside an ingest) wait in a queue, and the next turn
of the thread runs all of them in *one* transaction with one ``COMMIT`` (one
fsync of the WAL). Each caller gets its result only once the commit holding its
write is durable. A write that raises fails alone: the group is rolled back and
run again with each write inside its own savepoint, rolled back to it, so only a
group that needs savepoints pays for them (a write may therefore run twice, its
first run undone). A failed ``BEGIN`` or ``COMMIT`` fails exactly the writes
of that group (a retryable :class:`StoreUnavailable` when the disk or the lock
is the cause). Writes run in the order they were asked for, so the serial order
every decision sees is the arrival order, as before.

Hand-over: the store's thread needs the GIL between statements, and a busy event
loop lets go of it only for an instant at each of its own system calls, so a
write used to run only once the loop had nothing left to do. A write asked for
with ``hand_over`` (a poll's page) has the loop wait, briefly and boundedly,
while its statements run; the loop then goes on with its own work (mapping the
next page) while the ``COMMIT`` writes the WAL and fsyncs without the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import stat
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from ucf.stores.errors import StoreCorrupt, StoreError, StoreUnavailable
from ucf.stores.sqlite.schema import MIGRATIONS, Migration

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000

_SIDE_FILES = ("-wal", "-shm", "-journal")

_FIX_LOCATION = "set UCF_STORE=sqlite:///<writable path>/ucf.db or fix the permissions"

MAX_GROUP: Final = 256
"""Writes committed together at most: a group's slowest write delays all of its callers."""

HAND_OVER_LIMIT: Final = 0.005
"""Seconds the event loop waits, at most, for a handed-over write to reach its ``COMMIT``
(a poll page's statements take under a millisecond; a write waiting for another
process's lock is left to finish on its own)."""


@dataclass(slots=True)
class _Write:
    """One queued write and what became of it (set on the store's thread)."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    hand_over: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Queue:
    """The writes waiting for the next group of one event loop, and its committer task."""

    writes: deque[_Write] = field(default_factory=deque)
    committer: asyncio.Task[None] | None = None


class Database:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._migrations = migrations
        self.schema_version = migrations[-1].version
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._open_actions: tuple[str, ...] = ()
        self._queues: dict[asyncio.AbstractEventLoop, _Queue] = {}
        self.commits = 0
        """Write transactions committed (a group counts once): what group commit saves."""

    # --- lifecycle (runs on the executor thread) ---------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        actions: list[str] = []
        existed = self.path.exists()
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, mode=0o700)
                actions.append(f"created directory {self.path.parent}")
        except OSError as err:
            raise StoreUnavailable(
                f"cannot create directory {self.path.parent} for the SQLite store: "
                f"{err.strerror or err}",
                _FIX_LOCATION,
            ) from None
        if not self.path.parent.is_dir():
            raise StoreUnavailable(
                f"cannot create the SQLite store in {self.path.parent}: not a directory",
                _FIX_LOCATION,
            )
        if self.path.is_dir():
            raise StoreUnavailable(f"SQLite store path {self.path} is a directory", _FIX_LOCATION)
        actions.extend(self._make_private())
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.Error as err:
            raise self.translate(err) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailable(
                    f"SQLite file {self.path} cannot use WAL journaling (got {mode!r})",
                    "put the store on a local filesystem",
                )
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            if not existed:
                actions.append(f"created SQLite file {self.path}")
            actions.extend(self._migrate(conn))
        except sqlite3.Error as err:
            conn.close()
            raise self.translate(err) from None
        except StoreError:
            conn.close()
            raise
        self._conn = conn
        self._open_actions = tuple(actions)
        return conn

    def _make_private(self) -> list[str]:
        """The file (and the WAL and shared-memory files SQLite makes beside it) readable by
        this user only.

        The store holds every signal and the registry; whatever the directory and the
        umask, the file is created 0600 before SQLite opens it, and SQLite gives its
        ``-wal`` and ``-shm`` files the database file's mode. Files an older ucf left
        readable by others are tightened (and the action reported).
        """
        if os.name != "posix":
            return []
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError:
            return []  # sqlite3.connect reports why the file cannot be opened
        tightened = []
        for path in (self.path, *(self.path.with_name(self.path.name + s) for s in _SIDE_FILES)):
            try:
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    path.chmod(mode & 0o700)
                    tightened.append(path.name)
            except OSError:
                continue  # absent, or not ours to change
        if not tightened:
            return []
        return [f"made {', '.join(tightened)} readable by this user only (mode 0600)"]

    def _migrate(self, conn: sqlite3.Connection) -> list[str]:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == self.schema_version:
            return []
        self._check_not_newer(current)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_not_newer(current)
            applied = []
            for migration in self._migrations:
                if migration.version > current:
                    for statement in _statements(migration.sql):
                        conn.execute(statement)
                    applied.append(migration)
            conn.execute(f"PRAGMA user_version = {self.schema_version}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return [f"applied migration {m.version}: {m.summary}" for m in applied]

    def _check_not_newer(self, version: int) -> None:
        if version > self.schema_version:
            raise StoreCorrupt(
                f"SQLite file {self.path} has schema version {version}, newer than this "
                f"ucf knows ({self.schema_version})",
                "upgrade ucf, or point UCF_STORE at another file",
            )

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- async API ---------------------------------------------------------------------

    def _start(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """``fn`` handed to the store's thread now; its outcome, to await."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ucf-sqlite")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _submit(self, fn: Callable[[], T]) -> T:
        return await self._start(fn)

    async def open(self) -> tuple[str, ...]:
        """Open (creating and migrating as needed); the actions taken, once."""

        def run() -> tuple[str, ...]:
            self._open()
            actions, self._open_actions = self._open_actions, ()
            return actions

        return await self._submit(run)

    async def close(self) -> None:
        """Commit the writes already asked for, then close the file.

        A write still queued (a shutdown closes the store right after the tasks it
        cancelled queued their lease releases) would otherwise run after the close,
        reopen the file and leave that connection open for the life of the process.
        So would one asked for while the file is being closed (a request still in
        flight): its group runs after the close, and is waited for before closing
        again. Only then is the thread let go, with nothing of this loop's left on it.
        """
        if self._executor is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            queue = self._queues.get(loop)
            if queue is not None and queue.committer is not None:
                await asyncio.wait({queue.committer})
            await self._submit(self._close)
            queue = self._queues.get(loop)
            if queue is None or queue.committer is None:
                break  # no write was asked for while the file was being closed
        self._executor.shutdown(wait=True)
        self._executor = None

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, hand_over: bool = False) -> T:
        """Run ``fn`` in a ``BEGIN IMMEDIATE`` transaction, rolled back if it raises; the
        result once it is committed. Concurrent writes share one transaction and one
        commit (see the module's docstring); one that raises fails alone. ``fn`` may run
        twice (its first run rolled back, when another write of its group raised): it
        must act on ``conn`` only, as every store's writes do.

        ``hand_over``: the event loop itself waits (at most :data:`HAND_OVER_LIMIT`)
        while the store's thread runs the transaction's statements, then goes on with
        its own work while the ``COMMIT`` writes the WAL and fsyncs (without the GIL).
        For a write the caller means to overlap with CPU-bound work (a poll maps its
        next page while a page commits): the thread needs the GIL between statements,
        and a busy loop, which lets go of the GIL only for an instant at each of its
        own system calls, gave it the GIL only once the loop had nothing left to do,
        so the whole write ran after the work instead of beside it.
        """
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        write = _Write(fn, loop.create_future(), hand_over)
        queue.writes.append(write)
        if queue.committer is None:
            # A task of its own, so a caller that is cancelled cannot strand the
            # group its write is in: the others still get their answers.
            queue.committer = loop.create_task(self._commit_queued(queue), name="sqlite commit")
        result: T = await write.future
        return result

    async def _commit_queued(self, queue: _Queue) -> None:
        try:
            while queue.writes:
                group = [queue.writes.popleft() for _ in range(min(MAX_GROUP, len(queue.writes)))]
                committing = threading.Event() if any(w.hand_over for w in group) else None
                try:
                    committed = self._start(
                        functools.partial(self._commit_group, group, committing)
                    )
                    if committing is not None:
                        # The loop waits here on purpose, briefly: see write()'s hand_over.
                        committing.wait(HAND_OVER_LIMIT)
                    await committed
                except asyncio.CancelledError:  # the loop is shutting down
                    for write in (*group, *queue.writes):
                        write.future.cancel()
                    queue.writes.clear()
                    raise
                except Exception as error:  # the executor is gone (closed meanwhile)
                    _fail([write for write in group if write.error is None], error)
                _settle(group)
        finally:
            queue.committer = None
            if not queue.writes:
                self._queues.pop(asyncio.get_running_loop(), None)

    def _commit_group(self, group: list[_Write], committing: threading.Event | None) -> None:
        """On the store's thread: one transaction for the whole group (see the module).
        ``committing``, if given, is set once only the ``COMMIT`` is left (or nothing is)."""
        try:
            self._run_group(group, committing)
        finally:
            if committing is not None:
                committing.set()

    def _run_group(self, group: list[_Write], committing: threading.Event | None) -> None:
        try:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            _fail(group, self.translate(err))
            return
        except Exception as error:
            _fail(group, error)
            return
        try:
            if len(group) == 1:
                self._run_alone(conn, group[0])
            elif not self._run_together(conn, group):
                # A write raised: undo the whole group and run it again, each write in a
                # savepoint of its own, so that the one that raises fails alone.
                _rollback(conn)
                conn.execute("BEGIN IMMEDIATE")
                self._run_each_in_a_savepoint(conn, group)
            if conn.in_transaction:
                if committing is not None:
                    committing.set()  # the loop goes on while the COMMIT writes and fsyncs
                conn.execute("COMMIT")
                self.commits += 1
        except sqlite3.Error as err:  # BEGIN held, but a savepoint or the COMMIT failed
            _rollback(conn)
            _fail([write for write in group if write.error is None], self.translate(err))

    def _run_alone(self, conn: sqlite3.Connection, write: _Write) -> None:
        try:
            write.result = write.fn(conn)
        except BaseException as error:
            write.error = self.translate(error) if isinstance(error, sqlite3.Error) else error
            _rollback(conn)

    @staticmethod
    def _run_together(conn: sqlite3.Connection, group: list[_Write]) -> bool:
        """Every write of the group in turn, without savepoints; False (the results
        dropped) as soon as one raises, for the caller to undo and run again.

        A savepoint around each write (``SAVEPOINT``, ``RELEASE``, and SQLite copying
        each page a write touches aside in case it is rolled back) was a fifth of the
        store thread's instructions per webhook delivery (bench/webhook.py), paid by every
        write for the rare one that raises."""
        for write in group:
            try:
                write.result = write.fn(conn)
            except BaseException:
                for done in group:
                    done.result = None
                return False
        return True

    def _run_each_in_a_savepoint(self, conn: sqlite3.Connection, group: list[_Write]) -> None:
        for write in group:
            conn.execute("SAVEPOINT one_write")
            try:
                write.result = write.fn(conn)
            except BaseException as error:
                write.error = self.translate(error) if isinstance(error, sqlite3.Error) else error
                if not conn.in_transaction:  # SQLite rolled the whole transaction back
                    _fail([w for w in group if w is not write], write.error)
                    return
                conn.execute("ROLLBACK TO one_write")
            conn.execute("RELEASE one_write")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction: a consistent snapshot."""

        def run() -> T:
            conn = self._open()
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as err:
                raise self.translate(err) from None

        return await self._submit(run)

    def translate(self, err: sqlite3.Error) -> StoreError:
        """A typed store error saying what is wrong with the file and what to do."""
        message = str(err)
        lowered = message.lower()
        if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
            return StoreCorrupt(
                f"{self.path} is not a usable SQLite database ({message})",
                "move the file aside (ucf will create a new one) or restore it from a backup",
            )
        if "locked" in lowered or "busy" in lowered:
            return StoreUnavailable(
                f"SQLite file {self.path} stayed locked by another process for "
                f"{BUSY_TIMEOUT_MS // 1000} s",
                "stop the other writer or retry later",
            )
        if "unable to open" in lowered or "readonly" in lowered or "read-only" in lowered:
            return StoreUnavailable(
                f"cannot open SQLite file {self.path} for writing ({message})", _FIX_LOCATION
            )
        if "disk i/o" in lowered or "full" in lowered:
            return StoreUnavailable(f"SQLite file {self.path}: {message}", "free disk space")
        return StoreUnavailable(f"SQLite file {self.path}: {message}", _FIX_LOCATION)


def _fail(writes: list[_Write], error: BaseException) -> None:
    for write in writes:
        write.result, write.error = None, error


def _settle(group: list[_Write]) -> None:
    """Hand each caller its outcome (on the event loop; a caller may have gone)."""
    for write in group:
        if write.future.done():
            continue
        if write.error is not None:
            write.future.set_exception(write.error)
        else:
            write.future.set_result(write.result)


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo the open transaction, if SQLite has not already (it does on some errors),
    without letting a failed ROLLBACK hide the error that caused it."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would commit)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements
