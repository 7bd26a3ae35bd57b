"""The process heap after start-up: frozen, so the garbage collector stops rescanning it.

A server or worker that has imported its stack and opened its stores holds
a few hundred thousand long-lived objects (modules, pydantic schemas, the
descriptor catalogue). Every full collection walks all of them, and a poll
of many pages triggers full collections because its items survive the young
generations while a page is in flight. ``gc.freeze()`` moves what is alive
at start-up to a permanent generation the collector skips; later garbage is
collected as before. Measured with gc callbacks on a 20 000-issue poll: the
collector's time per item fell from ~12 µs to ~7 µs (issue 16).
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> None:
    """Collect once, then freeze everything still alive (call once start-up is done)."""
    gc.collect()
    gc.freeze()
