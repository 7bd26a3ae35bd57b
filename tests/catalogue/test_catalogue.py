"""The shipped catalogue as files: each descriptor in ``<id>.json``, found by its id alone."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ucf.catalogue import builtin_descriptor, builtin_descriptors

SHIPPED = builtin_descriptors()


def test_every_shipped_file_is_named_after_the_id_it_holds() -> None:
    folder = Path(__file__).resolve().parents[2] / "src" / "ucf" / "catalogue"
    files = sorted(path.stem for path in folder.glob("*.json"))

    assert files == [data["id"] for data in SHIPPED]


@pytest.mark.parametrize("data", SHIPPED, ids=lambda data: str(data["id"]))
def test_a_shipped_descriptor_read_by_its_id_is_the_catalogues_entry(
    data: dict[str, object],
) -> None:
    assert builtin_descriptor(str(data["id"])) == data


@pytest.mark.parametrize(
    "connector_id",
    [
        "my-tracker",
        "GitHub-Issues",
        "../catalogue/jira",
        "jira.json",
        "",
        "-",
        "jira\x00",
        "jira/",
        "jira\n",
        "jira\u0661",
        "..",
    ],
)
def test_an_id_no_shipped_file_holds_finds_nothing(connector_id: str) -> None:
    assert builtin_descriptor(connector_id) is None


def test_an_id_too_long_for_a_file_name_finds_nothing() -> None:
    """An id taken from a URL (the webhook gateway's, answered 404 for no connector) may be
    longer than a file name can be: the system's refusal (``ENAMETOOLONG``) means no shipped
    file holds it, not an error."""
    assert builtin_descriptor("a" * 300) is None


def test_a_catalogue_imported_from_a_zip_archive_finds_its_descriptors(tmp_path: Path) -> None:
    """A package imported from an archive (zipimport: a zipapp, a zipped layer) has no plain
    files to open: the id is looked up in the listing, which reads the archive."""
    package = Path(__file__).resolve().parents[2] / "src" / "ucf"
    archive = tmp_path / "ucf.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(package / "__init__.py", "ucf/__init__.py")
        for path in (package / "catalogue").iterdir():
            if path.suffix in {".py", ".json"}:
                zipped.write(path, f"ucf/catalogue/{path.name}")
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import json; "
        "from ucf.catalogue import builtin_descriptor; import ucf; "
        "assert ucf.__file__.startswith(sys.argv[1]), ucf.__file__; "
        "print(json.dumps([builtin_descriptor(sys.argv[2]), builtin_descriptor('my-tracker')]))"
    )
    shipped = SHIPPED[0]

    found = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(archive), str(shipped["id"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == [shipped, None]


@pytest.mark.parametrize("broken", ["a loop of links", "a folder"])
def test_a_shipped_file_that_is_there_but_cannot_be_read_is_an_error_not_no_connector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    """Only the answers that mean "no such file" (none, a name too long for one, a folder
    inside an archive) mean no shipped connector. Any other I/O error (EACCES, EIO, a
    loop of links) made a shipped connector read as none: the CLI's ``connectors new
    --from jira`` said there was no built-in connector 'jira' instead of why."""
    folder = Path(__file__).resolve().parents[2] / "src" / "ucf" / "catalogue"
    for path in folder.glob("*.json"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    target = tmp_path / "jira.json"
    target.unlink()
    if broken == "a folder":
        target.mkdir()
    else:
        target.symlink_to(target)
    monkeypatch.setattr("ucf.catalogue._HERE", str(tmp_path))

    with pytest.raises(OSError, match=r"jira\.json") as caught:
        builtin_descriptor("jira")

    assert caught.value.errno == (errno.EISDIR if broken == "a folder" else errno.ELOOP)
    assert builtin_descriptor("linear") == next(d for d in SHIPPED if d["id"] == "linear")
    assert builtin_descriptor("my-tracker") is None
    assert builtin_descriptor("a" * 300) is None
