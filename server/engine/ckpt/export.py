"""Export: a checkpoint's tensors as a plain state_dict file, for tools that do not know the store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from deepdive.engine.ckpt import tree
from deepdive.engine.ckpt.store import CheckpointError, Progress, Store, _fsync_dir


def export(store: Store, which: Union[str, int], path: Union[str, os.PathLike[str]], *, format: Optional[str] = None,
           key: Optional[str] = None, progress: Optional[Progress] = None) -> dict[str, Any]:
    """Write a checkpoint's tensors as a plain state_dict: ``.pt`` (torch.save, loadable with
    ``torch.load(weights_only=True)``) or ``.safetensors``. Written atomically. A sharded checkpoint
    (saved under FSDP) is exported whole: each tensor assembled from the shards every rank wrote.

    Args:
        which: ``"latest"``, a step or a name.
        path: the output file; ``format`` defaults to its suffix.
        key (str | None): a dotted path into the state (e.g. ``"model"``): export that part only,
            with names relative to it, ready for ``model.load_state_dict``.

    Returns:
        dict: ``{"path", "format", "tensors", "bytes", "checkpoint"}``.
    """
    import torch

    out = Path(path)
    fmt = format or {".pt": "pt", ".pth": "pt", ".bin": "pt", ".safetensors": "safetensors"}.get(out.suffix.lower())
    if fmt not in ("pt", "safetensors"):
        raise CheckpointError(f"cannot tell the export format from {out.name!r}: name it *.pt or *.safetensors")
    name = store.resolve(which)
    state = store.load(name, progress=progress)
    if key:
        for part in key.split("."):
            if isinstance(state, dict) and part in state:
                state = state[part]
            elif isinstance(state, (list, tuple)) and part.isdigit() and int(part) < len(state):
                state = state[int(part)]
            else:
                raise CheckpointError(f"{name} has no '{key}' (stopped at '{part}'): "
                                      f"`deepdive ckpt ls {store.root} --json` shows the checkpoint")
    flat: dict[str, Any] = {}
    seen: set[int] = set()

    def walk(obj: Any, prefix: str) -> None:
        if isinstance(obj, np.ndarray):
            obj = torch.from_numpy(np.ascontiguousarray(obj))
        if isinstance(obj, torch.Tensor):
            flat[prefix or "tensor"] = obj.clone() if id(obj) in seen else obj   # tied: safetensors wants copies
            seen.add(id(obj))
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, tree.join(prefix, k))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, tree.join(prefix, i))

    walk(state, "")
    if not flat:
        raise CheckpointError(f"{name}{' ' + key if key else ''} holds no tensors to export")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        if fmt == "pt":
            torch.save(flat, tmp)
        else:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in flat.items()}, tmp,
                      metadata={"deepdive.checkpoint": name, "format": "pt"})
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)
    return {"path": str(out), "format": fmt, "tensors": len(flat), "bytes": out.stat().st_size, "checkpoint": name}
