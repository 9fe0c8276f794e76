"""The registry as the editor sees it: ``deepdive/models/list`` and ``deepdive/models/setDefault``.

Plain JSON and a short local HTTP probe (Ollama): no torch, no llama.cpp, no huggingface_hub, so the
daemon can answer from its own process (in a worker thread). Speeds come from the registry, where
``deepdive model bench`` cached them; nothing is loaded to answer.
"""

from __future__ import annotations

from typing import Optional

from deepdive.protocol import ModelInfo, ModelList, ModelSetDefaultParams, ModelSpeed

from . import ModelError
from .local import discover as discover_on_disk, entry_for_path
from .ollama import detect
from .registry import ModelEntry, Registry, check_name, editing


def info(entry: ModelEntry, *, registered: bool, default: Optional[str]) -> ModelInfo:
    speed = entry.speed
    return ModelInfo(
        name=entry.name,
        kind=entry.kind,  # type: ignore[arg-type]
        registered=registered,
        is_default=registered and entry.name == default,
        title=entry.title,
        size_bytes=entry.size_bytes,
        path=entry.path,
        endpoint=entry.endpoint,
        model=entry.model,
        speed=None if speed is None else ModelSpeed(
            ttft_s=speed.ttft_s, tokens_per_s=speed.tokens_per_s, tokens=speed.tokens, device=speed.device,
            measured_at=speed.measured_at, threads=speed.threads),
        problem=entry.problem() if registered else None,
    )


def list_models(discover: bool = True) -> ModelList:
    """Registered models first (the default marked), then models found and not added."""
    reg = Registry.load()
    models = [info(e, registered=True, default=reg.default) for e in reg.models.values()]
    note = None
    if discover:
        found = detect()
        note = found.reason or f"Ollama at {found.endpoint}: {len(found.models)} model(s)"
        for entry in found.models:
            if reg.find(endpoint=entry.endpoint, model=entry.model) is None:
                models.append(info(entry, registered=False, default=None))
        models += [info(e, registered=False, default=None) for e in discover_on_disk(reg)]
    return ModelList(models=models, registry=str(reg.path), default=reg.default, ollama=note)


def _found_entry(params: ModelSetDefaultParams) -> ModelEntry:
    """The entry of a found model the picker chose (a path, or an Ollama model that is still there)."""
    name = check_name(params.name or "")
    if params.path:
        return entry_for_path(params.path, name=name)
    if params.endpoint and params.model:
        found = detect(params.endpoint)
        for entry in found.models:
            if entry.model == params.model:
                entry.name = name
                return entry
        raise ModelError(found.reason or f"{params.endpoint} has no model {params.model!r} any more")
    raise ModelError(f"no model named {name!r}: `deepdive model list` shows the names")


def set_default(params: ModelSetDefaultParams) -> ModelList:
    """Make ``params.name`` the default (adding a found model first); no name: the builtin generator."""
    with editing() as reg:
        if params.name is None or params.name == "builtin":
            reg.set_default(None)
        elif params.name in reg.models and not (params.path or params.endpoint):
            reg.set_default(params.name)
        else:
            known = reg.find(path=params.path) if params.path else reg.find(endpoint=params.endpoint,
                                                                            model=params.model)
            entry = known or _found_entry(params)
            if known is None:
                reg.add(entry)
            reg.set_default(entry.name)
    return list_models(discover=False)


def human_size(size: Optional[int]) -> str:
    if size is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


__all__ = ["list_models", "set_default", "info", "human_size"]
