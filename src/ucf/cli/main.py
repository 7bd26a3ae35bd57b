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
