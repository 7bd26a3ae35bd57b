"""One boto3 session per process and AWS environment, shared by every client ucf makes."""

from __future__ import annotations

import pytest

from ucf.stores import aws_session
from ucf.stores.aws_session import aws_client


def access_key(client: object) -> str:
    """The access key the client signs with (botocore keeps it on the request signer)."""
    return client._request_signer._credentials.access_key  # type: ignore[attr-defined,no-any-return]


def test_clients_share_one_session_until_the_aws_environment_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFIRST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    queue = aws_client("sqs", region_name="us-east-1")
    session = aws_session._session
    table = aws_client("dynamodb", region_name="eu-west-1")

    assert aws_session._session is session  # the second client reused the session
    assert table.meta.region_name == "eu-west-1"  # options still apply per client
    assert access_key(queue) == access_key(table) == "AKIAFIRST"

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASECOND")  # e.g. another test's account
    after = aws_client("sqs", region_name="us-east-1")

    assert aws_session._session is not session
    assert access_key(after) == "AKIASECOND"
    for client in (queue, table, after):
        client.close()
