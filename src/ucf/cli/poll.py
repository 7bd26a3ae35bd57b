"""``ucf poll`` and ``ucf check``: Airbyte's ``read`` and ``check``, for descriptors.

``poll`` runs one poll of a descriptor against the real API and prints the
signals as JSON lines on stdout; everything meant for a person — per-item
errors, the next checkpoint, a summary, a progress line on a terminal — goes
to stderr, so ``ucf poll … > signals.jsonl`` captures exactly the signals.
Nothing is stored, unless ``--store`` names a store (see
:mod:`ucf.cli.poll_store`). ``check`` runs the descriptor's health check.

Both use the same SSRF-guarded client as the server (``UCF_ALLOW_HOSTS`` opens
it for a local API) and end any failure in one secret-free line, never a
traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ucf.cli.descriptors import DESCRIPTOR_HELP, fail, load_descriptor

if TYPE_CHECKING:  # the runtime (httpx & co.) loads only when a poll or check runs
    from rich.status import Status

    from ucf.core.descriptor import ConnectorDescriptor
    from ucf.runtime.auth import CredentialsChanged
    from ucf.runtime.polling import Page
    from ucf.runtime.sources import HealthResult
    from ucf.runtime.ssrf import EgressPolicy

DescriptorOption = Annotated[
    Path, typer.Option("--descriptor", help=DESCRIPTOR_HELP, show_default=False)
]
ConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        help="name=value of a configField (baseUrl fills {{baseUrl}}). Repeatable.",
        show_default=False,
    ),
]
CredentialOption = Annotated[
    list[str] | None,
    typer.Option(
        "--credential",
        help="name=value of a credentialField (e.g. token=…). Repeatable.",
        show_default=False,
    ),
]


def _expected_errors() -> tuple[type[Exception], ...]:
    """What a poll or check can run into that is the upstream's or the user's doing,
    each with a secret-free message of its own."""
    from ucf.runtime.delta import CheckpointInvalid
    from ucf.runtime.http import UpstreamError
    from ucf.runtime.polling import ConfigError, NotPollable
    from ucf.runtime.sources import NativeSourceMissing
    from ucf.runtime.ssrf import EgressDenied

    return (
        UpstreamError,
        EgressDenied,
        ConfigError,
        CheckpointInvalid,
        NotPollable,
        NativeSourceMissing,
    )


def _redact(text: str) -> str:
    from ucf.runtime.redaction import redact

    return redact(text)


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for text in values or []:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise fail(f"{option} must look like name=value, got {_redact(text)!r}")
        pairs[name.strip()] = value
    return pairs


def _warn_unknown_credentials(descriptor: ConnectorDescriptor, credentials: dict[str, str]) -> None:
    """Name a ``--credential`` the connector does not declare (``apitoken`` for
    ``apiToken``): it signed nobody in, and the error that followed ("credential
    'apiToken' is not set") did not say the value was typed under another name, as an
    unknown ``--config`` does."""
    from ucf.core.descriptor import AUTH_METHOD_KEY

    declared = [field.key for field in descriptor.credential_fields()]
    known = {AUTH_METHOD_KEY, *declared, *descriptor.webhook_secret_keys()}
    for method in descriptor.auth_methods():
        known |= descriptor.credential_keys(method)
    unknown = [name for name in credentials if name not in known]
    if unknown:
        typer.echo(
            f"warning: --credential {', '.join(unknown)}: {descriptor.id} declares no such "
            f"credential (its credentials: {', '.join(declared) or 'none'})",
            err=True,
        )


def _policy() -> EgressPolicy:
    from ucf.runtime.ssrf import EgressPolicy

    try:
        return EgressPolicy.from_env()
    except ValueError as error:
        raise fail(str(error)) from None


@dataclass
class _Tally:
    """What the summary line reports."""

    pages: int = 0
    items: int = 0
    signals: int = 0
    item_errors: int = 0
    dropped: int = 0
    rate_limit_waits: int = 0
    rate_limit_seconds: float = 0.0
    gate_seconds: float = 0.0
    checkpoint: str | None = None
    truncated: bool = False
    notes: list[str] = field(default_factory=list)

    def add(self, page: Page) -> None:
        self.pages += 1
        self.items += len(page.items)
        self.dropped += page.dropped
        self.rate_limit_waits += page.rate_limit_waits
        self.rate_limit_seconds += page.rate_limit_wait_seconds
        self.gate_seconds += page.gate_wait_seconds
        self.checkpoint = page.checkpoint
        self.truncated = page.truncated


class _Progress:
    """A one-line status on a terminal's stderr; silent when stderr is a file or pipe."""

    def __init__(self, label: str) -> None:
        from rich.console import Console

        self._console = Console(stderr=True)
        self._label = label
        self._status: Status | None = None

    @contextmanager
    def running(self) -> Iterator[_Progress]:
        if not self._console.is_terminal:
            yield self
            return
        with self._console.status(f"{self._label}: starting…") as status:
            self._status = status
            yield self
        self._status = None

    def update(self, tally: _Tally) -> None:
        status = self._status
        if status is not None:
            status.update(
                f"{self._label}: page {tally.pages}, {tally.items} items, {tally.signals} signals"
            )


def _rotation_warning(original: dict[str, str]) -> CredentialsChanged:
    """Without a store, rotated refresh tokens cannot be kept: say so, never show them."""

    async def on_rotate(updated: dict[str, str]) -> None:
        rotated = [k for k, v in original.items() if "refresh" in k.lower() and updated.get(k) != v]
        if rotated:
            typer.echo(
                "warning: the provider rotated the refresh token; the one given with "
                "--credential no longer works and the new one is not saved by 'ucf poll'",
                err=True,
            )

    return on_rotate


async def _poll(
    descriptor: ConnectorDescriptor,
    *,
    config: dict[str, str],
    credentials: dict[str, str],
    checkpoint: str | None,
    project: str,
    max_pages: int | None,
    policy: EgressPolicy,
) -> _Tally:
    from ucf.core.sanitiser import Sanitiser
    from ucf.runtime.connection import connect
    from ucf.runtime.http import HttpSettings, create_client
    from ucf.runtime.polling import NotPollable, TokenBucketGate
    from ucf.runtime.sources import source_for

    source = source_for(descriptor)
    schedule = source.schedule
    if schedule is None:
        raise NotPollable(f"{descriptor.id} receives webhooks only; there is nothing to poll")
    sanitiser = Sanitiser()
    tally = _Tally()
    progress = _Progress(f"polling {descriptor.id}")
    async with create_client(HttpSettings(), policy) as client:
        context = connect(
            source,
            credentials=credentials,
            config=config,
            client=client,
            on_rotate=_rotation_warning(credentials),
            rate_gate=TokenBucketGate(schedule.rate_limit_rpm),
        )
        with progress.running():
            now = datetime.now(UTC)
            async for page in source.fetch_delta(context, checkpoint, now=now, max_pages=max_pages):
                tally.add(page)
                result = source.normalise(page.items, project_id=project, now=now)
                lines = [  # what the store and the sinks would receive: sanitised
                    json.dumps(sanitiser.sanitise_wire(mapped.wire), ensure_ascii=False) + "\n"
                    for mapped in result.signals
                ]
                sys.stdout.write("".join(lines))
                sys.stdout.flush()
                tally.signals += len(result.signals)
                tally.item_errors += len(result.errors)
                for error in result.errors:
                    ident = f" (id {error.item_id})" if error.item_id else ""
                    typer.echo(
                        f"page {page.number} item {error.index}{ident}: {error.reason}", err=True
                    )
                progress.update(tally)
    return tally


def poll(
    descriptor_file: DescriptorOption,
    config: ConfigOption = None,
    credential: CredentialOption = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            help="Start from this checkpoint (as printed by a previous poll); default: first poll.",
            show_default=False,
        ),
    ] = None,
    project: Annotated[str, typer.Option("--project", help="Project id for the signals.")] = "cli",
    max_pages: Annotated[
        int | None,
        typer.Option("--max-pages", min=1, help="Stop after this many pages.", show_default=False),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Also store the signals (exactly once) and the checkpoint in this store "
            "(sqlite:///…, dynamodb://…), resuming from its checkpoint like a worker.",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="With --store: the data directory, as for ucf serve and ucf worker (no "
            "secret or master key is made there); default: $UCF_DATA_DIR, else "
            "~/.local/share/ucf",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one poll of a descriptor: signals as JSON lines on stdout, summary on stderr.

    Nothing is stored unless --store is given. The next checkpoint is printed on
    stderr; pass it back with --checkpoint to see only what changed since.
    """
    if data_dir is not None and store is None:  # nothing is stored: it would be ignored
        raise fail("--data-dir goes with --store (without it, ucf poll stores nothing)")
    descriptor = load_descriptor(descriptor_file)
    config_values = _pairs(config, "--config")
    credentials = _pairs(credential, "--credential")
    _warn_unknown_credentials(descriptor, credentials)
    policy = _policy()
    started = time.monotonic()
    try:
        if store is not None:
            from ucf.cli.poll_store import poll_into_store

            tally = asyncio.run(
                poll_into_store(
                    descriptor,
                    store_url=store,
                    data_dir=data_dir,
                    config=config_values,
                    credentials=credentials,
                    checkpoint=checkpoint,
                    project=project,
                    max_pages=max_pages,
                )
            )
        else:
            tally = asyncio.run(
                _poll(
                    descriptor,
                    config=config_values,
                    credentials=credentials,
                    checkpoint=checkpoint,
                    project=project,
                    max_pages=max_pages,
                    policy=policy,
                )
            )
    except _expected_errors() as error:
        raise fail(_redact(str(error)), 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted; nothing was stored", 130) from None
    except BrokenPipeError:  # `ucf poll … | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    elapsed = time.monotonic() - started
    typer.echo(
        f"checkpoint: {tally.checkpoint if tally.checkpoint is not None else '(none)'}", err=True
    )
    waits = f"rate-limit waits: {tally.rate_limit_waits} ({tally.rate_limit_seconds:.1f} s)"
    if tally.gate_seconds:
        waits += f", paced {tally.gate_seconds:.1f} s for rateLimitRpm"
    dropped = f", {tally.dropped} older item(s) dropped" if tally.dropped else ""
    typer.echo(
        f"{tally.pages} page(s), {tally.items} item(s), {tally.signals} signal(s), "
        f"{tally.item_errors} item error(s){dropped}, {elapsed:.2f} s, {waits}",
        err=True,
    )
    if tally.truncated:
        typer.echo(
            "stopped at the max-pages limit with more pages left; the checkpoint says where "
            "the next poll goes on (a 'resume:' position for newest-first listings)",
            err=True,
        )


async def _check(
    descriptor: ConnectorDescriptor,
    *,
    config: dict[str, str],
    credentials: dict[str, str],
    policy: EgressPolicy,
) -> HealthResult:
    from ucf.runtime.connection import connect
    from ucf.runtime.http import HttpSettings, create_client
    from ucf.runtime.sources import source_for

    source = source_for(descriptor)
    async with create_client(HttpSettings(), policy) as client:
        context = connect(source, credentials=credentials, config=config, client=client)
        return await source.health_check(context)


def check(
    descriptor_file: DescriptorOption,
    config: ConfigOption = None,
    credential: CredentialOption = None,
) -> None:
    """Run a descriptor's health check: status and latency; exit 1 when unhealthy."""
    descriptor = load_descriptor(descriptor_file)
    config_values = _pairs(config, "--config")
    credentials = _pairs(credential, "--credential")
    _warn_unknown_credentials(descriptor, credentials)
    policy = _policy()
    try:
        result = asyncio.run(
            _check(descriptor, config=config_values, credentials=credentials, policy=policy)
        )
    except _expected_errors() as error:
        raise fail(_redact(str(error)), 1) from None
    status = f"HTTP {result.status}" if result.status is not None else "no HTTP answer"
    if result.ok:
        typer.echo(f"healthy: {status} in {result.latency_ms:.0f} ms")
        return
    typer.echo(f"unhealthy: {status} after {result.latency_ms:.0f} ms")
    raise fail(_redact(result.error or "health check failed"), 1)
