"""One boto3 session per process and AWS environment, shared by every client ucf makes;
its data loader checks a service by name without listing every service."""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import SSLError

from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer, TlsPair, make_tls_pair
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


SERVICES = ("dynamodb", "secretsmanager", "sqs", "events", "sts")


def test_the_data_files_read_as_plain_dicts_are_botocores_in_the_same_order() -> None:
    import json

    from botocore.loaders import JSONFileLoader, Loader

    from ucf.stores.aws_data import PlainJSONFileLoader

    data = Loader.BUILTIN_DATA_PATH
    paths = [
        os.path.join(data, name)
        for name in ("endpoints", "partitions", "sdk-default-configuration", "_retry")
    ]
    for service in SERVICES:
        version = Loader().determine_latest_version(service, "service-2")
        for kind in ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2"):
            paths.append(os.path.join(data, service, version, kind))
    ours, theirs = PlainJSONFileLoader(), JSONFileLoader()
    read = 0
    for path in paths:
        mine, botocores = ours.load_file(path), theirs.load_file(path)
        assert json.dumps(mine) == json.dumps(botocores), path  # same keys, same order
        assert (mine is None) == (botocores is None)
        read += mine is not None
    assert read >= 4 + 2 * len(SERVICES)
    assert type(ours.load_file(paths[0])) is dict


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"])
def test_clients_resolve_what_botocores_default_session_resolves(
    monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    import botocore.session

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFIRST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    plain = botocore.session.Session()
    for service in SERVICES:
        ours = aws_client(service, region_name=region)
        theirs = plain.create_client(service, region_name=region)
        assert ours.meta.endpoint_url == theirs.meta.endpoint_url, service
        assert ours.meta.partition == theirs.meta.partition, service
        assert ours.meta.service_model.operation_names == theirs.meta.service_model.operation_names
        assert ours._request_signer.signing_name == theirs._request_signer.signing_name
        ours.close()
        theirs.close()


@pytest.mark.parametrize(
    "text",
    [
        '{"max": 18446744073709551616, "b": [1, 2.5e400]}',  # beyond orjson's 64-bit integers
        '{"n": NaN, "i": -Infinity}',  # Python's json extensions
        '{"a": 1, "a": 2, "c": "\\u00e9"}',  # a repeated key: the last one wins, in place
    ],
)
def test_a_data_file_reads_as_json_loads_reads_it(tmp_path: Path, text: str) -> None:
    import json
    import math

    from ucf.stores.aws_data import PlainJSONFileLoader

    (tmp_path / "data.json").write_text(text)

    mine = PlainJSONFileLoader().load_file(str(tmp_path / "data"))

    expected = json.loads(text)
    assert list(mine) == list(expected)
    assert all(
        a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
        for a, b in zip(mine.values(), expected.values(), strict=True)
    )


# --------------------------------------------------------------------------- CA bundle


def _list_tables(request: FakeRequest) -> FakeResponse:
    """DynamoDB's ListTables answer, on a connection the server then closes."""
    return FakeResponse(
        status=200,
        headers={"Content-Type": "application/x-amz-json-1.0", "Connection": "close"},
        body=b'{"TableNames": []}',
    )


_TLS_PAIRS: dict[Path, TlsPair] = {}
"""The certificate each :func:`tls_dynamodb` bundle trusts (a proxy may serve it too)."""


@pytest.fixture
def tls_dynamodb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An HTTPS endpoint answering ListTables, and a CA bundle file trusting it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATLS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    tls = make_tls_pair(["127.0.0.1"])
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(ssl.DER_cert_to_PEM_cert(tls.client.get_ca_certs(binary_form=True)[0]))
    _TLS_PAIRS[bundle] = tls
    with FakeServer(ssl_context=tls.server) as server:
        server.add_route("POST", "/", _list_tables)
        yield server.base_url, bundle
    del _TLS_PAIRS[bundle]


def test_a_client_loads_its_ca_bundle_once_not_at_every_new_connection(
    tls_dynamodb: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib3 loads the bundle botocore names into the pool's SSL context at every
    HTTPS connection (16 ms of CPU each for certifi's): loaded once, the next
    connections (here one a request: the server closes each) load nothing."""
    url, bundle = tls_dynamodb
    loads = _counted_loads(monkeypatch)
    client = aws_client("dynamodb", region_name="us-east-1", endpoint_url=url, verify=str(bundle))
    for _ in range(4):
        assert client.list_tables()["TableNames"] == []
    client.close()
    assert loads == [str(bundle)]


def test_a_client_loading_its_bundle_once_still_refuses_a_certificate_it_does_not_trust(
    tls_dynamodb: tuple[str, Path], tmp_path: Path
) -> None:
    """The bundle is loaded into the pool's context, which still verifies every
    connection: a bundle without the server's CA fails the first request and the next."""
    url, _ = tls_dynamodb
    other = make_tls_pair(["127.0.0.1"])
    stranger = tmp_path / "stranger.pem"
    stranger.write_text(ssl.DER_cert_to_PEM_cert(other.client.get_ca_certs(binary_form=True)[0]))
    client = aws_client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=url,
        verify=str(stranger),
        config=Config(retries={"max_attempts": 1}),
    )
    for _ in range(2):
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            client.list_tables()
    client.close()


class _TlsConnectProxy:
    """An HTTPS proxy on loopback (TLS to the proxy, then ``CONNECT`` tunnels), as a
    corporate proxy is: what AWS_CA_BUNDLE is most often set for."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.tunnels: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._tunnel, args=(raw,), daemon=True).start()

    def _tunnel(self, raw: socket.socket) -> None:
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()  # the client did not trust the proxy's certificate
            return
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            target = head.split(b" ", 2)[1].decode()
            self.tunnels.append(target)
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                sockets = [client, upstream]
                while True:
                    readable, _, _ = select.select(sockets, [], [], 5)
                    if not readable:
                        return
                    for source in readable:
                        data = source.recv(65536)
                        if not data:
                            return
                        (upstream if source is client else client).sendall(data)

    def close(self) -> None:
        self._listener.close()


def test_a_client_behind_an_https_proxy_trusts_it_with_its_ca_bundle(
    tls_dynamodb: tuple[str, Path],
) -> None:
    """urllib3 verifies an HTTPS proxy (no ``proxy_ca_bundle`` configured) against the
    pool's ``ca_certs``: the bundle botocore names. Given no path once the bundle is in
    the SSL context, it fell back to the system's certificates, so a proxy trusted
    through AWS_CA_BUNDLE (a corporate proxy's private CA) failed every request."""
    url, bundle = tls_dynamodb
    tls = _TLS_PAIRS[bundle]
    proxy = _TlsConnectProxy(tls.server)
    client = aws_client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=url,
        verify=str(bundle),
        config=Config(
            proxies={"https": f"https://127.0.0.1:{proxy.port}"},
            retries={"max_attempts": 1},
        ),
    )
    try:
        for _ in range(2):
            assert client.list_tables()["TableNames"] == []
    finally:
        client.close()
        proxy.close()
    assert proxy.tunnels == [url.removeprefix("https://")] * 2


def test_threads_making_a_clients_first_connections_together_all_verify_and_succeed(
    tls_dynamodb: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold poll worker opens several connections side by side: whichever thread loads
    the bundle, none connects with the path taken away before the context holds it (an
    unverifiable handshake), and the bundle is loaded far fewer times than connections."""
    url, bundle = tls_dynamodb
    loads = _counted_loads(monkeypatch)
    client = aws_client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=url,
        verify=str(bundle),
        config=Config(retries={"max_attempts": 1}, max_pool_connections=8),
    )
    start = threading.Barrier(8)

    def first_requests() -> list[Any]:
        start.wait()
        return [client.list_tables()["TableNames"] for _ in range(3)]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: first_requests(), range(8)))
    client.close()
    assert answers == [[[], [], []]] * 8
    assert set(map(str, loads)) == {str(bundle)}
    assert len(loads) < 24


def test_a_client_loading_its_bundle_once_trusts_exactly_what_botocores_own_client_trusts(
    tls_dynamodb: tuple[str, Path],
) -> None:
    """The seam (botocore's private ``_setup_ssl_cert``, urllib3 reading the pool's
    ``ca_certs``): should an upgrade move it, the context must not end up trusting more
    (the system's certificates, loaded when urllib3 is given no path) or less than the
    context botocore's own client builds from the same bundle."""
    import botocore.session

    url, bundle = tls_dynamodb
    ours = aws_client("dynamodb", region_name="us-east-1", endpoint_url=url, verify=str(bundle))
    theirs = botocore.session.Session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=url, verify=str(bundle)
    )
    contexts = []
    for client in (ours, theirs):
        for _ in range(2):
            assert client.list_tables()["TableNames"] == []
        http = client._endpoint.http_session
        contexts.append(http._manager.connection_pool_kw["ssl_context"])
        client.close()

    assert type(ours._endpoint.http_session).__name__ == "CaLoadedOnce"
    assert type(theirs._endpoint.http_session).__name__ == "URLLib3Session"
    assert contexts[0].cert_store_stats() == contexts[1].cert_store_stats()
    assert contexts[0].get_ca_certs() == contexts[1].get_ca_certs()
    assert contexts[0].cert_store_stats()["x509_ca"] == 1


def _counted_loads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What each ``load_verify_locations`` call from now on loads, in order (each still loads)."""
    loads: list[object] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args[0] if args else kwargs)
        load(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    return loads
