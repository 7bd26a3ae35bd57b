"""The connector editor and the instance editor as server-rendered pages (no script needed)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from tests.web.conftest import Web
from tests.web.support import (
    ACME,
    API_KEY,
    CONNECTOR,
    PROJECT,
    TOKEN,
    alter_secret,
    instance_body,
)
from ucf.fakes.kit import FakeServer
from ucf.runtime.redaction import redact


async def login(web: Web) -> str:
    """A dashboard session on ``web.anonymous``; returns its CSRF token."""
    form = await web.anonymous.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce is not None
    await web.anonymous.post("/login", data={"token": TOKEN, "nonce": nonce.group(1), "next": "/"})
    page = await web.anonymous.get(f"/projects/{PROJECT}/connectors")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def test_the_catalogue_offers_new_connector_and_customise_a_copy(web: Web) -> None:
    await login(web)
    page = (await web.anonymous.get(f"/projects/{PROJECT}/connectors")).text
    assert f'href="/projects/{PROJECT}/connectors/new"' in page
    assert f"/projects/{PROJECT}/connectors/new?copy=github-issues" in page
    blank = await web.anonymous.get(f"/projects/{PROJECT}/connectors/new")
    assert blank.status_code == 200
    assert "&#34;id&#34;: &#34;my-connector&#34;" in blank.text
    copied = await web.anonymous.get(f"/projects/{PROJECT}/connectors/new?copy=github-issues")
    assert "github-issues-custom" in copied.text
    built_in = await web.anonymous.get(
        f"/projects/{PROJECT}/connectors/github-issues/edit", follow_redirects=False
    )
    assert built_in.headers["location"].endswith("/connectors/new?copy=github-issues")


async def test_a_copy_of_a_native_connector_says_it_has_no_code_behind_it(web: Web) -> None:
    """Jira's copy is its descriptor alone: the editor says so before anyone saves it,
    and saving it anyway is refused at ``kind`` (nothing would ever run it)."""
    csrf = await login(web)
    native = await web.anonymous.get(f"/projects/{PROJECT}/connectors/new?copy=jira")
    assert native.status_code == 200
    assert "jira-custom" in native.text
    assert 'id="native-copy"' in native.text
    assert "Jira Cloud is a native connector" in native.text
    generic = await web.anonymous.get(f"/projects/{PROJECT}/connectors/new?copy=github-issues")
    assert 'id="native-copy"' not in generic.text
    jira = (await web.client.get("/api/connectors/jira")).json()
    copied = {k: v for k, v in jira.items() if k not in {"builtIn", "createdAt", "updatedAt"}}
    saved = await web.anonymous.post(
        f"/projects/{PROJECT}/connectors/new",
        data={"csrf": csrf, "descriptor": json.dumps({**copied, "id": "jira-custom"})},
    )
    assert saved.status_code == 422, saved.text[:300]
    assert "no installed package provides it" in saved.text
    assert (await web.client.get("/api/connectors/jira-custom")).status_code == 404


async def test_saving_lists_every_problem_then_registers_and_shows_it_as_custom(web: Web) -> None:
    csrf = await login(web)
    broken = copy.deepcopy(ACME)
    broken["fieldMapping"]["idPath"] = "$.id[["
    broken["category"] = "Dev"
    refused = await web.anonymous.post(
        f"/projects/{PROJECT}/connectors/new",
        data={"csrf": csrf, "descriptor": json.dumps(broken)},
    )
    assert refused.status_code == 422
    assert "fieldMapping.idPath" in refused.text
    assert "<code>category</code>" in refused.text
    saved = await web.anonymous.post(
        f"/projects/{PROJECT}/connectors/new",
        data={"csrf": csrf, "descriptor": json.dumps(ACME)},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text[:300]
    custom = (await web.anonymous.get(saved.headers["location"])).text
    assert "Acme Tickets created (version 1.0.0)." in custom
    assert 'class="chip chip--custom"' in custom
    catalogue = (await web.anonymous.get(f"/projects/{PROJECT}/connectors")).text
    card = catalogue[catalogue.index("Acme Tickets</h2>") :].split("</div>", 1)[0]
    assert card.count(">Custom</span>") == 1, card  # its category is "Custom" too
    edited: dict[str, Any] = copy.deepcopy(ACME)
    edited["name"] = "Acme Helpdesk"
    again = await web.anonymous.post(
        f"/projects/{PROJECT}/connectors/{CONNECTOR}/edit",
        data={"csrf": csrf, "descriptor": json.dumps(edited)},
        follow_redirects=False,
    )
    assert again.status_code == 303
    stored = (await web.client.get(f"/api/connectors/{CONNECTOR}")).json()
    assert (stored["name"], stored["version"]) == ("Acme Helpdesk", "1.0.1")  # raised on edit


async def test_the_editor_lists_earlier_versions_and_restores_one(web: Web) -> None:
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    edit = f"/projects/{PROJECT}/connectors/{CONNECTOR}/edit"
    assert 'id="history-empty"' in (await web.anonymous.get(edit)).text
    saved = await web.anonymous.post(
        edit, data={"csrf": csrf, "descriptor": json.dumps({**ACME, "name": "Acme Helpdesk"})}
    )
    assert saved.status_code == 303
    page = (await web.anonymous.get(edit)).text
    assert "Version 1.0.1 is current" in page
    assert 'data-version="1.0.0"' in page
    assert "&#34;Acme Tickets&#34;" in page  # the earlier descriptor, readable
    restore = f"/projects/{PROJECT}/connectors/{CONNECTOR}/versions/1.0.0/restore"
    assert (await web.anonymous.post(restore, data={"csrf": "wrong"})).status_code == 403
    restored = await web.anonymous.post(restore, data={"csrf": csrf})
    assert restored.status_code == 303
    assert restored.headers["location"] == edit
    stored = (await web.client.get(f"/api/connectors/{CONNECTOR}")).json()
    assert (stored["name"], stored["version"]) == ("Acme Tickets", "1.0.2")
    page = (await web.anonymous.get(edit)).text
    assert 'data-version="1.0.1"' in page
    assert "version 1.0.0 restored as version 1.0.2" in page


async def test_a_save_from_an_editor_opened_before_another_save_is_refused(web: Web) -> None:
    """Two editors opened on 1.0.0: the second Save replaced the first one's edit without
    a word (stored as 1.0.2 over 1.0.1), since the page sent nothing of what it was
    opened on. It is a 409 naming the other edit; the first edit stays current."""
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    edit = f"/projects/{PROJECT}/connectors/{CONNECTOR}/edit"
    page = (await web.anonymous.get(edit)).text
    opened_on = re.search(r'name="saved_at" value="([^"]+)"', page)
    assert opened_on is not None
    first = {"csrf": csrf, "saved_at": opened_on.group(1)}
    saved = await web.anonymous.post(
        edit, data={**first, "descriptor": json.dumps({**ACME, "name": "Acme First"})}
    )
    assert saved.status_code == 303
    stale = await web.anonymous.post(
        edit, data={**first, "descriptor": json.dumps({**ACME, "name": "Acme Second"})}
    )
    assert stale.status_code == 409, stale.text[:300]
    assert "changed by someone else" in stale.text
    stored = (await web.client.get(f"/api/connectors/{CONNECTOR}")).json()
    assert (stored["name"], stored["version"]) == ("Acme First", "1.0.1")
    # Loaded again, the page is opened on the current version, and its Save goes through.
    again = re.search(r'name="saved_at" value="([^"]+)"', (await web.anonymous.get(edit)).text)
    assert again is not None
    resaved = await web.anonymous.post(
        edit,
        data={
            "csrf": csrf,
            "saved_at": again.group(1),
            "descriptor": json.dumps({**ACME, "name": "Acme Second"}),
        },
    )
    assert resaved.status_code == 303


async def test_the_editor_restores_a_version_whose_name_holds_a_slash(web: Web) -> None:
    csrf = await login(web)
    await web.client.post("/api/connectors", json={**ACME, "version": "2024/05"})
    edit = f"/projects/{PROJECT}/connectors/{CONNECTOR}/edit"
    renamed = {**ACME, "version": "2024/06", "name": "Acme Helpdesk"}
    assert (await web.client.put(f"/api/connectors/{CONNECTOR}", json=renamed)).is_success
    action = re.search(r'action="([^"]*/restore)"', (await web.anonymous.get(edit)).text)
    assert action is not None
    restored = await web.anonymous.post(action.group(1), data={"csrf": csrf})
    assert restored.status_code == 303, restored.text[:300]
    stored = (await web.client.get(f"/api/connectors/{CONNECTOR}")).json()
    assert stored["name"] == ACME["name"]


async def test_saving_json_too_deep_or_with_a_huge_number_lists_it_as_a_problem(
    web: Web,
) -> None:
    """``json`` raises RecursionError past about a thousand levels and ValueError for an
    integer of over 4300 digits: both were a 500 from the editor's Save."""
    csrf = await login(web)
    huge = json.dumps(ACME).replace('"rateLimitRpm": 600', '"rateLimitRpm": ' + "9" * 5000)
    for text, said in (
        ("[" * 100_000, "nested too deeply"),
        (huge, "a number has too many digits"),
    ):
        refused = await web.anonymous.post(
            f"/projects/{PROJECT}/connectors/new", data={"csrf": csrf, "descriptor": text}
        )
        assert refused.status_code == 422, refused.text[:300]
        assert said in refused.text
    assert (await web.client.get(f"/api/connectors/{CONNECTOR}")).status_code == 404


async def test_saving_a_descriptor_with_a_key_given_twice_names_it(web: Web) -> None:
    csrf = await login(web)
    text = json.dumps(ACME).replace('"idPath": ', '"idPath": "$.key", "idPath": ', 1)
    refused = await web.anonymous.post(
        f"/projects/{PROJECT}/connectors/new", data={"csrf": csrf, "descriptor": text}
    )
    assert refused.status_code == 422, refused.text[:300]
    assert "key &#39;idPath&#39; is given 2 times" in refused.text
    assert (await web.client.get(f"/api/connectors/{CONNECTOR}")).status_code == 404


async def test_deleting_a_connected_connector_is_refused_with_the_reason(
    web: Web, acme: FakeServer
) -> None:
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    refused = await web.anonymous.post(
        f"/projects/{PROJECT}/connectors/{CONNECTOR}/delete", data={"csrf": csrf}
    )
    assert refused.status_code == 409
    assert "still connected in project(s) proj-1" in refused.text
    # Its delete page says so first, and offers no Delete that can only be refused.
    base = f"/projects/{PROJECT}/connectors/{CONNECTOR}"
    asking = await web.anonymous.get(f"{base}/delete")
    assert asking.status_code == 200
    assert "cannot be deleted while it is connected" in asking.text
    assert f'href="/projects/{PROJECT}/instances/{CONNECTOR}"' in asking.text
    assert f'action="{base}/delete"' not in asking.text


async def test_deleting_a_connector_from_its_editor_asks_first(web: Web) -> None:
    """The editor's Delete button, beside Save, deleted the descriptor at one click, with no
    way back; it now opens a page that asks, as Disconnect does."""
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    base = f"/projects/{PROJECT}/connectors/{CONNECTOR}"
    editor = (await web.anonymous.get(f"{base}/edit")).text
    assert f'action="{base}/delete"' not in editor
    assert f'href="{base}/delete"' in editor
    asking = await web.anonymous.get(f"{base}/delete")
    assert asking.status_code == 200
    assert "Delete the connector Acme Tickets?" in asking.text
    assert f'action="{base}/delete"' in asking.text
    assert (await web.client.get(f"/api/connectors/{CONNECTOR}")).status_code == 200
    built_in = await web.anonymous.get(f"/projects/{PROJECT}/connectors/github-issues/delete")
    assert built_in.status_code == 404
    deleted = await web.anonymous.post(f"{base}/delete", data={"csrf": csrf})
    assert deleted.status_code == 303
    assert (await web.client.get(f"/api/connectors/{CONNECTOR}")).status_code == 404


async def test_editing_an_instance_replaces_credentials_and_keeps_the_checkpoint(
    web: Web, acme: FakeServer
) -> None:
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    polled = await web.client.post(f"/api/projects/{PROJECT}/instances/{CONNECTOR}/poll")
    assert polled.status_code == 200
    store = web.state.context.store
    before = await store.checkpoints.get(PROJECT, CONNECTOR)
    assert before.value is not None
    base = f"/projects/{PROJECT}/instances/{CONNECTOR}/edit"
    page = await web.anonymous.get(base)
    assert "leave empty to keep it" in page.text
    assert API_KEY not in page.text
    tested = await web.anonymous.post(
        base,
        data={"csrf": csrf, "action": "test", "credentials.apiKey": "wrong-key-0123456789",
              "config.baseUrl": acme.base_url},
    )  # fmt: skip
    assert "Connection failed (HTTP 401)" in tested.text
    assert "credentials rejected" in tested.text
    assert "wrong-key-0123456789" not in tested.text
    typed_word = await web.anonymous.post(
        base,
        data={"csrf": csrf, "action": "test", "credentials.apiKey": "garnet",
              "config.baseUrl": acme.base_url},
    )  # fmt: skip
    assert "credentials rejected" in typed_word.text
    assert redact("a garnet ring") == "a garnet ring"  # masked while tested, not for ever
    pasted = await web.anonymous.post(
        base,
        data={"csrf": csrf, "action": "test", "credentials.apiKey": f" {API_KEY}\n",
              "config.baseUrl": acme.base_url},
    )  # fmt: skip
    assert "Connection works (HTTP 200)" in pasted.text  # trimmed, as saving it trims it
    saved = await web.anonymous.post(
        base,
        data={"csrf": csrf, "action": "save", "credentials.apiKey": "rotated-key-000111222",
              "config.baseUrl": acme.base_url},
        follow_redirects=False,
    )  # fmt: skip
    assert saved.status_code == 303
    record = await web.state.context.instances.record(PROJECT, CONNECTOR)
    credentials = await web.state.context.instances.credentials(record)
    assert credentials["apiKey"] == "rotated-key-000111222"
    assert "webhookSecret" in credentials  # the one left empty is kept
    assert await store.checkpoints.get(PROJECT, CONNECTOR) == before


async def test_a_key_its_test_rejected_is_not_carried_to_the_save_after_it(
    web: Web, acme: FakeServer
) -> None:
    """Typed credentials are carried, sealed, from Test connection to the Save after it;
    those of a failed test were carried too, so a Save made only to change a setting
    stored the key the page had just called rejected, in place of the working one. What
    an earlier test passed with is still carried."""
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    base = f"/projects/{PROJECT}/instances/{CONNECTOR}/edit"

    def carried(page: str) -> dict[str, str]:
        found = re.search(r'name="tested" value="([^"]+)"', page)
        return {"tested": found.group(1)} if found else {}

    async def stored_key() -> str:
        record = await web.state.context.instances.record(PROJECT, CONNECTOR)
        return (await web.state.context.instances.credentials(record))["apiKey"]

    form = {"csrf": csrf, "config.baseUrl": acme.base_url}
    failed = await web.anonymous.post(
        base, data={**form, "action": "test", "credentials.apiKey": "wrong-key-0123456789"}
    )
    assert "Connection failed (HTTP 401)" in failed.text
    saved = await web.anonymous.post(
        base, data={**form, "action": "save", **carried(failed.text)}, follow_redirects=False
    )
    assert saved.status_code == 303
    assert await stored_key() == API_KEY
    assert "The credentials typed for this test are not kept" in failed.text
    assert "Not saved yet" not in failed.text

    passed = await web.anonymous.post(
        base, data={**form, "action": "test", "credentials.apiKey": f" {API_KEY}\n"}
    )
    assert "Connection works (HTTP 200)" in passed.text
    then_failed = await web.anonymous.post(
        base,
        data={**form, "action": "test", "credentials.apiKey": "wrong-key-9876543210",
              **carried(passed.text)},
    )  # fmt: skip
    assert "Connection failed (HTTP 401)" in then_failed.text
    assert f"Not saved yet: <code>••••{API_KEY[-4:]}</code>" in then_failed.text


async def test_credentials_carried_from_a_test_reach_only_the_instance_they_were_tested_for(
    web: Web, acme: FakeServer
) -> None:
    """The sealed credentials were bound to the project and connector ids: a page left open
    (or brought back by Back) for an instance since disconnected carried its key to the
    one connected again under the same id, whose Save then stored it."""
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    instances = f"/api/projects/{PROJECT}/instances"
    await web.client.post(instances, json=instance_body(acme.base_url))
    base = f"/projects/{PROJECT}/instances/{CONNECTOR}/edit"
    form = {"csrf": csrf, "config.baseUrl": acme.base_url}
    passed = await web.anonymous.post(
        base, data={**form, "action": "test", "credentials.apiKey": API_KEY}
    )
    assert "Connection works (HTTP 200)" in passed.text
    found = re.search(r'name="tested" value="([^"]+)"', passed.text)
    assert found is not None
    assert (await web.client.delete(f"{instances}/{CONNECTOR}")).status_code == 204
    again = instance_body(acme.base_url)
    again["credentials"]["apiKey"] = "the-new-account-key-42"
    assert (await web.client.post(instances, json=again)).status_code == 201
    saved = await web.anonymous.post(
        base, data={**form, "action": "save", "tested": found.group(1)}, follow_redirects=False
    )
    assert saved.status_code == 303
    record = await web.state.context.instances.record(PROJECT, CONNECTOR)
    credentials = await web.state.context.instances.credentials(record)
    assert credentials["apiKey"] == "the-new-account-key-42"


async def test_an_instance_whose_secret_was_altered_can_be_tested_and_repaired_in_its_editor(
    web: Web, acme: FakeServer, tmp_path: Path
) -> None:
    """Its editor answered 500 (page, Test connection and save), though its error says
    "store the credentials again": the stored ones are shown unset and the typed ones
    are tested, then saved."""
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    record = await web.state.context.instances.record(PROJECT, CONNECTOR)
    assert record.credential_secret_ref is not None
    alter_secret(tmp_path, record.credential_secret_ref)
    base = f"/projects/{PROJECT}/instances/{CONNECTOR}/edit"
    page = await web.anonymous.get(base)
    assert page.status_code == 200
    assert "leave empty to keep it" not in page.text
    typed = {"csrf": csrf, "credentials.apiKey": API_KEY, "config.baseUrl": acme.base_url}
    tested = await web.anonymous.post(base, data={**typed, "action": "test"})
    assert tested.status_code == 200, tested.text[:500]
    assert "Connection works (HTTP 200)" in tested.text
    saved = await web.anonymous.post(base, data={**typed, "action": "save"}, follow_redirects=False)
    assert saved.status_code == 303, saved.text[:500]
    record = await web.state.context.instances.record(PROJECT, CONNECTOR)
    assert (await web.state.context.instances.credentials(record))["apiKey"] == API_KEY


async def test_a_credential_field_of_spaces_is_left_as_it_is_and_not_said_saved(
    web: Web, acme: FakeServer
) -> None:
    """A field of spaces keeps the stored credential, as an empty one does; the flash
    said 'settings and credentials saved' all the same."""
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    base = f"/projects/{PROJECT}/instances/{CONNECTOR}/edit"
    saved = await web.anonymous.post(
        base,
        data={"csrf": csrf, "action": "save", "credentials.apiKey": "   ",
              "config.baseUrl": acme.base_url},
    )  # fmt: skip
    assert saved.status_code == 303
    page = await web.anonymous.get(saved.headers["location"])
    assert "Acme Tickets: settings saved." in page.text
    assert "credentials saved" not in page.text
    record = await web.state.context.instances.record(PROJECT, CONNECTOR)
    assert (await web.state.context.instances.credentials(record))["apiKey"] == API_KEY


async def test_the_authoring_api_takes_the_dashboard_session_only_with_its_csrf_header(
    web: Web,
) -> None:
    csrf = await login(web)
    without = await web.anonymous.post("/api/connectors/validate", json=ACME)
    assert without.status_code == 401
    wrong = await web.anonymous.post(
        "/api/connectors/validate", json=ACME, headers={"X-CSRF-Token": "nope"}
    )
    assert wrong.status_code == 401
    right = await web.anonymous.post(
        "/api/connectors/validate", json=ACME, headers={"X-CSRF-Token": csrf}
    )
    assert right.json() == {"valid": True, "problems": []}
    other = await web.anonymous.get("/api/connectors", headers={"X-CSRF-Token": csrf})
    assert other.status_code == 401  # the rest of the API still wants the admin token


async def test_the_editor_page_carries_the_descriptor_schema_its_form_is_drawn_from(
    web: Web,
) -> None:
    from ucf.core.descriptor import descriptor_json_schema

    await login(web)
    page = (await web.anonymous.get(f"/projects/{PROJECT}/connectors/new")).text
    found = re.search(
        r'<script type="application/json" id="descriptor-schema">(.*?)</script>', page, re.S
    )
    assert found is not None
    assert "<" not in found.group(1)  # nothing in it can end the script element early
    published = descriptor_json_schema()
    # Less a file's "$schema" pointer (ucf ignores it): drawn, it was a setting under "Other".
    del published["properties"]["$schema"]
    assert json.loads(found.group(1)) == published


async def test_a_save_from_an_instance_page_drawn_before_its_connector_changed_says_why(
    web: Web, acme: FakeServer
) -> None:
    """The page was drawn with a setting the connector has since dropped: the refusal was
    kept for a field no longer drawn, and the page answered 422 showing nothing."""
    csrf = await login(web)
    with_team = copy.deepcopy(ACME)
    with_team["configFields"].append({"key": "team", "label": "Team", "required": False})
    await web.client.post("/api/connectors", json=with_team)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    base = f"/projects/{PROJECT}/instances/{CONNECTOR}/edit"
    assert 'name="config.team"' in (await web.anonymous.get(base)).text
    assert (await web.client.put(f"/api/connectors/{CONNECTOR}", json=ACME)).status_code == 200

    saved = await web.anonymous.post(
        base,
        data={"csrf": csrf, "action": "save", "config.baseUrl": acme.base_url,
              "config.team": "red"},
    )  # fmt: skip
    assert saved.status_code == 422
    assert 'role="alert"' in saved.text
    assert "config.team: unknown setting (known: baseUrl)" in saved.text


async def test_saving_an_edit_its_instances_no_longer_fit_names_them(
    web: Web, acme: FakeServer
) -> None:
    """A new required setting: the connected instance fails from its next poll, and the
    editor's Save said only "Connected instances use it from their next poll"."""
    csrf = await login(web)
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url))
    edited: dict[str, Any] = copy.deepcopy(ACME)
    edited["configFields"].append({"key": "region", "label": "Region"})
    saved = await web.anonymous.post(
        f"/projects/{PROJECT}/connectors/{CONNECTOR}/edit",
        data={"csrf": csrf, "descriptor": json.dumps(edited)},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    catalogue = (await web.anonymous.get(saved.headers["location"])).text
    assert "1 connected instance(s) no longer fit its settings" in catalogue
    assert f"project {PROJECT}: config.region: &#39;Region&#39; is required" in catalogue

    edited["configFields"].pop()  # fitting again: the usual message
    again = await web.anonymous.post(
        f"/projects/{PROJECT}/connectors/{CONNECTOR}/edit",
        data={"csrf": csrf, "descriptor": json.dumps(edited)},
        follow_redirects=False,
    )
    catalogue = (await web.anonymous.get(again.headers["location"])).text
    assert "Connected instances use it from their next poll." in catalogue
