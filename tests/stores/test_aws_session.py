"""One boto3 session per process and AWS environment, shared by every client ucf makes;
its data loader checks a service by name without listing every service."""

from __future__ import annotations

import os
from pathlib import Path

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
    assert type(session.get_component("data_loader")).__name__ == "ServiceLoader"
    assert table.meta.region_name == "eu-west-1"  # options still apply per client
    assert access_key(queue) == access_key(table) == "AKIAFIRST"

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASECOND")  # e.g. another test's account
    after = aws_client("sqs", region_name="us-east-1")

    assert aws_session._session is not session
    assert access_key(after) == "AKIASECOND"
    for client in (queue, table, after):
        client.close()


TYPES = ("service-2", "endpoint-rule-set-1", "paginators-1")


@pytest.mark.parametrize("type_name", TYPES)
def test_the_loader_knows_a_service_by_name_as_botocores_listing_does(type_name: str) -> None:
    from botocore.loaders import Loader

    from ucf.stores.aws_data import ServiceLoader

    listed = Loader().list_available_services(type_name)
    lazy = ServiceLoader().list_available_services(type_name)
    shipped = sorted({*Loader().list_available_services("service-2"), *listed})
    unknown = ["no-such-service", "", ".", "..", "dynamodb/2012-08-10", "DynamoDB"]

    for name in [*shipped, *unknown]:
        assert (name in lazy) == (name in listed), name
    assert list(lazy) == listed
    assert lazy == listed
    assert len(lazy) == len(listed)
    assert lazy[0] == listed[0]
    assert lazy[-2:] == listed[-2:]


def test_the_sessions_loader_searches_where_botocores_would(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import botocore.session
    from botocore.loaders import create_loader

    from ucf.stores.aws_data import ServiceLoader, data_loader

    monkeypatch.setenv("AWS_DATA_PATH", f"{tmp_path}/one{os.pathsep}~/two")
    session = botocore.session.Session()
    ours = data_loader(session)
    theirs = create_loader(session.get_config_variable("data_path"))

    assert isinstance(ours, ServiceLoader)
    assert ours.search_paths == theirs.search_paths
    assert ours.search_paths[:2] == [f"{tmp_path}/one", os.path.expanduser("~/two")]


def test_an_unknown_service_is_refused_as_botocore_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import botocore.session
    from botocore.exceptions import UnknownServiceError

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFIRST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(UnknownServiceError) as ours:
        aws_client("no-such-service", region_name="us-east-1")
    with pytest.raises(UnknownServiceError) as theirs:
        botocore.session.Session().create_client("no-such-service", region_name="us-east-1")

    assert str(ours.value) == str(theirs.value)
    assert "dynamodb" in str(ours.value)  # the known services, listed as botocore lists them
