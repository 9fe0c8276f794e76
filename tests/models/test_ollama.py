"""Ollama already running on this machine: found through /api/tags (names, sizes) and used through its
OpenAI-compatible API; its absence is said in one line, fast."""

from __future__ import annotations

import time

import pytest

from deepdive.models.ollama import default_endpoint, detect

from .servers import OllamaServer

MODELS = [
    {"name": "qwen2.5-coder:7b", "model": "qwen2.5-coder:7b", "size": 4683087332,
     "details": {"family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"}},
    {"name": "llama3.2:1b", "model": "llama3.2:1b", "size": 1321098329, "details": {}},
]


def test_a_running_ollama_and_its_models(monkeypatch: pytest.MonkeyPatch) -> None:
    with OllamaServer(MODELS) as srv:
        monkeypatch.setenv("OLLAMA_HOST", srv.url.removeprefix("http://"))
        assert default_endpoint() == srv.url
        found = detect()
    assert found.running and found.reason is None
    by_name = {e.name: e for e in found.models}
    assert set(by_name) == {"ollama:qwen2.5-coder:7b", "ollama:llama3.2:1b"}
    coder = by_name["ollama:qwen2.5-coder:7b"]
    assert coder.kind == "ollama" and coder.endpoint == srv.url and coder.model == "qwen2.5-coder:7b"
    assert coder.size_bytes == 4683087332 and coder.title == "qwen2 · 7.6B · Q4_K_M"


def test_no_ollama_is_one_line_and_quick() -> None:
    start = time.monotonic()
    found = detect()
    assert time.monotonic() - start < 1.0
    assert not found.running and found.models == []
    assert found.reason == f"no Ollama at {default_endpoint()}: connection refused (start it with `ollama serve`)"


def test_ollama_host_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11500")  # a bind address: this machine
    assert default_endpoint() == "http://127.0.0.1:11500"
    monkeypatch.setenv("OLLAMA_HOST", "http://localhost:11434/")
    assert default_endpoint() == "http://localhost:11434"
    monkeypatch.delenv("OLLAMA_HOST")
    assert default_endpoint() == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "10.1.2.3:11434")
    found = detect()  # never probed: prompts stay on this machine
    assert not found.running and "not on this machine" in found.reason


def test_an_openai_compatible_server_without_api_tags() -> None:
    # llama.cpp's server or LM Studio on the port: /api/tags is 404, /v1/models lists the model.
    with OllamaServer(MODELS[:1]) as srv:
        srv.missing.add("/api/tags")
        found = detect(srv.url)
    assert found.running and [e.model for e in found.models] == ["qwen2.5-coder:7b"]
    assert found.models[0].size_bytes is None
