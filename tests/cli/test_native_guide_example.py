"""docs/writing-a-native-connector.md's example package, built from the guide's own code blocks.

The package (``my_tool_ucf``: the descriptor, ``source.py``, ``__init__.py`` and the
entry point of its ``pyproject.toml``) is laid out as the guide says and installed
as a dist-info on ``PYTHONPATH``, then taken through the guide's "Trying it"
commands with the real console script against a loopback API whose next-page
links carry their cursor in the query, as most APIs' do.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ucf.fakes.kit import FakeRequest, FakeServer

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs/writing-a-native-connector.md"
UCF = str(Path(sys.executable).parent / "ucf")
TOKEN = "my-tool-token-7c2e9b"
TICKETS = [
    {"id": n, "title": f"Ticket {n}", "updatedAt": f"2026-12-0{n}T10:00:00+00:00"}
    for n in range(1, 6)
]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


def _block(language: str, marker: str) -> str:
    [block] = [b for b in _blocks(language) if marker in b]
    return block


def _package(root: Path) -> Path:
    """The guide's package as an installed distribution under ``root``."""
    package = root / "my_tool_ucf"
    package.mkdir()
    (package / "descriptor.json").write_text(_block("json", '"kind": "native"'))
    (package / "source.py").write_text(_block("python", "class MyToolSource"))
    (package / "__init__.py").write_text(_block("python", "connector = NativeConnector("))
    entry_points = tomllib.loads(_block("toml", "ucf.native_sources"))["project"]["entry-points"]
    group = entry_points["ucf.native_sources"]
    info = root / "my_tool_ucf-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tool-ucf\nVersion: 0.1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in group.items())
    (info / "entry_points.txt").write_text(f"[ucf.native_sources]\n{lines}")
    return package


def _tickets(request: FakeRequest) -> dict[str, object]:
    """Two tickets a page, newer than ``updatedSince``; the next link's query holds the page."""
    page = int(request.param("page", "1") or "1")
    since = request.param("updatedSince", "") or ""
    newer = [t for t in TICKETS if str(t["updatedAt"]) > since]
    more = len(newer) > page * 2
    return {
        "tickets": newer[(page - 1) * 2 : page * 2],
        "next": request.url_for(f"/api/tickets?page={page + 1}") if more else None,
    }


@pytest.fixture
def api() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.add_route("GET", "/api/me", lambda _: {"name": "me"})
        fake.add_route("GET", "/api/tickets", _tickets)
        yield fake


def test_the_guides_package_validates_checks_and_polls_every_page(
    tmp_path: Path, api: FakeServer
) -> None:
    package = _package(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "UCF_ALLOW_HOSTS": "127.0.0.1"}

    def ucf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [UCF, *args], capture_output=True, text=True, env=env, cwd=tmp_path,
            timeout=60, check=False,
        )  # fmt: skip

    settings = ["--config", f"siteUrl={api.base_url}", "--credential", f"token={TOKEN}"]
    validate = ucf("connectors", "validate", str(package / "descriptor.json"))
    check = ucf("check", "--descriptor", "my-tool", *settings)
    poll = ucf("poll", "--descriptor", "my-tool", *settings, "--max-pages", "10")  # a loop ends

    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert check.returncode == 0, check.stdout + check.stderr
    assert api.requests_to("/api/me")[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert poll.returncode == 0, poll.stderr
    signals = [json.loads(line) for line in poll.stdout.splitlines()]
    assert [s["summary"] for s in signals] == [t["title"] for t in TICKETS]
    assert "checkpoint: 2026-12-05T10:00:00+00:00" in poll.stderr
    assert len(api.requests_to("/api/tickets")) == 3

    (tmp_path / "page.json").write_text(json.dumps(TICKETS[:2]))
    mapped = ucf("map", "--descriptor", "my-tool", "--sample", "page.json", "--poll")
    assert mapped.returncode == 0, mapped.stderr
    assert [json.loads(line)["summary"] for line in mapped.stdout.splitlines()] == [
        "Ticket 1", "Ticket 2",
    ]  # fmt: skip
