"""Model folders laid out as transformers saves them (config, weights, tokenizer), for add and discovery."""

from __future__ import annotations

import json
from pathlib import Path


def hf_folder(path: Path, *, architectures=("GPT2LMHeadModel",), weights: bool = True, tokenizer: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "gpt2", "torch_dtype": "float32"}
    if architectures:
        config["architectures"] = list(architectures)
    (path / "config.json").write_text(json.dumps(config))
    if weights:
        (path / "model.safetensors").write_bytes(b"\0" * 2048)
    if tokenizer:
        (path / "tokenizer.json").write_text("{}")
    return path
