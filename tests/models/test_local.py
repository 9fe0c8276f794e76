"""A GGUF file or a Hugging Face model folder on disk, checked before it is registered; and the
places where models are found without being added (LM Studio's folders, the Hugging Face cache)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from deepdive.models import ModelError
from deepdive.models.local import discover, entry_for_path
from deepdive.models.registry import editing

from .folders import hf_folder
from .gguf_file import TINY_METADATA, write_gguf


def test_a_gguf_file(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "Tiny-Coder.Q4_K_M.gguf", TINY_METADATA, payload=b"\0" * 4096)
    entry = entry_for_path(str(path))
    assert entry.kind == "gguf" and entry.path == str(path)
    assert entry.name == "tiny-coder.q4_k_m"  # from the file name, lower case
    assert entry.size_bytes == path.stat().st_size
    assert entry.title == "Tiny Test Coder · qwen2 · Q4_K_M"
    assert entry.source == "added" and entry.sha256 is None


def test_a_gguf_file_with_its_sha256_checked(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", TINY_METADATA)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry_for_path(str(path), sha256=good).sha256 == good
    with pytest.raises(ModelError) as err:
        entry_for_path(str(path), sha256="0" * 64)
    assert str(err.value) == f"{path} has sha256 {good}, not the {'0' * 64} given: not added"


def test_files_that_are_not_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no such file or folder: .*nothing\.gguf"):
        entry_for_path(str(tmp_path / "nothing.gguf"))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 10)
    with pytest.raises(ModelError, match=r"weights\.bin is not a \.gguf file: Deepdive runs GGUF files \(llama\.cpp\) "
                                         r"and Hugging Face model folders \(transformers\)"):
        entry_for_path(str(weights))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"<html>404</html>")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        entry_for_path(str(fake))


def test_a_model_folder(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path / "Tiny-GPT2")
    entry = entry_for_path(str(folder))
    assert entry.kind == "hf-folder" and entry.name == "tiny-gpt2" and entry.size_bytes == 2048
    assert entry.title == "GPT2LMHeadModel · float32"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"architectures": ("BertForMaskedLM",)}, "is a BertForMaskedLM model, not a causal language model"),
        ({"weights": False}, "has no weights (*.safetensors, pytorch_model*.bin)"),
        ({"tokenizer": False}, "has no tokenizer (tokenizer.json, tokenizer.model, vocab.json)"),
    ],
)
def test_folders_that_cannot_generate(tmp_path: Path, kwargs, message) -> None:
    folder = hf_folder(tmp_path / "m", **kwargs)
    with pytest.raises(ModelError) as err:
        entry_for_path(str(folder))
    assert message in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="has no config.json: not a Hugging Face model folder"):
        entry_for_path(str(empty))


def test_discovery_finds_lm_studio_files_and_hub_snapshots_not_yet_added(tmp_path: Path, isolated_dirs) -> None:
    home = tmp_path / "home"
    lm = write_gguf(home / ".lmstudio" / "models" / "Qwen" / "Coder-GGUF" / "coder-q4.gguf", TINY_METADATA)
    snap = hf_folder(isolated_dirs["cache"] / "huggingface" / "hub" / "models--Qwen--Tiny-Coder" / "snapshots" / "abc123")
    hf_folder(isolated_dirs["cache"] / "huggingface" / "hub" / "models--google--bert" / "snapshots" / "a",
              architectures=("BertModel",))  # not a causal LM: not offered
    found = {e.name: e for e in discover()}
    assert set(found) == {"coder-q4", "tiny-coder"}
    assert found["coder-q4"].path == str(lm) and found["coder-q4"].kind == "gguf"
    assert found["tiny-coder"].path == str(snap) and found["tiny-coder"].kind == "hf-folder"
    with editing() as reg:
        reg.add(entry_for_path(str(lm)))
    assert {e.name for e in discover()} == {"tiny-coder"}  # what is registered is not "found" again
