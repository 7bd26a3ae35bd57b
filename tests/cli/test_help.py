"""Every option's help is shown as written.

``--help`` is rendered with rich, which reads ``[...]`` as markup: a help text holding
``[default: $UCF_STORE, …]`` lost that part without a word, and ``ucf store init
--help`` no longer said where the store goes without ``--store``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from ucf.cli.main import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Each leaf command's words (typer's groups have ``commands``)."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path


ROOT_COMMAND = typer.main.get_command(app)
COMMANDS = sorted(_commands(ROOT_COMMAND))


def _words(text: str) -> str:
    """The text without the help panel's frame, its spacing and its line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_options_help_text_is_shown_whole(path: tuple[str, ...]) -> None:
    command: Any = ROOT_COMMAND
    for name in path:
        command = command.commands[name]
    shown = CliRunner().invoke(app, [*path, "--help"], terminal_width=400, env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    missing = [
        parameter.name
        for parameter in command.params
        if (written := getattr(parameter, "help", None))
        and _words(written) not in _words(shown.output)
    ]
    assert missing == [], f"ucf {' '.join(path)} --help cut the help of {missing}"
