"""Secret stores: credential sets kept by opaque ref, encrypted locally or in AWS Secrets Manager.

See :mod:`ucf.stores.secrets.factory` for the ``UCF_SECRET_STORE`` URL forms,
:mod:`ucf.stores.secrets.local` for the envelope and key handling, and
:mod:`ucf.stores.secrets.aws` for the Secrets Manager mapping.
"""

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
from ucf.stores.secrets.local import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    LocalSecretStore,
    MasterKey,
    load_or_create_master_key,
)

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
