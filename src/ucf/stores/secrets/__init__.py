"""Secret stores: credential sets kept by opaque ref, encrypted locally or in AWS Secrets Manager.

See :mod:`ucf.stores.secrets.factory` for the ``UCF_SECRET_STORE`` URL forms,
:mod:`ucf.stores.secrets.local` for the envelope and key handling, and
:mod:`ucf.stores.secrets.aws` for the Secrets Manager mapping.
"""

from typing import TYPE_CHECKING, Any

from ucf.stores.secrets.base import (
    MAX_SECRET_BYTES,
    SecretDecryptionError,
    SecretFormatError,
    SecretIntegrityError,
    SecretNotFound,
    SecretRefError,
    SecretStore,
    SecretStoreConfigError,
    SecretStoreUnavailable,
    SecretValues,
    merge_secret,
)
from ucf.stores.secrets.factory import SECRET_STORE_ENV, open_secret_store

if TYPE_CHECKING:
    from ucf.stores.secrets.local import (
        MASTER_KEY_ENV,
        MASTER_KEY_FILE_ENV,
        LocalSecretStore,
        MasterKey,
        load_or_create_master_key,
    )

_LOCAL = frozenset(
    {
        "MASTER_KEY_ENV",
        "MASTER_KEY_FILE_ENV",
        "LocalSecretStore",
        "MasterKey",
        "load_or_create_master_key",
    }
)


def __getattr__(name: str) -> Any:
    """The local store's names, imported on first use: a process on AWS Secrets Manager
    (every Lambda) never needs its cryptography and SQLite modules."""
    if name in _LOCAL:
        from ucf.stores.secrets import local

        return getattr(local, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE_ENV",
    "MAX_SECRET_BYTES",
    "SECRET_STORE_ENV",
    "LocalSecretStore",
    "MasterKey",
    "SecretDecryptionError",
    "SecretFormatError",
    "SecretIntegrityError",
    "SecretNotFound",
    "SecretRefError",
    "SecretStore",
    "SecretStoreConfigError",
    "SecretStoreUnavailable",
    "SecretValues",
    "load_or_create_master_key",
    "merge_secret",
    "open_secret_store",
]
