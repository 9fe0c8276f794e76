"""RNG states as tensors and plain values (what the checkpoint store keeps without pickle).

Every generator an exact resume needs: python's, numpy's, torch's, CUDA's, and the generators that
decide a DataLoader's order (its own and its sampler's). Used by :mod:`deepdive.engine.checkpoint`,
which saves them at each checkpoint and at the start of each epoch.
"""

from __future__ import annotations

import random
import sys
from typing import Any, Optional

import torch

__all__ = ["rng_state", "set_rng_state"]


def _python_rng() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    return {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss}


def _set_python_rng(saved: dict[str, Any]) -> None:
    random.setstate((int(saved["version"]), tuple(int(x) for x in saved["state"].tolist()), saved["gauss"]))


def _numpy_rng() -> Optional[dict[str, Any]]:
    np = sys.modules.get("numpy")
    if np is None:
        return None
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_rng(saved: Optional[dict[str, Any]]) -> None:
    np = sys.modules.get("numpy")
    if saved is None or np is None:
        return
    np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["pos"], saved["has_gauss"],
                         saved["gauss"]))


def _generators(loader: Any) -> dict[str, torch.Generator]:
    """The torch generators that decide a loader's order: its own and its sampler's (when distinct)."""
    found: dict[str, torch.Generator] = {}
    for name, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None)),
                        ("batch_sampler", getattr(getattr(loader, "batch_sampler", None), "sampler", None))):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found.values()):
            found[name] = gen
    return found


def rng_state(loader: Any = None) -> dict[str, Any]:
    """This process's RNG states (and ``loader``'s generators)."""
    state: dict[str, Any] = {"python": _python_rng(), "numpy": _numpy_rng(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader is not None:
        state["generators"] = {name: gen.get_state() for name, gen in _generators(loader).items()}
    return state


def set_rng_state(state: dict[str, Any], loader: Any = None) -> None:
    _set_python_rng(state["python"])
    _set_numpy_rng(state.get("numpy"))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = list(state["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    if loader is not None:
        saved = state.get("generators") or {}
        for name, gen in _generators(loader).items():
            if name in saved:
                gen.set_state(saved[name])
