"""Entry point of the ``ucf`` console script."""

from __future__ import annotations

import typer

from ucf import __version__

app = typer.Typer(
    name="ucf",
    help="Universal Connector Framework: connectors as JSON descriptors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Universal Connector Framework: connectors as JSON descriptors."""


@app.command()
def version() -> None:
    """Print the ucf version."""
    typer.echo(__version__)


def _register() -> None:
    """Sub-commands live in their own modules; main only wires them."""
    from ucf.cli import descriptors, store

    app.command("schema")(descriptors.schema)
    app.command("map")(descriptors.map_sample)
    app.add_typer(descriptors.connectors_app, name="connectors")
    from ucf.cli import poll

    app.command("poll")(poll.poll)
    app.command("check")(poll.check)
    app.add_typer(store.store_app, name="store")
    from ucf.cli import webhooks

    app.add_typer(webhooks.webhooks_app, name="webhooks")

    from ucf.cli import worker

    app.command("worker")(worker.worker)

    from ucf.cli import signals

    app.add_typer(signals.signals_app, name="signals")

    from ucf.cli import outbox

    app.add_typer(outbox.outbox_app, name="outbox")

    from ucf.cli import serve

    app.command("serve")(serve.serve)

    from ucf.cli import sandbox

    app.command("sandbox")(sandbox.sandbox)


_register()
