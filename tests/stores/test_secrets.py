"""Secret stores: one conformance suite over the local store and AWS Secrets Manager (moto server),
then what is specific to each: master-key handling and tamper detection locally, deletion,
throttling and unreachable endpoints in AWS, and the URL factory."""

from __future__ import annotations

import base64
import logging
import multiprocessing
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import boto3
import pytest
from ulid import ULID

from tests.stores.moto_server import (
    AWS_ENV_TO_CLEAR,
    DUMMY_AWS_ENV,
    ThrottlingProxy,
)
from ucf.stores.errors import InvalidRecord, StoreCorrupt
from ucf.stores.secrets import (
    MAX_SECRET_BYTES,
    LocalSecretStore,
    MasterKey,
    SecretDecryptionError,
    SecretFormatError,
    SecretIntegrityError,
    SecretNotFound,
    SecretRefError,
    SecretStore,
    SecretStoreConfigError,
    SecretStoreUnavailable,
    load_or_create_master_key,
    merge_secret,
    open_secret_store,
)
from ucf.stores.secrets.aws import AwsSecretsManagerStore

CREDENTIALS = {"token": "ghp_s3cr3t-T0KEN-value", "webhookSecret": "whsec-0123456789abcdef"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials for moto; the developer's real AWS config is never read."""
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


async def _aws_store(endpoint: str, **options: int) -> AwsSecretsManagerStore:
    return await AwsSecretsManagerStore.connect(
        region="us-east-1", endpoint_url=endpoint, prefix=f"ucf-test/{ULID()}/", **options
    )


@pytest.fixture(params=["local", "aws-secretsmanager"])
async def secret_store(
    request: pytest.FixtureRequest, tmp_path: Path, moto_endpoint: str, aws_env: None
) -> AsyncIterator[SecretStore]:
    opened: SecretStore
    if request.param == "local":
        opened = await LocalSecretStore.open(tmp_path / "data", env={})
    else:
        opened = await _aws_store(moto_endpoint)
    yield opened
    await opened.close()


@pytest.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[LocalSecretStore]:
    opened = await LocalSecretStore.open(tmp_path, env={})
    yield opened
    await opened.close()


@pytest.fixture
async def aws_store(moto_endpoint: str, aws_env: None) -> AsyncIterator[AwsSecretsManagerStore]:
    opened = await _aws_store(moto_endpoint)
    yield opened
    await opened.close()


def _b64key(material: bytes) -> str:
    return base64.b64encode(material).decode()


# --------------------------------------------------------------------------- conformance


async def test_stored_credentials_come_back_unchanged(secret_store: SecretStore) -> None:
    ref = await secret_store.put(None, CREDENTIALS)

    assert await secret_store.get(ref) == CREDENTIALS
    assert ref.startswith(("local:", "arn:aws:secretsmanager:"))


async def test_each_new_credential_set_gets_its_own_ref(secret_store: SecretStore) -> None:
    first = await secret_store.put(None, {"token": "one"})
    second = await secret_store.put(None, {"token": "two"})

    assert first != second
    assert await secret_store.get(first) == {"token": "one"}
    assert await secret_store.get(second) == {"token": "two"}


async def test_putting_to_an_existing_ref_replaces_its_credentials(
    secret_store: SecretStore,
) -> None:
    ref = await secret_store.put(None, CREDENTIALS)

    again = await secret_store.put(ref, {"token": "replacement"})

    assert again == ref
    assert await secret_store.get(ref) == {"token": "replacement"}


async def test_rotation_replaces_the_whole_credential_set(secret_store: SecretStore) -> None:
    ref = await secret_store.put(None, CREDENTIALS)

    await secret_store.rotate(ref, {"token": "rotated"})

    assert await secret_store.get(ref) == {"token": "rotated"}


def _files_holding(directory: Path, data: bytes) -> list[str]:
    """The secrets database's files (with its write-ahead log) that hold ``data``."""
    files = [path for path in directory.iterdir() if path.name.startswith("secrets.db")]
    assert files
    return [path.name for path in files if data in path.read_bytes()]


async def test_a_rotation_without_the_previous_set_leaves_no_copy_of_it_in_the_files(
    local_store: LocalSecretStore, tmp_path: Path
) -> None:
    """The old envelope stays in the write-ahead log after the row is updated (zeroed in
    the database file only, by secure_delete), until a checkpoint resets the log: for
    credentials no longer used, the rotation checkpoints and truncates it."""
    ref = await local_store.put(None, {"apiKey": "old-key", "token": "t"})
    with sqlite3.connect(local_store.db_path) as reader:
        (old,) = reader.execute("SELECT envelope FROM secrets WHERE ref = ?", (ref,)).fetchone()

    await local_store.rotate(ref, {"token": "t"}, keep_previous=False)

    assert await local_store.get(ref) == {"token": "t"}
    assert _files_holding(tmp_path, bytes(old)) == []


async def test_a_deleted_credential_set_leaves_no_copy_of_it_in_the_files(
    local_store: LocalSecretStore, tmp_path: Path
) -> None:
    """A disconnected instance's secret: its row went, its envelope stayed in the log."""
    ref = await local_store.put(None, {"apiKey": "old-key"})
    with sqlite3.connect(local_store.db_path) as reader:
        (old,) = reader.execute("SELECT envelope FROM secrets WHERE ref = ?", (ref,)).fetchone()

    await local_store.delete(ref)

    assert _files_holding(tmp_path, bytes(old)) == []


async def test_merge_changes_some_keys_and_keeps_the_rest(secret_store: SecretStore) -> None:
    ref = await secret_store.put(
        None, {"clientId": "id", "clientSecret": "cs", "refreshToken": "old"}
    )

    merged = await merge_secret(
        secret_store, ref, {"refreshToken": "new", "clientId": None, "extra": "x"}
    )

    expected = {"clientSecret": "cs", "refreshToken": "new", "extra": "x"}
    assert merged == expected
    assert await secret_store.get(ref) == expected


async def test_deleted_credentials_are_gone_and_deleting_again_is_harmless(
    secret_store: SecretStore,
) -> None:
    ref = await secret_store.put(None, CREDENTIALS)

    await secret_store.delete(ref)
    await secret_store.delete(ref)

    with pytest.raises(SecretNotFound):
        await secret_store.get(ref)


async def test_unknown_ref_is_not_found_for_read_rotate_and_merge(
    secret_store: SecretStore,
) -> None:
    ref = await secret_store.put(None, CREDENTIALS)
    await secret_store.delete(ref)

    with pytest.raises(SecretNotFound, match="no secret is stored under ref"):
        await secret_store.get(ref)
    with pytest.raises(SecretNotFound):
        await secret_store.rotate(ref, CREDENTIALS)
    with pytest.raises(SecretNotFound):
        await merge_secret(secret_store, ref, {"token": "x"})


async def test_unicode_and_awkward_characters_survive_a_round_trip(
    secret_store: SecretStore,
) -> None:
    values = {
        "pässwörd": "🔑 ключ 鍵 \"quoted\" 'single' \\ back\nslash\ttab",
        "empty": "",
        "json-looking": '{"not": "parsed"}',
        "nul": "a\x00b",
    }
    ref = await secret_store.put(None, values)

    assert await secret_store.get(ref) == values


async def test_a_credential_set_with_many_keys_round_trips(secret_store: SecretStore) -> None:
    values = {f"key{i:03d}": f"value-{i}-" + "x" * 50 for i in range(300)}
    ref = await secret_store.put(None, values)

    assert await secret_store.get(ref) == values


async def test_non_string_value_is_refused_without_echoing_it(secret_store: SecretStore) -> None:
    with pytest.raises(InvalidRecord, match="'port' must be a string") as caught:
        await secret_store.put(None, {"port": 54321})  # type: ignore[dict-item]

    assert "54321" not in str(caught.value)


async def test_oversized_credential_set_is_refused_before_storing(
    secret_store: SecretStore,
) -> None:
    with pytest.raises(InvalidRecord, match=str(MAX_SECRET_BYTES)):
        await secret_store.put(None, {"blob": "x" * MAX_SECRET_BYTES})


async def test_printing_fetched_credentials_shows_key_names_only(secret_store: SecretStore) -> None:
    fetched = await secret_store.get(await secret_store.put(None, CREDENTIALS))

    for shown in (repr(fetched), str(fetched), f"{fetched}"):
        assert "token" in shown
        for secret in CREDENTIALS.values():
            assert secret not in shown


async def test_credentials_never_reach_the_logs_even_at_debug(
    secret_store: SecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        ref = await secret_store.put(None, CREDENTIALS)
        await secret_store.get(ref)
        await secret_store.rotate(ref, CREDENTIALS)
        await merge_secret(secret_store, ref, {"token": CREDENTIALS["token"]})

    assert caplog.records, "debug logging was not captured at all"
    for secret in CREDENTIALS.values():
        assert secret not in caplog.text


async def test_refs_of_the_other_backend_are_refused_clearly(secret_store: SecretStore) -> None:
    other = (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:ucf/x-AbCdEf"
        if isinstance(secret_store, LocalSecretStore)
        else "local:01JABCDEFGHJKMNPQRSTVWXYZ0"
    )

    with pytest.raises(SecretRefError, match=r"belongs to|points into"):
        await secret_store.get(other)


# --------------------------------------------------------------------------- local: master key


def test_first_start_creates_a_key_file_only_its_owner_can_read(tmp_path: Path) -> None:
    previous = os.umask(0)  # even a permissive umask must not widen the key file
    try:
        key = load_or_create_master_key(tmp_path, env={})
    finally:
        os.umask(previous)

    key_file = tmp_path / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text().strip(), validate=True)) == 32
    assert load_or_create_master_key(tmp_path, env={}).key_id == key.key_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_file_readable_by_others_is_refused_with_the_chmod_fix(
    tmp_path: Path, mode: int
) -> None:
    load_or_create_master_key(tmp_path, env={})
    key_file = tmp_path / "master.key"
    key_file.chmod(mode)

    with pytest.raises(SecretStoreConfigError, match=f"chmod 600 {key_file}"):
        load_or_create_master_key(tmp_path, env={})


def test_master_key_from_the_environment_needs_no_key_file(tmp_path: Path) -> None:
    material = os.urandom(32)

    key = load_or_create_master_key(tmp_path, env={"UCF_MASTER_KEY": _b64key(material)})

    assert key.source == "UCF_MASTER_KEY"
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (_b64key(bytes(range(16))), "16 bytes; it must be exactly 32"),
        (_b64key(bytes(range(64))), "64 bytes; it must be exactly 32"),
        ("not base64 at all!", "not valid base64"),
        ("   ", "set but empty"),
    ],
)
def test_malformed_master_key_in_the_environment_is_a_clear_error(
    tmp_path: Path, value: str, complaint: str
) -> None:
    with pytest.raises(SecretStoreConfigError, match=complaint) as caught:
        load_or_create_master_key(tmp_path, env={"UCF_MASTER_KEY": value})

    if value.strip():
        assert value not in str(caught.value)


def test_key_file_location_can_be_configured(tmp_path: Path) -> None:
    key_file = tmp_path / "elsewhere" / "ucf.key"

    load_or_create_master_key(tmp_path / "data", env={"UCF_MASTER_KEY_FILE": str(key_file)})

    assert key_file.exists()
    assert not (tmp_path / "data" / "master.key").exists()


def _race_for_key(directory: str) -> str:
    return load_or_create_master_key(Path(directory), env={}).key_id.hex()


def test_processes_starting_together_agree_on_one_master_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        key_ids = list(pool.map(_race_for_key, [str(tmp_path)] * 8))

    assert len(set(key_ids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


async def test_wrong_master_key_is_refused_at_open_naming_the_fix(tmp_path: Path) -> None:
    original = _b64key(os.urandom(32))
    store = await LocalSecretStore.open(tmp_path, env={"UCF_MASTER_KEY": original})
    await store.put(None, CREDENTIALS)
    await store.close()

    with pytest.raises(SecretDecryptionError) as caught:
        await LocalSecretStore.open(tmp_path, env={"UCF_MASTER_KEY": _b64key(os.urandom(32))})

    message = str(caught.value)
    assert "master key does not match" in message
    assert "set UCF_MASTER_KEY to the original key" in message
    assert original not in message


async def test_lost_key_file_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    store = await LocalSecretStore.open(tmp_path, env={})
    await store.put(None, CREDENTIALS)
    await store.close()
    (tmp_path / "master.key").unlink()

    with pytest.raises(SecretDecryptionError, match=r"master.key is missing.*restore"):
        await LocalSecretStore.open(tmp_path, env={})

    assert not (tmp_path / "master.key").exists()


async def test_secret_written_under_another_key_is_refused_on_read(tmp_path: Path) -> None:
    reader = await LocalSecretStore.open(tmp_path, env={}, key=MasterKey.generate())
    writer = await LocalSecretStore.open(tmp_path, env={}, key=MasterKey.generate())
    try:
        ref = await writer.put(None, CREDENTIALS)

        with pytest.raises(SecretDecryptionError, match="master key does not match"):
            await reader.get(ref)
    finally:
        await reader.close()
        await writer.close()


# --------------------------------------------------------------------------- local: at rest


def _envelope(db: Path, ref: str) -> bytes:
    with sqlite3.connect(db) as connection:
        row = connection.execute("SELECT envelope FROM secrets WHERE ref = ?", (ref,)).fetchone()
    connection.close()
    return bytes(row[0])


def _write_envelope(db: Path, ref: str, envelope: bytes) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute(
            "INSERT INTO secrets (ref, envelope, created_at, updated_at) VALUES (?, ?, '', '') "
            "ON CONFLICT (ref) DO UPDATE SET envelope = excluded.envelope",
            (ref, envelope),
        )
    connection.close()


async def test_altered_ciphertext_byte_is_detected(local_store: LocalSecretStore) -> None:
    ref = await local_store.put(None, CREDENTIALS)
    envelope = bytearray(_envelope(local_store.db_path, ref))
    envelope[30] ^= 0x01  # inside the ciphertext, after version, key id and nonce
    _write_envelope(local_store.db_path, ref, bytes(envelope))

    with pytest.raises(SecretIntegrityError, match="failed its integrity check"):
        await local_store.get(ref)


async def test_ciphertext_copied_to_another_ref_does_not_decrypt(
    local_store: LocalSecretStore,
) -> None:
    victim = await local_store.put(None, CREDENTIALS)
    other = await local_store.put(None, {"token": "attacker-controlled instance"})
    _write_envelope(local_store.db_path, other, _envelope(local_store.db_path, victim))

    with pytest.raises(SecretIntegrityError, match="copied from another ref"):
        await local_store.get(other)


def _secret_files(directory: Path) -> dict[Path, bytes]:
    """secrets.db and its WAL and shared-memory files, byte for byte."""
    return {path: path.read_bytes() for path in directory.glob("secrets.db*")}


def _names(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


async def test_plaintext_never_appears_in_the_secrets_files(tmp_path: Path) -> None:
    marker = {"token": "PLAINTEXT-MARKER-4f1c9a", "webhookSecret": "SECOND-MARKER-77ab"}
    store = await LocalSecretStore.open(tmp_path, env={})
    ref = await store.put(None, marker)
    await store.rotate(ref, {**marker, "token": "PLAINTEXT-MARKER-rotated"})
    files_while_open = _secret_files(tmp_path)
    await store.close()
    files_after_close = _secret_files(tmp_path)

    assert tmp_path / "secrets.db-wal" in files_while_open
    for contents in (*files_while_open.values(), *files_after_close.values()):
        for needle in (*marker.values(), "PLAINTEXT-MARKER-rotated", "webhookSecret"):
            assert needle.encode() not in contents
    assert ref.encode() in files_after_close[tmp_path / "secrets.db"]


async def test_secrets_file_is_private_to_its_owner(local_store: LocalSecretStore) -> None:
    assert stat.S_IMODE(local_store.db_path.stat().st_mode) == 0o600


async def test_nothing_printable_reveals_key_material(tmp_path: Path) -> None:
    material = os.urandom(32)
    env = {"UCF_MASTER_KEY": _b64key(material)}
    store = await LocalSecretStore.open(tmp_path, env=env)
    key = load_or_create_master_key(tmp_path, env)
    try:
        for shown in (repr(store), str(store), repr(key), str(key), f"{key}"):
            assert _b64key(material) not in shown
            assert material.hex() not in shown
        with pytest.raises(TypeError, match="cannot be pickled"):
            key.__reduce__()
    finally:
        await store.close()


async def test_rekey_moves_every_secret_to_the_new_key(tmp_path: Path) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    store = await LocalSecretStore.open(tmp_path, env={}, key=old)
    refs = [await store.put(None, {"token": f"t{i}"}) for i in range(5)]

    assert await store.rekey(new) == 5
    assert await store.get(refs[0]) == {"token": "t0"}
    await store.close()

    with pytest.raises(SecretDecryptionError):
        await LocalSecretStore.open(tmp_path, env={}, key=old)
    reopened = await LocalSecretStore.open(tmp_path, env={}, key=new)
    assert [await reopened.get(r) for r in refs] == [{"token": f"t{i}"} for i in range(5)]
    await reopened.close()


async def test_a_garbage_secrets_file_is_reported_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "secrets.db").write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(StoreCorrupt, match="not a readable ucf secrets database"):
        await LocalSecretStore.open(tmp_path, env={})

    assert (tmp_path / "secrets.db").read_bytes() == b"this is not sqlite" * 100


async def test_malformed_local_ref_is_refused(local_store: LocalSecretStore) -> None:
    for ref in ("", "local:", "01JABC", "s3://bucket/key"):
        with pytest.raises(SecretRefError):
            await local_store.get(ref)


# --------------------------------------------------------------------------- aws


async def test_aws_secret_is_named_under_the_prefix_and_tagged(
    aws_store: AwsSecretsManagerStore, moto_endpoint: str
) -> None:
    ref = await aws_store.put(None, CREDENTIALS)

    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    described = client.describe_secret(SecretId=ref)
    assert described["Name"].startswith("ucf-test/")
    assert {"Key": "managed-by", "Value": "ucf"} in described["Tags"]


async def test_aws_rotation_keeps_the_previous_version_unless_told_not_to(
    aws_store: AwsSecretsManagerStore, moto_endpoint: str
) -> None:
    """A rotation keeps what it replaced readable as ``AWSPREVIOUS`` (the last known good
    tokens); credentials no longer used are rotated out without it, so no version of the
    secret gives them back."""
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    kept = await aws_store.put(None, {"apiKey": "old-key"})
    await aws_store.rotate(kept, {"apiKey": "new-key"})
    previous = client.get_secret_value(SecretId=kept, VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == '{"apiKey":"old-key"}'

    dropped = await aws_store.put(None, {"apiKey": "old-key", "token": "t"})
    await aws_store.rotate(dropped, {"token": "t"}, keep_previous=False)

    assert await aws_store.get(dropped) == {"token": "t"}
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_secret_value(SecretId=dropped, VersionStage="AWSPREVIOUS")
    stages = client.describe_secret(SecretId=dropped)["VersionIdsToStages"]
    assert sorted(label for labels in stages.values() for label in labels) == ["AWSCURRENT"]
    client.close()


async def test_aws_delete_skips_the_recovery_window(
    aws_store: AwsSecretsManagerStore, moto_endpoint: str
) -> None:
    name = f"ucf-test/{ULID()}/reused-name"
    first = await aws_store.put(name, {"token": "first"})

    await aws_store.delete(first)

    # With a recovery window the name would stay reserved and this would fail.
    second = await aws_store.put(name, {"token": "second"})
    assert await aws_store.get(second) == {"token": "second"}
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    listed = client.list_secrets(
        IncludePlannedDeletion=True, Filters=[{"Key": "name", "Values": [name]}]
    )
    assert [s.get("DeletedDate") for s in listed["SecretList"]] == [None]


async def test_aws_secret_not_written_by_ucf_is_reported_as_such(
    aws_store: AwsSecretsManagerStore, moto_endpoint: str
) -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    arn = client.create_secret(Name=f"ucf-test/{ULID()}/plain", SecretString="hunter2")["ARN"]

    with pytest.raises(SecretFormatError, match="not a ucf credential set") as caught:
        await aws_store.get(arn)

    assert "hunter2" not in str(caught.value)


async def test_aws_throttling_is_retried_until_it_clears(moto_endpoint: str, aws_env: None) -> None:
    with ThrottlingProxy(moto_endpoint, throttle_first=2) as proxy:
        store = await _aws_store(proxy.url, max_attempts=3)
        ref = await store.put(None, CREDENTIALS)
        assert await store.get(ref) == CREDENTIALS
        await store.close()

    assert proxy.requests == 4  # two throttled, then create and get


async def test_aws_throttling_that_never_clears_gives_up_after_bounded_attempts(
    moto_endpoint: str, aws_env: None
) -> None:
    with ThrottlingProxy(moto_endpoint, throttle_first=1000) as proxy:
        store = await _aws_store(proxy.url, max_attempts=2)
        with pytest.raises(SecretStoreUnavailable, match=r"kept throttling.*after 2 attempts"):
            await store.put(None, CREDENTIALS)
        await store.close()

    assert proxy.requests == 2


async def test_aws_unreachable_endpoint_is_unavailable_not_a_crash(aws_env: None) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = await _aws_store(f"http://127.0.0.1:{port}", max_attempts=1)

    with pytest.raises(
        SecretStoreUnavailable,
        match=f"cannot reach AWS Secrets Manager at http://127.0.0.1:{port} to read",
    ):
        await store.get("ucf/some-secret")
    await store.close()


async def test_aws_without_credentials_says_how_to_provide_them(
    moto_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    store = await _aws_store(moto_endpoint, max_attempts=1)

    with pytest.raises(SecretStoreUnavailable, match="no AWS credentials"):
        await store.put(None, CREDENTIALS)
    await store.close()


async def test_aws_without_a_region_says_how_to_set_one(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    with pytest.raises(SecretStoreConfigError, match=r"region=.*AWS_REGION"):
        await AwsSecretsManagerStore.connect()


# --------------------------------------------------------------------------- factory


async def test_default_secret_store_is_local_under_the_data_dir(tmp_path: Path) -> None:
    store = await open_secret_store(None, env={"UCF_DATA_DIR": str(tmp_path)})
    try:
        assert isinstance(store, LocalSecretStore)
        assert await store.get(await store.put(None, CREDENTIALS)) == CREDENTIALS
    finally:
        await store.close()

    assert _names(tmp_path) >= {"secrets.db", "master.key"}


@pytest.mark.parametrize("form", ["local:vault", "local:{abs}", "local://{abs}"])
async def test_local_url_can_place_secrets_in_their_own_directory(
    tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative forms are relative to the working directory
    url = form.format(abs=tmp_path / "vault")

    store = await open_secret_store(url, data_dir=tmp_path / "data", env={})
    await store.close()

    assert {"secrets.db", "master.key"} <= _names(tmp_path / "vault")
    assert not (tmp_path / "data").exists()


async def test_secret_store_url_is_read_from_the_environment(
    tmp_path: Path, moto_endpoint: str, aws_env: None
) -> None:
    url = f"aws-secretsmanager://?region=us-east-1&endpoint={moto_endpoint}&prefix=ucf-test/env/"

    store = await open_secret_store(data_dir=tmp_path, env={"UCF_SECRET_STORE": url})
    try:
        ref = await store.put(None, CREDENTIALS)
        assert ":secret:ucf-test/env/" in ref
        assert await store.get(ref) == CREDENTIALS
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("vault://x", "unknown secret store URL scheme 'vault:'"),
        ("aws-secretsmanager://?region=us-east-1&colour=red", "unknown parameter"),
        ("aws-secretsmanager://?region=us-east-1&max_attempts=many", "max_attempts"),
        ("aws-secretsmanager://eu-west-1", "query parameters"),
        ("local:?x=1", "host, query or fragment"),
    ],
)
async def test_unusable_secret_store_url_is_a_clear_error(
    tmp_path: Path, url: str, complaint: str
) -> None:
    with pytest.raises(SecretStoreConfigError, match=complaint):
        await open_secret_store(url, data_dir=tmp_path, env={})
