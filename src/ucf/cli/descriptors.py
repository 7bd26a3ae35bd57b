"""Commands a descriptor author lives in: ``schema``, ``connectors validate``, ``map``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ucf.cli.errors import fail, read_json_file
from ucf.cli.invocation import ucf_command

if TYPE_CHECKING:  # imported where used: `ucf --help` need not load the descriptor models
    from ucf.core.descriptor import ConnectorDescriptor
    from ucf.core.mapping import MappingResult
    from ucf.core.validation import Problem

__all__ = [
    "builtin_descriptor",
    "connectors_app",
    "fail",
    "load_descriptor",
    "parse_header",
    "read_json_file",
]

DESCRIPTOR_HELP = "Descriptor JSON file, or the id of a built-in connector (e.g. jira)."

connectors_app = typer.Typer(help="Work with connector descriptors.", no_args_is_help=True)


def builtin_descriptor(connector_id: str) -> dict[str, Any] | None:
    """A shipped or installed (native package) descriptor by its id, if there is one."""
    from ucf.catalogue import builtin_descriptors
    from ucf.runtime.native import installed_descriptors

    for data in [*builtin_descriptors(), *installed_descriptors()]:
        if data.get("id") == connector_id:
            return dict(data)
    return None


def descriptor_data(path: Path) -> Any:
    """A descriptor file's JSON, or a built-in connector's when ``path`` names its id.

    A bare name that is neither says both, with the ids there are: "No such file"
    alone reads as a wrong path to someone who typed a connector id (a misspelt
    one, or a native package's that is not installed in this environment).

    A directory of that name does not hide the connector: run beside a native
    package's checkout (``my-tool/``, the package of ``my-tool``), ``--descriptor
    my-tool`` read the directory and failed with "Is a directory".
    """
    if path.is_file() or path.suffix or len(path.parts) != 1:
        return read_json_file(path, "descriptor")
    builtin = builtin_descriptor(str(path))
    if builtin is not None:
        return builtin
    from ucf.catalogue import builtin_descriptors
    from ucf.runtime.native import installed_descriptors

    known = sorted({str(d.get("id")) for d in [*builtin_descriptors(), *installed_descriptors()]})
    neither = (
        f"{path} is a directory, not a descriptor file,"
        if path.is_dir()
        else f"no descriptor file {path}"
    )
    raise fail(
        f"{neither} and no built-in or installed connector {str(path)!r}; "
        f"connector ids here: {', '.join(known)}"
    )


def duplicate_key_problems(path: Path) -> list[Problem]:
    """Keys a descriptor file gives twice in one object (none for a built-in's id).

    ``json`` keeps the last of them silently, so they are read from the file's text.
    """
    from ucf.core.validation import duplicate_keys

    if not path.is_file():
        return []
    try:
        return duplicate_keys(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError):  # descriptor_data said why, in one line
        return []


def load_descriptor(path: Path) -> ConnectorDescriptor:
    """Read and fully validate a descriptor file, or exit listing every problem.

    A name that is not a file but a built-in connector's id (``--descriptor jira``)
    loads that connector's descriptor.
    """
    from ucf.core.validation import DescriptorInvalid, parse_descriptor

    data = descriptor_data(path)
    repeated = duplicate_key_problems(path)
    try:
        descriptor = parse_descriptor(data)
    except DescriptorInvalid as invalid:
        _print_problems(path, [*repeated, *invalid.problems])
        raise typer.Exit(1) from None
    if repeated:
        _print_problems(path, repeated)
        raise typer.Exit(1)
    return descriptor


def _print_problems(path: Path, problems: list[Problem]) -> None:
    typer.echo(f"{path}: {len(problems)} problem(s)", err=True)
    for problem in problems:
        typer.echo(f"  {problem.path or '(root)'}: {problem.message}", err=True)
        if problem.hint:
            typer.echo(f"      hint: {problem.hint}", err=True)


class SignalSchema(StrEnum):
    normalised = "normalised"
    sanitised = "sanitised"


def schema(
    signal: Annotated[
        SignalSchema | None,
        typer.Option(
            "--signal",
            help="Print the JSON Schema of a signal instead (sanitised: what every sink "
            "delivers; normalised: before the sanitiser), as committed under schema/.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the JSON Schema of the connector descriptor language, or of a signal (--signal)."""
    if signal is not None:
        from ucf.core.signal import signal_json_schema

        document = signal_json_schema(signal.value)
    else:
        from ucf.core.descriptor import descriptor_json_schema

        document = descriptor_json_schema()
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


@connectors_app.command("validate")
def validate(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Descriptor JSON files, or ids of built-in connectors.", show_default=False
        ),
    ],
) -> None:
    """Validate descriptors; print every problem with its JSON path and a hint."""
    from ucf.core.validation import validate_descriptor

    failed = 0
    for path in files:
        data = descriptor_data(path)
        descriptor, problems = validate_descriptor(data)
        problems = [*duplicate_key_problems(path), *problems]
        if descriptor is None or problems:
            failed += 1
            _print_problems(path, problems)
            continue
        typer.echo(f"{path}: ok — {_summary(descriptor)}")
        _note_unrunnable(descriptor)
    if failed:
        raise typer.Exit(1)


def _note_unrunnable(descriptor: ConnectorDescriptor) -> None:
    """A native descriptor no installed package provides is valid as a file (its package
    may be about to be installed), but the API, the editor and saving refuse it at
    ``kind``: say so here too, where it passed as "ok" and then could not be registered."""
    if descriptor.kind != "native":  # the service layer's import is not for every file
        return
    from ucf.service.connectors import runnable_problem

    problem = runnable_problem(descriptor)
    if problem is not None:
        typer.echo(f"  note: {problem.path}: {problem.message}", err=True)
        if problem.hint:
            typer.echo(f"      hint: {problem.hint}", err=True)


def _summary(descriptor: ConnectorDescriptor) -> str:
    mode = descriptor.ingestion.mode if descriptor.ingestion is not None else "native"
    mappings = [m for m in (descriptor.field_mapping, descriptor.webhook_mapping()) if m]
    types = sorted(
        {rule.then for m in mappings for rule in m.signal_type_rules}
        # and the type when no rule holds, when it is set: it was missing from the list
        | {m.default_type for m in mappings if m.default_type != "unknown"}
    )
    if descriptor.kind == "native":
        types = ["chosen by its package's code"]
    return (
        f"{descriptor.id} v{descriptor.version} ({descriptor.kind}, {descriptor.category}, "
        f"auth {' or '.join(m.method for m in descriptor.auth_methods())}, {mode}; signal types: {', '.join(types) or 'none'})"
    )


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise fail(f"--header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def map_sample(
    descriptor_file: Annotated[Path, typer.Option("--descriptor", help=DESCRIPTOR_HELP)],
    sample: Annotated[
        Path, typer.Option("--sample", help="A poll response, or a webhook payload.")
    ],
    project: Annotated[
        str, typer.Option("--project", help="Project id for the signals.")
    ] = "sample",
    header: Annotated[
        list[str] | None,
        typer.Option("--header", help="'Name: value' of a webhook delivery (event type, id)."),
    ] = None,
    as_poll: Annotated[
        bool, typer.Option("--poll", help="The sample is a poll response (one page).")
    ] = False,
    as_webhook: Annotated[
        bool, typer.Option("--webhook", help="The sample is a webhook delivery's body.")
    ] = False,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            envvar="UCF_WEBHOOK_SECRET",
            help=(
                "A delivery's signing secret or token: check it as the gateway would "
                "(or set UCF_WEBHOOK_SECRET, kept out of shell history)."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Map a sample through a descriptor: signals as JSON lines, per-item errors on stderr.

    --poll or --webhook says what the sample is. Without either, a connector
    that only receives webhooks, or a sample given with --header, is read as a
    webhook delivery, anything else as a poll response; a sample that then
    maps to nothing gets a one-line explanation. Native connectors map with
    their own code; ``ucf map`` never calls the upstream.
    """
    if as_poll and as_webhook:
        raise fail("--poll and --webhook exclude each other")
    import asyncio

    from ucf.service.preview import preview_sample

    descriptor = load_descriptor(descriptor_file)
    body = _read_bytes(sample)
    payload = read_json_file(sample, "sample")
    preview = asyncio.run(
        preview_sample(
            descriptor,
            payload,
            body=body,
            headers=dict(parse_header(h) for h in header or []),
            mode="poll" if as_poll else "webhook" if as_webhook else "auto",
            project_id=project,
            now=datetime.now(UTC),
            switches=("use --poll", "use --webhook"),
            secret=secret,  # its note asked for the secret, which ucf map had no way to take
        )
    )
    if preview.problems:
        problem = preview.problems[0]
        raise fail(problem.message + (f" ({problem.hint})" if problem.hint else ""))
    for note in preview.notes:
        typer.echo(f"note: {note}", err=True)
    verification = preview.verification or {}
    if verification.get("checked") and verification.get("ok"):
        # Said as plainly as a refusal is: silence left a user unsure the secret was used.
        typer.echo("signature valid: the gateway would accept this delivery", err=True)
    _print_result(preview.result)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise fail(f"cannot read sample {path}: {error.strerror or error}") from None


def _print_result(result: MappingResult) -> None:
    from ucf.core.sanitiser import Sanitiser

    sanitiser = Sanitiser()  # what the store and the sinks would receive
    for mapped in result.signals:
        wire = sanitiser.sanitise_wire(mapped.wire)
        sys.stdout.write(json.dumps(wire, ensure_ascii=False) + "\n")
    for error in result.errors:
        ident = f" (id {error.item_id})" if error.item_id else ""
        typer.echo(f"item {error.index}{ident}: {error.reason}", err=True)
    typer.echo(f"{len(result.signals)} signal(s), {len(result.errors)} item error(s)", err=True)
    if result.errors and not result.signals:
        raise typer.Exit(1)


@connectors_app.command("new")
def new(
    connector_id: Annotated[
        str, typer.Argument(metavar="ID", help="The new connector's id, e.g. 'acme-tickets'.")
    ],
    from_id: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="CONNECTOR_ID",
            help="Start from a copy of this connector (a built-in id or a descriptor file).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write. Default: ./<ID>.json.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starting descriptor file: the blank template, or a copy of a connector.

    The same template as the dashboard's "New connector". Edit it, then
    ``ucf connectors validate`` and ``ucf map`` it against a saved response.
    """
    import re

    from ucf.catalogue.starter import copy_descriptor, starter_descriptor
    from ucf.core.descriptor import CONNECTOR_ID_PATTERN

    if not re.fullmatch(CONNECTOR_ID_PATTERN, connector_id) or len(connector_id) > 64:
        raise fail(
            f"{connector_id!r} is not a connector id: use lowercase letters, digits and single "
            "dashes, e.g. 'acme-tickets'"
        )
    native_of: object = None  # the id of the native connector copied, if one was
    if from_id is None:
        data = starter_descriptor(connector_id)
    else:
        source = builtin_descriptor(from_id)
        if source is None:
            path = Path(from_id)
            if not path.exists():
                raise fail(f"no built-in connector or file {from_id!r} to copy")
            source = read_json_file(path, "descriptor")
            if not isinstance(source, dict):
                raise fail(f"{from_id} is not a descriptor (a JSON object)")
        data = copy_descriptor(source, connector_id)
        if source.get("kind") == "native":
            native_of = source.get("id")
    target = out or Path(f"{connector_id}.json")
    if target.exists() and not force:
        raise fail(f"{target} exists; pass --force to overwrite it")
    try:
        target.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as error:
        raise fail(f"cannot write {target}: {error.strerror or error}") from None
    typer.echo(f"wrote {target}; next: {ucf_command()} connectors validate {target}", err=True)
    if native_of is not None:
        typer.echo(
            f"note: {native_of} is a native connector: its polls and mapping are code in the "
            f"package that provides {native_of!r}, which nothing provides for "
            f"{connector_id!r}; the copy lists in the catalogue but cannot poll or take "
            "webhooks until a package with that entry point is installed "
            "(docs/writing-a-native-connector.md). To change a connector without code, "
            "start from a descriptor connector (--from github-issues) or the blank template.",
            err=True,
        )


@connectors_app.command("docs")
def docs(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Your descriptor files; without them, every shipped connector.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=(
                "Folder for <id>.md pages. Default: for the shipped connectors, "
                "docs/connectors under the current directory (run at the root of a ucf "
                "checkout to regenerate its pages; refused where that folder does not "
                "exist or holds a page of a shipped name it did not generate); for your "
                "files, standard output."
            ),
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if a page differs instead of writing it.")
    ] = False,
) -> None:
    """Generate the Markdown page of connectors from their descriptors.

    Without files or --out: shipped pages into docs/connectors under the current directory.
    """
    from ucf.catalogue import builtin_descriptors
    from ucf.catalogue.docs import GENERATED, render_connector_doc
    from ucf.core.validation import parse_descriptor
    from ucf.runtime.native import native_registry

    if files:
        if check and out is None:  # the page goes to stdout: there is nothing to compare
            raise fail("--check compares your pages with those in a folder: give it --out DIR")
        descriptors = [load_descriptor(path) for path in files]
        if out is None:
            sys.stdout.write("\n".join(render_connector_doc(d) for d in descriptors))
            return
    else:
        descriptors = [parse_descriptor(data) for data in builtin_descriptors()]
    folder = out or Path("docs/connectors")
    # Run elsewhere than a checkout, it made docs/connectors/ there and wrote the catalogue's
    # pages into it (into a project's own docs/connectors/ too, over pages of the same names).
    if out is None and not folder.is_dir():
        elsewhere = "compare them with" if check else "write them"
        raise fail(
            f"there is no docs/connectors folder in {Path.cwd()}: the shipped connectors' "
            f"pages are regenerated at the root of a ucf checkout; give --out DIR to "
            f"{elsewhere} elsewhere"
        )
    stale = []
    guides = native_registry()
    pages = []
    for descriptor in descriptors:
        page = folder / f"{descriptor.id}.md"
        text = render_connector_doc(descriptor, guide=guides.guide(descriptor.id))
        current = page.read_text(encoding="utf-8") if page.exists() else None
        pages.append((page, text, current))
    # A project's own docs/connectors (not a checkout's) may hold a page of its own under a
    # shipped connector's name: the folder existing was all the check above asked. Only a
    # page this command generated is replaced without --out; nothing is written otherwise.
    theirs = [
        page for page, _, current in pages if current is not None and GENERATED not in current
    ]
    if out is None and theirs:
        raise fail(
            f"{theirs[0]} was not generated by `ucf connectors docs`: not replaced (is "
            f"{Path.cwd()} a ucf checkout?); give --out DIR to write the pages elsewhere"
        )
    for page, text, current in pages:
        if current == text:
            continue
        stale.append(page)
        if not check:
            folder.mkdir(parents=True, exist_ok=True)
            page.write_text(text, encoding="utf-8")
    for page in stale:
        typer.echo(f"{'stale' if check else 'wrote'} {page}", err=True)
    if not stale:  # silence read as "did nothing", or as writing into another directory
        typer.echo(f"{folder}: {len(descriptors)} page(s) up to date", err=True)
    if check and stale:
        raise typer.Exit(1)
