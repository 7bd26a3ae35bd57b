"""Storage: one async protocol per noun, SQLite and DynamoDB behind them.

Start with :func:`open_store`; see ``docs/storage.md`` for the model.
"""

from __future__ import annotations

from ucf.stores.errors import (
    AlreadyExists,
    Changed,
    InvalidCursor,
    InvalidRecord,
    NotFound,
    StoreConfigError,
    StoreCorrupt,
    StoreError,
    StoreNotInitialised,
    StoreUnavailable,
)
from ucf.stores.protocols import (
    CheckpointStore,
    DescriptorRegistry,
    InstanceStore,
    KeyValueStore,
    LeaseStore,
    Outbox,
    RateLimitStore,
    SignalStore,
    Store,
    StoreLifecycle,
)
from ucf.stores.url import open_store, resolve_store_url

__all__ = [
    "AlreadyExists",
    "Changed",
    "CheckpointStore",
    "DescriptorRegistry",
    "InstanceStore",
    "InvalidCursor",
    "InvalidRecord",
    "KeyValueStore",
    "LeaseStore",
    "NotFound",
    "Outbox",
    "RateLimitStore",
    "SignalStore",
    "Store",
    "StoreConfigError",
    "StoreCorrupt",
    "StoreError",
    "StoreLifecycle",
    "StoreNotInitialised",
    "StoreUnavailable",
    "open_store",
    "resolve_store_url",
]
