"""``scripts/bootstrap`` keeps a package installed beside ucf's own.

Every ``make`` entry point runs the bootstrap, so a native connector's package
(docs/writing-a-native-connector.md: installed into ucf's environment) must survive
``make serve``: the sync is ``--inexact``. An exact sync would uninstall it as a
package the lock does not name, and the connector would vanish from the catalogue
at the next start without a word.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _project_copy(root: Path) -> Path:
    """What the bootstrap reads, with this checkout's uv (no download from PyPI)."""
    project = root / "project"
    project.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "scripts", project / "scripts")
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".tools").symlink_to(ROOT / ".tools")
    return project


def _bootstrap(project: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    }
    subprocess.run(
        ["bash", "scripts/bootstrap"], cwd=project, env=env, check=True, capture_output=True
    )


def _install_beside(venv: Path) -> Path:
    """A native connector's package as an installed distribution (module and dist-info)."""
    [site] = venv.glob("lib/python3.*/site-packages")
    (site / "my_tool_ucf.py").write_text("connector = None\n")
    info = site / "my_tool_ucf-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tool-ucf\nVersion: 0.1.0\n")
    (info / "RECORD").write_text("my_tool_ucf.py,,\nmy_tool_ucf-0.1.0.dist-info/METADATA,,\n")
    (info / "INSTALLER").write_text("pip\n")
    return site


def test_a_package_installed_beside_ucf_survives_the_next_bootstrap(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    _bootstrap(project)
    venv = project / ".venv"
    site = _install_beside(venv)

    _bootstrap(project)

    assert (site / "my_tool_ucf.py").exists()
    assert (site / "my_tool_ucf-0.1.0.dist-info" / "METADATA").exists()
    imported = subprocess.run(
        [str(venv / "bin/python"), "-c", "import my_tool_ucf, ucf; print('ok')"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "ok"
