"""What a store's set-up reports: ``ucf store init`` and the catalogue sync at start.

Kept apart from :mod:`ucf.stores.models` (which still exports both names, see
its ``__getattr__``): a Lambda function neither initialises the store (the
template makes the table) nor syncs on a poll, so its cold start does not
build these dataclasses.
"""

from __future__ import annotations

from ucf.core.records import datarecord

__all__ = ["InitReport", "SyncReport"]


@datarecord
class InitReport:
    """What ``Store.init`` found and did, in words ``ucf store init`` prints."""

    backend: str
    location: str
    actions: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.actions)


@datarecord
class SyncReport:
    """Outcome of loading the shipped descriptors into the registry at start."""

    inserted: tuple[str, ...] = ()
    upgraded: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    shadowed: tuple[str, ...] = ()
    """Built-in ids left alone because a user-created descriptor owns the id."""
