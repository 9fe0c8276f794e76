"""What ``auto`` means for a generate request: the registry's default model, else the builtin generator.

The editor and ``deepdive generate`` send ``backend: auto`` (or none at all); the pipeline asks
:func:`resolve` for the concrete backend before it starts, so that the model the user chose with
``deepdive model default`` or the editor's model picker answers, in the one model worker that exists
(GGUF, model folder) or through Ollama's OpenAI-compatible API. An explicit backend is left alone.
"""

from __future__ import annotations

from typing import Optional

import attrs

from deepdive.codegen.generation import GenerateParams

from . import ModelError
from .registry import ModelEntry, Registry

BACKEND_OF_KIND = {"gguf": "llamacpp", "hf-folder": "transformers", "ollama": "openai-compatible"}


def backend_args(entry: ModelEntry) -> dict[str, Optional[str]]:
    """The generate params that run ``entry``: backend, model_path, endpoint, model."""
    backend = BACKEND_OF_KIND[entry.kind]
    if backend == "openai-compatible":
        return {"backend": backend, "model_path": None, "endpoint": entry.endpoint, "model": entry.model}
    return {"backend": backend, "model_path": entry.path, "endpoint": None, "model": None}


def chosen_entry(name: Optional[str] = None, registry: Optional[Registry] = None) -> Optional[ModelEntry]:
    """The model ``name`` (else the default) of the registry, checked usable; None when there is no default."""
    reg = registry if registry is not None else Registry.load()
    entry = reg.get(name) if name else reg.default_entry()
    if entry is None:
        return None
    problem = entry.problem()
    if problem:
        which = "the default model" if not name else "the model"
        raise ModelError(f"{which} {entry.name!r} cannot be used: {problem}; choose another with "
                         "`deepdive model default NAME`")
    return entry


def resolve(params: GenerateParams, registry: Optional[Registry] = None) -> GenerateParams:
    """``params`` with ``auto`` (or no backend) replaced by the chosen model's backend, or ``builtin``."""
    if params.backend not in (None, "auto"):
        return params
    entry = chosen_entry(params.model if params.backend == "auto" else None, registry)
    if entry is None:
        return attrs.evolve(params, backend="builtin")
    return attrs.evolve(params, **backend_args(entry))
