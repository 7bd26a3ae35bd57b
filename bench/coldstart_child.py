"""One cold start of ``bench/coldstart.py``: a fresh interpreter imports a handler and invokes it once.

Kept apart from the bench so that what is loaded before the clock starts is
what the Lambda runtime itself has loaded by then (``json``, ``os``, ``sys``,
``time``): every other module the handler needs, ``asyncio`` included, is
counted as the handler's. The bench starts this file as a script:

    python bench/coldstart_child.py HANDLER EVENT_FILE

and reads one line of JSON from its standard output.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types  # loaded at start-up already (typing is not: see _round_trips)

FLOOR = "floor"
"""Not ucf: a handler that imports boto3 alone, then reads one DynamoDB item."""


class LambdaContext:
    """The context object Lambda's runtime passes beside the event (the parts handlers read).

    The runtime builds it before it calls the handler, so it costs the handler
    nothing: defined here, before the clock starts, with nothing imported for it.
    (``tests.aws.events.LambdaContext``, a dataclass with a uuid, loaded ``uuid``,
    ``platform`` and ``dataclasses`` inside the timed window, ~2 ms no handler pays
    on Lambda.)
    """

    def __init__(self, function_name: str, timeout_seconds: float = 300.0) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = 512
        self.aws_request_id = os.urandom(16).hex()
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def floor_handler(event: dict[str, object], context: object) -> dict[str, object]:
    """The least any ucf function does on its first call: one DynamoDB read through boto3.

    Its module imports boto3 and nothing of ucf (``main`` times that import as
    this handler's init); the call builds a client and reads one item of the
    store's table, so the row beside ucf's is the SDK's own price.
    """
    from urllib.parse import parse_qs, urlsplit

    import boto3

    url = urlsplit(os.environ["UCF_STORE"])  # dynamodb://TABLE?region=…&endpoint=…
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    client = boto3.session.Session().client(
        "dynamodb", region_name=query.get("region"), endpoint_url=query.get("endpoint")
    )
    reply = client.get_item(
        TableName=url.netloc, Key={"PK": {"S": "coldstart-floor"}, "SK": {"S": "none"}}
    )
    return {"statusCode": 200, "found": "Item" in reply}


def _round_trips(latency_ms: float, calls: list[str]) -> None:
    """Every AWS client the handler makes waits ``latency_ms`` before each request it
    sends, and notes the call in ``calls`` (``"dynamodb GetItem"``…).

    On loopback a DynamoDB or Secrets Manager call costs a millisecond or two; in
    AWS each is a network round trip, several milliseconds in-region. The wait
    (on the calling thread, which releases the GIL as a socket would) adds that
    round trip to each call, so calls made one after the other add up and calls
    made side by side overlap, as they would there. botocore is not imported
    here (the handler's import would look cheaper): ``botocore.session`` is
    patched when the handler first imports it.
    """
    import importlib.machinery  # small (importlib.abc would load typing before the clock)

    def patch(module: types.ModuleType) -> None:
        make = module.Session.create_client

        def create_client(self: object, service: str, *args: object, **kwargs: object) -> object:
            client = make(self, service, *args, **kwargs)

            def before_send(event_name: str = "", **_: object) -> None:
                calls.append(f"{service} {event_name.rsplit('.', 1)[-1]}")
                if latency_ms:
                    time.sleep(latency_ms / 1000)

            client.meta.events.register("before-send", before_send)  # type: ignore[attr-defined]
            return client

        module.Session.create_client = create_client  # type: ignore[attr-defined]

    class Patcher:  # a meta path finder for one module
        def find_spec(
            self, fullname: str, path: object, target: object = None
        ) -> importlib.machinery.ModuleSpec | None:
            if fullname != "botocore.session":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)  # type: ignore[arg-type]
            if spec is None or spec.loader is None:
                return spec
            loader = spec.loader
            execute = loader.exec_module

            def exec_module(module: types.ModuleType) -> None:
                execute(module)
                patch(module)

            loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Patcher())


def main(name: str, event_path: str) -> None:
    """Import the handler (Lambda's init phase), invoke it once, report on stdout."""
    with open(event_path) as file:
        event = json.load(file)
    calls: list[str] = []
    latency_ms = float(os.environ.get("COLDSTART_LATENCY_MS") or 0)
    _round_trips(latency_ms, calls)
    started, cpu_started = time.perf_counter(), time.process_time()
    module = None
    if name == FLOOR:
        import boto3  # noqa: F401 - the floor's init is boto3's import alone

        handler = floor_handler
    else:
        module = __import__(f"ucf.aws.handlers.{name}", fromlist=["handler"])
        handler = module.handler
    imported = time.perf_counter()
    context = LambdaContext(function_name=f"ucf-{name}")
    order = os.environ.get("COLDSTART_PROFILE")
    if order and module is not None:
        import cProfile
        import pstats

        # The work runs on the container's own thread: the profiler is switched on there.
        profiler = cProfile.Profile()
        container = module.FUNCTION.container
        container.call(profiler.enable)
        response = handler(event, context)
        container.call(profiler.disable)
        order = order if order in ("tottime", "cumulative") else "cumulative"
        dump = os.environ.get("COLDSTART_PROFILE_DUMP")  # a directory: pstats files to query
        if dump:
            profiler.dump_stats(os.path.join(dump, f"{name}-{os.getpid()}.prof"))
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(order).print_stats(
            int(os.environ.get("COLDSTART_PROFILE_LINES", "60"))
        )
    else:
        response = handler(event, context)
    invoked, cpu_done = time.perf_counter(), time.process_time()
    print(
        json.dumps(
            {
                "import_ms": (imported - started) * 1000,
                "invoke_ms": (invoked - imported) * 1000,
                "cpu_ms": (cpu_done - cpu_started) * 1000,
                "rss_kib": _status_kib("VmRSS"),
                "hwm_kib": _status_kib("VmHWM"),
                "modules": len(sys.modules),
                "calls": calls,
                "response": response,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
