"""Instructions per webhook delivery on the server's threads, counted by callgrind.

``bench/webhook.py`` measures CPU time under wrk, which swings with whatever
else the machine runs. This driver counts instructions instead (valgrind's
callgrind: the same run gives the same count, give or take a few hundred per
delivery), so a cut of a few microseconds shows. It serves the bench's own
signed GitHub ``issues.opened`` deliveries in one process, without sockets:

- ``--mode front``: straight into the app's ASGI entry (:class:`ucf.web.app.UcfApp`,
  whose webhook front answers), 32 deliveries in flight as wrk keeps them;
- ``--mode uvicorn``: the same through uvicorn's httptools protocol (what
  ``ucf serve`` runs), each of 32 connections a protocol on a fake transport that
  is fed the request bytes wrk would send (``data_received``), so the server's
  parsing, its ASGI cycle and its proxy-headers middleware are counted too;
- ``--mode bare``: ``bench/webhook.py``'s bare Starlette endpoint through the same
  uvicorn protocol: its figure per request is the peer of ``uvicorn``'s.

Everything else is as ``ucf serve`` has it: a real SQLite store in a fresh data
directory (group commit on its own thread), the instance created through the
service with its webhook secret, logging configured as the server does (the access
line goes to stderr, sent to a file), the start-up heap frozen and the young
generation collected every 20 000 allocations. The gateway's timers (target and
secret caches, the rate-limit reserve, the delivery-health write) run on a virtual
clock that advances 1/4000 s per delivery, the bench's rate, so that callgrind's
slowness does not make them expire fifty times as often.

``--marks`` adds an inclusive breakdown by Python function: the functions listed in
:data:`MARKS` are called through C functions of their own (``ucf_mark_NNN``, a tiny
extension compiled here), so callgrind's inclusive cost of each is the function's,
coroutines counted over every step they run. The wrappers cost instructions of
their own, so the totals to compare are those of a run without ``--marks``.

    uv run python bench/webhook_instructions.py [--mode front|uvicorn|bare]
        [--deliveries 1000] [--warmup 300] [--marks] [--top 40] [--keep DIR]

It needs ``valgrind`` and a C compiler with Python's headers; it prints the
instructions per delivery of each thread (the event loop's, ``main``; the SQLite
thread's) and, with ``--top``, callgrind's top inclusive C functions of the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

HERE = Path(__file__).resolve()
CONCURRENCY = 32
RATE = 4000.0
"""Deliveries per second of virtual time (about what ``bench/webhook.py`` reaches)."""
MAX_MARKS = 64

MARKS: tuple[str, ...] = (
    # the front
    "ucf.web.app:UcfApp.__call__",
    "ucf.web.front:WebhookFront.answered",
    "ucf.web.front:WebhookFront.__call__",
    "ucf.web.front:WebhookFront._deliver",
    "ucf.web.front:Headers.__init__",
    "ucf.web.front:_whole",
    "ucf.web.front:_rendered",
    "ucf.web.request_log:sane_request_id",
    "ucf.web.request_log:RequestIds.__call__",
    "ucf.web.request_log:record_request",
    "ucf.web.logs:DirectLine.write_access",
    "ucf.web.metrics:Metrics.observe_request",
    "ucf.web.metrics:Metrics.ingested",
    # the gateway
    "ucf.service.webhooks:WebhookGateway.target",
    "ucf.service.webhooks:WebhookGateway.receive",
    "ucf.service.webhooks:WebhookGateway._take_token",
    "ucf.service.webhooks:WebhookGateway._ingest",
    "ucf.service.webhooks:WebhookGateway._store",
    "ucf.service.webhooks:WebhookGateway._cached_secrets",
    "ucf.service.delivery_health:DeliveryReporter.verified_due",
    "ucf.runtime.webhooks:check_delivery",
    "ucf.runtime.webhooks:Admission.parsed",
    "ucf.core.webhook:map_delivery",
    # the ingest
    "ucf.service.ingest:SignalIngestor.ingest",
    "ucf.service.ingest:SignalIngestor._writes",
    "ucf.core.sanitiser:Sanitiser.sanitise_wires",
    "ucf.stores.models:SignalWrite.batch",
    "ucf.stores.sqlite.signals:SqliteSignalStore.ingest",
    "ucf.stores.sqlite.database:Database.write",
    "ucf.stores.sqlite.database:_settle",
    # uvicorn
    "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.data_received",
    "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_headers_complete",
    "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_message_complete",
    "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_response_complete",
    "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.send",
    "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.receive",
    "uvicorn.middleware.proxy_headers:ProxyHeadersMiddleware.__call__",
    # the bare peer
    "starlette.applications:Starlette.__call__",
    "starlette.routing:Router.__call__",
    "starlette.routing:Route.handle",
    "starlette.requests:Request.body",
    "starlette.responses:Response.__call__",
)
"""``module:qualname`` of the functions ``--marks`` breaks the loop's instructions down by
(those a run does not load are skipped)."""


# --------------------------------------------------------------------------- the C helper

_HELPER_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <valgrind/callgrind.h>

static PyObject *start(PyObject *self, PyObject *unused) {
    CALLGRIND_START_INSTRUMENTATION;
    Py_RETURN_NONE;
}

static PyObject *zero(PyObject *self, PyObject *unused) {
    CALLGRIND_ZERO_STATS;
    Py_RETURN_NONE;
}

static PyObject *dump(PyObject *self, PyObject *name) {
    const char *text = PyUnicode_AsUTF8(name);
    if (text == NULL) return NULL;
    CALLGRIND_DUMP_STATS_AT(text);
    Py_RETURN_NONE;
}

static volatile int last_mark;

#define MARK(i, value) \
    static PyObject *ucf_mark_##i(PyObject *self, PyObject *const *args, Py_ssize_t nargs, \
                                  PyObject *kwnames) { \
        last_mark = value; \
        if (nargs < 1) { PyErr_SetString(PyExc_TypeError, "a callable first"); return NULL; } \
        PyObject *result = PyObject_Vectorcall(args[0], args + 1, nargs - 1, kwnames); \
        last_mark = -value; \
        return result; \
    }
#define ENTRY(i) {"m" #i, (PyCFunction)(void (*)(void))ucf_mark_##i, \
                  METH_FASTCALL | METH_KEYWORDS, NULL},

MARKS_DEFINED

static PyMethodDef methods[] = {
    {"start", start, METH_NOARGS, NULL},
    {"zero", zero, METH_NOARGS, NULL},
    {"dump", dump, METH_O, NULL},
    MARK_ENTRIES
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ucf_callgrind", NULL, -1, methods};

PyMODINIT_FUNC PyInit_ucf_callgrind(void) { return PyModule_Create(&module); }
"""


def _helper(directory: Path) -> Any:
    """The compiled helper: ``start()``, ``zero()``, ``dump(name)`` and ``m0`` … ``m63(fn, *args)``.

    Built without optimisation, so each mark stays a frame of its own (no tail call,
    no identical functions folded into one)."""
    numbers = [f"{i:03d}" for i in range(MAX_MARKS)]
    source = _HELPER_C.replace(
        "MARKS_DEFINED", "\n".join(f"MARK({n}, {i})" for i, n in enumerate(numbers))
    )
    source = source.replace("MARK_ENTRIES", " ".join(f"ENTRY({n})" for n in numbers))
    c_file = directory / "ucf_callgrind.c"
    c_file.write_text(source)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    library = directory / f"ucf_callgrind{suffix}"
    subprocess.run(
        [
            os.environ.get("CC", "cc"),
            "-O0",
            "-shared",
            "-fPIC",
            f"-I{sysconfig.get_paths()['include']}",
            str(c_file),
            "-o",
            str(library),
        ],
        check=True,
    )
    spec = importlib.util.spec_from_file_location("ucf_callgrind", library)
    assert spec is not None
    assert spec.loader is not None
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    return helper


class _MarkedSteps:
    """A coroutine whose every step runs inside a mark (so its inclusive cost is all of
    its steps', not only its creation's)."""

    __slots__ = ("_coro", "_mark")

    def __init__(self, coro: Any, mark: Callable[..., Any]) -> None:
        self._coro = coro
        self._mark = mark

    def __await__(self) -> _MarkedSteps:
        return self

    def __iter__(self) -> _MarkedSteps:
        return self

    def __next__(self) -> Any:
        return self._mark(self._coro.send, None)

    def send(self, value: Any) -> Any:
        return self._mark(self._coro.send, value)

    def throw(self, *args: Any) -> Any:
        return self._mark(self._coro.throw, *args)

    def close(self) -> None:
        self._coro.close()


def _install_marks(helper: Any, only: str | None = None) -> list[str]:
    """Route each loaded function of :data:`MARKS` (or of ``only``, comma-separated names
    in the same form) through a mark; the names by mark."""
    import inspect

    names: list[str] = []
    for spec in only.split(",") if only else MARKS:
        module_name, qualname = spec.split(":")
        module = sys.modules.get(module_name)
        if module is None:
            continue
        owner: Any = module
        *path, attr = qualname.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, attr):  # not in this version of the code
            continue
        original = inspect.getattr_static(owner, attr)
        kind = type(original) if isinstance(original, staticmethod | classmethod) else None
        if kind is not None:
            original = original.__func__
        mark = getattr(helper, f"m{len(names):03d}")
        names.append(spec)
        if inspect.iscoroutinefunction(original):

            def wrapped(*args: Any, _f: Any = original, _m: Any = mark, **kwargs: Any) -> Any:
                return _MarkedSteps(_f(*args, **kwargs), _m)

        else:

            def wrapped(*args: Any, _f: Any = original, _m: Any = mark, **kwargs: Any) -> Any:
                return _m(_f, *args, **kwargs)

        functools.update_wrapper(wrapped, original)
        setattr(owner, attr, wrapped if kind is None else kind(wrapped))
        if owner is module:  # also where it was imported by name
            for other in list(sys.modules.values()):
                namespace = getattr(other, "__dict__", None)
                if isinstance(namespace, dict) and namespace.get(attr) is original:
                    namespace[attr] = wrapped
    return names


# --------------------------------------------------------------------------- the servers


class VirtualClock:
    """Monotonic seconds that advance by one delivery's share at each answer."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += 1.0 / RATE


def _request_bytes(path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The request as wrk sends it (its ``wrk.format``: Host, then the script's headers)."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1:8080"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _ucf_app(directory: Path, clock: VirtualClock) -> tuple[Any, str, Any, Any]:
    """The app ``ucf serve`` runs (state built here, for the virtual clock), the instance's
    own webhook path, the lifespan to enter and the SQLite database."""
    from ucf.service.context import UcfContext
    from ucf.service.settings import Settings
    from ucf.service.webhooks import WebhookGateway, webhook_path
    from ucf.web.app import create_app
    from ucf.web.logs import configure_logging
    from ucf.web.metrics import Metrics
    from ucf.web.state import WebState
    from webhook import API_TOKEN, CONNECTOR, PROJECT, RPM, SECRET

    env = {**os.environ, "UCF_WEBHOOK_RPM": str(RPM), "UCF_SCHEDULER": "0"}
    for variable in ("UCF_STORE", "UCF_SINK_JSONL", "UCF_SINK_HTTP"):
        env.pop(variable, None)
    os.environ.clear()
    os.environ.update(env)
    settings = Settings.from_env(data_dir=directory)
    configure_logging(logging.INFO)
    context = await UcfContext.open(settings)
    instance = await context.instances.create(
        PROJECT,
        CONNECTOR,
        credentials={"token": "ghp_" + "b" * 36, "webhookSecret": SECRET},
        config={"owner": "octo", "repo": "hello"},
    )
    metrics = Metrics()
    # Built as a long run has them (past JOURNAL_LIMIT updates, or at the first scrape),
    # not in the middle of the counted deliveries (an import of prometheus_client).
    metrics.render()
    state = WebState(
        context=context,
        gateway=WebhookGateway(context, observer=metrics, monotonic=clock),
        metrics=metrics,
        api_token=API_TOKEN,
        public_introspection=True,
    )
    app = create_app(state, api_token=API_TOKEN, public_introspection=True)
    path = webhook_path(CONNECTOR, PROJECT, instance.hook_id)
    signals: Any = context.store.signals  # the SQLite store's own database (its thread)
    return app, path, app.router.lifespan_context(app), signals._db


def _bare_app(directory: Path) -> tuple[Any, str, Any, Any]:
    from starlette.applications import Starlette
    from starlette.routing import Route

    from webhook import PEERS, SECRET, WEBHOOK_PATH

    handler = PEERS["bare"](SECRET.encode(), directory)
    app = Starlette(
        routes=[Route("/api/webhooks/{connector}/{project}", handler, methods=["POST"])]
    )
    return app, WEBHOOK_PATH, contextlib.nullcontext(), None


class FakeTransport(asyncio.Transport):
    """A connection's transport: what uvicorn writes is counted, never sent; a whole
    answer (head and ``Content-Length`` bytes of body) calls ``answered``."""

    def __init__(self, answered: Callable[[], None], port: int) -> None:
        super().__init__()
        self._answered = answered
        self._pending = b""
        self._extra = {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", port)}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending += bytes(data)
        head, found, body = self._pending.partition(b"\r\n\r\n")
        if not found:
            return
        length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])  # type: ignore[index]
        if len(body) >= length:
            if not head.startswith(b"HTTP/1.1 2"):
                raise SystemExit(f"a delivery was answered {head[:40]!r}")
            self._pending = body[length:]
            self._answered()

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise SystemExit("uvicorn closed a keep-alive connection")

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


def _uvicorn_config(app: Any) -> Any:
    """uvicorn's set-up as ``ucf serve`` makes it (loaded once: the proxy-headers middleware
    around the app)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        lifespan="off",
        http="httptools",
        interface="asgi3",
    )
    config.load()
    return config


async def _through_uvicorn(config: Any, requests: Iterator[bytes], clock: VirtualClock) -> None:
    """Every request answered over :data:`CONCURRENCY` keep-alive connections of uvicorn's
    httptools protocol; a connection is handed its next request on the loop's next turn
    after its answer, as a socket read would."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    loop = asyncio.get_running_loop()
    server_state = ServerState()
    finished = loop.create_future()
    in_flight = 0

    def start(protocol: HttpToolsProtocol) -> None:
        nonlocal in_flight
        request = next(requests, None)
        if request is None:
            if in_flight == 0 and not finished.done():
                finished.set_result(None)
            return
        in_flight += 1
        protocol.data_received(request)

    def connection(port: int) -> HttpToolsProtocol:
        protocol = HttpToolsProtocol(config, server_state, {}, loop)

        def answered() -> None:
            nonlocal in_flight
            in_flight -= 1
            clock.tick()
            loop.call_soon(start, protocol)

        protocol.connection_made(FakeTransport(answered, port))
        loop.call_soon(start, protocol)
        return protocol

    protocols = [connection(40000 + index) for index in range(CONCURRENCY)]
    await finished
    for protocol in protocols:  # the connections end here: no keep-alive timeout later
        if protocol.timeout_keep_alive_task is not None:
            protocol.timeout_keep_alive_task.cancel()


async def _into_front(
    app: Any, path: str, items: Iterator[tuple[dict[str, str], bytes]], clock: VirtualClock
) -> None:
    """Every delivery straight into the app's ASGI entry, :data:`CONCURRENCY` at once,
    with the scope uvicorn's httptools protocol builds."""
    statuses: list[int] = []

    async def one(headers: dict[str, str], body: bytes, port: int) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", port),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8080")]
            + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"content-length", str(len(body)).encode())],
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            elif not message.get("more_body", False):
                clock.tick()

        await app(scope, receive, send)

    async def worker(port: int) -> None:
        for headers, body in items:
            await one(headers, body, port)

    await asyncio.gather(*(worker(40000 + i) for i in range(CONCURRENCY)))
    bad = [status for status in statuses if status >= 300]
    if bad:
        raise SystemExit(f"{len(bad)} deliveries were not answered 2xx: {sorted(set(bad))}")


def _note(workdir: str, name: str, text: str) -> None:
    """A figure of the counted run for the parent to read."""
    Path(workdir, name).write_text(text)


async def _child(args: argparse.Namespace) -> None:
    from ucf.runtime.heap import freeze_startup_heap, serve_with_fewer_collections
    from webhook import deliveries

    helper = _helper(Path(args.workdir))
    clock = VirtualClock(1_000_000.0)
    data = Path(args.workdir) / "data"
    data.mkdir()
    if args.mode == "bare":
        app, path, lifespan, db = _bare_app(data)
    else:
        app, path, lifespan, db = await _ucf_app(data, clock)
    total = args.warmup + args.deliveries
    prepared = list(deliveries(0, total))
    # A server reads its first 8 MiB of JSON with ``json`` and then pydantic-core's parser
    # (ucf.core.payload.JSON_FIRST_BYTES): bench/webhook.py's 20 000 deliveries are
    # past that after the first ~1 800, so this run starts past it.
    from ucf.core.payload import loads_strict

    loads_strict(b" " * (8 * 1024 * 1024) + b"{}")
    config = _uvicorn_config(app) if args.mode != "front" else None
    async with lifespan:
        freeze_startup_heap()
        serve_with_fewer_collections()

        async def serve(items: list[tuple[dict[str, str], bytes]]) -> None:
            if args.mode == "front":
                await _into_front(app, path, iter(items), clock)
            else:
                requests = (_request_bytes(path, h, b) for h, b in items)
                await _through_uvicorn(config, requests, clock)

        await serve(prepared[: args.warmup - min(args.warmup, 50)])
        names = _install_marks(helper, args.marks_only) if args.marks else []
        _note(args.workdir, "marks.txt", "\n".join(names))
        helper.start()  # valgrind ran the start-up uninstrumented, several times faster
        await serve(prepared[args.warmup - min(args.warmup, 50) : args.warmup])
        commits = 0
        if db is not None:  # the store's thread counted over the same deliveries
            await db._submit(helper.zero)
            commits = db.commits
        collected = [each["collections"] for each in gc.get_stats()]
        helper.zero()
        await serve(prepared[args.warmup :])
        helper.dump("measured")
        collected = [
            each["collections"] - was for each, was in zip(gc.get_stats(), collected, strict=True)
        ]
        _note(args.workdir, "gc.txt", " ".join(map(str, collected)))
        if db is not None:
            await db._submit(functools.partial(helper.dump, "measured"))
            commits = db.commits - commits
        _note(args.workdir, "commits.txt", str(commits))
    gc.collect()


# --------------------------------------------------------------------------- the parent


def _totals(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    return 0


@dataclass
class Costs:
    """One callgrind dump read: each function's own instructions, the instructions of the
    calls made to it (its inclusive cost, wherever it is not recursive), and each shared
    object's own instructions."""

    own: Counter[str] = field(default_factory=Counter)
    called: Counter[str] = field(default_factory=Counter)
    objects: Counter[str] = field(default_factory=Counter)


def _costs(path: Path) -> Costs:
    """A dump written with ``--compress-strings=no --compress-pos=no``."""
    costs = Costs()
    function = obj = callee = ""
    in_call = False
    for line in path.read_text(errors="replace").splitlines():
        if not line:
            continue
        head = line[0]
        if head.isdigit():
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 else 0
            if in_call:
                if callee != function:  # a function's calls to itself are in its own cost
                    costs.called[callee] += cost
                in_call = False
            else:
                costs.own[function] += cost
                costs.objects[obj] += cost
        elif line.startswith("fn="):
            function = line[3:]
        elif line.startswith("ob="):
            obj = Path(line[3:]).name
        elif line.startswith("cfn="):
            callee = line[4:]
        elif line.startswith("calls="):
            in_call = True
    return costs


def _parent(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("this driver needs valgrind (apt-get install valgrind)")
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="ucf-instructions-"))
    if args.keep:
        if workdir.exists() and any(workdir.iterdir()):
            raise SystemExit(f"--keep {workdir}: not an empty directory")
        workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "callgrind.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--separate-threads=yes",
        "--separate-recs=1",  # a Python call is C recursion: one name per function
        "--compress-strings=no",
        "--compress-pos=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(HERE),
        "--child",
        "--workdir",
        str(workdir),
        "--mode",
        args.mode,
        "--deliveries",
        str(args.deliveries),
        "--warmup",
        str(args.warmup),
        *(["--marks"] if args.marks else []),
        *(["--marks-only", args.marks_only] if args.marks_only else []),
    ]
    with (workdir / "child.log").open("wb") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"the run failed ({done.returncode}):\n"
            + (workdir / "child.log").read_text(errors="replace")[-3000:]
        )
    dumps = {
        int(re.search(r"^thread: (\d+)", text, re.M)[1]): path  # type: ignore[index]
        for path in workdir.glob("callgrind.out.*-*")
        if "Trigger: Client Request: measured" in (text := path.read_text(errors="replace"))
    }
    if 1 not in dumps:
        raise SystemExit(f"no callgrind dump of the measured part in {workdir}")
    n = args.deliveries
    print(
        f"mode {args.mode}: {n} deliveries after {args.warmup} warm-up, "
        f"{CONCURRENCY} in flight{' (with marks: totals include their cost)' if args.marks else ''}"
    )
    for thread, path in sorted(dumps.items()):
        label = "event loop (main thread)" if thread == 1 else "SQLite thread"
        print(f"  {label}: {_totals(path) / n:,.0f} instructions a delivery")
    print(
        "  garbage collections while counted (generations 0 1 2): "
        + (workdir / "gc.txt").read_text()
    )
    commits = int((workdir / "commits.txt").read_text() or 0)
    if commits:
        print(f"  SQLite commits: {commits} ({n / commits:.1f} deliveries a commit)")
    costs = _costs(dumps[1])
    if args.marks:
        names = (workdir / "marks.txt").read_text().splitlines()
        print("\ninclusive instructions a delivery, by Python function (marked):")
        marked = []
        for function, count in costs.called.items():
            found = re.fullmatch(r"ucf_mark_(\d+)", function)
            if found and int(found[1]) < len(names):
                marked.append((count, names[int(found[1])]))
        for count, name in sorted(marked, reverse=True):
            print(f"  {count / n:>12,.0f}  {name}")
    if args.top:
        print("\nthe event loop's own instructions a delivery, by shared object:")
        for obj, count in costs.objects.most_common(12):
            print(f"  {count / n:>12,.0f}  {obj}")
        print(f"\ntop {args.top} C functions of the event loop by own instructions, a delivery:")
        for function, count in costs.own.most_common(args.top):
            print(f"  {count / n:>12,.0f}  {function[:120]}")
        print(
            f"\ntop {args.top} C functions by inclusive instructions, a delivery (calls into "
            "the interpreter's recursive functions count once per level: read those as upper "
            "bounds):"
        )
        for function, count in costs.called.most_common(args.top):
            print(f"  {count / n:>12,.0f}  {function[:120]}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"\ncallgrind files kept in {workdir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("front", "uvicorn", "bare"), default="uvicorn")
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--marks", action="store_true", help="break down by Python function")
    parser.add_argument(
        "--marks-only",
        default=None,
        help="with --marks: these module:qualname functions (comma-separated) instead of "
        "the default list; fewer marks, less of their own cost in their callers' figures",
    )
    parser.add_argument("--top", type=int, default=0, help="also list the top C functions")
    parser.add_argument("--keep", type=Path, default=None, help="keep the callgrind files here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with open(Path(args.workdir) / "stderr.log", "w") as stderr:  # the access lines
            os.dup2(stderr.fileno(), 2)
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(_child(args))
        return
    _parent(args)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    from uvicorn.loops.auto import auto_loop_factory

    factory: Callable[[], asyncio.AbstractEventLoop] | None = auto_loop_factory()
    return factory


if __name__ == "__main__":
    main()
