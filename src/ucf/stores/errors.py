"""Typed store errors: each names the problem and, where there is one, the fix.

Callers branch on the type (the API maps ``NotFound`` to 404, ``AlreadyExists``
to 409); people read the message, so it always says what to do next.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error a store raises on purpose."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class NotFound(StoreError):
    """The record addressed does not exist."""


class AlreadyExists(StoreError):
    """A create collided with an existing record of the same identity."""


class InvalidRecord(StoreError, ValueError):
    """The caller handed the store something it cannot keep (wrong ids, not JSON)."""


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor that this store did not issue, or that was tampered with."""


class StoreConfigError(StoreError):
    """The store URL or options cannot be used (unknown scheme, malformed path)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened right now (permissions, network, lock)."""


class StoreNotInitialised(StoreError):
    """The store exists but has no schema/table yet; ``ucf store init`` creates it."""


class StoreCorrupt(StoreError):
    """The store's files or schema are not what ucf wrote (garbage file, newer schema)."""
