"""`deepdive model list|add|remove|default|bench` as a user runs them: real subprocesses, the registry in
a temporary config folder, one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepdive.models.paths import registry_path
from deepdive.models.registry import ModelEntry, Registry, editing

from .folders import hf_folder
from .gguf_file import TINY_METADATA, write_gguf
from .servers import OllamaServer


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepdive", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def listed() -> dict:
    out = run("model", "list", "--json", "--no-discover")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_empty_list_says_how_to_get_a_model() -> None:
    out = run("model", "list", "--no-discover")
    assert out.returncode == 0, out.stderr
    assert "no code model yet: the builtin generator answers" in out.stdout
    assert "deepdive model pull qwen2.5-coder-0.5b" in out.stdout


def test_add_list_default_remove(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "Tiny.gguf", TINY_METADATA, payload=b"\0" * 100_000)
    out = run("model", "add", str(gguf), "--no-bench")
    assert out.returncode == 0, out.stderr
    assert "added tiny (gguf, 100.3 kB)" in out.stderr and "now the default" in out.stderr
    folder = hf_folder(tmp_path / "Folder-Model")
    assert run("model", "add", str(folder), "--name", "folder", "--no-bench").returncode == 0
    data = listed()
    assert data["default"] == "tiny" and data["registry"] == str(registry_path())
    rows = {m["name"]: m for m in data["models"]}
    assert rows["tiny"]["kind"] == "gguf" and rows["tiny"]["isDefault"] and rows["tiny"]["path"] == str(gguf)
    assert rows["folder"]["kind"] == "hf-folder" and not rows["folder"]["isDefault"]
    text = run("model", "list", "--no-discover").stdout
    assert "* tiny" in text and "not measured: deepdive model bench tiny" in text
    assert run("model", "default", "folder").returncode == 0
    assert listed()["default"] == "folder"
    out = run("model", "default")
    assert out.stdout.strip() == "folder"
    assert run("model", "default", "builtin").returncode == 0
    assert listed()["default"] is None
    out = run("model", "remove", "tiny")
    assert out.returncode == 0 and "removed tiny" in out.stderr and gguf.exists()  # the user's file stays
    assert [m["name"] for m in listed()["models"]] == ["folder"]


def test_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    for args, message in [
        (("model", "add", str(tmp_path / "nothing.gguf")), f"no such file or folder: {tmp_path / 'nothing.gguf'}"),
        (("model", "default", "nope"), "no model named 'nope': `deepdive model list` shows the names"),
        (("model", "bench", "nope"), "no model named 'nope'"),
        (("model", "remove", "nope"), "no model named 'nope'"),
        (("model", "pull", "qwen9"), "unknown model 'qwen9'"),
        (("model", "add", "ollama:qwen2.5-coder:7b"), "no Ollama at http://127.0.0.1:"),
    ]:
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("deepdive: error: ") and message in lines[0], (args, out.stderr)
    registry_path().parent.mkdir(parents=True, exist_ok=True)
    registry_path().write_text("{oops")
    out = run("model", "list")
    assert out.returncode == 2 and "is not valid JSON (line 1" in out.stderr and "Traceback" not in out.stderr


def test_remove_delete_file_only_in_the_cache(tmp_path: Path) -> None:
    outside = write_gguf(tmp_path / "mine.gguf", TINY_METADATA)
    cached = write_gguf(Path(os.environ["XDG_CACHE_HOME"]) / "deepdive" / "models" / "Org--R" / "pulled.gguf",
                        TINY_METADATA)
    for path in (outside, cached):
        assert run("model", "add", str(path), "--no-bench").returncode == 0
    out = run("model", "remove", "mine", "--delete-file")
    assert out.returncode == 2 and "is not in Deepdive's cache" in out.stderr and outside.exists()
    out = run("model", "remove", "pulled", "--delete-file")
    assert out.returncode == 0 and not cached.exists()


def test_an_ollama_model_is_added_and_measured() -> None:
    models = [{"name": "qwen2.5-coder:7b", "size": 4683087332, "details": {"parameter_size": "7.6B"}}]
    reply = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
    with OllamaServer(models, reply=lambda body: reply) as srv:
        os.environ["OLLAMA_HOST"] = srv.url
        found = run("model", "list", "--json")
        rows = {m["name"]: m for m in json.loads(found.stdout)["models"]}
        assert rows["ollama:qwen2.5-coder:7b"]["registered"] is False  # found, not added
        out = run("model", "add", "ollama:qwen2.5-coder:7b")
        assert out.returncode == 0, out.stderr
    entry = Registry.load().get("ollama:qwen2.5-coder:7b")
    assert entry.kind == "ollama" and entry.endpoint == srv.url and entry.size_bytes == 4683087332
    assert entry.speed is not None and entry.speed.tokens == len(range(0, len(reply), 5))
    assert [c["max_tokens"] for c in srv.chats] == [1, 64]  # a one-token warm-up, then the measured request


def test_generate_without_backend_uses_the_default_model() -> None:
    program = "import torch\n\n\ndef build_model():\n    return torch.nn.Linear(4, 2)\n"
    with OllamaServer([{"name": "m:1b", "size": 1}], reply=lambda body: f"```python\n{program}```") as srv:
        with editing() as reg:
            reg.add(ModelEntry(name="ollama:m:1b", kind="ollama", endpoint=srv.url, model="m:1b"))
            reg.set_default("ollama:m:1b")
        out = run("generate", "a 2-layer MLP classifier for 4 features", "--no-verify")
        assert out.returncode == 0, out.stderr
        assert "def build_model():\n    return torch.nn.Linear(4, 2)" in out.stdout  # the model's part, in its frame
        assert srv.chats[0]["model"] == "m:1b"
        out = run("generate", "a 2-layer MLP classifier for 4 features", "--no-verify", "--backend", "builtin")
        assert out.returncode == 0 and len(srv.chats) == 1  # an explicit backend wins


@pytest.mark.slow
def test_bench_measures_a_model_folder_in_the_worker(tmp_path: Path) -> None:
    from tests.codegen.test_backends import build_tiny_model

    folder = build_tiny_model(tmp_path / "tiny-gpt2")
    out = run("model", "add", str(folder), "--name", "tiny", timeout=300)
    assert out.returncode == 0, out.stderr
    speed = Registry.load().get("tiny").speed
    assert speed is not None and speed.tokens == 64 and speed.tokens_per_s > 0 and speed.ttft_s > 0
    assert speed.device == "cpu" and speed.threads and speed.load_s is not None
    out = run("model", "bench", "tiny", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout)
    assert again["tokens"] == 64 and again["measured_at"] > speed.measured_at
    text = run("model", "list", "--no-discover").stdout
    assert "tokens/s" in text and "s to first token" in text


def test_a_taken_name_is_refused_before_measuring(tmp_path: Path) -> None:
    first = write_gguf(tmp_path / "a.gguf", TINY_METADATA)
    second = write_gguf(tmp_path / "b.gguf", TINY_METADATA)
    assert run("model", "add", str(first), "--name", "m", "--no-bench").returncode == 0
    out = run("model", "add", str(second), "--name", "m")  # with the speed measurement: refused first
    assert out.returncode == 2 and "measuring" not in out.stderr and "speed not measured" not in out.stderr
    assert "a model named 'm' exists: choose another --name, or remove it first" in out.stderr
    assert Registry.load().get("m").path == str(first)
