"""The two stacks a service test runs on: SQLite with the local secret store, and
DynamoDB on dynalite with Secrets Manager on moto's server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stores.dynalite import dynamodb_url, unique_table_name
from tests.stores.moto_server import AWS_ENV_TO_CLEAR, DUMMY_AWS_ENV
from ucf.service.settings import Settings

STACKS = ["sqlite", "dynamodb"]
"""Parameters of a fixture that asks :func:`stack_settings` for its stack."""


def stack_settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, str | None]:
    """Settings of the stack ``request.param`` names (no scheduler, loopback allowed),
    and moto's URL on DynamoDB (None on SQLite).

    The session's servers are started first: a session fixture started inside the test
    would set its environment after the patch below, which then takes it away at
    teardown (every later DynamoDB test of the worker found no AWS credentials)."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    if request.param == "sqlite":
        return Settings.from_env(environ, data_dir=tmp_path), None
    moto = request.getfixturevalue("moto_endpoint")
    dynalite = request.getfixturevalue("dynalite_endpoint")
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    environ["UCF_SECRET_STORE"] = (
        f"aws-secretsmanager://?region=us-east-1&endpoint={moto}&prefix=ucf/{tmp_path.name}/"
    )
    store_url = dynamodb_url(dynalite, unique_table_name())
    return Settings.from_env(environ, data_dir=tmp_path, store_url=store_url), moto
