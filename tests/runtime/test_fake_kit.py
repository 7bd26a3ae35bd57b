"""The fake-upstream kit behaves like a real server, and its faults are exact.

Connector fakes written later rely on these guarantees: real sockets, HEAD,
Link and custom headers, chunked and truncated bodies, slow answers, faults
consumed exactly N times, and a faithful request log.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    fake = FakeServer()

    @fake.route("GET", "/repos/{owner}/{repo}/issues")
    def issues(request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            {"owner": request.path_params["owner"], "repo": request.path_params["repo"]},
            headers={"Link": f'<{request.url_for("/next")}>; rel="next"', "ETag": '"v1"'},
        )

    @fake.route(["POST", "PUT"], "/echo")
    async def echo(request: FakeRequest) -> dict[str, object]:
        return {"method": request.method, "json": request.json(), "tags": request.query.get("tag")}

    @fake.route("GET", "/stream")
    def stream(_: FakeRequest) -> FakeResponse:
        return FakeResponse(body=[b"one,", b"two,", b"three"], chunk_delay=0.01)

    @fake.route("GET", "/files/{rest:path}")
    def files(request: FakeRequest) -> FakeResponse:
        return FakeResponse.text(request.path_params["rest"])

    @fake.route("GET", "/boom")
    def boom(_: FakeRequest) -> FakeResponse:
        raise RuntimeError("handler bug")

    with fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh(server: FakeServer) -> None:
    server.reset()


def test_listens_on_an_ephemeral_loopback_port(server: FakeServer) -> None:
    assert server.base_url == f"http://127.0.0.1:{server.port}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass


def test_path_parameters_and_link_headers_reach_the_client(server: FakeServer) -> None:
    response = httpx.get(server.url("/repos/octo/hello/issues"))
    assert response.json() == {"owner": "octo", "repo": "hello"}
    assert response.links["next"]["url"] == server.url("/next")
    assert response.headers["etag"] == '"v1"'


def test_links_follow_the_host_name_the_client_used(server: FakeServer) -> None:
    response = httpx.get(f"http://localhost:{server.port}/repos/a/b/issues")
    assert response.links["next"]["url"] == f"http://localhost:{server.port}/next"


def test_head_is_answered_by_the_get_route_without_a_body(server: FakeServer) -> None:
    get = httpx.get(server.url("/repos/a/b/issues"))
    head = httpx.head(server.url("/repos/a/b/issues"))
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))


def test_async_handlers_get_query_multi_dict_and_json_body(server: FakeServer) -> None:
    response = httpx.put(server.url("/echo?tag=a&tag=b"), json={"x": 1})
    assert response.json() == {"method": "PUT", "json": {"x": 1}, "tags": ["a", "b"]}
    [recorded] = server.requests
    assert recorded.body == b'{"x":1}'
    assert recorded.headers["content-type"] == "application/json"
    assert recorded.param("tag") == "a"


def test_iterable_bodies_are_sent_chunked(server: FakeServer) -> None:
    with httpx.stream("GET", server.url("/stream")) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        chunks = list(response.iter_raw())
    assert b"".join(chunks) == b"one,two,three"


def test_path_parameter_can_span_slashes(server: FakeServer) -> None:
    assert httpx.get(server.url("/files/a/b/c.txt")).text == "a/b/c.txt"


def test_unknown_path_is_404_and_wrong_method_is_405(server: FakeServer) -> None:
    assert httpx.get(server.url("/nope")).status_code == 404
    assert httpx.delete(server.url("/echo")).status_code == 405


def test_handler_exception_becomes_500_and_is_recorded(server: FakeServer) -> None:
    assert httpx.get(server.url("/boom")).status_code == 500
    assert [type(e) for e in server.handler_errors] == [RuntimeError]


def test_fault_hits_exactly_the_next_n_matching_requests(server: FakeServer) -> None:
    server.inject(Fault.status(503), path="/repos/{owner}/{repo}/issues", times=2)
    statuses = [httpx.get(server.url("/files/x")).status_code]
    statuses += [httpx.get(server.url("/repos/a/b/issues")).status_code for _ in range(3)]
    assert statuses == [200, 503, 503, 200]


def test_faults_queue_in_injection_order_and_filter_by_method(server: FakeServer) -> None:
    server.inject(Fault.rate_limited(retry_after=3), method="PUT")
    server.inject(Fault.status(500))
    first = httpx.get(server.url("/repos/a/b/issues"))
    second = httpx.put(server.url("/echo"), json={})
    third = httpx.put(server.url("/echo"), json={})
    assert (first.status_code, second.status_code, third.status_code) == (500, 429, 200)
    assert second.headers["retry-after"] == "3"


def test_rate_limited_fault_carries_provider_headers_and_body(server: FakeServer) -> None:
    server.inject(
        Fault.rate_limited(
            retry_after=None,
            headers={"X-RateLimit-Remaining": "0"},
            body={"error": "API_TOKEN_LIMIT_EXCEEDED"},
        )
    )
    response = httpx.get(server.url("/repos/a/b/issues"))
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.json() == {"error": "API_TOKEN_LIMIT_EXCEEDED"}


@pytest.mark.serial  # asserts a time bound: `make test` runs it alone
def test_slow_fault_outlasts_a_read_timeout(server: FakeServer) -> None:
    server.inject(Fault.slow(30.0))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.url("/repos/a/b/issues"), timeout=httpx.Timeout(2.0, read=0.2))
    assert time.monotonic() - started < 15  # the client gave up, not the 30 s answer


def test_truncated_fault_declares_more_than_it_sends(server: FakeServer) -> None:
    server.inject(Fault.truncated())
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url("/repos/a/b/issues"))


def test_disconnect_fault_closes_without_answer(server: FakeServer) -> None:
    server.inject(Fault.disconnect())
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        httpx.get(server.url("/repos/a/b/issues"))


def test_malformed_json_fault_is_200_json_that_does_not_parse(server: FakeServer) -> None:
    server.inject(Fault.malformed_json())
    response = httpx.get(server.url("/repos/a/b/issues"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(ValueError, match="Unterminated string"):
        response.json()


def test_redirect_fault_points_where_told(server: FakeServer) -> None:
    server.inject(Fault.redirect("http://169.254.169.254/latest/meta-data", status=301))
    response = httpx.get(server.url("/repos/a/b/issues"))
    assert response.status_code == 301
    assert response.headers["location"] == "http://169.254.169.254/latest/meta-data"


def test_expired_token_fault_speaks_oauth(server: FakeServer) -> None:
    server.inject(Fault.expired_token())
    response = httpx.get(server.url("/repos/a/b/issues"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "invalid_token"


def test_keep_alive_connection_serves_many_requests(server: FakeServer) -> None:
    with httpx.Client() as client:
        for _ in range(5):
            assert client.get(server.url("/repos/a/b/issues")).status_code == 200
    assert len(server.requests) == 5


async def test_async_context_manager_starts_and_stops_a_second_server() -> None:
    async with FakeServer() as other:
        other.add_route("GET", "/ping", lambda _: {"pong": True})
        async with httpx.AsyncClient() as client:
            assert (await client.get(other.url("/ping"))).json() == {"pong": True}
        port = other.port
    with pytest.raises(RuntimeError, match="not running"):
        _ = other.port
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/ping")


@pytest.mark.serial  # asserts a time bound: `make test` runs it alone
def test_stop_does_not_wait_for_a_slow_response() -> None:
    fake = FakeServer()
    fake.add_route("GET", "/x", lambda _: FakeResponse(delay=30))
    fake.start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(fake.url("/x"), timeout=httpx.Timeout(2.0, read=0.1))
    finally:
        started = time.monotonic()
        fake.stop()
        stopping = time.monotonic() - started
    assert stopping < 2
