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


class Changed(StoreError):
    """A conditional write found the record changed since its caller read it."""


class InvalidRecord(StoreError, ValueError):
    """The caller handed the store something it cannot keep (wrong ids, not JSON)."""


class SignalTooLarge(InvalidRecord):
    """A signal bigger, as JSON, than the store can keep in one record (DynamoDB: 400 KB).

    Raised before anything of its batch is written; ``signal_id`` names it, ``size``
    and ``limit`` are bytes of its JSON, so the caller can store it with less of its
    ``raw`` (:class:`~ucf.service.ingest.SignalIngestor` does).
    """

    def __init__(self, problem: str, fix: str, *, signal_id: str, size: int, limit: int) -> None:
        super().__init__(problem, fix)
        self.signal_id = signal_id
        self.size = size
        self.limit = limit


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


# Refusals both backends give in the same words, so the conformance suite and the
# people reading them see one store, whichever is behind it.


def no_descriptor(connector_id: str) -> NotFound:
    return NotFound(
        f"no connector descriptor with id {connector_id!r}",
        "list descriptors to see the ids that exist",
    )


def descriptor_exists(connector_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"a connector descriptor with id {connector_id!r} already exists",
        "update it instead, or choose another id",
    )


def no_instance(project_id: str, connector_id: str) -> NotFound:
    return NotFound(
        f"project {project_id!r} has no {connector_id!r} connector instance",
        "create the instance first",
    )


def instance_exists(project_id: str, connector_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"project {project_id!r} already has a {connector_id!r} connector instance",
        "update the existing instance instead",
    )


def descriptor_changed(connector_id: str) -> Changed:
    return Changed(
        f"connector descriptor {connector_id!r} changed since it was read",
        "read it again and repeat the edit on the current version",
    )
