"""Every models test gets its own config and cache folders (XDG), so the user's registry, pulled
models and the real test data are never touched; no Ollama, no hub but the ones a test starts."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# Before any test changes XDG_CACHE_HOME: where `make test-model` cached the real test models.
REAL_TESTDATA = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepdive" / "testdata"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    dirs = {"config": tmp_path / "xdg-config", "cache": tmp_path / "xdg-cache"}
    monkeypatch.setenv("XDG_CONFIG_HOME", str(dirs["config"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(dirs["cache"]))
    monkeypatch.setenv("DEEPDIVE_TESTDATA", str(REAL_TESTDATA))
    monkeypatch.delenv("DEEPDIVE_MODELS_REGISTRY", raising=False)  # the registry of the XDG folders above
    # The places model discovery looks at (LM Studio's folders, the Hugging Face cache) start empty.
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # Nothing listens on this port: no Ollama is found unless a test starts one.
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return dirs
