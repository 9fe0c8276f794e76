"""Local code models: `deepdive/models/*`."""

from __future__ import annotations

from typing import Literal, Optional

import attrs


@attrs.define
class ModelSpeed:
    """Speed measured on this machine (`deepdive model bench`), cached in the model registry."""

    ttft_s: float
    """Seconds from the request to the first token, the model already loaded."""
    tokens_per_s: float
    """Tokens per second after the first."""
    tokens: int
    device: str
    measured_at: float
    threads: Optional[int] = None


@attrs.define
class ModelInfo:
    """A local code model: registered, or found (on disk, in Ollama) and not added yet."""

    name: str
    kind: Literal["gguf", "hf-folder", "ollama"]
    registered: bool
    is_default: bool = False
    title: str = ""
    """What the model says it is ("Qwen2.5 Coder 0.5B Instruct · qwen2 · Q4_K_M")."""
    size_bytes: Optional[int] = None
    path: Optional[str] = None
    """The GGUF file or model folder (gguf, hf-folder)."""
    endpoint: Optional[str] = None
    """The server's URL (ollama)."""
    model: Optional[str] = None
    """The model's name on the server (ollama)."""
    speed: Optional[ModelSpeed] = None
    problem: Optional[str] = None
    """Why it cannot be used now (its file was deleted), in one line."""


@attrs.define
class ModelListParams:
    discover: bool = True
    """Also look for models not added yet: a running Ollama, LM Studio's folders, the Hugging Face cache."""


@attrs.define
class ModelList:
    models: list[ModelInfo]
    registry: str
    """The registry file."""
    default: Optional[str] = None
    """The model `auto` uses; null: the builtin generator."""
    ollama: Optional[str] = None
    """What was found at Ollama's address, or why nothing was, in one line."""


@attrs.define
class ModelSetDefaultParams:
    name: Optional[str] = None
    """The model `auto` uses from now on; null: the builtin generator."""
    path: Optional[str] = None
    """A found GGUF file or model folder to add first (as `name`)."""
    endpoint: Optional[str] = None
    """A found Ollama's URL, with `model`, to add first (as `name`)."""
    model: Optional[str] = None
