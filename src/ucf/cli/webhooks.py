"""``ucf webhooks verify``: why did the gateway refuse this delivery?

Runs the gateway's own verifier (:mod:`ucf.runtime.webhooks`) on a delivery a
user captured — headers, body file, the URL the webhook was registered with —
and prints ``valid`` or ``invalid: <reason>``. Exit 0 valid, 1 invalid, 2 for
anything that is not a verdict (unreadable file, bad option, broken descriptor).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ucf.cli.descriptors import DESCRIPTOR_HELP, fail, load_descriptor, parse_header

if TYPE_CHECKING:  # imported where used, so `ucf --help` stays quick
    from ucf.core.descriptor import ConnectorDescriptor

webhooks_app = typer.Typer(
    help="Check webhook deliveries against a descriptor.", no_args_is_help=True
)


def _descriptor(path: Path) -> ConnectorDescriptor:
    """Load it, keeping exit 1 for 'invalid delivery' only: a broken descriptor is a 2."""
    try:
        return load_descriptor(path)
    except typer.Exit as exit_:
        if exit_.exit_code == 1:
            raise typer.Exit(2) from None
        raise


def _query(pairs: list[str]) -> dict[str, str]:
    query: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise fail(f"--query must look like 'name=value', got {pair!r}")
        query[name] = value
    return query


def _settings(pairs: list[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise fail(f"--config must look like 'name=value', got {pair!r}")
        settings[name] = value
    return settings


def _now(at: float | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if not math.isfinite(at) or not 0 <= at < 253_402_300_800:  # year 10000
        raise fail(f"--at must be a Unix time in seconds, got {at}")
    return datetime.fromtimestamp(at, UTC)


@webhooks_app.command("verify")
def verify(
    descriptor_file: Annotated[Path, typer.Option("--descriptor", help=DESCRIPTOR_HELP)],
    body_file: Annotated[
        Path, typer.Option("--body-file", help="The delivery's body, byte for byte.")
    ],
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            envvar="UCF_WEBHOOK_SECRET",
            help="The signing secret or token (or set UCF_WEBHOOK_SECRET, kept out of shell history).",
            show_default=False,
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", help="'Name: value' of the delivery; repeat for each header."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="The URL the webhook was registered with (Trello signs it)."),
    ] = None,
    query: Annotated[
        list[str] | None,
        typer.Option("--query", help="'name=value' query parameter of the delivery, if any."),
    ] = None,
    at: Annotated[
        float | None,
        typer.Option(
            "--at",
            help="Unix time to check the timestamp window against (default: now).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            help="'name=value' instance setting a native connector checks (ses: topicArn=…).",
        ),
    ] = None,
    signing_cert: Annotated[
        Path | None,
        typer.Option(
            "--signing-cert",
            help="PEM certificate to verify with instead of fetching it (ses: offline checks).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Say whether a delivery passes the descriptor's verification, and if not, why."""
    from ucf.runtime.sources import NativeSourceMissing, source_for
    from ucf.runtime.webhooks import RejectCode, WebhookConfigError, compile_verifier

    descriptor = _descriptor(descriptor_file)
    if descriptor.kind == "native":
        try:
            handler = source_for(descriptor).webhooks
        except NativeSourceMissing as error:
            raise fail(str(error)) from None
        if handler is None:
            raise fail(f"{descriptor.id} receives no webhooks")
        _verify_native(
            handler,
            descriptor,
            body_file,
            secret=secret,
            headers=dict(parse_header(h) for h in header or []),
            url=url or "",
            query=_query(query or []),
            config=_settings(config or []),
            signing_cert=signing_cert,
            now=_now(at),
        )
        return
    if config or signing_cert is not None:
        raise fail("--config and --signing-cert apply to native connectors only")
    try:
        verifier = compile_verifier(descriptor)
    except WebhookConfigError as error:
        raise fail(f"{descriptor_file}: {error}") from None
    headers = dict(parse_header(h) for h in header or [])
    query_params = _query(query or [])
    now = _now(at)
    try:
        body = body_file.read_bytes()
    except OSError as error:
        raise fail(f"cannot read body file {body_file}: {error.strerror or error}") from None
    credential = verifier.secret_credential
    if credential is not None and not secret:
        raise fail(
            f"{descriptor.id} verifies with its {credential!r} credential: pass --secret "
            "(or UCF_WEBHOOK_SECRET)"
        )
    if verifier.needs_url and not url:
        raise fail(f"{descriptor.id} signs the registered webhook URL: pass --url")
    credentials = {credential: secret} if credential is not None and secret else {}
    result = verifier.verify(
        body=body,
        headers=headers,
        url=url or "",
        query=query_params,
        credentials=credentials,
        now=now,
    )
    if result.reason is None:
        typer.echo("valid")
        if credential is None:
            typer.echo(
                f"note: {descriptor.id} does not verify deliveries (verification: none)", err=True
            )
        return
    typer.echo(f"invalid: {result.reason.message}")
    if result.reason.code == RejectCode.TIMESTAMP_OUTSIDE_WINDOW and at is None:
        typer.echo(
            "hint: to check a recorded delivery, pass --at with the Unix time it was sent",
            err=True,
        )
    raise typer.Exit(1)


def _verify_native(
    handler: Any,
    descriptor: ConnectorDescriptor,
    body_file: Path,
    *,
    secret: str | None,
    headers: dict[str, str],
    url: str,
    query: dict[str, str],
    config: dict[str, str],
    signing_cert: Path | None,
    now: datetime,
) -> None:
    """A native connector's own verification, run as the gateway runs it.

    Nothing is changed upstream: a handler that offers ``offline()`` (ses) is
    asked for its side-effect-free twin (no subscription is confirmed), which
    verifies with ``--signing-cert`` when given; otherwise the handler may
    fetch what verification needs (the SNS signing certificate) through an
    SSRF-guarded client, and nothing else.
    """
    import asyncio

    from ucf.runtime.native import Handshake, Refused, WebhookContext, WebhookRequest

    connector_id = descriptor.id
    try:
        body = body_file.read_bytes()
    except OSError as error:
        raise fail(f"cannot read body file {body_file}: {error.strerror or error}") from None
    pem: bytes | None = None
    if signing_cert is not None:
        try:
            pem = signing_cert.read_bytes()
        except OSError as error:
            raise fail(
                f"cannot read certificate file {signing_cert}: {error.strerror or error}"
            ) from None
    offline = getattr(handler, "offline", None)
    if callable(offline):
        try:
            handler = offline(pem) if pem is not None else offline()
        except Exception as error:  # a certificate that does not load, said plainly
            raise fail(f"{connector_id}: {getattr(error, 'message', error)}") from None
    elif pem is not None:
        raise fail(f"{connector_id} does not verify with certificates; drop --signing-cert")
    missing = [
        f.key
        for f in descriptor.config_fields
        if f.required and f.default is None and not config.get(f.key)
    ]
    if missing:
        raise fail(
            f"{connector_id} checks deliveries against its settings: pass "
            + " ".join(f"--config {key}=…" for key in missing)
        )

    async def run() -> Any:
        from ucf.runtime.connection import connect
        from ucf.runtime.http import HttpSettings, create_client
        from ucf.runtime.sources import source_for
        from ucf.runtime.ssrf import EgressPolicy

        settings = HttpSettings(max_retries=0)
        async with create_client(settings, EgressPolicy.from_env()) as client:

            async def upstream() -> Any:
                return connect(
                    source_for(descriptor),
                    credentials={},
                    config=config,
                    client=client,
                    settings=settings,
                )

            request = WebhookRequest(
                method="POST", body=body, headers=headers, query=query, url=url
            )
            context = WebhookContext(
                project_id="cli",
                connector_id=connector_id,
                credentials={"webhookSecret": secret} if secret else {},
                config=config,
                now=now,
                upstream=upstream,
            )
            return await handler.verify(request, context)

    verdict = asyncio.run(run())
    if isinstance(verdict, Refused):
        typer.echo(f"invalid: {verdict.message}")
        raise typer.Exit(1)
    if isinstance(verdict, Handshake):
        answer = verdict.response
        typer.echo(f"valid: handshake answered with HTTP {answer.status} ({answer.kind})")
        return
    typer.echo("valid")
