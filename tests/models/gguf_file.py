"""A small GGUF file written here (header, metadata, no tensors): what the pull and add tests serve and load.

The layout is GGUF version 3's, as llama.cpp's gguf.py writes it: magic, version, tensor count,
metadata count, then each key with its typed value. ``payload`` pads the file to a size worth
downloading in pieces (a cut connection, a resume).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(value: Any) -> bytes:
    if isinstance(value, bool):
        return struct.pack("<IB", 7, int(value))
    if isinstance(value, int):
        return struct.pack("<II", 4, value)
    if isinstance(value, float):
        return struct.pack("<If", 6, value)
    if isinstance(value, str):
        return struct.pack("<I", 8) + _string(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_string(v) for v in value)
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return struct.pack("<IIQ", 9, 5, len(value)) + b"".join(struct.pack("<i", v) for v in value)
    raise TypeError(f"no GGUF type for {value!r}")


def gguf_bytes(metadata: dict[str, Any], payload: bytes = b"", version: int = 3) -> bytes:
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", version, 0, len(metadata))
    for key, value in metadata.items():
        out += _string(key) + _value(value)
    return bytes(out) + payload


def write_gguf(path: Path, metadata: dict[str, Any], payload: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gguf_bytes(metadata, payload))
    return path


TINY_METADATA = {
    "general.architecture": "qwen2",
    "general.name": "Tiny Test Coder",
    "general.file_type": 15,
    "tokenizer.ggml.tokens": ["<a>", "<b>", "<c>"],
    "qwen2.context_length": 4096,
}
