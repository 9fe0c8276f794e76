"""The .vsix carries the Python project that "Install Deepdive" pip-installs: it must install and run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _vsix() -> Path:
    version = json.loads((REPO / "package.json").read_text())["version"]
    path = REPO / f"deepdive-{version}.vsix"
    assert path.exists(), f"{path.name} is missing: `make vsix` builds it (make test does so first)"
    return path


def test_vsix_python_project_installs_and_runs(tmp_path: Path):
    with zipfile.ZipFile(_vsix()) as archive:
        names = archive.namelist()
        assert "extension/out/extension.js" in names and "extension/pyproject.toml" in names
        assert not [n for n in names if "/tests/" in n or "node_modules" in n or "__pycache__" in n or n.endswith(".so")]
        assert "extension/server/engine/ckpt/_rans.c" in names   # the store's C extension, built at install
        archive.extractall(tmp_path / "vsix")
    ext = tmp_path / "vsix" / "extension"
    # what extension/src/common/python.ts installDeepdive() copies: the readme under the name pyproject wants
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ext / "pyproject.toml", project / "pyproject.toml")
    shutil.copy(next(p for p in (ext / "README.md", ext / "readme.md") if p.exists()), project / "README.md")
    shutil.copytree(ext / "server", project / "server")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(project)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-m", "deepdive", "version", "--json"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    code = "import deepdive, json; print(json.dumps(deepdive.__file__))"
    where = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                      cwd=tmp_path, check=True).stdout)
    assert where.startswith(str(target)), "the installed copy, not the repository, was imported"
    built = list((target / "deepdive" / "engine" / "ckpt").glob("_rans*"))
    assert built, "pip did not compile the checkpoint store's C extension"


def test_every_package_folder_is_listed_in_pyproject():
    """setuptools installs only the listed packages: a new folder left out is missing from a user's install."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    server = REPO / "server"
    found = {".".join(("deepdive", *init.parent.relative_to(server).parts)) for init in server.rglob("__init__.py")}
    assert found - listed == set(), f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
