"""A GGUF file's header and metadata, read with the standard library (no llama.cpp needed).

Used to check a file before it is registered or loaded (``deepdive model add``, ``pull``, the test
data): the magic, the version, and the ``general.*`` keys that name the model. The layout is the GGUF
specification's (versions 2 and 3; version 1, from 2023, used 32-bit counts and is not read):

    magic "GGUF" | uint32 version | uint64 tensor_count | uint64 metadata_kv_count | key/value pairs

Arrays (the tokenizer's vocabulary: 150,000 strings) are skipped over and shown as ``[N items]``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import ModelError

MAGIC = b"GGUF"

# GGUF value types -> struct formats of the fixed-size ones
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

# llama.cpp's llama_ftype (general.file_type) -> the quantization people name
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 30: "IQ4_XS", 32: "BF16",
}

MAX_KEYS = 100_000  # a header claiming more is damaged, not a model


class _Truncated(Exception):
    pass


@dataclass
class GGUFInfo:
    """What a GGUF header says about the model."""

    path: str
    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or "")

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture") or "")

    @property
    def quantization(self) -> str:
        return quant_name(self.metadata.get("general.file_type"))


def quant_name(file_type: Any) -> str:
    """``general.file_type`` as a name (15 -> "Q4_K_M"); "" when absent or unknown."""
    return _FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else ""


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _Truncated()
    return data


def _unpack(f: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _string(f: BinaryIO) -> str:
    n = _unpack(f, "<Q")
    if n > 64 * 1024 * 1024:
        raise _Truncated()
    return _read(f, n).decode("utf-8", "replace")


def _skip_string(f: BinaryIO) -> None:
    n = _unpack(f, "<Q")
    f.seek(n, os.SEEK_CUR)


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _unpack(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = _unpack(f, "<I"), _unpack(f, "<Q")
        if item in _SCALARS:
            f.seek(struct.calcsize(_SCALARS[item]) * count, os.SEEK_CUR)
        elif item == _STRING:
            for _ in range(count):
                _skip_string(f)
        else:  # nested arrays: read them item by item
            for _ in range(count):
                _value(f, item)
        return f"[{count} items]"
    raise ValueError(f"unknown value type {kind}")


def read_gguf(path: str | os.PathLike[str], *, model_keys_only: bool = False) -> GGUFInfo:
    """The header and scalar metadata of the GGUF file at ``path``; ModelError (one line) when it is not one.

    ``model_keys_only`` stops where the ``tokenizer.*`` keys begin (llama.cpp writes the ``general.*`` and
    architecture keys first): a listing then reads a kilobyte instead of the whole vocabulary."""
    where = str(path)
    try:
        size = os.path.getsize(where)
        with open(where, "rb") as f:
            head = f.read(4)
            if head != MAGIC:
                raise ModelError(f"{where} is not a GGUF file (it starts with {head!r}, not {MAGIC!r})")
            try:
                version = _unpack(f, "<I")
                if version not in (2, 3):
                    raise ModelError(
                        f"{where} is GGUF version {version}; Deepdive reads versions 2 and 3 "
                        "(convert it with a current llama.cpp)"
                    )
                tensors, count = _unpack(f, "<Q"), _unpack(f, "<Q")
                if count > MAX_KEYS:
                    raise _Truncated()
                metadata: dict[str, Any] = {}
                for _ in range(count):
                    key = _string(f)
                    if model_keys_only and key.startswith("tokenizer."):
                        break
                    metadata[key] = _value(f, _unpack(f, "<I"))
                if f.tell() > size:
                    raise _Truncated()
            except ModelError:
                raise
            except (_Truncated, ValueError, UnicodeDecodeError):
                raise ModelError(
                    f"{where} is truncated or damaged: its metadata ends early (download it again)"
                ) from None
    except FileNotFoundError:
        raise ModelError(f"GGUF file not found: {where}") from None
    except IsADirectoryError:
        raise ModelError(f"{where} is a folder, not a GGUF file") from None
    except PermissionError:
        raise ModelError(f"cannot read {where}: permission denied") from None
    return GGUFInfo(path=where, version=version, tensor_count=tensors, metadata=metadata, size_bytes=size)


def describe(info: GGUFInfo) -> str:
    """"Qwen2.5 Coder 0.5B Instruct · qwen2 · Q4_K_M", for listings."""
    parts = [p for p in (info.name, info.architecture, info.quantization) if p]
    return " · ".join(parts) if parts else Path(info.path).name
