"""The authoring contracts the dashboard's connector editor uses, through the real app.

validate: every problem in one pass; preview: a sample mapped offline; try: one
live page through the guarded client, credentials never echoed, nothing stored.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.web.conftest import Web
from tests.web.support import ACME, API_KEY, PROJECT, TICKETS, ticket_event
from ucf.catalogue import builtin_descriptors
from ucf.fakes.kit import FakeServer
from ucf.fakes.linear import OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, LinearFake
from ucf.runtime.redaction import SECRETS, redact


def acme(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(ACME)
    data.update(changes)
    return data


# --------------------------------------------------------------------------- validate


async def test_validate_answers_every_problem_shape_and_meaning_at_once(web: Web) -> None:
    data = acme(category="Dev")
    data["fieldMapping"]["idPath"] = "$.id[["
    data["ingestion"]["polling"]["endpoint"] = "{{baseUrl}}/{{nope}}"
    response = await web.client.post("/api/connectors/validate", json=data)
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    paths = {p["path"] for p in body["problems"]}
    assert paths == {"category", "fieldMapping.idPath", "ingestion.polling.endpoint"}
    assert all(set(p) == {"path", "message", "hint"} for p in body["problems"])


async def test_a_key_given_twice_is_a_problem_at_its_path_on_validate_and_save(
    web: Web,
) -> None:
    """JSON keeps the last of a repeated key without a word: an author who wrote
    ``itemsPath`` twice never learnt which one ucf read. Each is named at its path, and
    registering or replacing such a text is refused, as validation says it is invalid."""
    text = json.dumps(acme(), indent=2)
    text = text.replace('"itemsPath": ', '"itemsPath": "$.nothing",\n    "itemsPath": ', 1)
    text = text.replace('"name": ', '"name": "first",\n  "name": ', 1)
    headers = {"Content-Type": "application/json"}
    response = await web.client.post("/api/connectors/validate", content=text, headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert [(p["path"], p["message"]) for p in body["problems"]] == [
        (
            "name",
            "key 'name' is given 2 times in this object; JSON keeps only the last, "
            "and the others are dropped without a word",
        ),
        (
            "ingestion.webhook.fieldMapping.itemsPath",
            "key 'itemsPath' is given 2 times in this object; JSON keeps only the last, "
            "and the others are dropped without a word",
        ),
    ]
    refused = await web.client.post("/api/connectors", content=text, headers=headers)
    assert refused.status_code == 422
    assert [d["path"] for d in refused.json()["error"]["details"]] == [
        "name",
        "ingestion.webhook.fieldMapping.itemsPath",
    ]
    assert (await web.client.post("/api/connectors", json=acme())).status_code == 201
    replaced = await web.client.put(f"/api/connectors/{ACME['id']}", content=text, headers=headers)
    assert replaced.status_code == 422
    assert (await web.client.get(f"/api/connectors/{ACME['id']}")).json()["name"] == ACME["name"]


def _with_repeats(body: dict[str, Any]) -> str:
    """``body`` as JSON text whose descriptor gives ``name`` and ``itemsPath`` twice (and
    whose own ``project`` is given twice too, which is no descriptor's problem)."""
    text = json.dumps(body, indent=2)
    text = text.replace('"itemsPath": ', '"itemsPath": "$.nothing", "itemsPath": ', 1)
    text = text.replace('"name": ', '"name": "first", "name": ', 1)
    return text.replace('"project": ', '"project": "p1", "project": ', 1)


_REPEATED_PATHS: list[str] = ["name", "ingestion.webhook.fieldMapping.itemsPath"]


async def test_a_key_given_twice_in_a_tried_or_previewed_descriptor_is_a_problem_at_its_path(
    web: Web,
) -> None:
    """An API caller sends ``/try`` and ``/preview`` raw JSON: a descriptor key given
    twice there was dropped without a word (only validate and save said so). Each is
    now reported as the route reports its other descriptor problems: a try refuses it
    (422, paths relative to the descriptor), a preview lists it under ``descriptor``.
    A key the request body itself repeats (``project``) is not the descriptor's."""
    headers = {"Content-Type": "application/json"}
    preview = await web.client.post(
        "/api/connectors/preview",
        content=_with_repeats({"descriptor": acme(), "sample": {}, "project": "p2"}),
        headers=headers,
    )
    assert preview.status_code == 200
    problems = preview.json()["problems"]
    assert [p["path"] for p in problems] == [f"descriptor.{p}" for p in _REPEATED_PATHS]
    assert problems[0]["message"].startswith("key 'name' is given 2 times in this object")
    assert preview.json()["signals"] == []

    tried = await web.client.post(
        "/api/connectors/try",
        content=_with_repeats({"descriptor": acme(), "credentials": {}, "config": {}}),
        headers=headers,
    )
    assert tried.status_code == 422
    assert [p["path"] for p in tried.json()["error"]["details"]] == _REPEATED_PATHS

    delivery = {"body": json.dumps(ticket_event("T-1")), "eventType": "ticket"}
    delivered = await web.client.post(
        "/api/connectors/try",
        content=_with_repeats({"descriptor": webhook_only(), "delivery": delivery}),
        headers=headers,
    )
    assert delivered.status_code == 422
    assert [p["path"] for p in delivered.json()["error"]["details"]] == [
        "name",
        "ingestion.fieldMapping.itemsPath",  # webhook_only's block is ingestion itself
    ]

    # The same bodies without repeats are tried and previewed as before.
    clean = await web.client.post(
        "/api/connectors/try", json={"descriptor": webhook_only(), "delivery": delivery}
    )
    assert clean.status_code == 200, clean.text


async def test_validate_says_where_a_text_that_is_not_json_breaks(web: Web) -> None:
    """As ``ucf connectors validate`` does for a file: a stray comma in a long descriptor
    is found by its line and column, not by "the body is not valid JSON" alone."""
    text = '{\n  "id": "acme",\n  "name": "Acme",\n}'
    response = await web.client.post(
        "/api/connectors/validate",
        content=text,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "path": "body",
            "message": "the body is not valid JSON: Expecting property name enclosed in "
            "double quotes at line 4 column 1",
        }
    ]


@pytest.mark.parametrize("body", [[], "acme", 42])  # null is read as no body: 422
async def test_validate_says_a_descriptor_that_is_no_object_is_one_at_its_root(
    web: Web, body: Any
) -> None:
    """As the CLI says for such a file: a problem of the descriptor, with its path."""
    response = await web.client.post("/api/connectors/validate", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "valid": False,
        "problems": [{"path": "", "message": "Input should be an object", "hint": None}],
    }


async def test_validate_says_valid_and_stores_nothing(web: Web) -> None:
    response = await web.client.post("/api/connectors/validate", json=acme())
    assert response.json() == {"valid": True, "problems": []}
    assert (await web.client.get(f"/api/connectors/{ACME['id']}")).status_code == 404


async def test_validate_says_a_native_copy_no_package_provides_cannot_run(web: Web) -> None:
    """Saving refuses a ``kind: native`` descriptor under an id no installed package
    provides; the editor's validation, asked as the user types, says so first, at
    ``kind``, while the shipped native connector itself stays valid."""
    jira = (await web.client.get("/api/connectors/jira")).json()
    descriptor = {k: v for k, v in jira.items() if k not in {"builtIn", "createdAt", "updatedAt"}}
    shipped = await web.client.post("/api/connectors/validate", json=descriptor)
    assert shipped.json() == {"valid": True, "problems": []}

    copied = {**descriptor, "id": "jira-copy"}
    body = (await web.client.post("/api/connectors/validate", json=copied)).json()
    assert body["valid"] is False
    [problem] = body["problems"]
    assert problem["path"] == "kind"
    assert "'jira-copy'" in problem["message"]
    assert "generic" in problem["hint"]


# --------------------------------------------------------------------------- preview


async def test_preview_maps_a_poll_page_with_the_rule_behind_each_type(web: Web) -> None:
    sample = {
        "tickets": [
            {"id": "T-1", "title": "Printer on fire", "updated_at": "2024-05-01T10:00:00Z"},
            {"id": None, "title": "no id"},
        ]
    }
    response = await web.client.post(
        "/api/connectors/preview", json={"descriptor": acme(), "sample": sample, "mode": "poll"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["problems"] == []
    [shown] = body["signals"]
    signal = shown["signal"]
    assert (signal["type"], signal["summary"], signal["projectId"]) == (
        "ticket_updated",
        "Printer on fire",
        "preview",
    )
    assert signal["sanitised"] is True  # what the store would keep
    assert shown["typeReason"] == {"type": "ticket_updated", "rule": 0, "because": "$.id exists"}
    assert body["itemErrors"] == [{"index": 1, "itemId": None, "reason": "no id at $.id"}]


async def test_preview_reads_a_webhook_delivery_with_its_headers_and_event_rules(
    web: Web,
) -> None:
    response = await web.client.post(
        "/api/connectors/preview",
        json={
            "descriptor": acme(),
            "sample": ticket_event("T-9", action="opened"),
            "mode": "auto",
            "headers": {"X-Acme-Delivery": "d-9"},
            "project": PROJECT,
        },
    )
    body = response.json()
    assert body["mode"] == "webhook"
    assert body["eventType"] == "ticket.opened"
    [shown] = body["signals"]
    assert shown["signal"]["type"] == "ticket_opened"
    assert shown["typeReason"]["because"] == "event type in ticket.opened and $.id exists"


async def test_preview_of_a_poll_page_says_a_push_only_connector_does_not_poll(web: Web) -> None:
    """The editor's poll preview of SES (SNS notifications only, nothing polls it) is one
    problem at ``mode`` saying so, not an item error per notification."""
    ses = (await web.client.get("/api/connectors/ses")).json()
    descriptor = {k: v for k, v in ses.items() if k not in {"builtIn", "createdAt", "updatedAt"}}
    request = {
        "descriptor": descriptor,
        "sample": [{"Type": "Notification", "Message": "{}"}],
        "mode": "poll",
    }
    body = (await web.client.post("/api/connectors/preview", json=request)).json()
    assert (body["signals"], body["itemErrors"]) == ([], [])
    [problem] = body["problems"]
    assert problem["path"] == "mode"
    assert problem["message"] == "ses does not poll"
    assert problem["hint"] == (  # the editor's own control, and the API's member
        'if the sample is a webhook delivery, set "The sample is" to "a webhook delivery" '
        '(mode "webhook")'
    )


async def test_preview_explains_a_guess_that_maps_nothing(web: Web) -> None:
    response = await web.client.post(
        "/api/connectors/preview",
        json={"descriptor": acme(), "sample": ticket_event(), "mode": "auto"},
    )
    body = response.json()
    assert body["signals"] == []
    assert body["notes"] == [
        "itemsPath $.tickets[*] matched nothing and the sample looks like a webhook payload: "
        'set "The sample is" to "a webhook delivery" (mode "webhook")'
    ]


async def test_preview_of_an_invalid_descriptor_gives_its_problems_under_descriptor(
    web: Web,
) -> None:
    data = acme()
    del data["fieldMapping"]["idPath"]
    response = await web.client.post(
        "/api/connectors/preview", json={"descriptor": data, "sample": {}}
    )
    assert response.status_code == 200
    assert [p["path"] for p in response.json()["problems"]] == ["descriptor.fieldMapping.idPath"]


async def test_preview_of_a_delivery_without_event_type_says_where_it_was_expected(
    web: Web,
) -> None:
    response = await web.client.post(
        "/api/connectors/preview",
        json={"descriptor": acme(), "sample": {"ticket": {}}, "mode": "webhook"},
    )
    [problem] = response.json()["problems"]
    assert problem["path"] == "sample"
    assert "expected at $.event" in problem["message"]


# --------------------------------------------------------------------------- try


async def test_try_shows_one_live_page_masked_and_stores_nothing(
    web: Web, acme: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = len(acme.requests)
    response = await web.client.post(
        "/api/connectors/try",
        json={
            "descriptor": acme_descriptor(),
            "credentials": {"apiKey": API_KEY},
            "config": {"baseUrl": acme.base_url},
            "maxPages": 1,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["error"] is None
    request = body["request"]
    assert request["method"] == "GET"
    assert request["url"].startswith(f"{acme.base_url}/tickets?since=")
    assert request["headers"]["x-acme-key"] == "••••" + API_KEY[-4:]
    assert body["response"]["status"] == 200
    assert body["response"]["truncated"] is False
    assert '\n  "tickets": [' in body["response"]["body"]  # pretty-printed
    assert len(body["signals"]) == TICKETS
    assert {s["signal"]["type"] for s in body["signals"]} == {"ticket_updated"}
    assert len(acme.requests) == before + 1
    assert API_KEY not in response.text
    assert API_KEY not in caplog.text
    listing = await web.client.get(f"/api/projects/{PROJECT}/signals")
    assert listing.json()["items"] == []
    assert (await web.client.get(f"/api/connectors/{ACME['id']}")).status_code == 404


def acme_descriptor() -> dict[str, Any]:
    return acme()


async def test_try_with_a_wrong_key_says_credentials_rejected_with_the_providers_message(
    web: Web, acme: FakeServer
) -> None:
    response = await web.client.post(
        "/api/connectors/try",
        json={
            "descriptor": acme_descriptor(),
            "credentials": {"apiKey": "wrong-key-0123456789"},
            "config": {"baseUrl": acme.base_url},
        },
    )
    body = response.json()
    assert body["error"]["kind"] == "credentials_rejected"
    assert body["error"]["message"].endswith("credentials rejected (HTTP 401: bad key)")
    assert body["response"]["status"] == 401
    assert "wrong-key-0123456789" not in response.text
    assert body["signals"] == []


async def test_a_try_trims_a_key_pasted_with_spaces_as_saving_it_does(
    web: Web, acme: FakeServer
) -> None:
    """Saved, a credential is trimmed; tried, it failed as no header can carry it."""
    response = await web.client.post(
        "/api/connectors/try",
        json={
            "descriptor": acme_descriptor(),
            "credentials": {"apiKey": f" {API_KEY}\n"},
            "config": {"baseUrl": acme.base_url},
        },
    )
    body = response.json()
    assert body["error"] is None, body["error"]
    assert len(body["signals"]) == TICKETS


async def test_a_trys_credentials_are_not_masked_in_later_log_lines(
    web: Web, acme: FakeServer
) -> None:
    """A try-out's credentials are registered for masking while the try runs; kept
    for ever, a typed word ("quartz") masked that word in every later log line, and
    every try's values (up to a megabyte each) stayed in the process's registry."""
    before = len(SECRETS)
    for typed in ("quartz", "wrong-key-" + "9" * 30_000):
        response = await web.client.post(
            "/api/connectors/try",
            json={
                "descriptor": acme_descriptor(),
                "credentials": {"apiKey": typed},
                "config": {"baseUrl": acme.base_url},
            },
        )
        assert response.json()["error"]["kind"] == "credentials_rejected"
    assert redact("a quartz clock") == "a quartz clock"
    assert len(SECRETS) == before


async def test_try_goes_through_the_ssrf_guard(tmp_path: Any, acme: FakeServer) -> None:
    from tests.web.conftest import open_web, web_settings

    async with open_web(web_settings(tmp_path, UCF_ALLOW_HOSTS="")) as guarded:
        response = await guarded.client.post(
            "/api/connectors/try",
            json={
                "descriptor": acme_descriptor(),
                "credentials": {"apiKey": API_KEY},
                "config": {"baseUrl": acme.base_url},
            },
        )
    body = response.json()
    assert body["error"]["kind"] == "refused_address"
    assert body["response"] is None


async def test_try_refuses_an_invalid_descriptor_with_every_problem(web: Web) -> None:
    data = acme(category="Dev")
    response = await web.client.post(
        "/api/connectors/try", json={"descriptor": data, "credentials": {}, "config": {}}
    )
    assert response.status_code == 422
    assert [p["path"] for p in response.json()["error"]["details"]] == ["category"]


def webhook_only(**webhook_changes: Any) -> dict[str, Any]:
    """Acme pushing only: its webhook block directly under ``ingestion``."""
    data = acme()
    hook = {**data["ingestion"]["webhook"], **webhook_changes}
    data["ingestion"] = {"mode": "webhook", **{k: v for k, v in hook.items() if v is not None}}
    return data


async def test_a_webhook_only_connector_is_tried_with_a_pasted_delivery(web: Web) -> None:
    """Its try was a refusal ("nothing to poll"). With a sample delivery it shows the
    signals the gateway would store, sanitised, each with its type's reason, without
    a signature, and stores nothing; without one the refusal says to paste one."""
    data = webhook_only(eventTypePath=None, eventTypeHeader="X-Acme-Event")
    refused = await web.client.post("/api/connectors/try", json={"descriptor": data})
    assert refused.status_code == 422
    assert [p["path"] for p in refused.json()["error"]["details"]] == ["delivery"]

    event = ticket_event("T-7", title="Key ghp_0123456789abcdefghijklmnopqrstuvwxyzAB leaked")
    del event["event"]  # the event type comes from the header here
    response = await web.client.post(
        "/api/connectors/try",
        json={"descriptor": data, "delivery": {"body": json.dumps(event), "eventType": "ticket"}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["error"] is None
    assert (body["request"], body["response"], body["pages"]) == (None, None, 0)
    assert body["delivery"]["eventType"] == "ticket.opened"
    assert body["delivery"]["headers"] == {"X-Acme-Event": "ticket"}
    [shown] = body["signals"]
    assert shown["signal"]["type"] == "ticket_opened"
    assert shown["signal"]["sanitised"] is True
    assert "ghp_0123" not in json.dumps(shown["signal"])
    assert shown["typeReason"]["rule"] == 0
    assert body["itemErrors"] == []
    assert any("no signature is needed for a try" in note for note in body["notes"])
    assert (await web.client.get(f"/api/connectors/{ACME['id']}")).status_code == 404
    assert (await web.client.get("/api/projects/try/signals")).json()["items"] == []

    # An item that cannot map is listed as a poll's try lists it.
    broken = {"action": "opened", "ticket": {"title": "no id"}}
    listed = await web.client.post(
        "/api/connectors/try",
        json={"descriptor": data, "delivery": {"body": json.dumps(broken), "eventType": "ticket"}},
    )
    assert listed.json()["signals"] == []
    assert [e["reason"] for e in listed.json()["itemErrors"]] == ["no id at $.id"]

    # A connector that reads the event type from the body says where it goes.
    from_body = webhook_only()
    said = await web.client.post(
        "/api/connectors/try",
        json={"descriptor": from_body, "delivery": {"body": "{}", "eventType": "ticket"}},
    )
    assert said.json()["error"]["kind"] == "delivery"
    assert "at $.event" in said.json()["error"]["message"]


async def test_a_registered_connector_is_under_custom_whatever_its_category(web: Web) -> None:
    data = acme(category="Code & DevOps")
    assert (await web.client.post("/api/connectors", json=data)).status_code == 201
    custom = (await web.client.get("/api/connectors", params={"category": "Custom"})).json()
    assert [(c["id"], c["builtIn"]) for c in custom["items"]] == [(ACME["id"], False)]
    code = (await web.client.get("/api/connectors", params={"category": "Code & DevOps"})).json()
    assert ACME["id"] in {c["id"] for c in code["items"]}


async def test_patching_new_credentials_keeps_the_checkpoint(web: Web, acme: FakeServer) -> None:
    from tests.web.support import instance_body

    await web.client.post("/api/connectors", json=acme_descriptor())
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    instance = f"/api/projects/{PROJECT}/instances/{ACME['id']}"
    assert (await web.client.post(f"{instance}/poll")).status_code == 200
    before = await web.state.context.store.checkpoints.get(PROJECT, ACME["id"])
    assert before.value is not None
    patched = await web.client.patch(instance, json={"credentials": {"apiKey": "rotated-0123456"}})
    assert patched.status_code == 200
    assert "rotated-0123456" not in patched.text
    assert await web.state.context.store.checkpoints.get(PROJECT, ACME["id"]) == before


async def test_preview_checks_a_pasted_delivery_with_the_typed_secret_as_the_gateway_would(
    web: Web,
) -> None:
    from tests.web.support import WEBHOOK_SECRET, sign

    signed = sign(ticket_event("T-5"), delivery="d-5")
    request = {
        "descriptor": acme(),
        "body": signed.body.decode(),
        "headers": signed.headers,
        "mode": "webhook",
    }
    good = (
        await web.client.post("/api/connectors/preview", json={**request, "secret": WEBHOOK_SECRET})
    ).json()
    assert good["verification"] == {"checked": True, "ok": True, "reason": None}
    assert [s["signal"]["type"] for s in good["signals"]] == ["ticket_opened"]
    bad = (
        await web.client.post("/api/connectors/preview", json={**request, "secret": "not-it"})
    ).json()
    assert bad["verification"]["ok"] is False
    assert "signature" in bad["verification"]["reason"]
    assert any("would refuse this delivery (HTTP 401)" in n for n in bad["notes"])
    unchecked = (await web.client.post("/api/connectors/preview", json=request)).json()
    assert unchecked["verification"] == {"checked": False, "ok": None, "reason": None}
    assert "not-it" not in str(bad)
    assert WEBHOOK_SECRET not in str(good)


async def test_preview_answers_a_handshake_as_the_gateway_would(web: Web) -> None:
    data = acme()
    data["ingestion"]["webhook"]["handshakes"] = [
        {
            "type": "challenge",
            "whenPath": "$.type",
            "equals": "url_verification",
            "respondPath": "$.challenge",
        }
    ]
    body = (
        await web.client.post(
            "/api/connectors/preview",
            json={
                "descriptor": data,
                "sample": {"type": "url_verification", "challenge": "3eZbrw1aBm"},
                "mode": "webhook",
            },
        )
    ).json()
    assert body["handshake"]["kind"] == "challenge"
    assert body["handshake"]["body"] == '{"challenge": "3eZbrw1aBm"}'  # what the gateway sends
    assert body["signals"] == []


async def test_preview_signs_the_pasted_bytes_with_the_typed_secret_when_asked(web: Web) -> None:
    """What Acme would send for these exact bytes (its recipe is in tests/web/support.py)."""
    from tests.web.support import WEBHOOK_SECRET, sign

    raw = '{"event": "ticket", "action": "opened",\n "ticket": ' + (
        '{"id": "T-9", "title": "Paper jam", "updated_at": "2026-12-05T10:00:00Z"}}'
    )
    request = {
        "descriptor": acme(),
        "body": raw,
        "headers": {"X-Acme-Delivery": "d-9", "x-acme-signature": "v1=00"},  # a stale one
        "mode": "webhook",
        "secret": WEBHOOK_SECRET,
        "sign": True,
    }
    answer = (await web.client.post("/api/connectors/preview", json=request)).json()
    signed = answer["signedHeaders"]
    stamp = float(signed["X-Acme-Timestamp"])
    expected = sign(None, body=raw.encode(), at=stamp).headers
    assert signed == {k: expected[k] for k in ("X-Acme-Signature", "X-Acme-Timestamp")}
    assert answer["verification"] == {"checked": True, "ok": True, "reason": None}
    assert [s["signal"]["type"] for s in answer["signals"]] == ["ticket_opened"]
    assert WEBHOOK_SECRET not in str(answer)

    unsigned = await web.client.post("/api/connectors/preview", json={**request, "sign": False})
    assert unsigned.json()["verification"]["ok"] is False
    assert unsigned.json()["signedHeaders"] == {}
    no_secret = (
        await web.client.post("/api/connectors/preview", json={**request, "secret": None})
    ).json()
    assert [(p["path"], p["message"]) for p in no_secret["problems"]] == [
        ("secret", "type the webhook secret to sign with")
    ]
    plain = acme()
    plain["ingestion"]["webhook"]["verification"] = "none"
    nothing = (
        await web.client.post("/api/connectors/preview", json={**request, "descriptor": plain})
    ).json()
    assert [(p["path"], p["message"]) for p in nothing["problems"]] == [
        ("mode", "acme-tickets verifies no webhook deliveries: nothing to sign")
    ]


async def test_preview_of_a_pasted_body_with_a_lone_surrogate_is_a_problem_not_a_500(
    web: Web,
) -> None:
    """JSON carries ``"\\ud800"`` into ``body`` as a lone surrogate, which no delivery's
    bytes can hold: encoding it raised, and the editor got a 500."""
    raw = '{"descriptor": %s, "body": "{\\"event\\": \\"\\ud800\\"}", "mode": "webhook"}'
    response = await web.client.post(
        "/api/connectors/preview",
        content=(raw % json.dumps(acme())).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    [problem] = response.json()["problems"]
    assert problem["path"] == "body"
    assert "lone surrogate" in problem["message"]
    sample = {"ticket": {"id": "T-\ud800", "title": "x"}, "event": "ticket"}
    mapped = await web.client.post(
        "/api/connectors/preview",
        content=json.dumps({"descriptor": acme(), "sample": sample, "mode": "webhook"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert mapped.status_code == 200, mapped.text
    assert len(mapped.json()["signals"]) == 1


async def test_try_masks_a_key_sent_in_the_query_in_its_encoded_form(
    web: Web, acme: FakeServer
) -> None:
    """The URL is shown as sent, so a query key is percent-encoded there: masking the typed
    text alone showed ``access=Zm9v%2BYmFy%2FcXV4%3D%3D`` in full."""
    from urllib.parse import quote, quote_plus

    data = acme_descriptor()
    data["auth"]["config"].update(delivery="query", paramName="access")
    secret = "Zm9v+YmFy/cXV4==&x"
    response = await web.client.post(
        "/api/connectors/try",
        json={
            "descriptor": data,
            "credentials": {"apiKey": secret},
            "config": {"baseUrl": acme.base_url},
        },
    )
    body = response.json()
    assert body["error"]["kind"] == "credentials_rejected"
    assert "&access=••••" in body["request"]["url"]
    for form in (secret, quote_plus(secret), quote(secret, safe=""), quote(secret)):
        assert form not in response.text


async def test_try_refuses_an_ipv4_mapped_metadata_address_and_shows_the_url_as_written(
    web: Web,
) -> None:
    """The guard sees through ``::ffff:169.254.169.254``; the URL shown keeps the IPv6
    literal's brackets (it read ``http://::ffff:169.254.169.254/tickets``, not a URL)."""
    response = await web.client.post(
        "/api/connectors/try",
        json={
            "descriptor": acme_descriptor(),
            "credentials": {"apiKey": API_KEY},
            "config": {"baseUrl": "http://[::ffff:169.254.169.254]:8080"},
        },
    )
    body = response.json()
    assert body["error"]["kind"] == "refused_address", body
    assert body["request"]["url"].startswith("http://[::ffff:169.254.169.254]:8080/tickets?")
    assert body["response"] is None


async def test_a_try_that_fetched_no_page_says_why_without_a_note_about_its_items(
    web: Web,
) -> None:
    """A try that stopped before any page noted that 'the first page had no items', sending
    the author to their itemsPath instead of the error that stopped it."""
    response = await web.client.post(
        "/api/connectors/try",
        json={"descriptor": acme_descriptor(), "credentials": {"apiKey": API_KEY}, "config": {}},
    )
    body = response.json()
    assert body["error"] == {"kind": "config", "message": "config field(s) baseUrl need a value"}
    assert body["pages"] == 0
    assert body["notes"] == []


async def _try_within(web: Web, acme: FakeServer, *, seconds: float) -> dict[str, Any]:
    """The answer to a try of the Acme connector against ``acme``, or a failed test when
    the try itself takes longer than ``seconds`` (the deadline under test did not hold)."""
    import asyncio

    response = await asyncio.wait_for(
        web.client.post(
            "/api/connectors/try",
            json={
                "descriptor": acme_descriptor(),
                "credentials": {"apiKey": API_KEY},
                "config": {"baseUrl": acme.base_url},
            },
        ),
        timeout=seconds,
    )
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_try_whose_upstream_drips_stops_at_the_poll_deadline(
    tmp_path: Any, acme: FakeServer
) -> None:
    """Each read arrives within the read timeout, so only a total deadline stops a drip: a
    poll has UCF_POLL_TIMEOUT, the try had none and held the editor's request for as
    long as the body took (minutes, over retries and pages)."""

    from tests.web.conftest import open_web, web_settings
    from ucf.fakes.kit import Fault

    acme.inject(Fault.drip(0.2, chunk=8), path="/tickets")
    try:
        async with open_web(web_settings(tmp_path, UCF_POLL_TIMEOUT="1")) as web:
            body = await _try_within(web, acme, seconds=15)
    finally:
        acme.clear_faults()
    assert body["error"] == {
        "kind": "upstream",
        "message": "try stopped at its 1 s deadline (UCF_POLL_TIMEOUT) after 0 page(s)",
    }
    assert body["request"]["url"].startswith(f"{acme.base_url}/tickets?since=")
    assert body["response"] is None


async def test_a_try_whose_upstream_never_answers_stops_at_its_own_deadline(
    web: Web, acme: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone waits for a try in the editor: with only a poll's deadline (5 min), an
    upstream that never answered held it for 154 s of attempts and retries, then said
    "read timed out". A try has a deadline of its own (30 s; 1 s here)."""

    from ucf.fakes.kit import Fault
    from ucf.service import tryout

    monkeypatch.setattr(tryout, "TRY_DEADLINE_SECONDS", 1.0)
    acme.inject(Fault.slow(30), path="/tickets")
    try:
        body = await _try_within(web, acme, seconds=15)
    finally:
        acme.clear_faults()
    assert body["error"] == {
        "kind": "upstream",
        "message": "try stopped at its 1 s deadline (a try's own; a poll waits "
        "UCF_POLL_TIMEOUT) after 0 page(s)",
    }


async def test_a_try_whose_token_refresh_is_refused_shows_no_token_request(web: Web) -> None:
    """Token requests are left out of what a try shows (their exchanges carry secrets and
    are not the poll's request), but they were skipped by their template ('{{baseUrl}}/
    oauth/token'), which no URL sent equals: a refused refresh showed its POST as the
    request the try made."""
    (linear,) = (d for d in builtin_descriptors() if d["id"] == "linear")
    with LinearFake(datetime.now(UTC)) as fake:
        response = await web.client.post(
            "/api/connectors/try",
            json={
                "descriptor": linear,
                "credentials": {
                    "authMethod": "oauth2",
                    "clientId": OAUTH_CLIENT_ID,
                    "clientSecret": OAUTH_CLIENT_SECRET,
                    "refreshToken": "lin_refresh_unknown_0af3c9e1",
                },
                "config": {"baseUrl": fake.base_url, "signInUrl": fake.base_url},
                "maxPages": 1,
            },
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["error"] is not None
    assert body["error"]["kind"] == "credentials_rejected", body["error"]
    assert (body["request"], body["response"]) == (None, None)
