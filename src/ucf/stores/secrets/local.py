"""The embedded secret store: AES-256-GCM blobs in their own SQLite file.

Why a separate file (``<data dir>/secrets.db``) and not a table in the main
store: the main store is data you copy around freely — backups, support
bundles, a laptop for debugging — while the secrets file is useless without
the master key and should travel with it, under stricter permissions (0600) and
its own backup policy. Keeping them apart also lets an operator move secrets to
AWS Secrets Manager without touching signals or checkpoints.

Each blob is a versioned envelope::

    version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext + GCM tag

The AAD is the header plus the ref, so a blob copied to another ref, or with
its header edited, fails authentication instead of decrypting. The key id (a
truncated hash of the key, not the key) lets us tell "wrong master key" apart
from "damaged file", and lets :meth:`LocalSecretStore.rekey` re-encrypt under a
new key later.

The master key comes from ``UCF_MASTER_KEY`` (base64 of 32 bytes) or a key file
(``UCF_MASTER_KEY_FILE``, default ``<data dir>/master.key``, same base64 text)
created with mode 0600 at first start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ulid import ULID

from ucf.stores.errors import StoreCorrupt
from ucf.stores.secrets.base import (
    SecretDecryptionError,
    SecretIntegrityError,
    SecretNotFound,
    SecretRefError,
    SecretStoreConfigError,
    SecretStoreUnavailable,
    SecretValues,
    decode_credential_set,
    encode_credential_set,
)

log = logging.getLogger(__name__)

MASTER_KEY_ENV = "UCF_MASTER_KEY"
MASTER_KEY_FILE_ENV = "UCF_MASTER_KEY_FILE"
KEY_FILE_NAME = "master.key"
DB_FILE_NAME = "secrets.db"
REF_PREFIX = "local:"

_KEY_BYTES = 32
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_ENVELOPE_V1 = 1
_HEADER_BYTES = 1 + _KEY_ID_BYTES
_SCHEMA_VERSION = 1
_GENERATE_HINT = "generate one with: openssl rand -base64 32"

T = TypeVar("T")


class MasterKey:
    """The AES-256 key that seals local secrets. Its ``repr`` shows only a key id."""

    __slots__ = ("_aead", "_material", "key_id", "source")

    def __init__(self, material: bytes, *, source: str) -> None:
        if len(material) != _KEY_BYTES:
            raise SecretStoreConfigError(
                f"the master key from {source} is {len(material)} bytes; it must be exactly {_KEY_BYTES}",
                _GENERATE_HINT,
            )
        self._material = material
        self._aead = AESGCM(material)
        self.key_id = hashlib.sha256(b"ucf master key id\x00" + material).digest()[:_KEY_ID_BYTES]
        self.source = source

    @classmethod
    def generate(cls, *, source: str = "a freshly generated key") -> MasterKey:
        return cls(AESGCM.generate_key(bit_length=256), source=source)

    @classmethod
    def from_base64(cls, text: str, *, source: str) -> MasterKey:
        """Parse the base64 text used both in ``UCF_MASTER_KEY`` and in key files."""
        try:
            material = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SecretStoreConfigError(
                f"the master key from {source} is not valid base64", _GENERATE_HINT
            ) from None
        return cls(material, source=source)

    def to_base64(self) -> str:
        """The key as text, for writing a key file or an environment variable. Handle with care."""
        return base64.b64encode(self._material).decode()

    def seal(self, ref: str, plaintext: bytes) -> bytes:
        header = bytes([_ENVELOPE_V1]) + self.key_id
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + ref.encode())

    def open(self, ref: str, envelope: bytes) -> bytes:
        """Decrypt an envelope sealed for ``ref``; callers check the key id first."""
        header, nonce = (
            envelope[:_HEADER_BYTES],
            envelope[_HEADER_BYTES : _HEADER_BYTES + _NONCE_BYTES],
        )
        ciphertext = envelope[_HEADER_BYTES + _NONCE_BYTES :]
        return self._aead.decrypt(nonce, ciphertext, header + ref.encode())

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id.hex()!r}, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a MasterKey cannot be pickled: key material stays in this process")


def key_file_path(data_dir: Path, env: Mapping[str, str]) -> Path:
    """Where the master key file lives: ``UCF_MASTER_KEY_FILE`` or ``<data dir>/master.key``."""
    configured = env.get(MASTER_KEY_FILE_ENV)
    return Path(configured) if configured else data_dir / KEY_FILE_NAME


def load_master_key(data_dir: Path, env: Mapping[str, str]) -> MasterKey | None:
    """The configured master key, or ``None`` when neither the variable nor the file exists."""
    if MASTER_KEY_ENV in env:
        text = env[MASTER_KEY_ENV]
        if not text.strip():
            raise SecretStoreConfigError(
                f"{MASTER_KEY_ENV} is set but empty",
                f"unset it to use the key file {key_file_path(data_dir, env)}, or set it to base64 of 32 bytes ({_GENERATE_HINT})",
            )
        return MasterKey.from_base64(text, source=MASTER_KEY_ENV)
    try:
        return _read_key_file(key_file_path(data_dir, env))
    except FileNotFoundError:
        return None


def load_or_create_master_key(data_dir: Path, env: Mapping[str, str]) -> MasterKey:
    """The master key from ``UCF_MASTER_KEY`` or the key file, creating the file at first start."""
    key = load_master_key(data_dir, env)
    return key if key is not None else _create_key_file(key_file_path(data_dir, env))


def _read_key_file(path: Path) -> MasterKey:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretStoreConfigError(
            f"cannot read the master key file {path}: {exc.strerror or exc}",
            "run ucf as the user that owns the key file, or set UCF_MASTER_KEY",
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretStoreConfigError(
                f"the master key file {path} is not a regular file",
                "point UCF_MASTER_KEY_FILE at the key file or set UCF_MASTER_KEY",
            )
        if os.name == "posix" and info.st_mode & 0o077:
            raise SecretStoreConfigError(
                f"the master key file {path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):04o}), so ucf refuses to use it",
                f"run: chmod 600 {path}",
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(4096)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = "\x00"  # not base64 either; reported below
    return MasterKey.from_base64(text, source=f"the key file {path}")


def _create_key_file(path: Path) -> MasterKey:
    """Create the key file with mode 0600 from the first byte on, safely against a racing start.

    The key is written to a private temporary file (``O_CREAT | O_EXCL``, 0600)
    and published with ``link()``, which fails if another process published
    first; the loser then reads the winner's complete file instead of a
    half-written one.
    """
    key = MasterKey.generate(source=f"the key file {path}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{ULID()}.tmp")
    _write_private(tmp, (key.to_base64() + "\n").encode())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_key_file(path)
    except OSError:
        # Filesystems without hard links: exclusive create on the final name.
        try:
            _write_private(path, (key.to_base64() + "\n").encode())
        except FileExistsError:
            return _read_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    log.warning(
        "created a new master key at %s; back it up with secrets.db: without it the stored secrets cannot be read",
        path,
    )
    return key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_ref(ref: str) -> str:
    if isinstance(ref, str) and ref.startswith(REF_PREFIX) and len(ref) > len(REF_PREFIX):
        return ref
    if isinstance(ref, str) and ref.startswith("arn:aws:secretsmanager:"):
        raise SecretRefError(
            f"ref {ref!r} points into AWS Secrets Manager, but this ucf uses the local secret store",
            "set UCF_SECRET_STORE=aws-secretsmanager://?region=… or store the credentials again",
        )
    raise SecretRefError(
        f"{ref!r} is not a local secret ref (they look like 'local:01J…')",
        "use the ref returned by put()",
    )


class LocalSecretStore:
    """Encrypted credential sets in ``secrets.db``, one worker thread owning the connection.

    Use :meth:`open`; it resolves the master key and refuses, before serving
    anything, a key that does not match the secrets already stored.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        key: MasterKey,
        *,
        db_path: Path,
        key_hint: str,
        executor: ThreadPoolExecutor,
    ) -> None:
        self._db = connection
        self._key = key
        self.db_path = db_path
        self._key_hint = key_hint
        self._executor = executor

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        env: Mapping[str, str],
        key: MasterKey | None = None,
    ) -> LocalSecretStore:
        """Open (creating if needed) ``<directory>/secrets.db`` with the configured master key.

        With no key given, the key comes from ``UCF_MASTER_KEY`` or the key file.
        A new key file is made only when no secrets exist yet: if secrets.db
        already holds secrets and the key file is gone, that is an error to fix,
        not a reason to start over with a new key.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ucf-secrets")
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                executor, lambda: cls._open_sync(directory, env, key, executor)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise

    @classmethod
    def _open_sync(
        cls,
        directory: Path,
        env: Mapping[str, str],
        key: MasterKey | None,
        executor: ThreadPoolExecutor,
    ) -> LocalSecretStore:
        db_path = directory / DB_FILE_NAME
        key_path = key_file_path(directory, env)
        key_hint = f"set {MASTER_KEY_ENV} to the original key or restore {key_path}"
        connection = _connect(db_path)
        try:
            stored_key_ids = _stored_key_ids(connection, db_path)
            if key is None:
                key = load_master_key(directory, env)
            if key is not None and key.source == MASTER_KEY_ENV:
                key_hint = f"set {MASTER_KEY_ENV} to the original key (or unset it to use the key file {key_path})"
            if key is None:
                if stored_key_ids:
                    count = sum(stored_key_ids.values())
                    raise SecretDecryptionError(
                        f"the master key file {key_path} is missing, but {db_path} holds {count} secret(s) encrypted with it",
                        f"restore {key_path} from a backup or set {MASTER_KEY_ENV} to the original key",
                    )
                key = _create_key_file(key_path)
            foreign = sum(n for key_id, n in stored_key_ids.items() if key_id != key.key_id)
            if foreign:
                raise SecretDecryptionError(
                    f"the master key does not match the one {foreign} secret(s) in {db_path} were encrypted with",
                    key_hint,
                )
        except BaseException:
            connection.close()
            raise
        return cls(connection, key, db_path=db_path, key_hint=key_hint, executor=executor)

    async def put(self, ref: str | None, values: Mapping[str, str]) -> str:
        ref = f"{REF_PREFIX}{ULID()}" if ref is None else _check_ref(ref)
        plaintext = encode_credential_set(values)

        def write() -> None:
            now = _now()
            self._db.execute(
                "INSERT INTO secrets (ref, envelope, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (ref) DO UPDATE SET envelope = excluded.envelope, updated_at = excluded.updated_at",
                (ref, self._key.seal(ref, plaintext), now, now),
            )

        await self._run(write)
        log.debug("stored a credential set of %d key(s) under %s", len(values), ref)
        return ref

    async def get(self, ref: str) -> dict[str, str]:
        _check_ref(ref)

        def read() -> SecretValues:
            row = self._db.execute("SELECT envelope FROM secrets WHERE ref = ?", (ref,)).fetchone()
            if row is None:
                raise SecretNotFound(ref)
            return decode_credential_set(self._open_envelope(ref, bytes(row[0])), ref)

        return await self._run(read)

    async def rotate(
        self, ref: str, values: Mapping[str, str], *, keep_previous: bool = True
    ) -> None:
        _check_ref(ref)
        plaintext = encode_credential_set(values)

        def write() -> None:
            updated = self._db.execute(
                "UPDATE secrets SET envelope = ?, updated_at = ? WHERE ref = ?",
                (self._key.seal(ref, plaintext), _now(), ref),
            )
            if updated.rowcount == 0:
                raise SecretNotFound(ref)
            if not keep_previous:
                # The page the old envelope was on stays in the write-ahead log until a
                # checkpoint resets it (secure_delete zeroes the database file's copy
                # only): copied into the file and truncated now, it is gone from both.
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._run(write)
        log.debug("rotated the credential set under %s (%d key(s))", ref, len(values))

    async def delete(self, ref: str) -> None:
        _check_ref(ref)

        def forget() -> None:
            deleted = self._db.execute("DELETE FROM secrets WHERE ref = ?", (ref,))
            if deleted.rowcount:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # see rotate

        await self._run(forget)
        log.debug("deleted the credential set under %s (if it existed)", ref)

    async def rekey(self, new_key: MasterKey) -> int:
        """Re-encrypt every secret under ``new_key`` in one transaction; return how many.

        Save the new key durably (key file or secret manager) *before* calling
        this: once it commits, only the new key can read the secrets.
        """

        def rewrite() -> int:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute("SELECT ref, envelope FROM secrets").fetchall()
                for ref, envelope in rows:
                    plaintext = self._open_envelope(ref, bytes(envelope))
                    self._db.execute(
                        "UPDATE secrets SET envelope = ?, updated_at = ? WHERE ref = ?",
                        (new_key.seal(ref, plaintext), _now(), ref),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._key = new_key
            return len(rows)

        return await self._run(rewrite)

    async def close(self) -> None:
        try:
            await self._run(self._db.close)
        finally:
            self._executor.shutdown(wait=False)

    def _open_envelope(self, ref: str, envelope: bytes) -> bytes:
        if len(envelope) < _HEADER_BYTES + _NONCE_BYTES + 16 or envelope[0] != _ENVELOPE_V1:
            raise SecretIntegrityError(
                f"the secret under ref {ref!r} in {self.db_path} is damaged or was written by a newer ucf",
                "restore secrets.db from a backup or store the credentials again",
            )
        if envelope[1:_HEADER_BYTES] != self._key.key_id:
            raise SecretDecryptionError(
                f"the master key does not match the one the secret under ref {ref!r} was encrypted with",
                self._key_hint,
            )
        try:
            return self._key.open(ref, envelope)
        except InvalidTag:
            raise SecretIntegrityError(
                f"the secret under ref {ref!r} in {self.db_path} failed its integrity check: its bytes were altered or copied from another ref",
                "restore secrets.db from a backup or store the credentials again",
            ) from None

    async def _run(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, work)
        except sqlite3.OperationalError as exc:
            raise SecretStoreUnavailable(
                f"cannot use {self.db_path}: {exc}",
                "check that the file is writable and no other process holds a long lock on it",
            ) from None
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(
                f"{self.db_path} is damaged ({exc})", "restore it from a backup"
            ) from None

    def __repr__(self) -> str:
        return f"LocalSecretStore(db_path={str(self.db_path)!r}, key={self._key!r})"

    __str__ = __repr__


def _connect(db_path: Path) -> sqlite3.Connection:
    """Open secrets.db (0600 from creation) in WAL mode with the schema in place."""
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
        connection = sqlite3.connect(db_path, isolation_level=None, timeout=5.0)
    except OSError as exc:
        raise SecretStoreUnavailable(
            f"cannot open the secrets file {db_path}: {exc.strerror or exc}",
            "check that the data directory exists and is writable by this user",
        ) from None
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        # Zero the pages of deleted or rotated secrets instead of leaving old
        # ciphertext in free pages; the file is tiny, the cost is nil.
        connection.execute("PRAGMA secure_delete = ON")
        _migrate(connection, db_path)
    except sqlite3.DatabaseError as exc:
        connection.close()
        _raise_corrupt(db_path, exc)
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection, db_path: Path) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise StoreCorrupt(
                f"{db_path} has secrets schema version {version}, newer than this ucf understands ({_SCHEMA_VERSION})",
                "upgrade ucf",
            )
        if version < 1:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS secrets ("
                " ref TEXT PRIMARY KEY,"
                " envelope BLOB NOT NULL,"
                " created_at TEXT NOT NULL,"
                " updated_at TEXT NOT NULL"
                ") WITHOUT ROWID"
            )
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _stored_key_ids(connection: sqlite3.Connection, db_path: Path) -> dict[bytes, int]:
    """How many secrets each master key (by key id) sealed; the id sits in the envelope header."""
    try:
        rows = connection.execute(
            "SELECT substr(envelope, 2, ?), count(*) FROM secrets GROUP BY 1", (_KEY_ID_BYTES,)
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        _raise_corrupt(db_path, exc)
    return {bytes(key_id): count for key_id, count in rows}


def _raise_corrupt(db_path: Path, exc: sqlite3.DatabaseError) -> NoReturn:
    raise StoreCorrupt(
        f"{db_path} is not a readable ucf secrets database ({exc})",
        "restore it from a backup, or move it away to start with no stored secrets",
    ) from None
