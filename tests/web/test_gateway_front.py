"""The webhook front: deliveries are answered before the app, nothing else changes.

``UcfApp.__call__`` hands ``POST|HEAD /api/webhooks/…`` to ``WebhookFront``
(raw ASGI) before Starlette's middleware stack, router and request objects
(``bench/webhook.py``: that machinery cost CPU on every delivery). These tests
hold what must stay the same as for every other route: the request id, the
access log line and the metrics by route template, JSON errors, the
last-resort 500, and everything that is not a delivery still reaching the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import MutableMapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.web.conftest import Web
from tests.web.support import CONNECTOR, PROJECT, sign, ticket_event, webhook_path
from tests.web.test_gateway import deliver, instance_of, metric
from ucf.service.webhooks import (
    Accepted,
    BadDelivery,
    Ignored,
    PayloadTooLarge,
    refuse_declared_length,
)
from ucf.stores.errors import StoreUnavailable
from ucf.web import front as front_module
from ucf.web.front import MAX_HEADER_NAMES, Headers, _Deadlines, match

ROUTE = "/api/webhooks/{connectorId}/{projectId}"
ULID_SHAPE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


async def test_a_delivery_never_enters_the_apps_middleware_stack(connected: Web) -> None:
    """The app's own stack is made to fail: only the front can still answer."""

    async def exploding(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the management app's middleware ran for a delivery")

    connected.app.middleware_stack = exploding
    signed = sign(ticket_event("T-1"), delivery="front-1")
    response = await deliver(connected, signed.body, signed.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "inserted": 1, "duplicates": 0}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))


async def test_deliveries_keep_request_ids_access_log_and_route_metrics(
    connected: Web, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucf.web.access")
    signed = sign(ticket_event("T-2"), delivery="front-2")
    response = await connected.anonymous.post(
        webhook_path(), content=signed.body, headers={**signed.headers, "X-Request-Id": "req-42"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"
    lines = [r for r in caplog.records if r.name == "ucf.web.access"]
    assert [r.getMessage() for r in lines] == [f"POST {ROUTE} 200"]
    fields = lines[0].ucf_fields  # type: ignore[attr-defined]
    assert set(fields) == {"method", "route", "status", "durationMs"}
    assert (fields["method"], fields["route"], fields["status"]) == ("POST", ROUTE, 200)

    text = (await connected.client.get("/metrics")).text
    assert (
        metric(text, f'ucf_http_requests_total{{method="POST",route="{ROUTE}",status="200"}}') == 1
    )
    assert metric(text, f'ucf_http_request_duration_seconds_count{{route="{ROUTE}"}}') == 1


async def test_an_insane_request_id_is_replaced_by_a_fresh_one(connected: Web) -> None:
    signed = sign(ticket_event("T-3"), delivery="front-3")
    response = await connected.anonymous.post(
        webhook_path(), content=signed.body, headers={**signed.headers, "X-Request-Id": "a b\x7f"}
    )
    assert response.status_code == 200
    assert ULID_SHAPE.fullmatch(response.headers["x-request-id"])


async def test_errors_are_the_apps_json_errors(connected: Web) -> None:
    signed = sign(ticket_event())
    missing = await deliver(connected, signed.body, signed.headers, path=webhook_path("nope"))
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "not_found",
        "message": "no webhook endpoint at this URL",
        "details": None,
    }
    assert missing.headers["x-request-id"]
    tampered = await deliver(connected, signed.body + b" ", signed.headers)
    assert tampered.status_code == 401
    assert tampered.headers["content-type"] == "application/json"
    assert "www-authenticate" not in tampered.headers  # not the API's bearer challenge
    assert set(tampered.json()["error"]) == {"code", "message", "details"}
    not_a_number = await deliver(connected, b"{}", {**signed.headers, "Content-Length": "2x"})
    assert not_a_number.status_code == 400
    assert not_a_number.json()["error"]["message"] == "Content-Length is not a number"


async def test_an_unexpected_error_is_a_json_500_with_the_request_id_and_no_traceback(
    connected: Web, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(connected.state.gateway, "receive", broken)
    signed = sign(ticket_event("T-4"), delivery="front-4")
    response = await connected.anonymous.post(
        webhook_path(), content=signed.body, headers={**signed.headers, "X-Request-Id": "req-500"}
    )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500"
    assert response.json() == {
        "error": {
            "code": "internal",
            "message": "internal error (request id req-500)",
            "details": None,
        }
    }
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if r.name == "ucf.web" and r.levelno == logging.ERROR]
    assert logged
    assert logged[0].exc_info is not None
    text = (await connected.client.get("/metrics")).text
    assert (
        metric(text, f'ucf_http_requests_total{{method="POST",route="{ROUTE}",status="500"}}') == 1
    )


async def test_a_store_failure_at_the_instances_own_url_logs_no_hook_id(
    connected: Web, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook id is the secret part of the instance's own URL: a 5xx logs why,
    naming the route template, never the path that holds it."""
    own = (await instance_of(connected, CONNECTOR))["webhookUrl"].removeprefix("http://ucf.test")
    hook_id = own.rsplit("/", 1)[1]

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the table is throttled")

    monkeypatch.setattr(connected.state.gateway, "receive", unavailable)
    caplog.set_level(logging.DEBUG)
    signed = sign(ticket_event("T-5"), delivery="front-5")
    response = await deliver(connected, signed.body, signed.headers, path=own)

    assert response.status_code == 503
    assert any("the table is throttled" in r.getMessage() for r in caplog.records)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("ucf")]
    assert not [line for line in ours if hook_id in line]


async def test_a_sender_gone_mid_body_is_counted_as_499_and_answered_nothing(
    connected: Web,
) -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"half": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert await _raw_delivery(connected, messages) == []
    text = (await connected.client.get("/metrics")).text
    assert (
        metric(text, f'ucf_http_requests_total{{method="POST",route="{ROUTE}",status="499"}}') == 1
    )


async def _raw_delivery(
    connected: Web, messages: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """A delivery whose body arrives as ``messages`` (chunked), sent straight to the app
    in raw ASGI; what the app sends back."""
    sent_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = _scope([(b"transfer-encoding", b"chunked"), *sent_headers])
    await connected.app(scope, receive, send)
    return sent


async def test_a_body_in_one_message_over_the_limit_is_413_and_in_pieces_is_read_whole(
    connected: Web,
) -> None:
    """Most bodies arrive in one message and are taken as they are: the limit still holds
    for them, and a body in several messages is still put together in order."""
    whole = [{"type": "http.request", "body": b"x" * (256 * 1024 + 1), "more_body": False}]
    sent = await _raw_delivery(connected, whole)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"
    signed = sign(ticket_event("T-7"), delivery="front-7")
    pieces = [signed.body[i : i + 7] for i in range(0, len(signed.body), 7)]
    messages = [{"type": "http.request", "body": p, "more_body": True} for p in pieces]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent = await _raw_delivery(connected, messages, signed.headers)
    assert sent[0]["status"] == 200, sent
    assert json.loads(sent[1]["body"])["inserted"] == 1


async def test_what_is_not_a_delivery_still_reaches_the_app(connected: Web) -> None:
    wrong_method = await connected.anonymous.get(webhook_path())
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    too_deep = await connected.anonymous.post(webhook_path() + "/hook/extra", content=b"{}")
    assert too_deep.status_code == 404
    assert too_deep.json()["error"]["code"] == "not_found"
    status = await connected.client.get(f"/api/projects/{PROJECT}/instances/{CONNECTOR}/status")
    assert status.status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("hook", ["", "/h00k"])
async def test_another_method_on_a_webhook_url_is_a_405_allowing_post_and_head(
    connected: Web, method: str, hook: str
) -> None:
    """The router answered a GET of a webhook URL with ``Allow: POST`` alone (the first
    route of the path), though HEAD is served too: Trello checks a callback URL with
    HEAD. The 405 names every method the URL answers, in the JSON error shape, with a
    request id and the route's metrics."""
    answer = await connected.anonymous.request(method, webhook_path() + hook)

    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST, HEAD"
    assert answer.json()["error"]["code"] == "method_not_allowed"
    assert ULID_SHAPE.fullmatch(answer.headers["x-request-id"])
    route = ROUTE + ("/{hookId}" if hook else "")
    text = (await connected.client.get("/metrics")).text
    line = f'ucf_http_requests_total{{method="{method}",route="{route}",status="405"}}'
    assert metric(text, line) == 1


async def test_the_gateway_routes_stay_documented_in_openapi(connected: Web) -> None:
    document = (await connected.client.get("/openapi.json")).json()
    assert set(document["paths"][ROUTE]) == {"post", "head"}
    assert set(document["paths"][ROUTE + "/{hookId}"]) == {"post", "head"}


@pytest.mark.parametrize(
    ("method", "path", "root_path", "expected"),
    [
        ("POST", "/api/webhooks/acme/p1", "", ("acme", "p1", None)),
        ("HEAD", "/api/webhooks/acme/p1/h00k", "", ("acme", "p1", "h00k")),
        ("POST", "/stage/api/webhooks/acme/p1", "/stage", ("acme", "p1", None)),
        ("GET", "/api/webhooks/acme/p1", "", None),
        ("POST", "/api/webhooks/acme", "", None),
        ("POST", "/api/webhooks/acme/p1/", "", None),
        ("POST", "/api/webhooks//p1", "", None),
        ("POST", "/api/webhooks/a/b/c/d", "", None),
        ("POST", "/api/connectors", "", None),
    ],
)
def test_the_front_matches_exactly_the_gateway_routes(
    method: str, path: str, root_path: str, expected: tuple[str, str, str | None] | None
) -> None:
    """The same paths and methods as the documented routes (Starlette's ``[^/]+``
    parameters, ``root_path`` taken off); anything else is the app's."""
    scope = {"method": method, "path": path, "raw_path": path.encode(), "root_path": root_path}
    found = match(scope)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.connector_id, found.project_id, found.hook_id) == expected


@pytest.mark.parametrize(
    ("path", "raw_path", "expected"),
    [
        # uvicorn: the decoded path, and the path as sent
        ("/api/webhooks/trello/team/x/h00k", b"/api/webhooks/trello/team%2Fx/h00k", "team/x"),
        ("/api/webhooks/trello/team/x", b"/api/webhooks/trello/team%2fx", "team/x"),
        ("/api/webhooks/trello/a%41/b/h00k", b"/api/webhooks/trello/a%2541%2Fb/h00k", "a%41/b"),
        ("/api/webhooks/trello/é q/h00k", b"/api/webhooks/trello/%C3%A9%20q/h00k", "é q"),
        ("/stage/api/webhooks/trello/t/x", b"/stage/api/webhooks/trello/t%2Fx", "t/x"),
        # API Gateway: the path decoded once, no raw path
        ("/api/webhooks/trello/team/x/h00k", None, "team/x"),
        ("/api/webhooks/trello/a/b/c/h00k", None, "a/b/c"),
        ("/api/webhooks/trello/a%41/h00k", None, "a%41"),
        ("/api/webhooks/trello/é q/h00k", None, "é q"),
        ("/api/webhooks/trello//x/h00k", None, "/x"),  # a project id that begins with /
        ("/api/webhooks/trello/x//h00k", None, "x/"),
        ("/api/webhooks/trello/a//b/h00k", None, "a//b"),
    ],
)
def test_a_project_id_holding_a_slash_or_a_percent_reaches_its_instance(
    path: str, raw_path: bytes | None, expected: str
) -> None:
    """A project id is any text: ``team/x`` is ``team%2Fx`` in the URLs ucf shows. The
    decoded path had one segment too many, and the delivery went to the app's 404; on
    API Gateway, whose path comes decoded, the same (and ``a%2541`` was decoded twice)."""
    root_path = "/stage" if path.startswith("/stage/") else ""
    scope: dict[str, Any] = {"method": "POST", "path": path, "root_path": root_path}
    if raw_path is not None:
        scope["raw_path"] = raw_path
    found = match(scope)
    assert found is not None
    assert found.connector_id == "trello"
    assert found.project_id == expected
    assert found.hook_id == ("h00k" if path.endswith("/h00k") else None)


@pytest.mark.parametrize(
    "path", ["/api/webhooks//a/b/h00k", "/api/webhooks/trello/a/b/", "/api/webhooks/trello//"]
)
def test_a_decoded_path_without_a_connector_or_a_hook_id_is_the_apps(path: str) -> None:
    """API Gateway's decoded path: the segments between the connector and the hook id are
    the project's, empty ones too; an empty connector or hook id names no instance."""
    assert match({"method": "POST", "path": path, "root_path": ""}) is None


def test_delivery_headers_are_case_insensitive_and_the_first_of_repeats_wins() -> None:
    headers = Headers([(b"x-hub-signature-256", b"sha256=1"), (b"x-hub-signature-256", b"x")])
    assert headers["X-Hub-Signature-256"] == "sha256=1"
    assert headers.get("X-HUB-SIGNATURE-256") == "sha256=1"
    assert "x-Hub-signature-256" in headers
    assert dict(headers) == {"x-hub-signature-256": "sha256=1"}
    assert json.dumps(dict(headers))


def test_header_names_are_folded_alike_whether_seen_before_or_not() -> None:
    raw = [(b"X-GitHub-Event", b"issues"), (b"x-github-event", b"push"), (b"\xc9tag", b"\xe9")]
    first, again = Headers(raw), Headers(raw)
    assert first.folded == again.folded == {"x-github-event": "issues", "\xe9tag": "\xe9"}


def test_the_names_remembered_stay_bounded_whatever_senders_make_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(front_module, "_HEADER_NAMES", {})
    for batch in range(4):
        raw = [(f"X-Made-Up-{batch}-{n}".encode(), b"v") for n in range(MAX_HEADER_NAMES)]
        headers = Headers(raw)
        assert headers.get(f"x-made-up-{batch}-7") == "v"
    assert len(front_module._HEADER_NAMES) == MAX_HEADER_NAMES


@pytest.mark.parametrize(
    "scope",
    [
        {"scheme": "http", "headers": [(b"host", b"ucf.test")], "server": ("10.0.0.1", 80)},
        {"scheme": "https", "headers": [(b"host", b"hooks.example.com:8443")], "root_path": ""},
        {"scheme": "https", "headers": [], "server": ("10.0.0.1", 443)},
        {"scheme": "http", "headers": [], "server": ("::1", 8080)},
        {"scheme": "http", "headers": [(b"host", b"bad host!")], "server": ("10.0.0.2", 81)},
        {"scheme": "https", "headers": [(b"host", b"x.example")], "root_path": "/stage"},
        {"scheme": "https", "headers": [(b"host", b"x.example")], "root_path": "/stage/"},
        {"scheme": "http", "headers": [(b"host", b"[::1]:8000")], "server": ("::1", 8000)},
        {"scheme": "http", "headers": [(b"host", b"[::zz]")], "server": ("10.0.0.3", 80)},
        {"scheme": "http", "headers": [(b"host", b"[v1.fe80::a]")], "server": None},
        {"scheme": "http", "headers": [(b"host", b"h.example:99999")], "server": ("h", 80)},
        {"scheme": "http", "headers": [(b"host", b"h.example:000080")], "server": ("h", 80)},
        {"scheme": "https", "headers": [(b"host", b"H.Example")], "server": ("::1", 443)},
        {"scheme": "http", "headers": [(b"host", b"")], "server": ("10.0.0.4", 80)},
        {"scheme": "http", "headers": [], "server": None, "root_path": "/a?b#c\\d"},
        {"scheme": "http", "headers": [], "server": None, "root_path": "//evil"},
        {
            "scheme": "http",
            "headers": [(b"host", b"h")],
            "app_root_path": "/app",
            "root_path": "/x",
        },
        {"scheme": "http", "headers": [(b"x-host", b"a"), (b"host", b"b"), (b"host", b"c")]},
    ],
)
def test_the_registered_url_base_is_starlettes_base_url(scope: dict[str, Any]) -> None:
    """Without a public URL, schemes that sign the URL (Trello) see the base the app's
    own ``request.base_url`` gives, host header rules included."""
    from starlette.requests import Request

    from ucf.web.front import _BaseUrl

    full = {"type": "http", "method": "POST", "path": "/api/webhooks/a/b", **scope}
    base_url = _BaseUrl()
    assert base_url(full) == str(Request(full).base_url).rstrip("/")
    assert base_url(full) == str(Request(full).base_url).rstrip("/")  # remembered


async def test_body_deadlines_tell_their_own_cancellation_from_any_other() -> None:
    """One timer keeps every delivery's body deadline; a task cancelled by anything else
    (a shutdown) stays cancelled and is not answered 408."""
    deadlines = _Deadlines()

    async def read(seconds: float) -> str:
        task = asyncio.current_task()
        assert task is not None
        deadlines.start(task, seconds)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            if deadlines.expired(task):
                assert task.cancelling() == 0
                return "timed out"
            raise
        finally:
            deadlines.stop(task)
        return "read"

    slow = asyncio.create_task(read(0.05))
    other = asyncio.create_task(read(30))
    assert await slow == "timed out"
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other
    quick = asyncio.create_task(asyncio.wait_for(read(30), 0.05))
    with pytest.raises(TimeoutError):  # an outer timeout is the caller's, not a 408
        await quick


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": webhook_path(),
        "raw_path": webhook_path().encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"ucf.test"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("ucf.test", 80),
    }


async def test_a_shutdown_at_the_body_deadline_is_not_swallowed_into_a_408(
    connected: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server cancelling a delivery (its shutdown) in the moment its body deadline
    passes: the delivery stays cancelled and answers nothing, as under
    ``asyncio.timeout``, instead of answering 408 and running on as if never cancelled."""
    monkeypatch.setattr("ucf.web.front.BODY_TIMEOUT_SECONDS", 0.05)
    never = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, Any]:
        return await never  # type: ignore[no-any-return]

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = _scope([(b"transfer-encoding", b"chunked")])
    task = asyncio.create_task(connected.app(scope, receive, send))
    # Polled one loop step at a time (no Event can say it): the step after the sweep
    # cancelled the delivery comes before the delivery's own.
    while task.cancelling() == 0:  # noqa: ASYNC110
        await asyncio.sleep(0)
    task.cancel()  # the shutdown, before the delivery runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent == []


async def test_a_body_that_arrives_as_its_deadline_cancels_it_leaves_the_delivery_uncancelled(
    connected: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose ``receive`` hands over the body it already has when the deadline's
    cancellation reaches it: the delivery is answered from that body, and runs on no
    longer cancelled (``asyncio.timeout`` took its cancellation back on the way out;
    a leftover one would turn the task's next timeout or task group into a cancellation)."""
    monkeypatch.setattr("ucf.web.front.BODY_TIMEOUT_SECONDS", 0.05)
    signed = sign(ticket_event("T-8"), delivery="front-8")
    waiting = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, Any]:
        with contextlib.suppress(asyncio.CancelledError):  # the body came in just then:
            await waiting  # handed over all the same
        return {"type": "http.request", "body": signed.body, "more_body": False}

    sent: list[MutableMapping[str, Any]] = []
    cancelling: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        task = asyncio.current_task()
        assert task is not None
        cancelling.append(task.cancelling())
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in signed.headers.items()]
    await asyncio.create_task(connected.app(_scope(headers), receive, send))
    assert sent[0]["status"] == 200, sent
    assert json.loads(sent[1]["body"])["inserted"] == 1
    assert cancelling == [0, 0]


@pytest.mark.parametrize("declared", [b"-1", b"+5", b"1_0", b"abc"])
async def test_a_content_length_that_is_not_digits_is_400_before_a_byte_is_read(
    connected: Web, declared: bytes
) -> None:
    """RFC 9110 §8.6: ``Content-Length = 1*DIGIT``. ``int()`` also takes a sign and
    underscores; a server in front (uvicorn) refuses those itself, a Lambda event's
    header reaches the front as it was sent."""
    read: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        read.append({})
        return {"type": "http.request", "body": b"{}", "more_body": False}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await connected.app(_scope([(b"content-length", declared)]), receive, send)
    assert sent[0]["status"] == 400, sent
    assert json.loads(sent[1]["body"])["error"]["code"] == "bad_request"
    assert read == []


async def test_a_content_length_of_thousands_of_digits_is_413_not_a_500(connected: Web) -> None:
    """Past 4300 digits ``int()`` refuses to convert (CPython's limit on int parsing): the
    length is still a number, only over the limit."""

    async def receive() -> dict[str, Any]:
        raise AssertionError("nothing is read for a body declared too large")

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await connected.app(_scope([(b"content-length", b"9" * 5000)]), receive, send)
    assert sent[0]["status"] == 413, sent


def test_each_outcome_is_answered_with_its_own_body_and_the_bodies_kept_are_bounded() -> None:
    """The front writes each distinct outcome's JSON once (keyed by its fields): outcomes
    that differ in any count, or ignored event types, never share a body, and event types
    a sender makes up cannot grow what is kept past its bound."""
    outcomes: list[Accepted | Ignored] = [
        Accepted(1, 1, 0),
        Accepted(1, 0, 1),
        Accepted(1, 1, 0, item_errors=1),
        Accepted(1, 1, 0, skipped=1),
        Ignored("issues.opened"),
        Ignored("push"),
    ]
    for _ in range(2):  # written, then found
        for outcome in outcomes:
            body, length = front_module._json_body(outcome)
            expected = json.dumps(outcome.to_json(), separators=(",", ":")).encode()
            assert (body, length) == (expected, str(len(expected)).encode())
    for n in range(front_module.MAX_BODIES * 2):
        front_module._json_body(Ignored(f"made.up.{n}"))
    assert len(front_module._BODIES) <= front_module.MAX_BODIES


def _declared_length_answer(limit: int, declared: str) -> str:
    """What refuse_declared_length answers: ``ok``, ``400`` or ``413``."""
    try:
        refuse_declared_length(limit, declared)
    except BadDelivery:
        return "400"
    except PayloadTooLarge:
        return "413"
    return "ok"


@settings(max_examples=400)
@given(
    declared=st.text(alphabet="0123456789 \t+-_٣x", max_size=24),
    limit=st.sampled_from([0, 5, 999, 1000, 262_144]),
)
def test_a_declared_length_is_judged_by_rfc_9110_digits_alone(declared: str, limit: int) -> None:
    """``1*DIGIT`` (ASCII digits, optional blanks around them) within ``limit`` passes, over
    it is 413, anything else 400: the usual header's fast path answers as the full check."""
    digits = declared.strip(" \t")
    if not (digits.isascii() and digits.isdigit()):
        expected = "400"
    else:
        expected = "413" if int(digits) > limit else "ok"
    assert _declared_length_answer(limit, declared) == expected
