"""Models on disk: a GGUF file (run by llama.cpp) or a Hugging Face model folder (run by transformers).

:func:`entry_for_path` checks a path before it is registered, reading only headers and JSON (no
torch, no llama.cpp: the daemon may call it), so that a file that cannot be a model is refused with
the reason instead of failing minutes later in the worker. :func:`discover` looks where models
usually are - Deepdive's own cache, LM Studio's folders, the Hugging Face cache - for ones the user
has not added yet, so the model picker can offer them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterator, Optional

from . import ModelError
from .gguf import describe, read_gguf
from .paths import models_dir
from .registry import ModelEntry, Registry

WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZERS = ("tokenizer.json", "tokenizer.model", "vocab.json")
CAUSAL = ("ForCausalLM", "LMHeadModel")

MAX_FOUND = 100  # discovery stops here: a listing, not an inventory
MAX_DEPTH = 4


def slug(text: str) -> str:
    """A registry name from a file or folder name: lower case, other characters as '-'."""
    name = re.sub(r"[^a-z0-9._:+-]+", "-", text.lower()).strip("-.") or "model"
    return name[:100]


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_for_path(path: str, *, name: Optional[str] = None, sha256: Optional[str] = None) -> ModelEntry:
    """The registry entry for the model at ``path``; ModelError (one line) when it cannot be one."""
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        return _folder_entry(full, name)
    if not os.path.isfile(full):
        raise ModelError(f"no such file or folder: {path}")
    if not full.lower().endswith(".gguf"):
        raise ModelError(
            f"{path} is not a .gguf file: Deepdive runs GGUF files (llama.cpp) and Hugging Face model folders "
            "(transformers)"
        )
    info = read_gguf(full, model_keys_only=True)
    if sha256 is not None:
        got = sha256_of(full)
        if got != sha256.lower():
            raise ModelError(f"{path} has sha256 {got}, not the {sha256} given: not added")
    return ModelEntry(
        name=name or slug(Path(full).name[: -len(".gguf")]),
        kind="gguf",
        path=full,
        size_bytes=info.size_bytes,
        sha256=sha256.lower() if sha256 else None,
        source="added",
        title=describe(info),
    )


def _weights(folder: Path) -> list[Path]:
    return sorted({p for pattern in WEIGHTS for p in folder.glob(pattern) if p.is_file()})


def _folder_entry(folder: str, name: Optional[str]) -> ModelEntry:
    root = Path(folder)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{folder} has no config.json: not a Hugging Face model folder")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {config_path}: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_path} is not a model config (not a JSON object)")
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if archs and not any(a.endswith(CAUSAL) for a in archs):
        raise ModelError(
            f"{folder} is a {archs[0]} model, not a causal language model: code generation needs a decoder "
            "model such as Qwen2.5-Coder, Llama or GPT-2"
        )
    weights = _weights(root)
    if not weights:
        raise ModelError(f"{folder} has no weights (*.safetensors, pytorch_model*.bin): download the whole model")
    if not any((root / t).is_file() for t in TOKENIZERS):
        raise ModelError(f"{folder} has no tokenizer (tokenizer.json, tokenizer.model, vocab.json): "
                         "download the whole model")
    title = " · ".join(str(p) for p in (archs[0] if archs else config.get("model_type"),
                                        config.get("torch_dtype") or config.get("dtype")) if p)
    return ModelEntry(
        name=name or slug(_folder_name(root)),
        kind="hf-folder",
        path=str(root),
        size_bytes=sum(p.stat().st_size for p in weights),
        source="added",
        title=title,
    )


def _folder_name(root: Path) -> str:
    """``models--Qwen--Qwen2.5-Coder-1.5B/snapshots/<hash>`` (the Hugging Face cache) -> the repository's name."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return root.parent.parent.name.split("--")[-1]
    return root.name


# ------------------------------------------------------------------------------------------------
# Discovery
# ------------------------------------------------------------------------------------------------


def hf_hub_cache() -> Path:
    """Where huggingface_hub keeps downloads (its own rules: HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huggingface" / "hub"


def search_places() -> list[Path]:
    home = Path.home()
    return [models_dir(), home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models", hf_hub_cache()]


def _gguf_files(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        depth = len(Path(dirpath).relative_to(top).parts)
        if depth >= MAX_DEPTH:
            dirnames[:] = []
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "blobs"]
        for f in sorted(filenames):
            if f.lower().endswith(".gguf") and not f.startswith("."):
                yield Path(dirpath) / f


def _snapshots(hub: Path) -> Iterator[Path]:
    """The newest snapshot folder of each model repository in the Hugging Face cache."""
    try:
        repos = sorted(p for p in hub.iterdir() if p.name.startswith("models--"))
    except OSError:
        return
    for repo in repos:
        snaps = [p for p in (repo / "snapshots").glob("*") if p.is_dir()]
        if snaps:
            yield max(snaps, key=lambda p: p.stat().st_mtime)


def discover(registry: Optional[Registry] = None) -> list[ModelEntry]:
    """Models found in the usual places that are not in the registry (checked as ``add`` would)."""
    registry = registry if registry is not None else Registry.load()
    known = {os.path.realpath(e.path) for e in registry.models.values() if e.path}
    found: dict[str, ModelEntry] = {}
    names: set[str] = set(registry.models)

    def offer(path: Path) -> None:
        real = os.path.realpath(path)
        if real in known or real in found:
            return
        try:
            entry = entry_for_path(str(path))
        except ModelError:
            return  # not something that can generate (an embedding model, a broken file)
        base, n = entry.name, 2
        while entry.name in names:
            entry.name, n = f"{base}-{n}", n + 1
        names.add(entry.name)
        entry.source = "found"
        found[real] = entry

    for place in search_places():
        if not place.is_dir():
            continue
        if place == hf_hub_cache():
            for snap in _snapshots(place):
                if (snap / "config.json").is_file():
                    offer(snap)
                for f in _gguf_files(snap):
                    offer(f)
                if len(found) >= MAX_FOUND:
                    break
        else:
            for f in _gguf_files(place):
                offer(f)
                if len(found) >= MAX_FOUND:
                    break
    return list(found.values())
