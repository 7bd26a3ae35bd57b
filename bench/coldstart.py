"""Lambda cold starts: each handler imported and first invoked in a fresh interpreter.

A Lambda execution environment starts a new Python, imports the handler module
(the *init* phase) and then runs the first invocation, which for ucf opens the
store, reads secrets and builds what the function keeps for its warm
invocations. This bench reproduces that for the four handlers of
``src/ucf/aws/handlers/``, each in a process of its own, against the same
loopback AWS the tests use (``tests/aws``): dynalite for DynamoDB and moto's
standalone server for Secrets Manager and SQS, with the environment the
template gives each function. The events are the AWS-documented shapes of
``tests/aws/events.py``:

* **api** — a signed GitHub ``issues`` webhook (API Gateway HTTP API, payload 2.0)
  for an instance connected beforehand: token from Secrets Manager, store
  opened, the ASGI app built, the delivery verified and stored;
* **schedule** — an EventBridge scheduled event: the due instance is found and
  one poll request is sent to the FIFO queue;
* **poll_worker** — that SQS message: the instance is polled against the GitHub
  fake (its first page of issues is mapped and stored in DynamoDB);
* **delivery** — an EventBridge scheduled event with ``UCF_SINK_HTTP`` set: the
  outbox is drained into a local pipeline fake.

The table, queue, secrets and instance exist before the first child starts, as
they do in a deployed stack. Printed per handler: the import (init) time, the
first invocation, their sum (target < 300 ms), the process's resident memory
after the first invocation (``VmRSS``) and its peak (``VmHWM``), which is what
the Lambda memory setting must cover (see docs/aws.md, "Memory sizing").
Network round trips to dynalite and moto are on loopback, so in AWS the first
invocation also pays real service latency; the import and RSS figures carry over.

Beside the four handlers runs a **floor**, not ucf: a handler whose module
imports boto3 alone and whose first call reads one DynamoDB item, the least
any of ucf's functions does on its first invocation.

Bytecode: the artifact ships compiled modules (``make -C deploy app``), and
Lambda cannot write any (``/var/task`` is read-only). By default the children
share a bytecode cache that one unmeasured warm-up round fills, as the
artifact's would be; ``--no-bytecode`` compiles every import, as an artifact
without ``.pyc`` files did; ``--artifact DIR --python python3.12`` runs the
handlers from a build of ``make -C deploy app`` with its own bytecode and
nothing else on ``sys.path``.

Regular expressions: the artifact also ships the programs of the patterns its
cold paths compile (``ucf.aws.regex_cache``, built by ``make -C deploy app``).
From the checkout, the bench builds that file the same way before the first
round (``python -m ucf.aws.regex_cache``, with the children's interpreter) and
hands it to the children (``UCF_REGEX_CACHE``); ``--no-regex-cache`` leaves it
out, as does code without that module (an older tree on ``PYTHONPATH``).

Where the time goes: ``COLDSTART_IMPORTTIME=DIR`` saves each child's
``python -X importtime`` output there; ``COLDSTART_PROFILE=tottime`` (or
``cumulative``) prints a profile of each first invocation, taken on the
container's thread where the work runs (``COLDSTART_PROFILE_LINES=N`` lines
of it; ``COLDSTART_PROFILE_DUMP=DIR`` also saves it for ``pstats``).
``--only schedule,delivery`` measures some handlers; the ones they depend on
still run, unmeasured (the schedule enqueues the poll worker's message, the
webhook stores what delivery sends).

Round trips: on loopback an AWS call costs a millisecond or two, in AWS a
network round trip of several. ``--latency MS`` makes every AWS client of a
child wait MS before each request (on its own thread, as a socket would), so
calls made one after the other add up and calls made side by side overlap, as
in a region; the floor's one GetItem pays it too. The ``AWS calls`` column
counts each first invocation's calls; ``COLDSTART_CALLS=1`` lists them.

The verdict is on import + first call, wall time. On a machine shared with
other work the CPU column is the steadier figure: wall time also counts
waiting for dynalite and moto, which compete for the same cores.

    make bench-coldstart      # or: uv run python bench/coldstart.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' loopback AWS and event shapes

from bench.coldstart_child import FLOOR  # noqa: E402 - needs ROOT on the path

HANDLERS = ("api", "schedule", "poll_worker", "delivery")
CHILD = Path(__file__).with_name("coldstart_child.py")
"""Each cold start runs there, in an interpreter that has loaded what Lambda's runtime has."""
TARGET_MS = 300.0
PROJECT = "bench"
CONNECTOR = "github-issues"


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    environ: dict[str, str]
    queue_url: str
    queue_arn: str
    sqs: Any
    github: Any
    pipeline: Any


@contextmanager
def aws_stack(workdir: Path) -> Iterator[Stack]:
    """dynalite, moto, a FIFO poll queue, the token secret, a GitHub fake and a sink."""
    import boto3
    from tests.service.delivery_support import Pipeline
    from tests.stores.dynalite import dynamodb_url, run_dynalite
    from tests.stores.moto_server import DUMMY_AWS_ENV, running_moto_server

    from ucf.fakes.github import Dataset, GitHubFake
    from ucf.fakes.kit import FakeServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log, one line a call
    os.environ.update(DUMMY_AWS_ENV)
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    with ExitStack() as stack:
        dynamodb = stack.enter_context(run_dynalite())
        moto = stack.enter_context(running_moto_server())
        # A small repository: the first poll stores one page, so the figure is the cold
        # start and not dynalite's write speed (bench/store.py measures that).
        now = datetime.now(UTC)
        github = stack.enter_context(GitHubFake(now))
        github.data = Dataset(now, count=20, pulls=0)
        pipeline = Pipeline(stack.enter_context(FakeServer()))
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto)
        manager = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto)
        suffix = uuid.uuid4().hex[:10]
        queue_url = sqs.create_queue(
            QueueName=f"ucf-polls-{suffix}.fifo",
            Attributes={"FifoQueue": "true", "VisibilityTimeout": "900"},
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        token_arn = manager.create_secret(
            Name=f"ucf-admin/{suffix}/api-token", SecretString="ucf_" + secrets.token_urlsafe(32)
        )["ARN"]
        environ = {
            **DUMMY_AWS_ENV,
            "AWS_ENDPOINT_URL_SQS": moto,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto,
            "UCF_STORE": dynamodb_url(dynamodb, f"ucf-coldstart-{suffix}"),
            "UCF_SECRET_STORE": (
                f"aws-secretsmanager://?region=us-east-1&endpoint={moto}&prefix=ucf/{suffix}/"
            ),
            "UCF_API_TOKEN_SECRET": token_arn,
            "UCF_POLL_QUEUE_URL": queue_url,
            "UCF_ALLOW_HOSTS": "127.0.0.1",
            "UCF_DATA_DIR": str(workdir / "lambda-tmp"),
            "UCF_SINK_HTTP": pipeline.url,
            "UCF_LOG_LEVEL": "WARNING",
            "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as the template's Globals set it
        }
        yield Stack(environ, queue_url, queue_arn, sqs, github, pipeline)


def prepare(stack: Stack, project: str) -> None:
    """What a deployed stack already has: the table, and a GitHub instance connected.

    Done in this (parent) process, the instance through the API handler, so the
    children find what ``sam deploy`` leaves. Each round connects an instance in a
    project of its own, so the round's schedule tick finds exactly one poll due."""
    from tests.aws.events import LambdaContext, http_api_event

    from ucf.aws.config import load_api_token
    from ucf.aws.container import close_all
    from ucf.aws.handlers import api
    from ucf.fakes.github import GOOD_TOKEN, OWNER, REPO, WEBHOOK_SECRET

    saved = dict(os.environ)
    os.environ.update(stack.environ)
    try:
        asyncio.run(_create_table(stack.environ["UCF_STORE"]))
        token = asyncio.run(load_api_token(os.environ))
        body = json.dumps(
            {
                "connectorId": CONNECTOR,
                "credentials": {"token": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET},
                "config": {"baseUrl": stack.github.base_url, "owner": OWNER, "repo": REPO},
            }
        ).encode()
        event = http_api_event(
            "POST",
            f"/api/projects/{project}/instances",
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            body=body,
        )
        reply = api.handler(event, LambdaContext(function_name="ucf-api"))
        if reply["statusCode"] != 201:
            raise SystemExit(f"connecting the GitHub instance failed: {reply}")
        close_all()
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _create_table(url: str) -> None:
    """The table as the SAM template creates it (``ucf store init`` makes the same one):
    no function creates it at run time."""
    from ucf.stores.url import open_store

    store = open_store(url)
    try:
        await store.init()
    finally:
        await store.close()


def webhook_event(project: str, number: int) -> dict[str, Any]:
    from tests.aws.events import http_api_event

    from ucf.fakes.github import WEBHOOK_SECRET

    body = json.dumps(
        {
            "action": "opened",
            "issue": {
                "id": 90_000 + number,
                "number": number,
                "title": f"Cold start {number}",
                "updated_at": f"2025-03-01T12:00:{number % 60:02d}Z",
                "labels": [],
            },
        }
    ).encode()
    mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return http_api_event(
        "POST",
        f"/api/webhooks/{CONNECTOR}/{project}",
        headers={
            "content-type": "application/json",
            "x-github-event": "issues",
            "x-github-delivery": str(uuid.uuid4()),
            "x-hub-signature-256": f"sha256={mac}",
        },
        body=body,
    )


def event_for(name: str, stack: Stack, run: int) -> dict[str, Any]:
    from tests.aws.events import scheduled_event, sqs_event

    if name == "api":
        return webhook_event(f"{PROJECT}-{run}", run)
    if name in ("schedule", "delivery", FLOOR):
        return scheduled_event(datetime.now(UTC))
    # poll_worker: what the schedule function just sent, as Lambda's SQS poller hands it over
    messages: list[dict[str, Any]] = []
    while True:
        reply = stack.sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        )
        if not reply.get("Messages"):
            break
        messages += reply["Messages"]
    if not messages:
        raise SystemExit("the schedule function enqueued no poll request")
    for message in messages:  # Lambda deletes them after a successful batch
        stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return sqs_event(messages, stack.queue_arn)


# --------------------------------------------------------------------------- the parent


@dataclass
class ColdStart:
    name: str
    import_ms: float
    invoke_ms: float
    cpu_ms: float
    process_ms: float
    rss_mib: float
    hwm_mib: float
    modules: int
    calls: list[str]

    @property
    def total_ms(self) -> float:
        return self.import_ms + self.invoke_ms


def child_environ(
    stack: Stack, workdir: Path, *, bytecode: bool, artifact: Path | None
) -> dict[str, str]:
    """The function's environment, and where its interpreter finds compiled bytecode.

    ``make -C deploy app`` ships every module compiled (Lambda's ``/var/task`` is
    read-only, so an artifact without ``.pyc`` files is compiled again on every
    cold start). With ``bytecode`` the children share a cache of their own that
    a warm-up round fills (``PYTHONPYCACHEPREFIX``), as the artifact's would be;
    without it nothing is cached and every import compiles its source, as in an
    artifact without bytecode. Either way the checkout's own ``__pycache__``
    directories are not used.

    With ``artifact`` (a ``make -C deploy app`` build), the children import ucf
    and its dependencies from there alone, with the bytecode it ships, and write
    none (``/var/task`` is read-only).
    """
    env = {**os.environ, **stack.environ}
    if artifact is not None:
        env.pop("PYTHONPYCACHEPREFIX", None)
        env.update(PYTHONPATH=str(artifact), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
        return env
    env["PYTHONPYCACHEPREFIX"] = str(workdir / ("pycache" if bytecode else "no-pycache"))
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def build_regex_cache(workdir: Path, env: dict[str, str], python: str) -> int | None:
    """The checkout's regex cache, built as ``make -C deploy app`` builds the artifact's
    and put in ``env`` for the children; how many patterns (None: this code has none)."""
    path = workdir / "regex-cache.marshal"
    done = subprocess.run(
        [python, "-m", "ucf.aws.regex_cache", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        return None
    env["UCF_REGEX_CACHE"] = str(path)
    return int(done.stdout.split()[0])


def cold_start(
    name: str, stack: Stack, workdir: Path, run: int, env: dict[str, str], python: str
) -> ColdStart:
    event_path = workdir / f"{name}-{run}.json"
    event_path.write_text(json.dumps(event_for(name, stack, run)))
    importtime = os.environ.get("COLDSTART_IMPORTTIME")  # a directory for `-X importtime`
    command = [python, "-X", "importtime"] if importtime else [python]
    began = time.perf_counter()
    done = subprocess.run(
        [*command, str(CHILD), name, str(event_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    process_ms = (time.perf_counter() - began) * 1000
    if importtime:
        Path(importtime).mkdir(parents=True, exist_ok=True)
        (Path(importtime) / f"{name}-{run}.txt").write_text(done.stderr)
    elif done.returncode != 0 or os.environ.get("COLDSTART_PROFILE"):
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{name}: the child failed (exit {done.returncode})")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    _check(name, data["response"])
    return ColdStart(
        name,
        data["import_ms"],
        data["invoke_ms"],
        data["cpu_ms"],
        process_ms,
        data["rss_kib"] / 1024,
        data["hwm_kib"] / 1024,
        data["modules"],
        data["calls"],
    )


def _check(name: str, response: Any) -> None:
    """Each first invocation must have done its work, or its time means nothing."""
    ok = {
        "api": lambda r: r.get("statusCode") == 200,
        "schedule": lambda r: r.get("enqueued", 0) >= 1,
        "poll_worker": lambda r: r.get("batchItemFailures") == [],
        "delivery": lambda r: sum(r.get("delivered", {}).values()) >= 1 and not r.get("errors"),
        FLOOR: lambda r: r.get("statusCode") == 200,
    }[name]
    if not isinstance(response, dict) or not ok(response):
        raise SystemExit(f"{name}: unexpected response {str(response)[:500]}")


def _needed(name: str, only: set[str]) -> bool:
    """Whether an unmeasured handler must still run: the poll worker's event is the
    message the schedule function enqueues, and delivery drains what the webhook stored."""
    if name == "schedule":
        return "poll_worker" in only
    return name == "api" and "delivery" in only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold starts per handler (median)")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="compile every module on each cold start (an artifact shipped without .pyc files)",
    )
    parser.add_argument(
        "--no-regex-cache",
        action="store_true",
        help="compile every regular expression on each cold start (an artifact built "
        "without ucf.aws.regex_cache's file)",
    )
    parser.add_argument(
        "--artifact",
        type=Path,
        help="run the handlers from this build of `make -C deploy app` (ucf and its "
        "dependencies from there alone, with the bytecode it ships) instead of the checkout",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter of the cold starts (with --artifact: the Python it was built for)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="add MS milliseconds to every AWS call the children make, as a network round "
        "trip would (loopback calls cost ~1 ms; in-region AWS ones several)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated handlers to measure (default: all four and the floor); the "
        "others still run, unmeasured, when a measured one needs what they leave behind",
    )
    args = parser.parse_args()

    import tempfile

    names = (*HANDLERS, FLOOR)
    only = set(names) if not args.only else {name.strip() for name in args.only.split(",")}
    if only - set(names):
        parser.error(f"--only takes {', '.join(names)}")
    bytecode = not args.no_bytecode and args.artifact is None
    runs: dict[str, list[ColdStart]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="ucf-coldstart-") as directory:
        workdir = Path(directory)
        with aws_stack(workdir) as stack:
            env = child_environ(stack, workdir, bytecode=bytecode, artifact=args.artifact)
            env["COLDSTART_LATENCY_MS"] = str(args.latency)
            patterns = None
            if args.artifact is None and not args.no_regex_cache:
                patterns = build_regex_cache(workdir, env, args.python)
            # With bytecode, one unmeasured round compiles what each function imports.
            warmup = 1 if bytecode else 0
            for run in range(warmup + args.repeat):
                prepare(stack, f"{PROJECT}-{run}")
                # In the order a deployment runs them: a webhook lands, the schedule
                # enqueues the due poll, a worker polls, delivery drains the outbox.
                for name in names:
                    if name not in only and not _needed(name, only):
                        continue
                    result = cold_start(name, stack, workdir, run, env, args.python)
                    if run >= warmup and name in only:
                        runs[name].append(result)
    if args.artifact is not None:
        code = f"the artifact {args.artifact} and the bytecode it ships"
    elif bytecode:
        code = "the checkout, its modules compiled beforehand as the artifact ships them"
    else:
        code = "the checkout, no bytecode: each import compiles"
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if args.artifact is None:
        code += (
            "; no regex cache"
            if patterns is None
            else f"; a regex cache of {patterns} patterns built beforehand"
        )
    latency = f" + {args.latency:g} ms a call" if args.latency else ""
    print(
        f"Lambda cold starts: each handler imported and first invoked in a fresh interpreter "
        f"(median of {args.repeat}); dynalite + moto on loopback{latency}; Python {version}; "
        f"{code}"
    )
    print(
        f"  {'handler':<12}{'import':>9}{'1st call':>10}{'total':>9}{'CPU':>9}{'process':>10}"
        f"{'RSS after':>11}{'peak RSS':>10}{'modules':>9}{'AWS calls':>10}"
        f"  target < {TARGET_MS:.0f} ms"
    )
    missed = []
    for name in names:
        results = runs[name]
        if not results:
            continue

        def median(attribute: str, results: list[ColdStart] = results) -> float:
            return statistics.median(getattr(r, attribute) for r in results)

        total = median("total_ms")
        verdict = "✔" if total < TARGET_MS else "✘"
        if name == FLOOR:
            verdict = "(not ucf: boto3 + 1 GetItem)"
        elif total >= TARGET_MS:
            missed.append(name)
        print(
            f"  {name:<12}{median('import_ms'):>6.0f} ms{median('invoke_ms'):>7.0f} ms"
            f"{total:>6.0f} ms{median('cpu_ms'):>6.0f} ms{median('process_ms'):>7.0f} ms"
            f"{median('rss_mib'):>7.0f} MiB"
            f"{max(r.hwm_mib for r in results):>6.0f} MiB{median('modules'):>9.0f}"
            f"{statistics.median(len(r.calls) for r in results):>10.0f}  {verdict}"
        )
    print(
        "  (import + 1st call = Lambda's init phase plus the first invocation, the target's "
        "measure; CPU = the process's CPU time over both, steadier on a loaded machine, where "
        "wall time also waits for dynalite and moto; 'process' adds the interpreter's own "
        "start-up and exit)"
    )
    if missed:
        print(f"  MISSED the < {TARGET_MS:.0f} ms target: {', '.join(missed)}")
    if os.environ.get("COLDSTART_CALLS"):  # each handler's AWS calls, in the order sent
        for name in names:
            if runs[name]:
                print(f"  {name}: {', '.join(runs[name][-1].calls)}")


if __name__ == "__main__":
    main()
