"""A real virtual environment that holds deepdive's core install only: what "Install Deepdive" used to leave.

Built offline in about a second: ``python -m venv --without-pip``, then symbolic links, in its
site-packages, to the distributions of this test environment that deepdive's core requirements
(pyproject.toml's ``dependencies``) need, and to any others a test names (e.g. ``torch`` without
the rest of the ``engine`` extra). Anything else (optuna, xxhash, ...) is really absent there:
importing it raises Python's own ``ModuleNotFoundError``, in the CLI and in every process it starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def build_core_env(root: Path, also: Iterable[str] = ()) -> Path:
    """Create the environment at ``root`` with deepdive's core requirements and the distributions ``also``
    (with their own requirements); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    core = [str(r) for r in map(Requirement, metadata.requires("deepdive") or []) if r.marker is None]
    for dist in _closure([*core, *also]):
        _link_files(metadata.distribution(dist), site)
    (site / "deepdive").symlink_to(REPO / "server", target_is_directory=True)
    return python


def core_env_vars(home: Path) -> dict[str, str]:
    """An environment for its processes: no hub, no PYTHONPATH that would bring the full test environment back."""
    env = {**os.environ, "DEEPDIVE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    for name in ("DEEPDIVE_HUB", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    return env


def _closure(requirements: Iterable[str]) -> list[str]:
    """The names of the installed distributions ``requirements`` need, transitively (markers evaluated here)."""
    seen: dict[str, None] = {}
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen[name] = None
        for sub in metadata.requires(req.name) or []:
            for want in ("", *req.extras):
                todo.append((Requirement(sub), want))
    return list(seen)


def _link_files(dist: metadata.Distribution, site: Path) -> None:
    """Link the top-level entries (packages, modules, dist-info) a distribution installed into site-packages."""
    source = Path(str(dist.locate_file("")))
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    for top in sorted(tops - {"__pycache__"}):
        target = site / top
        if (source / top).exists() and not target.exists():
            target.symlink_to(source / top)
