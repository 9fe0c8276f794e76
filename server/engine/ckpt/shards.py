"""Sharded checkpoints in the store: the manifest's ``dcp`` section, and reading it back whole.

A checkpoint saved under FSDP is written by every rank (see :mod:`deepdive.engine.ckpt.dcp`): each
rank's shards become chunks like any tensor's, and rank 0 commits one manifest for the step. The
nested state in the manifest's ``tree`` holds a :class:`~deepdive.engine.ckpt.tree.ShardRef` where a
sharded tensor stands; the manifest's ``dcp`` section says where its bytes are::

    "dcp": {
      "tensors": {"model.2.weight": {
          "dtype": "float32", "shape": [37, 64],
          "chunks": [{"offsets": [0, 0], "sizes": [19, 64], "shard": "model.2.weight@0,0"},
                     {"offsets": [19, 0], "sizes": [18, 64], "shard": "model.2.weight@19,0"}]}},
      "shards": [{"path": "model.2.weight@0,0", "kind": "torch", "dtype": "float32", "shape": [19, 64],
                  "nbytes": 4864, "chunks": [[id, raw bytes, stored bytes]]}, ...],
      "ranks": [{"rank": 0, "shards": 9, "raw_bytes": ..., "new_bytes": ..., "new_chunks": ...}, ...]
    }

A shard's entry has the form of a tree tensor's entry (same chunk lists, same lossy fields), so
``gc``, ``verify`` and the decoder treat shards like any tensor. ``ranks`` records what each rank
wrote: the evidence that no rank wrote (or held) the whole model.

This module needs no ``torch.distributed``: :func:`split` and :func:`fill` separate a state into
tensors by key and a JSON skeleton, :func:`assemble` rebuilds whole tensors from their shards (for
``deepdive ckpt export`` and :meth:`Store.load <deepdive.engine.ckpt.Store.load>`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional

from deepdive.engine.ckpt import tree
from deepdive.engine.ckpt.tree import ShardRef

if TYPE_CHECKING:
    from deepdive.engine.ckpt.store import Progress, Store

SECTION = "dcp"


def shard_name(key: str, offsets: Any) -> str:
    """The name of the shard of tensor ``key`` that starts at ``offsets`` (its entry's ``path``)."""
    return f"{key}@{','.join(str(int(o)) for o in offsets)}"


def split(state: Any) -> tuple[dict[str, Any], Any]:
    """``state``'s tensors by dotted key, and ``state`` with a :class:`ShardRef` in each tensor's place.

    Dicts, lists and tuples are walked; every other value stays in the skeleton.

    Raises:
        ValueError: two tensors would get the same key (e.g. keys ``1`` and ``"1"`` in one dict).
    """
    import torch

    tensors: dict[str, Any] = {}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            key = path or "tensor"
            if key in tensors:
                raise ValueError(f"two tensors of the state would both be saved as '{key}': rename one of the keys")
            tensors[key] = obj
            return ShardRef(key)
        if isinstance(obj, dict):
            return {k: walk(v, tree.join(path, k)) for k, v in obj.items()}
        if isinstance(obj, tuple) and not isinstance(obj, torch.Size):
            return tuple(walk(v, tree.join(path, i)) for i, v in enumerate(obj))
        if isinstance(obj, list):
            return [walk(v, tree.join(path, i)) for i, v in enumerate(obj)]
        return obj

    return tensors, walk(state, "")


def refs(skeleton: Any) -> list[str]:
    """The keys of the :class:`ShardRef` in ``skeleton``, in order."""
    return [ref.key for ref in _walk_refs(skeleton)]


def _walk_refs(obj: Any) -> Iterator[ShardRef]:
    if isinstance(obj, ShardRef):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _walk_refs(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _walk_refs(v)


def fill(skeleton: Any, tensors: dict[str, Any]) -> Any:
    """``skeleton`` with each :class:`ShardRef` replaced by ``tensors[ref.key]`` (the inverse of :func:`split`)."""
    if isinstance(skeleton, ShardRef):
        return tensors[skeleton.key]
    if isinstance(skeleton, dict):
        return {k: fill(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, tuple) and type(skeleton) is tuple:
        return tuple(fill(v, tensors) for v in skeleton)
    if isinstance(skeleton, list):
        return [fill(v, tensors) for v in skeleton]
    return skeleton


def entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every chunk-holding entry of a manifest: the tree's tensors, then the shards."""
    return list(manifest["tensors"]) + list((manifest.get(SECTION) or {}).get("shards", []))


def check_section(section: Any) -> None:
    """Raise ValueError unless ``section`` has the shape of a ``dcp`` section (see the module docstring)."""
    if not isinstance(section, dict) or not isinstance(section.get("tensors"), dict) \
            or not isinstance(section.get("shards"), list) or not isinstance(section.get("ranks"), list):
        raise ValueError("shards must be a dcp section: {'tensors': {...}, 'shards': [...], 'ranks': [...]}")
    names = {entry.get("path") for entry in section["shards"]}
    for key, meta in section["tensors"].items():
        for chunk in meta.get("chunks", []):
            if chunk.get("shard") not in names:
                raise ValueError(f"the dcp section's tensor '{key}' names a shard it does not hold: "
                                 f"{chunk.get('shard')}")


def assemble(store: "Store", manifest: dict[str, Any], progress: Optional["Progress"] = None) -> dict[str, Any]:
    """Every sharded tensor of a checkpoint, whole (on the CPU), by key; each chunk verified.

    Holds the whole model in memory: for export and inspection, never for a resume (a resume
    reads only the pieces each rank needs, see :func:`deepdive.engine.ckpt.dcp.load`).
    """
    import torch

    from deepdive.engine.ckpt.store import CheckpointError, _torch_dtype

    section = manifest.get(SECTION) or {}
    by_name = {entry["path"]: entry for entry in section.get("shards", [])}
    total = sum(entry["nbytes"] for entry in by_name.values())
    done = 0
    whole: dict[str, Any] = {}
    for key, meta in section.get("tensors", {}).items():
        out = torch.empty(meta["shape"], dtype=_torch_dtype({"path": key, "dtype": meta["dtype"]}))
        covered = 0
        for chunk in meta["chunks"]:
            entry = by_name[chunk["shard"]]
            data = store.read_entry(manifest["name"], entry)
            if list(data.shape) != list(chunk["sizes"]):
                raise CheckpointError(f"checkpoint {manifest['name']}: shard '{entry['path']}' has shape "
                                      f"{list(data.shape)}, its tensor expects {chunk['sizes']}; "
                                      "the manifest is damaged")
            narrow(out, chunk["offsets"], chunk["sizes"]).copy_(data)
            covered += data.numel()
            done += entry["nbytes"]
            if progress is not None:
                progress(done, total)
        if covered != out.numel():
            raise CheckpointError(f"checkpoint {manifest['name']}: the shards of '{key}' cover {covered} of its "
                                  f"{out.numel()} values; the manifest is damaged")
        whole[key] = out
    return whole


def narrow(tensor: Any, offsets: Any, sizes: Any) -> Any:
    """The view of ``tensor`` at ``offsets`` with ``sizes`` (one ``narrow`` per dimension)."""
    for dim, (offset, size) in enumerate(zip(offsets, sizes)):
        tensor = tensor.narrow(dim, int(offset), int(size))
    return tensor
