"""`auto` (or no backend) means the registry's default model, for `deepdive generate` and the editor
alike; no default means the builtin generator; an explicit backend is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive.codegen import pipeline
from deepdive.codegen.backends import BackendError, make_backend
from deepdive.codegen.backends.openai_compat import OpenAICompatibleBackend
from deepdive.codegen.backends.worker_client import LlamaCppBackend, TransformersBackend
from deepdive.codegen.generation import GenerateParams
from deepdive.models import ModelError
from deepdive.models.registry import ModelEntry, editing
from deepdive.models.resolve import resolve

from .folders import hf_folder
from .gguf_file import TINY_METADATA, write_gguf
from .servers import OllamaServer


def register(entry: ModelEntry, default: bool = True) -> None:
    with editing() as reg:
        reg.add(entry)
        if default:
            reg.set_default(entry.name)


def test_no_default_is_the_builtin_generator() -> None:
    for backend in (None, "auto"):
        assert resolve(GenerateParams(prompt="x", backend=backend)).backend == "builtin"


def test_the_default_gguf_folder_and_ollama_model(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "m.gguf", TINY_METADATA)
    register(ModelEntry(name="small", kind="gguf", path=str(gguf)))
    got = resolve(GenerateParams(prompt="x"))
    assert (got.backend, got.model_path) == ("llamacpp", str(gguf))
    folder = hf_folder(tmp_path / "tiny")
    register(ModelEntry(name="folder", kind="hf-folder", path=str(folder)))
    got = resolve(GenerateParams(prompt="x", backend="auto"))
    assert (got.backend, got.model_path) == ("transformers", str(folder))
    register(ModelEntry(name="ollama:qwen2.5-coder:7b", kind="ollama", endpoint="http://127.0.0.1:11434",
                        model="qwen2.5-coder:7b"))
    got = resolve(GenerateParams(prompt="x"))
    assert (got.backend, got.endpoint, got.model) == ("openai-compatible", "http://127.0.0.1:11434", "qwen2.5-coder:7b")
    # a model named with `auto`, not the default
    got = resolve(GenerateParams(prompt="x", backend="auto", model="small"))
    assert (got.backend, got.model_path) == ("llamacpp", str(gguf))
    # an explicit backend is what the user asked for
    assert resolve(GenerateParams(prompt="x", backend="builtin")).backend == "builtin"
    explicit = GenerateParams(prompt="x", backend="llamacpp", model_path="/elsewhere.gguf")
    assert resolve(explicit) == explicit


def test_a_default_whose_file_is_gone_and_an_unknown_name_are_one_line(tmp_path: Path) -> None:
    gone = tmp_path / "gone.gguf"
    register(ModelEntry(name="gone", kind="gguf", path=str(gone)))
    with pytest.raises(ModelError) as err:
        resolve(GenerateParams(prompt="x"))
    assert str(err.value) == (f"the default model 'gone' cannot be used: file missing: {gone} (pull or add it "
                              "again, or remove it); choose another with `deepdive model default NAME`")
    with pytest.raises(ModelError, match="no model named 'nope'"):
        resolve(GenerateParams(prompt="x", backend="auto", model="nope"))


def test_make_backend_auto(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"no default code model: .*deepdive model default NAME"):
        make_backend("auto")
    folder = hf_folder(tmp_path / "tiny")
    register(ModelEntry(name="folder", kind="hf-folder", path=str(folder)))
    assert isinstance(make_backend("auto"), TransformersBackend)
    register(ModelEntry(name="g", kind="gguf", path=str(write_gguf(tmp_path / "g.gguf", TINY_METADATA))))
    assert isinstance(make_backend("auto"), LlamaCppBackend)
    register(ModelEntry(name="o", kind="ollama", endpoint="http://127.0.0.1:1", model="m"))
    backend = make_backend(None)
    assert isinstance(backend, OpenAICompatibleBackend) and backend.model == "m"


def test_generate_without_a_backend_uses_the_default_ollama_model() -> None:
    program = "import torch\n\n\ndef build_model():\n    return torch.nn.Linear(4, 2)\n"
    with OllamaServer([{"name": "qwen2.5-coder:7b", "size": 1}], reply=lambda body: f"```python\n{program}```\n") as srv:
        register(ModelEntry(name="ollama:qwen2.5-coder:7b", kind="ollama", endpoint=srv.url, model="qwen2.5-coder:7b"))
        result = pipeline.generate(GenerateParams(prompt="a 2-layer MLP classifier for 4 features", verify=False))
    assert result.backend == "openai-compatible"
    assert "def build_model():\n    return torch.nn.Linear(4, 2)" in result.code  # the model's part, in its frame
    assert [c["model"] for c in srv.chats] == ["qwen2.5-coder:7b"]
