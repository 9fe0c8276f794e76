"""The registry of the user's code models: ``models.json`` in the config folder.

One small JSON file, read whole and written whole (temp file, fsync, rename: a reader sees the old
file or the new one), edited under a lock file so that the CLI and the daemon never lose each
other's changes. It holds each model's name, kind, where it lives, its size, and the speed measured
on this machine; and which model is the default (what ``auto`` means for ``deepdive generate`` and
the editor). A damaged file is reported, never overwritten.

    {"version": 1, "default": "qwen2.5-coder-0.5b",
     "models": [{"name": "qwen2.5-coder-0.5b", "kind": "gguf", "path": "/home/me/.cache/deepdive/models/...",
                 "size_bytes": 491400064, "sha256": "1d96...", "source": "hf:Qwen/...@ebb2015...",
                 "title": "Qwen2.5 Coder 0.5B Instruct · qwen2 · Q4_K_M", "added_at": 1733500000.0,
                 "speed": {"ttft_s": 0.35, "tokens_per_s": 46.0, ...}}]}
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from deepdive.fsutil import atomic_write_text

from . import ModelError
from .paths import registry_path, shorten

VERSION = 1
KINDS = ("gguf", "hf-folder", "ollama")
RESERVED = ("builtin", "auto")  # what GenerateParams.backend says instead of a model name
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}$")


@dataclass
class Speed:
    """One measurement on this machine (``deepdive model bench``): the prompt is short and fixed."""

    ttft_s: float
    """Seconds from the request to the first token, the model already loaded."""
    tokens_per_s: float
    """Tokens per second after the first one (decoding speed)."""
    tokens: int
    threads: Optional[int] = None
    """CPU threads the runtime used (llama.cpp, torch); None for a server (Ollama)."""
    device: str = "cpu"
    load_s: Optional[float] = None
    measured_at: float = 0.0
    prompt_tokens: Optional[int] = None


@dataclass
class ModelEntry:
    name: str
    kind: str
    """``gguf`` (llama.cpp), ``hf-folder`` (transformers) or ``ollama`` (its OpenAI-compatible API)."""
    path: Optional[str] = None
    """The GGUF file or the model folder (gguf, hf-folder)."""
    endpoint: Optional[str] = None
    """The server's base URL (ollama)."""
    model: Optional[str] = None
    """The model's name on the server (ollama)."""
    size_bytes: Optional[int] = None
    sha256: Optional[str] = None
    """Checked when the file was pulled or added with --sha256; None when nobody pinned it."""
    source: str = ""
    """Where it came from: ``hf:REPO/FILE@REVISION`` (pulled), ``added`` or ``ollama``."""
    title: str = ""
    """What the model says it is (a GGUF's general.name, quantization)."""
    added_at: float = 0.0
    speed: Optional[Speed] = None

    @property
    def location(self) -> str:
        if self.kind == "ollama":
            return f"{self.endpoint} ({self.model})"
        return self.path or ""

    def problem(self) -> Optional[str]:
        """Why this model cannot be used now (its file was deleted), or None. A stat, no reading."""
        if self.kind == "gguf" and not (self.path and os.path.isfile(self.path)):
            return f"file missing: {shorten(self.path or '')} (pull or add it again, or remove it)"
        if self.kind == "hf-folder" and not (self.path and os.path.isfile(os.path.join(self.path, "config.json"))):
            return f"folder missing: {shorten(self.path or '')} (add it again, or remove it)"
        return None


def check_name(name: str) -> str:
    if name in RESERVED or not _NAME.match(name or ""):
        raise ModelError(
            f"bad model name {name!r}: use letters, digits and . _ : + - (at most 100, not 'builtin' or 'auto')"
        )
    return name


def _entry(raw: Any, where: Path) -> ModelEntry:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ModelError(f"{where} has an entry without a name: fix it or move the file away")
    name = raw["name"]
    if raw.get("kind") not in KINDS:
        raise ModelError(
            f"entry {name!r} of {where} has kind {raw.get('kind')!r}, not one of {', '.join(KINDS)}: "
            "fix or remove that entry"
        )
    known = {f.name for f in dataclasses.fields(ModelEntry)}
    values = {k: v for k, v in raw.items() if k in known}  # fields of a later version are dropped
    speed = values.pop("speed", None)
    try:
        entry = ModelEntry(**values)
        if isinstance(speed, dict):
            fields = {f.name for f in dataclasses.fields(Speed)}
            entry.speed = Speed(**{k: v for k, v in speed.items() if k in fields})
    except TypeError as exc:
        raise ModelError(f"entry {name!r} of {where} is incomplete ({exc}): fix or remove that entry") from None
    return entry


@dataclass
class Registry:
    path: Path
    default: Optional[str] = None
    models: dict[str, ModelEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "Registry":
        """The registry at ``path`` (default: the user's); empty when the file does not exist."""
        path = Path(path) if path is not None else registry_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path=path)
        except OSError as exc:
            raise ModelError(f"cannot read the model registry {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", "?")
            raise ModelError(
                f"the model registry {path} is not valid JSON (line {line}): fix it or move it away "
                "(Deepdive then starts a new one)"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
            raise ModelError(f"the model registry {path} is not a registry: fix it or move it away")
        if not isinstance(data.get("version", VERSION), int) or data.get("version", VERSION) > VERSION:
            raise ModelError(
                f"the model registry {path} is version {data.get('version')}, written by a newer Deepdive: "
                "upgrade Deepdive, or move the file away"
            )
        reg = cls(path=path)
        for raw in data.get("models", []):
            entry = _entry(raw, path)
            reg.models[entry.name] = entry
        default = data.get("default")
        reg.default = default if isinstance(default, str) and default in reg.models else None
        return reg

    def save(self) -> None:
        data = {
            "version": VERSION,
            "default": self.default,
            "models": [dataclasses.asdict(e) for e in self.models.values()],
        }
        atomic_write_text(self.path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    # -- queries -----------------------------------------------------------------------------

    def get(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise ModelError(f"no model named {name!r}: `deepdive model list` shows the names") from None

    def default_entry(self) -> Optional[ModelEntry]:
        return self.models.get(self.default) if self.default else None

    def find(self, *, path: Optional[str] = None, endpoint: Optional[str] = None,
             model: Optional[str] = None) -> Optional[ModelEntry]:
        """The entry for this file or folder, or this server's model; None when not registered."""
        for entry in self.models.values():
            if path is not None and entry.path and os.path.realpath(entry.path) == os.path.realpath(path):
                return entry
            if endpoint is not None and entry.kind == "ollama" and entry.endpoint == endpoint and entry.model == model:
                return entry
        return None

    # -- changes (save() writes them) ----------------------------------------------------------

    def add(self, entry: ModelEntry, *, replace: bool = False) -> None:
        check_name(entry.name)
        if entry.kind not in KINDS:
            raise ModelError(f"unknown model kind {entry.kind!r}: {', '.join(KINDS)}")
        if entry.name in self.models and not replace:
            raise ModelError(f"a model named {entry.name!r} exists: choose another --name, or remove it first")
        if not entry.added_at:
            entry.added_at = time.time()
        self.models[entry.name] = entry

    def remove(self, name: str) -> ModelEntry:
        entry = self.get(name)
        del self.models[name]
        if self.default == name:
            self.default = None
        return entry

    def set_default(self, name: Optional[str]) -> None:
        """Make ``name`` the default model; None: no default (the builtin generator)."""
        if name is not None:
            self.get(name)
        self.default = name


@contextlib.contextmanager
def editing(path: Optional[Path] = None) -> Iterator[Registry]:
    """Load, change and save the registry under an exclusive lock (``models.json.lock``).

    Nothing is written when the body raises, or when the file could not be read."""
    path = Path(path) if path is not None else registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a+")
    except OSError as exc:
        raise ModelError(f"cannot write the model registry in {path.parent}: {exc.strerror or exc}") from None
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            reg = Registry.load(path)
            yield reg
            reg.save()
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
