"""The commands a descriptor author runs, run as a user runs them: the real console script."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UCF = str(Path(sys.executable).parent / "ucf")
GITHUB = ROOT / "src/ucf/catalogue/github-issues.json"


def ucf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [UCF, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def test_schema_prints_the_committed_json_schema() -> None:
    result = ucf("schema")
    assert result.returncode == 0
    committed = json.loads((ROOT / "schema/connector-descriptor.schema.json").read_text())
    assert json.loads(result.stdout) == committed


def test_validate_prints_a_one_line_summary_for_a_valid_file() -> None:
    result = ucf("connectors", "validate", str(GITHUB))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "github-issues v1.1.0" in result.stdout
    assert "issue_commented" in result.stdout


def test_validate_lists_every_problem_with_path_and_hint_and_fails(tmp_path: Path) -> None:
    data: dict[str, Any] = json.loads(GITHUB.read_text())
    data["id"] = "GitHub"
    data["fieldMapping"]["itemPath"] = "$"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = ucf("connectors", "validate", str(bad), str(GITHUB))
    assert result.returncode == 1
    assert "2 problem(s)" in result.stderr
    assert "  id: " in result.stderr
    assert "fieldMapping.itemPath: unknown field 'itemPath'" in result.stderr
    assert "hint: did you mean 'itemsPath'?" in result.stderr
    assert "github-issues v1.1.0" in result.stdout  # the good file is still reported
    assert "Traceback" not in result.stderr


def test_validate_names_each_key_given_twice_with_its_path(tmp_path: Path) -> None:
    """``json`` keeps the last of a repeated key silently; validate says so, and fails."""
    text = GITHUB.read_text().replace('"idPath": ', '"idPath": "$.number", "idPath": ', 1)
    repeated = tmp_path / "repeated.json"
    repeated.write_text(text)
    result = ucf("connectors", "validate", str(repeated))
    assert result.returncode == 1
    assert "1 problem(s)" in result.stderr
    assert "  ingestion.webhook.fieldMapping.idPath: key 'idPath' is given 2 times" in result.stderr


def test_validate_reports_unreadable_and_non_json_files_in_one_line(tmp_path: Path) -> None:
    missing = ucf("connectors", "validate", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: cannot read descriptor")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = ucf("connectors", "validate", str(broken))
    assert result.returncode == 2
    assert "is not JSON" in result.stderr
    assert "line 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_files_saved_with_a_byte_order_mark_are_read_as_the_api_reads_them(
    tmp_path: Path,
) -> None:
    """Notepad saves UTF-8 with a BOM: the API and the gateway read such a body, the
    commands said "not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig)"."""
    descriptor = tmp_path / "github.json"
    descriptor.write_bytes(b"\xef\xbb\xbf" + GITHUB.read_bytes())
    sample = tmp_path / "page.json"
    page = [{"id": 1, "number": 1, "title": "t", "updated_at": "2024-02-01T10:00:00Z"}]
    sample.write_bytes(b"\xef\xbb\xbf" + json.dumps(page).encode())
    assert ucf("connectors", "validate", str(descriptor)).returncode == 0
    mapped = ucf("map", "--descriptor", str(descriptor), "--sample", str(sample), "--poll")
    assert mapped.returncode == 0, mapped.stderr
    assert json.loads(mapped.stdout)["summary"].startswith("#1 t")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a": "caf\xe9"}', "is not UTF-8 text (byte 0xe9 at offset 10): save it as UTF-8"),
        (b'{"a": ' + b"9" * 5000 + b"}", "a number has too many digits"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
    ],
    ids=["deep", "latin-1", "huge-number", "nan"],
)
def test_map_refuses_a_file_json_cannot_read_in_one_line(
    tmp_path: Path, content: bytes, said: str
) -> None:
    """Each of these raised past read_json_file: a traceback and exit 1."""
    sample = tmp_path / "sample.json"
    sample.write_bytes(content)
    result = ucf("map", "--descriptor", str(GITHUB), "--sample", str(sample))
    assert result.returncode == 2
    assert result.stderr.startswith("error: sample "), result.stderr[-300:]
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    as_descriptor = ucf("connectors", "validate", str(sample))
    assert as_descriptor.returncode == 2
    assert "Traceback" not in as_descriptor.stderr


def test_map_prints_signals_as_json_lines_and_item_errors_on_stderr(tmp_path: Path) -> None:
    sample = tmp_path / "issues.json"
    sample.write_text(
        json.dumps(
            [
                {"id": 1, "number": 1, "title": "A", "created_at": "2024-01-01T00:00:00Z",
                 "updated_at": "2024-01-01T00:00:00Z", "labels": [{"name": "P0"}], "assignees": []},
                {"number": 2, "title": "no id", "updated_at": "2024-01-01T00:00:00Z"},
            ]
        )
    )  # fmt: skip
    result = ucf("map", "--descriptor", str(GITHUB), "--sample", str(sample), "--project", "p9")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 1
    assert lines[0]["type"] == "issue_created"
    assert lines[0]["projectId"] == "p9"
    assert lines[0]["metadata"]["priority"] == "critical"
    assert "item 1: no id at $.id" in result.stderr


def test_map_treats_a_sample_with_headers_as_a_webhook_delivery(tmp_path: Path) -> None:
    payload = {
        "action": "created",
        "issue": {"id": 7, "number": 3, "title": "Crash", "updated_at": "2024-02-01T10:00:00Z"},
        "comment": {"id": 99, "body": "me too"},
    }
    sample = tmp_path / "hook.json"
    sample.write_text(json.dumps(payload))
    args = ["map", "--descriptor", str(GITHUB), "--sample", str(sample)]
    result = ucf(
        *args, "--header", "X-GitHub-Event: issue_comment", "--header", "X-GitHub-Delivery: d-1"
    )
    assert result.returncode == 0, result.stderr
    signal = json.loads(result.stdout)
    assert signal["type"] == "issue_commented"
    ignored = ucf(*args, "--header", "X-GitHub-Event: star")
    assert ignored.returncode == 0
    assert ignored.stdout == ""
    assert "not handled" in ignored.stderr


def test_map_checks_a_deliverys_signature_with_the_secret_its_note_asks_for(
    tmp_path: Path,
) -> None:
    """The note said "give the secret to check this delivery as the gateway would", but
    ``ucf map`` took no secret: --secret (or UCF_WEBHOOK_SECRET) now checks it."""
    body = b'{"action": "opened", "issue": {"id": 7, "number": 3, "title": "Crash", "updated_at": "2024-02-01T10:00:00Z"}}'
    sample = tmp_path / "hook.json"
    sample.write_bytes(body)
    signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    args = ["map", "--descriptor", str(GITHUB), "--sample", str(sample), "--webhook"]
    args += ["--header", "X-GitHub-Event: issues", "--header", f"X-Hub-Signature-256: {signature}"]
    unchecked = ucf(*args)
    assert "not checked: give the secret" in unchecked.stderr
    checked = ucf(*args, "--secret", "s3cret")
    assert checked.returncode == 0, checked.stderr
    assert "note:" not in checked.stderr
    assert "signature valid: the gateway would accept this delivery" in checked.stderr
    assert json.loads(checked.stdout)["type"] == "issue_created"
    wrong = ucf(*args, "--secret", "not-the-secret")
    assert "the gateway would refuse this delivery (HTTP 401)" in wrong.stderr
    assert "signature valid" not in wrong.stderr + unchecked.stderr


def test_map_reads_a_webhook_payload_with_webhook_even_without_headers(tmp_path: Path) -> None:
    payload = {
        "action": "opened",
        "issue": {"id": 8, "number": 4, "title": "Opened", "updated_at": "2024-02-01T10:00:00Z"},
    }
    sample = tmp_path / "hook.json"
    sample.write_text(json.dumps(payload))
    linear = ROOT / "src/ucf/catalogue/linear.json"
    guessed = ucf("map", "--descriptor", str(linear), "--sample", str(sample))
    assert guessed.returncode == 0, guessed.stderr
    assert guessed.stdout == ""
    assert "matched nothing" in guessed.stderr
    assert "use --webhook" in guessed.stderr


def test_map_says_a_guessed_poll_read_may_be_wrong_when_every_item_failed() -> None:
    """The guide's GitLab Issue Hook without --webhook: one item, no id at the top level."""
    guessed = ucf(
        "map", "--descriptor", str(ROOT / "examples/gitlab-issues.json"),
        "--sample", str(ROOT / "examples/gitlab-issue-hook.json"),
    )  # fmt: skip
    assert guessed.returncode == 1
    assert "item 0: no id at $.id" in guessed.stderr
    assert (
        "note: the sample was read as a poll response and none of its items mapped; "
        "if it is a webhook delivery, use --webhook"
    ) in guessed.stderr
    told = ucf(
        "map", "--descriptor", str(ROOT / "examples/gitlab-issues.json"),
        "--sample", str(ROOT / "examples/gitlab-issue-hook.json"), "--poll",
    )  # fmt: skip
    assert "note:" not in told.stderr  # the mode was given, not guessed


def test_map_by_builtin_id_and_explicit_modes(tmp_path: Path) -> None:
    sample = tmp_path / "issues.json"
    sample.write_text(
        json.dumps([{"id": 5, "number": 5, "title": "B", "created_at": "2024-01-01T00:00:00Z",
                     "updated_at": "2024-01-02T00:00:00Z"}])
    )  # fmt: skip
    by_id = ucf("map", "--descriptor", "github-issues", "--sample", str(sample), "--poll")
    assert by_id.returncode == 0, by_id.stderr
    assert json.loads(by_id.stdout)["type"] == "issue_updated"
    both = ucf(
        "map", "--descriptor", "github-issues", "--sample", str(sample), "--poll", "--webhook"
    )
    assert both.returncode != 0
    assert "exclude each other" in both.stderr
    unknown = ucf("map", "--descriptor", "no-such-connector", "--sample", str(sample))
    assert unknown.returncode != 0
    assert "no built-in or installed connector 'no-such-connector'" in unknown.stderr


def test_map_prints_what_the_store_would_receive_sanitised(tmp_path: Path) -> None:
    sample = tmp_path / "issues.json"
    sample.write_text(
        json.dumps([{"id": 6, "number": 6, "title": "token ghp_0123456789abcdefghijABCDEFGHIJ012345",
                     "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}])
    )  # fmt: skip
    result = ucf("map", "--descriptor", str(GITHUB), "--sample", str(sample))
    assert result.returncode == 0, result.stderr
    signal = json.loads(result.stdout)
    assert signal["sanitised"] is True
    assert "ghp_0123456789" not in result.stdout


@pytest.mark.parametrize("name", ["normalised", "sanitised"])
def test_schema_signal_prints_the_committed_signal_schema(name: str) -> None:
    result = ucf("schema", "--signal", name)
    assert result.returncode == 0, result.stderr
    committed = json.loads((ROOT / f"schema/{name}-signal.schema.json").read_text())
    assert json.loads(result.stdout) == committed


def test_validate_takes_built_in_and_native_ids_as_well_as_files() -> None:
    result = ucf("connectors", "validate", "jira", "slack")
    assert result.returncode == 0, result.stderr
    assert "jira: ok — jira v" in result.stdout
    assert "(native, Project Management" in result.stdout
    assert "slack: ok — slack v" in result.stdout
    missing = ucf("connectors", "validate", "no-such-connector")
    assert missing.returncode != 0
    assert "no built-in or installed connector 'no-such-connector'" in missing.stderr


def test_connectors_new_writes_a_template_that_validates_and_maps(tmp_path: Path) -> None:
    target = tmp_path / "acme-tickets.json"
    written = ucf("connectors", "new", "acme-tickets", "--out", str(target))
    assert written.returncode == 0, written.stderr
    data = json.loads(target.read_text())
    assert (data["id"], data["name"], data["category"]) == (
        "acme-tickets",
        "Acme Tickets",
        "Custom",
    )
    assert ucf("connectors", "validate", str(target)).returncode == 0
    sample = tmp_path / "page.json"
    sample.write_text(
        json.dumps({"items": [{"id": 7, "title": "Hi", "state": "closed", "updated_at": 1}]})
    )
    mapped = ucf("map", "--descriptor", str(target), "--sample", str(sample))
    assert json.loads(mapped.stdout)["type"] == "item_closed"
    again = ucf("connectors", "new", "acme-tickets", "--out", str(target))
    assert again.returncode == 2
    assert "exists; pass --force" in again.stderr


def test_a_descriptor_name_that_is_neither_a_file_nor_a_connector_lists_the_ids(
    tmp_path: Path,
) -> None:
    """``--descriptor jria``: a connector id typed wrong, not a path to look for."""
    result = subprocess.run(
        [UCF, "check", "--descriptor", "jria"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: no descriptor file jria and no built-in or installed connector 'jria'; "
        "connector ids here: asana, confluence,"
    )
    assert "jira" in result.stderr
    missing_file = ucf("map", "--descriptor", str(tmp_path / "acme.json"), "--sample", "x.json")
    assert "cannot read descriptor" in missing_file.stderr  # a path stays a path


def test_a_connector_id_names_the_connector_beside_a_directory_of_that_name(
    tmp_path: Path,
) -> None:
    """Beside a native package's checkout named like its connector (``my-tool/``), or a
    folder called ``jira``, ``--descriptor jira`` read the directory: "Is a directory"."""
    (tmp_path / "jira").mkdir()
    (tmp_path / "jria").mkdir()
    (tmp_path / "page.json").write_text('{"issues": []}')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [UCF, *args], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
        )

    mapped = run("map", "--descriptor", "jira", "--sample", "page.json", "--poll")
    assert mapped.returncode == 0, mapped.stderr
    assert "0 signal(s)" in mapped.stderr
    validated = run("connectors", "validate", "jira")
    assert validated.returncode == 0, validated.stderr
    unknown = run("check", "--descriptor", "jria")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith(
        "error: jria is a directory, not a descriptor file, and no built-in or installed "
        "connector 'jria'; connector ids here: asana,"
    )


def test_connectors_new_from_a_native_connector_says_the_copy_has_no_code(tmp_path: Path) -> None:
    """A copy of Jira validates and registers, then every poll fails: say so when it is made."""
    target = tmp_path / "my-jira.json"
    result = ucf("connectors", "new", "my-jira", "--from", "jira", "--out", str(target))
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text())["kind"] == "native"
    assert "note: jira is a native connector" in result.stderr
    assert "until a package with that entry point is installed" in result.stderr
    generic = ucf("connectors", "new", "my-issues", "--from", "github-issues",
                  "--out", str(tmp_path / "my-issues.json"))  # fmt: skip
    assert "note:" not in generic.stderr


def test_connectors_new_from_a_builtin_copies_it_under_the_new_id(tmp_path: Path) -> None:
    target = tmp_path / "copy.json"
    result = ucf("connectors", "new", "my-issues", "--from", "github-issues", "--out", str(target))
    assert result.returncode == 0, result.stderr
    copy = json.loads(target.read_text())
    original = json.loads(GITHUB.read_text())
    assert (copy["id"], copy["name"]) == ("my-issues", "GitHub Issues (custom)")
    assert copy["fieldMapping"] == original["fieldMapping"]
    assert ucf("connectors", "validate", str(target)).returncode == 0
    bad = ucf("connectors", "new", "My Issues")
    assert bad.returncode == 2
    assert "is not a connector id" in bad.stderr
    missing = ucf("connectors", "new", "x", "--from", "no-such-connector")
    assert "no built-in connector or file 'no-such-connector'" in missing.stderr


def test_connectors_docs_renders_a_users_descriptor_file(tmp_path: Path) -> None:
    target = tmp_path / "acme.json"
    ucf("connectors", "new", "acme", "--out", str(target))
    page = ucf("connectors", "docs", str(target))
    assert page.returncode == 0, page.stderr
    assert page.stdout.startswith("# Acme (`acme`)")
    assert "| `apiKey` | API key | yes |" in page.stdout
    folder = tmp_path / "pages"
    written = ucf("connectors", "docs", str(target), "--out", str(folder))
    assert written.returncode == 0
    assert written.stderr == f"wrote {folder / 'acme.md'}\n"
    assert (folder / "acme.md").read_text() == page.stdout
    again = ucf("connectors", "docs", str(target), "--out", str(folder))
    assert (again.returncode, again.stderr) == (0, f"{folder}: 1 page(s) up to date\n")
    # --check of a file's page: it printed the page and said 0, whatever the folder held
    (folder / "acme.md").write_text("# an old page\n")
    unchecked = ucf("connectors", "docs", str(target), "--check")
    assert (unchecked.returncode, unchecked.stdout) == (2, "")
    assert "--check compares your pages with those in a folder: give it --out" in unchecked.stderr
    stale = ucf("connectors", "docs", str(target), "--check", "--out", str(folder))
    assert (stale.returncode, stale.stderr) == (1, f"stale {folder / 'acme.md'}\n")


def test_connectors_docs_writes_the_shipped_pages_only_into_a_checkouts_folder(
    tmp_path: Path,
) -> None:
    """Without --out, the shipped pages go to docs/connectors under the current directory
    (a ucf checkout's, which it regenerates). Run anywhere else it made that folder and
    wrote fifteen pages into it, over a project's own pages of the same names."""
    elsewhere = ucf("connectors", "docs", cwd=tmp_path)
    assert (elsewhere.returncode, elsewhere.stdout) == (2, "")
    assert elsewhere.stderr.startswith(f"error: there is no docs/connectors folder in {tmp_path}")
    assert "--out DIR to write them elsewhere" in elsewhere.stderr
    assert list(tmp_path.iterdir()) == []
    checked = ucf("connectors", "docs", "--check", cwd=tmp_path)
    # --check writes nothing: it is told where to find pages to compare with.
    assert checked.returncode == 2
    assert "--out DIR to compare them with elsewhere" in checked.stderr

    (tmp_path / "docs/connectors").mkdir(parents=True)
    checkout = ucf("connectors", "docs", cwd=tmp_path)
    assert checkout.returncode == 0, checkout.stderr
    assert (tmp_path / "docs/connectors/jira.md").read_text() == (
        ROOT / "docs/connectors/jira.md"
    ).read_text()
    helped = ucf("connectors", "docs", "--help")
    assert "current directory" in " ".join(helped.stdout.split())


def test_connectors_docs_leaves_a_projects_own_page_of_a_shipped_name_alone(
    tmp_path: Path,
) -> None:
    """A project with its own docs/connectors (not a ucf checkout) passed the folder check:
    its own jira.md was replaced by the shipped page. Without --out only pages this
    command generated are replaced; here nothing is written, and the error says why."""
    folder = tmp_path / "docs/connectors"
    folder.mkdir(parents=True)
    own = folder / "jira.md"
    own.write_text("# Our Jira notes\n", encoding="utf-8")

    run = ucf("connectors", "docs", cwd=tmp_path)

    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.startswith(f"error: {Path('docs/connectors/jira.md')} was not generated")
    assert "--out DIR" in run.stderr
    assert own.read_text(encoding="utf-8") == "# Our Jira notes\n"
    assert [p.name for p in folder.iterdir()] == ["jira.md"]


JIRA_ISSUE = {
    "id": "10001",
    "key": "OPS-1",
    "fields": {
        "summary": "Login broken",
        "updated": "2026-12-01T00:00:00.000+0000",
        "created": "2026-12-01T00:00:00.000+0000",
        "status": {"name": "To Do"},
        "priority": {"name": "High"},
        "labels": [],
    },
}
GRAPH_MESSAGE = {
    "id": "AAMk1",
    "subject": "Invoice overdue",
    "receivedDateTime": "2026-12-01T00:00:00Z",
    "lastModifiedDateTime": "2026-12-01T00:00:00Z",
    "from": {"emailAddress": {"address": "a@example.com"}},
    "bodyPreview": "Please pay",
}


@pytest.mark.parametrize(
    ("connector", "page", "key"),
    [
        ("jira", {"issues": [JIRA_ISSUE], "isLast": True}, "'issues'"),
        (
            "outlook",
            {"value": [GRAPH_MESSAGE], "@odata.deltaLink": "https://graph.microsoft.com/d"},
            "'value'",
        ),
    ],
)
def test_map_reads_a_native_connectors_saved_response_page(
    tmp_path: Path, connector: str, page: dict[str, Any], key: str
) -> None:
    """A saved page of the API a native connector polls maps as its bare array of items does."""
    [items] = [value for value in page.values() if isinstance(value, list)]
    saved, bare, other = tmp_path / "page.json", tmp_path / "items.json", tmp_path / "other.json"
    saved.write_text(json.dumps(page))
    bare.write_text(json.dumps(items))
    other.write_text(json.dumps({"unrelated": True}))
    from_page = ucf("map", "--descriptor", connector, "--sample", str(saved), "--poll")
    from_items = ucf("map", "--descriptor", connector, "--sample", str(bare), "--poll")
    assert from_page.returncode == 0, from_page.stderr
    assert from_page.stdout == from_items.stdout
    assert len(from_page.stdout.splitlines()) == 1
    refused = ucf("map", "--descriptor", connector, "--sample", str(other), "--poll")
    assert refused.returncode == 2
    assert key in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("connector", "sample", "reasons"),
    [
        # Asana's poll maps tasks it reads from the API: no saved JSON is one of its items.
        ("asana", [{"gid": "12", "name": "Ship it"}], ("cannot be mapped offline", "try it live")),
        # SES only receives SNS notifications: mapped as a poll, each gave an item error
        # ("the notification has no mail.messageId") and exit 1, the real reason unsaid.
        (
            "ses",
            [{"Type": "Notification", "Message": "{}"}],
            ("ses does not poll (if the sample is a webhook delivery, use --webhook)",),
        ),
    ],
)
def test_map_says_why_a_saved_page_of_a_connector_cannot_be_mapped_as_a_poll(
    tmp_path: Path, connector: str, sample: list[dict[str, Any]], reasons: tuple[str, ...]
) -> None:
    saved = tmp_path / "page.json"
    saved.write_text(json.dumps(sample))
    result = ucf("map", "--descriptor", connector, "--sample", str(saved), "--poll")
    assert result.returncode == 2
    assert result.stdout == ""
    for reason in reasons:
        assert reason in result.stderr


def test_map_of_a_delivery_to_a_connector_without_webhooks_names_its_own_switch(
    tmp_path: Path,
) -> None:
    """The refusal's hint is ``ucf map``'s own switch, not the service's words ("preview it
    as a poll": no such command here)."""
    saved = tmp_path / "hook.json"
    saved.write_text(json.dumps({"action": "opened"}))
    polling_only = str(ROOT / "tests/fixtures/descriptors/brief-github-issues.json")
    result = ucf("map", "--descriptor", polling_only, "--sample", str(saved), "--webhook")
    assert result.returncode == 2
    assert "receives no webhooks (if the sample is a poll response, use --poll)" in result.stderr


def test_validate_lists_the_default_type_among_the_signal_types(tmp_path: Path) -> None:
    """A connector whose rules leave most items to ``defaultType`` emits it more than any
    other; the one-line summary left it out of "signal types"."""
    data: dict[str, Any] = json.loads(GITHUB.read_text())
    data["fieldMapping"]["defaultType"] = "issue_seen"
    path = tmp_path / "github.json"
    path.write_text(json.dumps(data))
    result = ucf("connectors", "validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "signal types: issue_commented, issue_created, issue_seen, issue_updated)" in (
        result.stdout
    )


def test_validate_notes_a_native_descriptor_no_installed_package_provides(tmp_path: Path) -> None:
    """The copy of Jira validated "ok", and then the API, the editor and saving refused it
    (422 at kind: nothing runs it): validate says so in a note, and stays a success (the
    file is sound; its package may be about to be installed)."""
    target = tmp_path / "my-jira.json"
    assert (
        ucf("connectors", "new", "my-jira", "--from", "jira", "--out", str(target)).returncode == 0
    )
    copy = ucf("connectors", "validate", str(target))
    assert copy.returncode == 0, copy.stderr
    assert copy.stdout.startswith(f"{target}: ok")
    assert "note: kind: connector 'my-jira' is native, but no installed package provides it" in (
        copy.stderr
    )
    shipped = ucf("connectors", "validate", "jira")
    assert (shipped.returncode, shipped.stderr) == (0, "")
