"""``ucf store init`` on DynamoDB as a user runs it: the real console script, a real dynalite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3

from tests.stores.dynalite import dynamodb_url, free_port, unique_table_name

UCF = str(Path(sys.executable).parent / "ucf")


def ucf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [UCF, *args], capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ)
    )


def test_store_init_creates_the_dynamodb_table_then_finds_nothing_to_do(
    dynalite_endpoint: str,
) -> None:
    table = unique_table_name()
    url = dynamodb_url(dynalite_endpoint, table)
    first = ucf("store", "init", "--store", url)
    assert first.returncode == 0, first.stderr
    assert f"created DynamoDB table {table} with index GSI2" in first.stdout
    assert "does not support TTL" in first.stdout, "dynalite has no TTL, and init says so"
    raw = boto3.client("dynamodb", endpoint_url=dynalite_endpoint, region_name="us-east-1")
    assert raw.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"

    second = ucf("store", "init", "--store", url)
    assert second.returncode == 0, second.stderr
    assert "already initialised, nothing to do" in second.stdout


def test_store_init_against_an_unreachable_endpoint_is_one_line_without_traceback(
    dynalite_endpoint: str,
) -> None:
    port = free_port()
    result = ucf("store", "init", "--store", dynamodb_url(f"http://127.0.0.1:{port}", "ucf-x"))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach DynamoDB at http://127.0.0.1:{port}")
    assert "check the endpoint and region in the store URL" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_store_init_with_a_malformed_dynamodb_url_is_a_usage_error() -> None:
    result = ucf("store", "init", "--store", "dynamodb://ucf?region=eu-west-1&colour=blue")
    assert result.returncode == 2
    assert "unknown parameter(s) colour" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
