"""Reading a GGUF header without llama.cpp: magic, version, metadata; bad files get one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive.models import ModelError
from deepdive.models.gguf import quant_name, read_gguf

from .gguf_file import TINY_METADATA, gguf_bytes, write_gguf


def test_reads_version_name_architecture_and_quantization(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", TINY_METADATA, payload=b"\0" * 1000)
    info = read_gguf(path)
    assert info.version == 3
    assert info.name == "Tiny Test Coder"
    assert info.architecture == "qwen2"
    assert info.metadata["qwen2.context_length"] == 4096
    assert info.metadata["tokenizer.ggml.tokens"] == "[3 items]"  # arrays are skipped, not kept
    assert quant_name(info.metadata["general.file_type"]) == "Q4_K_M"
    assert info.size_bytes == path.stat().st_size


def test_not_a_gguf_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "weights.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(ModelError) as err:
        read_gguf(bad)
    assert str(err.value) == f"{bad} is not a GGUF file (it starts with b'PK\\x03\\x04', not b'GGUF')"


def test_truncated_metadata_is_one_line(tmp_path: Path) -> None:
    whole = gguf_bytes(TINY_METADATA)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: len(whole) - 10])
    with pytest.raises(ModelError, match=r"cut\.gguf is truncated or damaged: its metadata ends early"):
        read_gguf(cut)


def test_unsupported_version(tmp_path: Path) -> None:
    old = tmp_path / "old.gguf"
    old.write_bytes(gguf_bytes({"general.name": "x"}, version=1))
    with pytest.raises(ModelError, match="GGUF version 1.*versions 2 and 3"):
        read_gguf(old)
