"""The gateway's lane: deliveries skip the management app's routing, nothing else changes.

``GatewayLane`` answers ``POST|HEAD /api/webhooks/…`` before FastAPI's router
and dependency solving (``bench/webhook.py``: that machinery cost CPU on every
delivery). These tests hold what must stay the same: the request id, the
access log line and the metrics by route template, JSON errors, and everything
that is not a delivery still reaching the app.
"""

from __future__ import annotations

import logging

import pytest

from tests.web.conftest import Web
from tests.web.support import CONNECTOR, PROJECT, sign, ticket_event, webhook_path
from tests.web.test_gateway import deliver, metric
from ucf.web.state import current_state

ROUTE = "/api/webhooks/{connectorId}/{projectId}"


async def test_a_delivery_does_not_go_through_the_app_router_or_its_dependencies(
    connected: Web,
) -> None:
    """The routes' own dependency is made to fail: only the lane can still answer."""

    async def unreachable() -> None:
        raise AssertionError("the management app's dependency solving ran for a delivery")

    connected.app.dependency_overrides[current_state] = unreachable
    try:
        signed = sign(ticket_event("T-1"), delivery="lane-1")
        response = await deliver(connected, signed.body, signed.headers)
    finally:
        connected.app.dependency_overrides.clear()
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "inserted": 1, "duplicates": 0}


async def test_lane_deliveries_keep_request_ids_access_log_and_route_metrics(
    connected: Web, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucf.web.access")
    signed = sign(ticket_event("T-2"), delivery="lane-2")
    response = await connected.anonymous.post(
        webhook_path(), content=signed.body, headers={**signed.headers, "X-Request-Id": "req-42"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"
    lines = [r for r in caplog.records if r.name == "ucf.web.access"]
    assert [r.getMessage() for r in lines] == [f"POST {ROUTE} 200"]
    assert lines[0].ucf_fields["route"] == ROUTE  # type: ignore[attr-defined]

    text = (await connected.client.get("/metrics")).text
    assert (
        metric(text, f'ucf_http_requests_total{{method="POST",route="{ROUTE}",status="200"}}') == 1
    )


async def test_lane_errors_are_the_apps_json_errors(connected: Web) -> None:
    signed = sign(ticket_event())
    missing = await deliver(connected, signed.body, signed.headers, path=webhook_path("nope"))
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "not_found",
        "message": "no webhook endpoint at this URL",
        "details": None,
    }
    tampered = await deliver(connected, signed.body + b" ", signed.headers)
    assert tampered.status_code == 401
    assert tampered.headers["content-type"] == "application/json"
    assert "www-authenticate" not in tampered.headers  # not the API's bearer challenge
    assert set(tampered.json()["error"]) == {"code", "message", "details"}


async def test_what_is_not_a_delivery_still_reaches_the_app(connected: Web) -> None:
    wrong_method = await connected.anonymous.get(webhook_path())
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    too_deep = await connected.anonymous.post(webhook_path() + "/hook/extra", content=b"{}")
    assert too_deep.status_code == 404
    assert too_deep.json()["error"]["code"] == "not_found"
    status = await connected.client.get(f"/api/projects/{PROJECT}/instances/{CONNECTOR}/status")
    assert status.status_code == 200
