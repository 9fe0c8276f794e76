"""Shared fixtures: a real daemon over stdio in a temporary workspace."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from deepdive.lspclient import DaemonClient


@pytest.fixture(autouse=True, scope="session")
def _no_user_code_model(tmp_path_factory: pytest.TempPathFactory):
    """The user's code-model registry (`deepdive model default`) never decides what a test generates with:
    this process, and the daemons and CLIs it starts, read an empty one (tests/models sets its own)."""
    before = os.environ.get("DEEPDIVE_MODELS_REGISTRY")
    os.environ["DEEPDIVE_MODELS_REGISTRY"] = str(tmp_path_factory.mktemp("code-models") / "models.json")
    yield
    if before is None:
        os.environ.pop("DEEPDIVE_MODELS_REGISTRY", None)
    else:
        os.environ["DEEPDIVE_MODELS_REGISTRY"] = before


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``@pytest.mark.cuda`` need a CUDA GPU: where torch sees none they are skipped, saying why.

    torch is imported only when a collected test carries the marker (the daemon's tests never import it)."""
    needing = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not needing:
        return
    from deepdive.gpu_check import no_cuda_reason

    reason = no_cuda_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
    for item in needing:
        item.add_marker(skip)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
async def daemon(workspace: Path):
    async with DaemonClient.spawn(str(workspace)) as client:
        yield client


def write_script(workspace: Path, name: str, body: str) -> str:
    path = workspace / name
    path.write_text(body, encoding="utf-8")
    return name


def pgid_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in process group ``pgid``."""
    import psutil

    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def torch_version() -> str:
    from importlib.metadata import version

    return version("torch")


PYTHON = sys.executable
