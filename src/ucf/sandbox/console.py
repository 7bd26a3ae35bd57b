"""What the sandbox prints: a where-to-look block, one compact line per event, a summary.

Colour when stdout is a terminal; plain, unwrapped lines otherwise (a pipe, a
log file, a test reading the output), flushed as they are written so a reader
follows along live. Text that comes from elsewhere (a server's error message)
is printed as text, never interpreted as markup.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Final

from rich.console import Console
from rich.text import Text

__all__ = ["KIND_STYLES", "Reporter"]

KIND_STYLES: Final = {
    "setup": "cyan",
    "upstream": "blue",
    "webhook": "green",
    "tampered": "magenta",
    "redeliver": "green",
    "ignored": "yellow",
    "fault": "red",
    "health": "bold yellow",
    "signals": "bold green",
    "serve": "red",
    "stop": "cyan",
    "unexpected": "bold red",
}
KIND_WIDTH: Final = 10
NAME_WIDTH: Final = 13


class Reporter:
    """Writes the sandbox's output; ``quiet`` keeps the block and summary, drops live lines."""

    def __init__(self, *, quiet: bool = False, file: IO[str] | None = None) -> None:
        self.quiet = quiet
        self.console = Console(file=file or sys.stdout, highlight=False, soft_wrap=True)

    def _emit(self, text: Text | str) -> None:
        self.console.print(text)
        self.console.file.flush()

    def line(self, text: str = "", style: str | None = None) -> None:
        """A line that is always printed (set-up, where to look, summary)."""
        self._emit(Text(text, style=style or ""))

    def event(self, kind: str, name: str, message: str, *, at: datetime | None = None) -> None:
        """``HH:MM:SS  kind  name  message``: one thing that just happened."""
        if self.quiet:
            return
        moment = (at or datetime.now()).strftime("%H:%M:%S")
        text = Text()
        text.append(f"{moment}  ", style="dim")
        text.append(f"{kind:<{KIND_WIDTH}}", style=KIND_STYLES.get(kind, ""))
        text.append(f" {name:<{NAME_WIDTH}} ", style="bold")
        text.append(message)
        self._emit(text)

    def table(self, title: str, rows: Sequence[tuple[str, str]]) -> None:
        """``title`` then aligned ``label  value`` rows."""
        self._emit(Text(title, style="bold"))
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            text = Text()
            text.append(f"  {label:<{width}}  ", style="cyan")
            text.append(value)
            self._emit(text)
