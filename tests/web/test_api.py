"""The management API through the real app: every route, its errors, and what it never says."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx

from tests.web.conftest import Web
from tests.web.support import (
    ACME,
    API_KEY,
    CONNECTOR,
    PROJECT,
    TICKETS,
    TOKEN,
    WEBHOOK_SECRET,
    alter_secret,
    instance_body,
)
from ucf.fakes.kit import FakeServer
from ucf.runtime.redaction import mask
from ucf.stores.models import InstanceChanges
from ucf.web.throttle import FREE_FAILURES, FailedAuthThrottle

INSTANCE = f"/api/projects/{PROJECT}/instances/{CONNECTOR}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object, after checking the response has exactly the documented shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = body["error"]
    return error


# --------------------------------------------------------------------------- auth


async def test_management_api_refuses_a_missing_or_wrong_token_with_401(web: Web) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        response = await web.anonymous.get("/api/connectors", headers=headers)
        assert response.status_code == 401
        assert error_of(response)["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    prefix = await web.anonymous.get(
        "/api/connectors", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}
    )
    assert prefix.status_code == 401


async def test_health_needs_no_token(web: Web) -> None:
    health = await web.anonymous.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    spec = (await web.client.get("/openapi.json")).json()
    assert "/api/webhooks/{connectorId}/{projectId}" in spec["paths"]
    assert "/api/projects/{projectId}/signals/{signalId}" in spec["paths"]


async def test_a_body_from_a_stranger_is_refused_for_its_token_before_it_is_parsed(
    web: Web,
) -> None:
    """A broken or oversized body without a token says nothing about the route: only 401."""
    for body in (b"{not json", b'{"id": 1}', b"[" * 5000):
        response = await web.anonymous.post(
            "/api/connectors", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 401, response.text
        assert error_of(response)["code"] == "unauthorized"
    patched = await web.anonymous.patch(INSTANCE, json={"enabled": "not a bool"})
    assert patched.status_code == 401


async def test_metrics_and_api_docs_are_private_unless_the_server_makes_them_public(
    web: Web, tmp_path: Any
) -> None:
    from tests.web.conftest import open_web, web_settings

    for path in ("/metrics", "/docs", "/openapi.json"):
        refused = await web.anonymous.get(path)
        assert refused.status_code == 401, path
        assert error_of(refused)["code"] == "unauthorized"
        assert (await web.client.get(path)).status_code == 200, path
    settings = web_settings(tmp_path / "public", UCF_PUBLIC_INTROSPECTION="1")
    async with open_web(settings) as public:
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert (await public.anonymous.get(path)).status_code == 200, path


async def test_wrong_tokens_from_one_address_are_slowed_down_exponentially(web: Web) -> None:
    clock = FakeClock()
    web.state.auth_throttle = FailedAuthThrottle(monotonic=clock)
    wrong = {"Authorization": "Bearer " + "x" * 40}
    for _ in range(FREE_FAILURES + 1):
        assert (await web.anonymous.get("/api/connectors", headers=wrong)).status_code == 401
    closed = await web.client.get("/api/connectors")  # even the right token: no oracle
    assert closed.status_code == 429
    assert error_of(closed)["code"] == "too_many_attempts"
    assert closed.headers["retry-after"] == "1"
    clock.now += 1.5
    assert (await web.anonymous.get("/api/connectors", headers=wrong)).status_code == 401
    again = await web.client.get("/api/connectors")
    assert again.headers["retry-after"] == "2"  # the wait doubles with each failure
    clock.now += 2.5
    assert (await web.client.get("/api/connectors")).status_code == 200  # and resets
    for _ in range(FREE_FAILURES):
        assert (await web.anonymous.get("/api/connectors", headers=wrong)).status_code == 401
    no_token = await web.anonymous.get("/api/connectors")
    assert no_token.status_code == 401  # asking without a token guesses nothing
    assert (await web.client.get("/api/connectors")).status_code == 200


# --------------------------------------------------------------------------- connectors


async def test_catalogue_lists_builtin_connectors_filtered_by_category_and_name(web: Web) -> None:
    everything = (await web.client.get("/api/connectors")).json()["items"]
    ids = {c["id"] for c in everything}
    assert {"github-issues", "github-prs"} <= ids
    assert all(c["builtIn"] for c in everything)
    code = (await web.client.get("/api/connectors", params={"category": "Code & DevOps"})).json()
    assert code["items"]
    assert {c["category"] for c in code["items"]} == {"Code & DevOps"}
    found = (await web.client.get("/api/connectors", params={"q": "GITHUB"})).json()["items"]
    assert {c["id"] for c in found} >= {"github-issues", "github-prs"}
    assert len(found) < len(everything)
    nothing = await web.client.get("/api/connectors", params={"q": "no-such-tool-anywhere"})
    assert nothing.json() == {"items": []}


async def test_registering_a_broken_descriptor_lists_every_problem_with_its_path(
    web: Web,
) -> None:
    broken = copy.deepcopy(ACME)
    broken["id"] = "Not An Id"
    del broken["healthCheck"]
    broken["fieldMapping"]["idPath"] = "$[[["
    response = await web.client.post("/api/connectors", json=broken)
    assert response.status_code == 422
    problems = error_of(response)["details"]
    paths = {p["path"] for p in problems}
    assert "id" in paths
    assert "healthCheck" in paths
    assert all(p["message"] for p in problems)


async def test_custom_connector_round_trip_update_and_delete(web: Web) -> None:
    created = await web.client.post("/api/connectors", json=ACME)
    assert created.status_code == 201
    assert created.json()["builtIn"] is False
    again = await web.client.post("/api/connectors", json=ACME)
    assert again.status_code == 409
    assert error_of(again)["code"] == "conflict"

    changed = {**ACME, "name": "Acme Helpdesk", "version": "1.1.0"}
    updated = await web.client.put(f"/api/connectors/{CONNECTOR}", json=changed)
    assert updated.status_code == 200
    fetched = (await web.client.get(f"/api/connectors/{CONNECTOR}")).json()
    assert fetched["name"] == "Acme Helpdesk"

    wrong_id = await web.client.put("/api/connectors/other-id", json=changed)
    assert wrong_id.status_code == 422

    deleted = await web.client.delete(f"/api/connectors/{CONNECTOR}")
    assert deleted.status_code == 204
    gone = await web.client.get(f"/api/connectors/{CONNECTOR}")
    assert gone.status_code == 404
    assert error_of(gone)["code"] == "not_found"


async def test_an_edit_raises_the_version_and_the_previous_ones_stay_readable(web: Web) -> None:
    """A PUT that changed the descriptor but not its ``version`` stored a second
    descriptor under the same version and kept nothing of the first. The version is
    raised for the caller (the answer says so), each replaced descriptor stays readable,
    and restoring one is a new edit whose version rises again."""
    base = f"/api/connectors/{CONNECTOR}"
    await web.client.post("/api/connectors", json=ACME)
    renamed = {**ACME, "name": "Acme Helpdesk"}
    updated = (await web.client.put(base, json=renamed)).json()
    assert (updated["version"], updated["versionRaised"]) == ("1.0.1", True)
    same = (await web.client.put(base, json=renamed)).json()  # nothing changed: no version
    assert (same["version"], same["versionRaised"], same["updatedAt"]) == (
        "1.0.1",
        False,
        updated["updatedAt"],
    )
    chosen = (await web.client.put(base, json={**renamed, "version": "2.0.0"})).json()
    assert (chosen["version"], chosen["versionRaised"]) == ("2.0.0", False)

    history = (await web.client.get(f"{base}/versions")).json()
    assert history["current"] == {"version": "2.0.0", "savedAt": chosen["updatedAt"]}
    assert [v["version"] for v in history["items"]] == ["1.0.1", "1.0.0"]
    assert history["items"][0]["replacedAt"] == chosen["updatedAt"]
    first = (await web.client.get(f"{base}/versions/1.0.0")).json()
    assert first["descriptor"]["name"] == ACME["name"]
    assert (await web.client.get(f"{base}/versions/9.9.9")).status_code == 404

    restored = await web.client.post(f"{base}/versions/1.0.0/restore")
    assert restored.status_code == 200, restored.text
    assert (restored.json()["version"], restored.json()["name"]) == ("2.0.1", ACME["name"])
    history = (await web.client.get(f"{base}/versions")).json()
    assert [v["version"] for v in history["items"]] == ["2.0.0", "1.0.1", "1.0.0"]


async def test_a_stale_put_with_if_match_is_refused_412_not_saved_over_an_edit_made_since(
    web: Web,
) -> None:
    """A script that GETs a connector, waits and PUTs its copy back overwrote an edit saved
    meanwhile without a word. The GET answers an ETag; a PUT, restore or delete sent with
    ``If-Match`` naming an older one is a 412 naming the version there now, and changes
    nothing. A current tag (strongly compared, in a list), ``*`` or no header writes."""
    base = f"/api/connectors/{CONNECTOR}"
    await web.client.post("/api/connectors", json=ACME)
    read = await web.client.get(base)
    etag = read.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert (await web.client.get(base)).headers["ETag"] == etag  # the same version, same tag

    theirs = await web.client.put(base, json={**ACME, "name": "Their edit"})
    assert theirs.status_code == 200
    assert theirs.headers["ETag"] not in {etag, None}
    stale = await web.client.put(base, json={**ACME, "name": "Mine"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    refused = error_of(stale)
    assert refused["code"] == "precondition_failed"
    assert "version 1.0.1" in refused["message"]
    assert refused["details"] == {"version": "1.0.1", "etag": theirs.headers["ETag"]}
    for write in (
        web.client.post(f"{base}/versions/1.0.0/restore", headers={"If-Match": etag}),
        web.client.delete(base, headers={"If-Match": etag}),
    ):
        assert (await write).status_code == 412
    weak = await web.client.put(
        base, json=ACME, headers={"If-Match": f"W/{theirs.headers['ETag']}"}
    )
    assert weak.status_code == 412  # strong comparison: a weak tag never matches
    assert (await web.client.get(base)).json()["name"] == "Their edit"

    current = theirs.headers["ETag"]
    mine = await web.client.put(
        base, json={**ACME, "name": "Mine"}, headers={"If-Match": f'"other", {current}'}
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["name"] == "Mine"
    restored = await web.client.post(
        f"{base}/versions/1.0.0/restore", headers={"If-Match": mine.headers["ETag"]}
    )
    assert restored.status_code == 200, restored.text
    anyone = await web.client.put(base, json={**ACME, "name": "Any"}, headers={"If-Match": "*"})
    assert anyone.status_code == 200
    assert (await web.client.put(base, json={**ACME, "name": "None"})).status_code == 200
    deleted = await web.client.delete(
        base, headers={"If-Match": (await web.client.get(base)).headers["ETag"]}
    )
    assert deleted.status_code == 204


async def test_an_earlier_version_whose_name_holds_a_slash_is_readable_and_restorable(
    web: Web,
) -> None:
    """A ``version`` is any string (``2024/05`` too). Kept in the history, it was named
    in the URL, where its ``/`` (sent ``%2F``, decoded before routing) split the path:
    404, so that version could never be read or restored."""
    base = f"/api/connectors/{CONNECTOR}"
    await web.client.post("/api/connectors", json={**ACME, "version": "2024/05"})
    await web.client.put(base, json={**ACME, "version": "2024/06", "name": "Acme Helpdesk"})
    history = (await web.client.get(f"{base}/versions")).json()
    assert [v["version"] for v in history["items"]] == ["2024/05"]
    earlier = await web.client.get(f"{base}/versions/2024%2F05")
    assert earlier.status_code == 200, earlier.text
    assert earlier.json()["descriptor"]["name"] == ACME["name"]
    restored = await web.client.post(f"{base}/versions/2024%2F05/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["name"] == ACME["name"]


async def test_replacing_a_descriptor_names_the_instances_it_no_longer_fits(
    web: Web, acme: FakeServer
) -> None:
    """As the editor's Save does: a new required setting makes the connected instance fail
    from its next poll, and the PUT's answer said nothing of it."""
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    edited: dict[str, Any] = copy.deepcopy(ACME)
    edited["configFields"].append({"key": "region", "label": "Region"})
    updated = await web.client.put(f"/api/connectors/{CONNECTOR}", json=edited)
    assert updated.status_code == 200
    assert updated.json()["unfitInstances"] == [
        {"projectId": PROJECT, "problems": ["config.region: 'Region' is required"]}
    ]
    edited["configFields"].pop()
    fitting = await web.client.put(f"/api/connectors/{CONNECTOR}", json=edited)
    assert fitting.json()["unfitInstances"] == []


async def test_replacing_a_descriptor_names_the_instances_it_leaves_unable_to_sign_in(
    web: Web, acme: FakeServer
) -> None:
    """A credential the edit makes required fails the instance from its next poll as a
    new required setting does, and its answer says the instance cannot sign in; the
    PUT's unfitInstances named settings alone, so it listed none."""
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    edited: dict[str, Any] = copy.deepcopy(ACME)
    edited["auth"]["config"]["credentialFields"].append(
        {"key": "accountId", "label": "Account id", "type": "text", "required": True}
    )
    updated = await web.client.put(f"/api/connectors/{CONNECTOR}", json=edited)
    assert updated.status_code == 200
    assert updated.json()["unfitInstances"] == [
        {"projectId": PROJECT, "problems": ["credentials.accountId: 'Account id' is required"]}
    ]


async def test_edits_in_quick_succession_are_each_served_not_a_stale_compiled_copy(
    web: Web,
) -> None:
    """The compiled connector is cached per stored ``updatedAt``: each edit must read back
    as itself at once. Stamps are microseconds in both stores (``text_time``), and an edit
    is a store write, so two edits never share one (a guard: it held in review)."""
    await web.client.post("/api/connectors", json=ACME)
    stamps = set()
    for n in range(30):
        edited = {**ACME, "name": f"Acme {n}"}
        edited["fieldMapping"] = {**ACME["fieldMapping"], "summaryTemplate": f"#{n} {{{{title}}}}"}
        updated = await web.client.put(f"/api/connectors/{CONNECTOR}", json=edited)
        assert updated.json()["name"] == f"Acme {n}"
        fetched = (await web.client.get(f"/api/connectors/{CONNECTOR}")).json()
        assert (fetched["name"], fetched["updatedAt"]) == (f"Acme {n}", updated.json()["updatedAt"])
        connector = await web.state.context.connectors.get(CONNECTOR)
        assert connector.view.field_mapping is not None
        assert connector.view.field_mapping.summary_template == f"#{n} {{{{title}}}}"
        stamps.add(fetched["updatedAt"])
    assert len(stamps) == 30


async def test_builtin_connectors_cannot_be_deleted_and_used_ones_are_kept(
    connected: Web,
) -> None:
    builtin = await connected.client.delete("/api/connectors/github-issues")
    assert builtin.status_code == 403
    in_use = await connected.client.delete(f"/api/connectors/{CONNECTOR}")
    assert in_use.status_code == 409
    assert PROJECT in error_of(in_use)["message"]


async def test_a_native_descriptor_no_installed_package_provides_is_refused_at_its_kind(
    web: Web,
) -> None:
    """A ``kind: native`` connector is code in a package: registered under an id no
    installed package provides, it would list in the catalogue and never poll. The CLI
    and the editor warn on a copy; the API refuses it (and an update to one) with a 422
    that says why at ``kind``, while the shipped native connectors stay editable."""
    jira = (await web.client.get("/api/connectors/jira")).json()
    descriptor = {k: v for k, v in jira.items() if k not in {"builtIn", "createdAt", "updatedAt"}}
    copied = {**descriptor, "id": "jira-copy", "name": "Jira copy"}
    refused = await web.client.post("/api/connectors", json=copied)
    assert refused.status_code == 422, refused.text
    error = error_of(refused)
    assert error["code"] == "invalid"
    [problem] = error["details"]
    assert problem["path"] == "kind"
    assert "'jira-copy'" in problem["message"]
    assert "ucf.native_sources" in problem["message"]
    assert "generic" in problem["hint"]
    assert (await web.client.get("/api/connectors/jira-copy")).status_code == 404

    made_native = {**ACME, "kind": "native"}
    made_native.pop("ingestion", None)
    await web.client.post("/api/connectors", json=ACME)
    turned = await web.client.put(f"/api/connectors/{CONNECTOR}", json=made_native)
    assert turned.status_code == 422, turned.text
    assert [p["path"] for p in error_of(turned)["details"]] == ["kind"]

    renamed = await web.client.put("/api/connectors/jira", json={**descriptor, "name": "Our Jira"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["kind"] == "native"


async def test_a_descriptor_body_that_is_not_an_object_or_not_json_is_422(web: Web) -> None:
    for content in (b"[1, 2]", b"{not json", b""):
        response = await web.client.post(
            "/api/connectors", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, content
        assert error_of(response)["code"] == "invalid"


# --------------------------------------------------------------------------- instances


async def test_connecting_stores_credentials_and_shows_them_masked_only(
    web: Web, acme: FakeServer
) -> None:
    await web.client.post("/api/connectors", json=ACME)
    response = await web.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert response.status_code == 201
    body = response.json()
    assert body["credentials"] == {
        "apiKey": "••••" + API_KEY[-4:],
        "webhookSecret": "••••" + WEBHOOK_SECRET[-4:],
    }
    shared = f"http://ucf.test/api/webhooks/{CONNECTOR}/{PROJECT}"
    assert re.fullmatch(re.escape(shared) + r"/[A-Za-z0-9_-]{32}", body["webhookUrl"])
    assert body["sharedWebhookUrl"] == shared
    assert body["enabled"] is True
    for route in (INSTANCE, f"/api/projects/{PROJECT}/instances"):
        text = (await web.client.get(route)).text
        assert API_KEY not in text
        assert WEBHOOK_SECRET not in text


async def test_connecting_with_bad_settings_lists_every_problem_and_echoes_no_value(
    web: Web,
) -> None:
    await web.client.post("/api/connectors", json=ACME)
    response = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={
            "connectorId": CONNECTOR,
            "credentials": {"apiKey": 12345, "nope": "secret-value-xyz"},
            "config": {"baseUrl": "ftp://x", "extra": "1"},
        },
    )
    assert response.status_code == 422
    paths = {p["path"] for p in error_of(response)["details"]}
    assert paths == {"config.baseUrl", "config.extra", "credentials.apiKey", "credentials.nope"}
    assert "secret-value-xyz" not in response.text
    assert "12345" not in response.text


async def test_a_create_refusal_names_the_form_at_fault_as_the_consent_start_does(
    web: Web,
) -> None:
    """A missing credential alone was refused as "the settings are not valid", while
    the consent's start says "the credentials are not valid" for the same problem."""
    await web.client.post("/api/connectors", json=ACME)
    url = f"/api/projects/{PROJECT}/instances"
    good_config = {"baseUrl": "https://api.example.com"}
    messages = []
    for config, credentials in (
        (good_config, {}),
        ({"baseUrl": "ftp://x"}, {"apiKey": "k-123456"}),
        ({"baseUrl": "ftp://x"}, {}),
    ):
        body = {"connectorId": CONNECTOR, "config": config, "credentials": credentials}
        response = await web.client.post(url, json=body)
        assert response.status_code == 422, response.text
        messages.append(error_of(response)["message"])
    assert messages == [
        "the credentials are not valid",
        "the configuration is not valid",
        "the settings and the credentials are not valid",
    ]


async def test_a_value_that_is_not_a_string_is_one_problem_not_also_a_missing_one(
    web: Web,
) -> None:
    """A required setting or credential sent as a list was listed twice at its path:
    "must be a string", then "is required" (refused, it counted as absent)."""
    await web.client.post("/api/connectors", json=ACME)
    body = {
        "connectorId": CONNECTOR,
        "config": {"baseUrl": ["https://api.example.com"]},
        "credentials": {"apiKey": ["k-123456"]},
    }
    response = await web.client.post(f"/api/projects/{PROJECT}/instances", json=body)
    assert response.status_code == 422, response.text
    assert [(p["path"], p["message"]) for p in error_of(response)["details"]] == [
        ("config.baseUrl", "must be a string"),
        ("credentials.apiKey", "must be a string"),
    ]


async def test_a_base_url_the_poll_would_refuse_is_refused_when_saved(
    connected: Web, acme: FakeServer
) -> None:
    """Settings checked only for an ``http(s)://`` prefix: ``http://`` or a URL with a NUL
    was saved, and every poll then failed with a config error."""
    await connected.client.delete(INSTANCE)
    for base in ("http://", "http://acme.test/\x00", "https://acme.test/a\nb"):
        body = instance_body(acme.base_url)
        body["config"]["baseUrl"] = base
        created = await connected.client.post(f"/api/projects/{PROJECT}/instances", json=body)
        assert created.status_code == 422, (base, created.text)
        assert [(p["path"], p["message"]) for p in error_of(created)["details"]] == [
            ("config.baseUrl", "must be an http(s) URL")
        ]
    made = await connected.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert made.status_code == 201
    patched = await connected.client.patch(INSTANCE, json={"config": {"baseUrl": "https://"}})
    assert patched.status_code == 422


async def test_switching_an_instance_to_a_sign_in_it_lacks_is_refused_as_creating_it_is(
    web: Web,
) -> None:
    """Creating an instance that names GitHub's OAuth alternative with no token is refused
    (nothing could sign in with it); a PATCH naming it on a token instance was taken, and
    switched the instance to a sign-in that could never work. A switch that brings what
    its method needs is taken. The method it leaves has its credentials deleted (they
    stayed stored for good): a switch back must bring them again, and one that does not
    is refused, leaving the instance as it was."""
    instances = f"/api/projects/{PROJECT}/instances"
    config = {"baseUrl": "https://api.github.com", "owner": "octo", "repo": "hello"}
    body = {"connectorId": "github-issues", "credentials": {"token": "ghp_0123456789abcdef"}}
    made = await web.client.post(instances, json={**body, "config": config})
    assert made.status_code == 201, made.text
    instance = f"{instances}/github-issues"
    named = await web.client.patch(instance, json={"credentials": {"authMethod": "oauth2"}})
    assert named.status_code == 422, named.text
    paths = [d["path"] for d in error_of(named)["details"]]
    assert paths == ["credentials.clientId", "credentials.clientSecret"]
    assert (await web.client.get(instance)).json()["authMethod"] == "pat"
    app = {"clientId": "app-id", "clientSecret": "app-secret"}
    named = await web.client.patch(instance, json={"credentials": {"authMethod": "oauth2", **app}})
    assert named.status_code == 422, named.text
    (problem,) = error_of(named)["details"]
    assert "no OAuth token to sign in with" in problem["message"]
    tokens = {"authMethod": "oauth2", **app, "accessToken": "gho_0123456789abcdef"}
    switched = await web.client.patch(instance, json={"credentials": tokens})
    assert switched.status_code == 200, switched.text
    assert switched.json()["authMethod"] == "oauth2"
    bare = await web.client.patch(instance, json={"credentials": {"authMethod": "pat"}})
    assert bare.status_code == 422, bare.text
    assert [d["path"] for d in error_of(bare)["details"]] == ["credentials.token"]
    assert (await web.client.get(instance)).json()["authMethod"] == "oauth2"
    back = await web.client.patch(
        instance, json={"credentials": {"authMethod": "pat", "token": "ghp_0123456789abcdef"}}
    )
    assert back.status_code == 200, back.text
    assert back.json()["authMethod"] == "pat"
    assert sorted(back.json()["credentials"]) == ["token"]  # the app and its token went


async def test_an_instance_that_cannot_sign_in_says_so_and_its_settings_still_change(
    connected: Web, acme: FakeServer
) -> None:
    """An edit of its connector (a credential now required) left the instance unable to
    sign in; a PATCH of its settings or of another credential was taken and its answer
    looked like any other, where creating it with those credentials is refused. Settings
    and credentials can change; every answer says it cannot sign in and why; credentials
    that make the sign-in worse are refused."""
    changed = copy.deepcopy(ACME)
    changed["auth"]["config"]["credentialFields"].append(
        {"key": "accountId", "label": "Account id", "type": "text", "required": True}
    )
    assert (await connected.client.put(f"/api/connectors/{CONNECTOR}", json=changed)).is_success
    missing = [("credentials.accountId", "'Account id' is required")]

    def problems(answer: dict[str, Any]) -> list[tuple[str, str]]:
        return [(p["path"], p["message"]) for p in answer["signInProblems"]]

    shown = (await connected.client.get(INSTANCE)).json()
    assert (shown["canSignIn"], problems(shown)) == (False, missing)
    listed = (await connected.client.get(f"/api/projects/{PROJECT}/instances")).json()
    assert [problems(i) for i in listed["items"]] == [missing]
    moved = await connected.client.patch(INSTANCE, json={"config": {"baseUrl": acme.base_url}})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["canSignIn"], problems(moved.json())) == (False, missing)
    # A rotated key (or a reconnect's tokens) is taken: refused, an OAuth consent's tokens
    # were lost. The sign-in is no worse for it, and the answer says what still lacks.
    # (Worse is still refused: test_switching_an_instance_to_a_sign_in_it_lacks_…)
    key = "k-0af3c9e1-rotated-7d2e"
    rotated = await connected.client.patch(INSTANCE, json={"credentials": {"apiKey": key}})
    assert rotated.status_code == 200, rotated.text
    assert (rotated.json()["canSignIn"], problems(rotated.json())) == (False, missing)
    assert rotated.json()["credentials"]["apiKey"] == mask(key) != mask(API_KEY)
    completed = await connected.client.patch(INSTANCE, json={"credentials": {"accountId": "a-1"}})
    assert completed.status_code == 200, completed.text
    assert (completed.json()["canSignIn"], completed.json()["signInProblems"]) == (True, [])


async def test_a_password_in_a_url_setting_is_refused_not_shown_back(
    connected: Web, acme: FakeServer
) -> None:
    """Settings are plain text in every answer and page: ``https://user:pw@host`` was saved
    as it was typed and shown back, password included."""
    await connected.client.delete(INSTANCE)
    port = acme.base_url.rsplit(":", 1)[1]
    for base in (f"http://ana:pw-0af3c9e1@127.0.0.1:{port}", f"http://ana@127.0.0.1:{port}"):
        body = instance_body(acme.base_url)
        body["config"]["baseUrl"] = base
        created = await connected.client.post(f"/api/projects/{PROJECT}/instances", json=body)
        assert created.status_code == 422, (base, created.text)
        assert "pw-0af3c9e1" not in created.text
        assert [(p["path"], p["message"]) for p in error_of(created)["details"]] == [
            ("config.baseUrl", "must not hold a user name or password (user:password@host)")
        ]
    made = await connected.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert made.status_code == 201
    patched = await connected.client.patch(
        INSTANCE, json={"config": {"baseUrl": f"http://ana:pw-0af3c9e1@127.0.0.1:{port}"}}
    )
    assert patched.status_code == 422
    assert "pw-0af3c9e1" not in (await connected.client.get(INSTANCE)).text


async def test_a_password_in_a_url_setting_stored_before_the_refusal_is_not_shown(
    connected: Web, acme: FakeServer
) -> None:
    """Such a setting is refused since it would be shown back; one stored before that is
    shown with ``••••`` for its user part (the pages: tests/web/test_dashboard.py)."""
    port = acme.base_url.rsplit(":", 1)[1]
    legacy = f"http://ana:pw-0af3c9e1@127.0.0.1:{port}"
    context = connected.state.context
    await context.store.instances.update(
        PROJECT, CONNECTOR, InstanceChanges(config={"baseUrl": legacy}), now=context.clock()
    )
    answer = await connected.client.get(INSTANCE)
    assert "pw-0af3c9e1" not in answer.text
    assert answer.json()["config"]["baseUrl"] == f"http://••••@127.0.0.1:{port}"
    listed = await connected.client.get(f"/api/projects/{PROJECT}/instances")
    assert "pw-0af3c9e1" not in listed.text
    stored = await context.store.instances.get(PROJECT, CONNECTOR)
    assert stored is not None
    assert stored.config["baseUrl"] == legacy  # polls still use it


async def test_a_required_credential_of_spaces_only_is_missing_as_a_setting_is(
    connected: Web, acme: FakeServer
) -> None:
    """A required setting of spaces only is refused as missing; a credential of spaces was
    stored, shown as a saved ``••••``, and failed every poll."""
    await connected.client.delete(INSTANCE)
    body = instance_body(acme.base_url)
    body["credentials"]["apiKey"] = "   "
    created = await connected.client.post(f"/api/projects/{PROJECT}/instances", json=body)
    assert created.status_code == 422, created.text
    assert [(p["path"], p["message"]) for p in error_of(created)["details"]] == [
        ("credentials.apiKey", "'API key' is required")
    ]
    made = await connected.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert made.status_code == 201
    kept = await connected.client.patch(INSTANCE, json={"credentials": {"apiKey": " \t "}})
    assert kept.status_code == 200  # as an empty value: the stored key stays
    assert kept.json()["credentials"]["apiKey"] == "••••" + API_KEY[-4:]


async def test_a_credential_pasted_with_spaces_around_it_is_trimmed_as_a_setting_is(
    connected: Web, acme: FakeServer
) -> None:
    """A key pasted with a space or a line break at either end was stored as typed, and
    every poll then failed ("a character an HTTP header cannot carry"). Settings are
    trimmed, and so are the OAuth app's id and secret: credentials are now too."""
    await connected.client.delete(INSTANCE)
    body = instance_body(acme.base_url)
    body["credentials"]["apiKey"] = f"  {API_KEY}\n"
    created = await connected.client.post(f"/api/projects/{PROJECT}/instances", json=body)
    assert created.status_code == 201, created.text
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert polled.json()["status"] == "ok", polled.text
    rotated = await connected.client.patch(
        INSTANCE, json={"credentials": {"apiKey": f"\t{API_KEY} "}}
    )
    assert rotated.status_code == 200
    record = await connected.state.context.instances.record(PROJECT, CONNECTOR)
    assert (await connected.state.context.instances.credentials(record))["apiKey"] == API_KEY
    tested = await connected.client.post(f"{INSTANCE}/test")
    assert tested.json()["ok"] is True, tested.text


async def test_an_instance_whose_secret_fails_its_integrity_check_is_listed_with_why(
    connected: Web, acme: FakeServer, tmp_path: Path
) -> None:
    """One damaged secret made the project's whole instance list, the instance's status and
    its Test connection answer 500. The list keeps every instance (that one without
    credentials), a test and a poll record why in its health, and storing the
    credentials again repairs it, as the error says."""
    other = {**ACME, "id": "acme-other", "name": "Acme Other"}
    assert (await connected.client.post("/api/connectors", json=other)).status_code == 201
    second = {**instance_body(acme.base_url), "connectorId": "acme-other"}
    made = await connected.client.post(f"/api/projects/{PROJECT}/instances", json=second)
    assert made.status_code == 201, made.text
    record = await connected.state.context.instances.record(PROJECT, CONNECTOR)
    assert record.credential_secret_ref is not None
    alter_secret(tmp_path, record.credential_secret_ref)

    listed = await connected.client.get(f"/api/projects/{PROJECT}/instances")
    assert listed.status_code == 200, listed.text
    items = {item["connectorId"]: item for item in listed.json()["items"]}
    assert set(items) == {CONNECTOR, "acme-other"}
    assert items[CONNECTOR]["credentials"] == {}
    assert items["acme-other"]["credentials"]["apiKey"] == "••••" + API_KEY[-4:]
    assert (await connected.client.get(f"{INSTANCE}/status")).status_code == 200

    tested = await connected.client.post(f"{INSTANCE}/test")
    assert tested.status_code == 200, tested.text
    assert tested.json()["ok"] is False
    assert "integrity check" in tested.json()["error"]
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] == "failed"
    status = (await connected.client.get(f"{INSTANCE}/status")).json()
    assert "integrity check" in status["lastError"]
    assert "store the credentials again" in status["lastError"]

    repaired = await connected.client.patch(
        INSTANCE, json={"credentials": {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}}
    )
    assert repaired.status_code == 200, repaired.text
    assert (await connected.client.post(f"{INSTANCE}/poll")).json()["status"] == "ok"


async def test_settings_with_a_lone_surrogate_are_422_at_their_path_not_a_500(
    connected: Web, acme: FakeServer
) -> None:
    """JSON's ``"\\ud800"`` escape parses to a lone surrogate, which the store and the
    secret store cannot encode: creating or patching with one was a 500."""
    await connected.client.delete(INSTANCE)
    body = json.dumps(instance_body(acme.base_url))
    body = body.replace(API_KEY, "\\ud800-key").replace(acme.base_url, acme.base_url + "/\\udc00")
    created = await connected.client.post(
        f"/api/projects/{PROJECT}/instances",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert created.status_code == 422, created.text
    assert {p["path"] for p in error_of(created)["details"]} == {
        "config.baseUrl",
        "credentials.apiKey",
    }
    assert "lone surrogate" in created.text
    assert (await connected.client.get(INSTANCE)).status_code == 404
    await connected.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    patched = await connected.client.patch(
        INSTANCE,
        content=b'{"credentials": {"webhookSecret": "\\ud800x"}}',
        headers={"Content-Type": "application/json"},
    )
    assert patched.status_code == 422, patched.text
    assert [p["path"] for p in error_of(patched)["details"]] == ["credentials.webhookSecret"]


async def test_a_setting_or_credential_named_with_a_lone_surrogate_is_422_not_a_500(
    web: Web,
) -> None:
    """The refusal names the unknown key in its path, and no UTF-8 body could carry
    the lone surrogate in it: the 422 was a 500. The path writes it as its escape."""
    created = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        content=(
            b'{"connectorId": "github-prs", "config": {"\\udc00": "x"}, '
            b'"credentials": {"\\ud800": "x"}}'
        ),
        headers={"Content-Type": "application/json"},
    )
    assert created.status_code == 422, created.text
    paths = {p["path"] for p in error_of(created)["details"]}
    assert {"config.\\udc00", "credentials.\\ud800"} <= paths


async def test_a_body_of_the_wrong_shape_is_422_without_echoing_it(web: Web) -> None:
    response = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={"connectorId": CONNECTOR, "credentials": "hunter2-password", "surprise": 1},
    )
    assert response.status_code == 422
    paths = {p["path"] for p in error_of(response)["details"]}
    assert paths == {"body.credentials", "body.surprise"}
    assert "hunter2" not in response.text


async def test_connecting_an_unknown_connector_is_404_and_twice_is_409(
    connected: Web, acme: FakeServer
) -> None:
    unknown = await connected.client.post(
        f"/api/projects/{PROJECT}/instances", json={"connectorId": "nope", "credentials": {}}
    )
    assert unknown.status_code == 404
    twice = await connected.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert twice.status_code == 409


async def test_patch_rotates_credentials_changes_settings_and_disables(connected: Web) -> None:
    rotated = await connected.client.patch(
        INSTANCE, json={"credentials": {"apiKey": "a-brand-new-api-key-9999"}, "enabled": False}
    )
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["credentials"]["apiKey"] == "••••9999"
    assert body["credentials"]["webhookSecret"] == "••••" + WEBHOOK_SECRET[-4:]  # kept
    assert body["enabled"] is False
    bad = await connected.client.patch(INSTANCE, json={"enabled": "yes"})
    assert bad.status_code == 422
    missing = await connected.client.patch(
        f"/api/projects/other/instances/{CONNECTOR}", json={"enabled": True}
    )
    assert missing.status_code == 404


async def test_disconnecting_removes_the_instance(connected: Web) -> None:
    assert (await connected.client.delete(INSTANCE)).status_code == 204
    assert (await connected.client.get(INSTANCE)).status_code == 404
    assert (await connected.client.delete(INSTANCE)).status_code == 404
    listed = (await connected.client.get(f"/api/projects/{PROJECT}/instances")).json()
    assert listed == {"items": []}


async def test_test_connection_reports_latency_and_a_refused_key_without_the_key(
    connected: Web,
) -> None:
    ok = await connected.client.post(f"{INSTANCE}/test")
    assert ok.status_code == 200
    assert ok.json()["ok"] is True
    assert ok.json()["status"] == "healthy"
    assert ok.json()["latencyMs"] >= 0
    assert ok.json()["recorded"] is True, "the check ran and its outcome is the health now"

    wrong = "wrong-api-key-0000000000"
    await connected.client.patch(INSTANCE, json={"credentials": {"apiKey": wrong}})
    refused = await connected.client.post(f"{INSTANCE}/test")
    assert refused.status_code == 200
    result = refused.json()
    assert result["ok"] is False
    assert result["httpStatus"] == 401
    assert wrong not in refused.text
    status = (await connected.client.get(f"{INSTANCE}/status")).json()
    assert status["consecutiveFailures"] == 1
    assert status["healthState"] in ("degraded", "error")


async def test_poll_now_stores_signals_and_status_counts_them(connected: Web) -> None:
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert polled.status_code == 200, polled.text
    result = polled.json()
    assert result["status"] == "ok"
    assert result["inserted"] == TICKETS

    status = await connected.client.get(f"{INSTANCE}/status")
    assert status.status_code == 200
    body = status.json()
    assert body["signals"] == {"last24h": TICKETS, "last7d": TICKETS}
    assert body["healthState"] == "healthy"
    assert body["lastSyncAt"] is not None
    assert f"/api/webhooks/{CONNECTOR}/{PROJECT}/" in body["webhookUrl"]
    assert body["sharedWebhookUrl"].endswith(f"/api/webhooks/{CONNECTOR}/{PROJECT}")

    again = (await connected.client.post(f"{INSTANCE}/poll")).json()
    assert again["inserted"] == 0


async def test_poll_now_refuses_a_disabled_instance_and_webhook_only_connectors(
    connected: Web,
) -> None:
    await connected.client.patch(INSTANCE, json={"enabled": False})
    disabled = await connected.client.post(f"{INSTANCE}/poll")
    assert disabled.status_code == 409
    assert error_of(disabled)["code"] == "conflict"


# --------------------------------------------------------------------------- signals


async def test_signals_page_with_cursor_and_filter_by_type_source_and_time(
    connected: Web,
) -> None:
    await connected.client.post(f"{INSTANCE}/poll")
    signals = f"/api/projects/{PROJECT}/signals"
    first = (await connected.client.get(signals, params={"limit": 2})).json()
    assert len(first["items"]) == 2
    assert first["nextCursor"]
    seen = [s["id"] for s in first["items"]]
    cursor = first["nextCursor"]
    while cursor:
        page = (await connected.client.get(signals, params={"limit": 2, "cursor": cursor})).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["nextCursor"]
    assert len(seen) == len(set(seen)) == TICKETS
    assert all(s["sanitised"] is True for s in first["items"])

    by_type = (await connected.client.get(signals, params={"type": "ticket_updated"})).json()
    assert len(by_type["items"]) == TICKETS
    none = (await connected.client.get(signals, params={"source": "github-issues"})).json()
    assert none == {"items": [], "nextCursor": None}
    future = (await connected.client.get(signals, params={"since": "2999-01-01T00:00:00Z"})).json()
    assert future["items"] == []

    one = first["items"][0]
    fetched = await connected.client.get(f"{signals}/{one['id']}")
    assert fetched.json() == one


async def test_another_projects_signal_is_not_reachable_by_its_id(connected: Web) -> None:
    await connected.client.post(f"{INSTANCE}/poll")
    items = (await connected.client.get(f"/api/projects/{PROJECT}/signals")).json()["items"]
    other = await connected.client.get(f"/api/projects/intruder/signals/{items[0]['id']}")
    assert other.status_code == 404
    listed = (await connected.client.get("/api/projects/intruder/signals")).json()
    assert listed["items"] == []


async def test_bad_signal_queries_are_4xx(connected: Web) -> None:
    signals = f"/api/projects/{PROJECT}/signals"
    forged = await connected.client.get(signals, params={"cursor": "not-a-cursor"})
    assert forged.status_code == 400
    assert error_of(forged)["code"] == "invalid_cursor"
    for params in ({"limit": 0}, {"limit": 501}, {"since": "yesterday"}):
        response = await connected.client.get(signals, params=params)
        assert response.status_code == 422, params
        assert error_of(response)["details"]
    # A time whose offset takes it past year 9999 (or before year 1) in UTC was a 500.
    for name, moment in (
        ("since", "9999-12-31T23:59:59-23:59"),
        ("until", "0001-01-01T00:00+23:59"),
    ):
        response = await connected.client.get(signals, params={name: moment})
        assert response.status_code == 422, response.text
        assert error_of(response)["details"] == [
            {"path": f"query.{name}", "message": "is outside the years 1-9999 in UTC"}
        ]


# --------------------------------------------------------------------------- the error contract


async def test_unknown_routes_and_methods_answer_in_the_json_error_shape(web: Web) -> None:
    missing = await web.client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"
    wrong_method = await web.client.delete("/api/connectors")
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["allow"]


async def test_a_management_body_over_the_limit_is_413_even_when_chunked(web: Web) -> None:
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    declared = await web.client.post(
        "/api/connectors", content=big, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert error_of(declared)["code"] == "payload_too_large"

    async def chunks() -> Any:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    chunked = await web.client.post(
        "/api/connectors", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413


async def test_every_response_carries_a_request_id_and_keeps_a_sane_incoming_one(
    web: Web,
) -> None:
    fresh = await web.client.get("/healthz")
    assert len(fresh.headers["x-request-id"]) == 26  # a ULID
    kept = await web.client.get("/healthz", headers={"X-Request-Id": "edge-42"})
    assert kept.headers["x-request-id"] == "edge-42"
    replaced = await web.client.get("/healthz", headers={"X-Request-Id": "bad id\twith tabs"})
    assert replaced.headers["x-request-id"] != "bad id\twith tabs"


async def test_metrics_count_requests_by_route_template(connected: Web) -> None:
    await connected.client.get(f"/api/projects/{PROJECT}/signals")
    await connected.client.post(f"{INSTANCE}/poll")
    text = (await connected.client.get("/metrics")).text
    assert (
        'ucf_http_requests_total{method="GET",route="/api/projects/{projectId}/signals",'
        'status="200"} 1.0'
    ) in text
    assert f'ucf_signals_ingested_total{{connector="{CONNECTOR}",via="poll"}} {TICKETS}.0' in text
    assert f'ucf_poll_duration_seconds_count{{connector="{CONNECTOR}"}} 1.0' in text
    assert PROJECT not in text


async def test_made_up_methods_share_one_metric_label(web: Web) -> None:
    for method in ("FROB1", "FROB2", "PROPFIND"):
        response = await web.client.request(method, "/api/connectors")
        assert response.status_code == 405
    text = (await web.client.get("/metrics")).text
    assert (
        'ucf_http_requests_total{method="OTHER",route="/api/connectors",status="405"} 3.0' in text
    )
    assert "FROB" not in text
    assert "PROPFIND" not in text


async def test_a_bug_is_a_json_500_with_the_request_id_never_a_traceback(
    connected: Web, monkeypatch: Any
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"bug while holding {API_KEY}")

    monkeypatch.setattr(connected.state.context.store.signals, "query", broken)
    response = await connected.client.get(f"/api/projects/{PROJECT}/signals")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal"
    assert response.headers["x-request-id"] in error["message"]
    assert "Traceback" not in response.text
    assert API_KEY not in response.text


async def test_outbox_lag_is_exported_per_configured_sink(tmp_path: Any) -> None:
    from tests.web.conftest import open_web, web_settings

    settings = web_settings(tmp_path, UCF_SINK_JSONL=str(tmp_path / "signals.jsonl"))
    async with open_web(settings) as web:
        text = (await web.client.get("/metrics")).text
        assert 'ucf_outbox_pending{sink="jsonl"}' in text
        assert 'ucf_outbox_oldest_age_seconds{sink="jsonl"}' in text
