"""One array <-> one manifest entry: how a tensor is cut into chunks (exact, bf16 or int8-delta)
and how an entry's decoded chunks are put back into a tensor or numpy array.

:class:`EntryCodec` is mixed into :class:`~deepdive.engine.ckpt.store.Store` (it uses the store's
``chunk_size`` and, for an int8-delta base, its ``_read_chunks``); the DCP writer calls
``store._prepare`` for its shards too. The module functions read a manifest entry's chunk lists.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from deepdive.engine.ckpt import codec, shards as sharding
from deepdive.engine.ckpt.records import CheckpointError

LOSSY_MODES = ("bf16", "int8-delta")
LOSSY_MIN_NUMEL = 4096      # smaller float tensors (optimizer step counters, scalars, norms) stay exact
DELTA_BLOCK = 4096          # elements per int8-delta scale


class EntryCodec:
    """The store's tensor <-> entry conversions (a mixin of :class:`~deepdive.engine.ckpt.store.Store`)."""

    chunk_size: int

    def _prepare(self, path: str, arr: Any, lossy: Optional[str], lossy_filter: Any,
                 base: Optional[dict[str, Any]], base_name: Optional[str]
                 ) -> tuple[dict[str, Any], list[tuple[str, np.ndarray, int, bool]]]:
        """The manifest entry of one array and its chunk jobs (key filled in later)."""
        entry: dict[str, Any] = {"path": path}
        if isinstance(arr, (np.ndarray, np.generic)):
            a = np.asarray(arr)
            if a.dtype.hasobject:
                raise TypeError(f"cannot checkpoint the object array at '{path}': convert it to numbers")
            a = a if a.flags.c_contiguous else a.copy(order="C")   # (ascontiguousarray makes 0-d arrays 1-d)
            entry.update(kind="npscalar" if isinstance(arr, np.generic) else "numpy", dtype=a.dtype.str,
                         shape=list(a.shape))
            raw = a.reshape(-1).view(np.uint8)
            itemsize, is_float = a.dtype.itemsize, a.dtype.kind == "f"
            value = None
        else:
            import torch

            t = arr.detach()
            if t.layout != torch.strided or t.is_quantized:
                raise TypeError(f"cannot checkpoint the {t.layout} {'quantized ' if t.is_quantized else ''}tensor at "
                                f"'{path}': convert it to a dense tensor (.to_dense() / .dequantize())")
            if t.device.type != "cpu":
                t = t.cpu()
            t = t.resolve_conj().resolve_neg().contiguous()
            entry.update(kind="torch", dtype=str(t.dtype).removeprefix("torch."), shape=list(t.shape))
            itemsize, is_float = t.element_size(), t.is_floating_point()
            value = t
            raw = t.reshape(-1).view(torch.uint8).numpy()
        entry["nbytes"] = int(raw.size)
        entry["chunks"] = []
        wants_lossy = (lossy is not None and is_float and raw.size // itemsize >= LOSSY_MIN_NUMEL
                       and (lossy_filter is None or lossy_filter(path, arr)))
        if wants_lossy and lossy == "bf16" and itemsize >= 4:
            import torch

            t = value if value is not None else torch.from_numpy(np.asarray(arr).reshape(-1))
            raw = t.reshape(-1).to(torch.bfloat16).view(torch.uint8).numpy()
            entry["stored_dtype"] = "bfloat16"
            itemsize = 2
        elif wants_lossy and lossy == "int8-delta":
            delta = self._int8_delta(path, value if value is not None else np.asarray(arr), raw, itemsize,
                                     base, base_name, entry)
            if delta is not None:
                q, scale = delta
                entry["scale"] = []
                return entry, [*self._split("chunks", q, 1, False), *self._split("scale", scale, 4, True)]
        return entry, self._split("chunks", raw, itemsize, is_float)

    def _split(self, key: str, raw: np.ndarray, itemsize: int, is_float: bool) -> list[tuple[str, np.ndarray, int, bool]]:
        size = self.chunk_size - self.chunk_size % max(1, itemsize)
        return [(key, raw[i:i + size], itemsize, is_float) for i in range(0, raw.size, size)]

    def _int8_delta(self, path: str, value: Any, raw: np.ndarray, itemsize: int, base: Optional[dict[str, Any]],
                    base_name: Optional[str], entry: dict[str, Any]) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """int8 differences from the base's exact bytes, or None to store exactly (no usable base,
        or the tensor is unchanged: dedup then stores nothing)."""
        import torch

        if base is None or base.get("dtype") != entry["dtype"] or base.get("shape") != entry["shape"] \
                or base.get("kind") != entry["kind"] or "stored_dtype" in base:
            return None
        exact = base["delta"]["base"] if "delta" in base else base["chunks"]
        size = self.chunk_size - self.chunk_size % itemsize
        if [codec.chunk_id(raw[i:i + size]) for i in range(0, raw.size, size)] == [c[0] for c in exact]:
            return None
        base_raw = np.empty(raw.size, dtype=np.uint8)
        self._read_chunks(base_name or "base", [({"path": path}, exact, base_raw)], None)
        dtype = torch_dtype(entry) if entry["kind"] == "torch" else None
        if dtype is None:
            cur = torch.from_numpy(raw.view(np.dtype(entry["dtype"]))).float()
            ref = torch.from_numpy(base_raw.view(np.dtype(entry["dtype"]))).float()
        else:
            cur = value.reshape(-1).float()
            ref = torch.from_numpy(base_raw).view(dtype).float()
        diff = cur - ref
        n = diff.numel()
        pad = (-n) % DELTA_BLOCK
        blocks = torch.nn.functional.pad(diff, (0, pad)).view(-1, DELTA_BLOCK)
        scale = blocks.abs().amax(dim=1) / 127.0
        if not torch.isfinite(scale).all():
            return None   # inf/nan differences: keep the tensor exact
        q = torch.round(blocks / torch.where(scale > 0, scale, torch.ones_like(scale))[:, None]).clamp_(-127, 127)
        entry["delta"] = {"base": exact, "from": base_name, "block": DELTA_BLOCK}
        return (q.to(torch.int8).reshape(-1)[:n].view(torch.uint8).numpy(),
                scale.to(torch.float32).view(torch.uint8).numpy())

    def _allocate(self, entry: dict[str, Any], tasks: list, finish: list, outputs: list, index: int) -> Any:
        """The output array of one entry; its chunks go to ``tasks``, any post-processing to ``finish``."""
        import torch

        kind, shape, name = entry.get("kind"), entry.get("shape"), entry.get("path")
        if kind in ("numpy", "npscalar"):
            arr = np.empty(shape, dtype=np.dtype(entry["dtype"]))
            raw = arr.reshape(-1).view(np.uint8)
            result: Any = arr[()] if kind == "npscalar" else arr
        elif kind == "torch":
            dtype = torch_dtype(entry)
            t = torch.empty(shape, dtype=dtype)
            raw = t.reshape(-1).view(torch.uint8).numpy()
            result = t
        else:
            raise CheckpointError(f"tensor '{name}' has an unknown kind {kind!r}: upgrade deepdive")
        if raw.size != entry["nbytes"]:
            raise CheckpointError(f"tensor '{name}': manifest sizes disagree ({raw.size} != {entry['nbytes']})")
        if "stored_dtype" in entry:           # lossy bf16: decode the bf16 bytes, cast back
            half = torch.empty(math.prod(shape), dtype=torch.bfloat16)
            tasks.append((entry, entry["chunks"], half.view(torch.uint8).numpy()))

            def cast_back() -> None:
                if kind == "torch":
                    result.copy_(half.view(result.shape).to(result.dtype))
                else:
                    raw[:] = half.float().numpy().astype(np.dtype(entry["dtype"])).view(np.uint8)
            finish.append(cast_back)
            if kind == "npscalar":
                finish.append(lambda: outputs.__setitem__(index, raw.view(np.dtype(entry["dtype"])).reshape(shape)[()]))
        elif "delta" in entry:                # int8-delta: exact base + q * scale
            delta = entry["delta"]
            n = raw.size // (np.dtype(entry["dtype"]).itemsize if kind != "torch" else result.element_size())
            q = np.empty(n, dtype=np.uint8)
            scale = np.empty(total_bytes(entry["scale"]), dtype=np.uint8)
            tasks += [(entry, delta["base"], raw), (entry, entry["chunks"], q), (entry, entry["scale"], scale)]

            def apply_delta() -> None:
                block = int(delta["block"])
                s = torch.from_numpy(scale.view(np.float32).copy())
                qt = torch.nn.functional.pad(torch.from_numpy(q.view(np.int8).copy()).float(), (0, (-n) % block))
                d = (qt.view(-1, block) * s[:, None]).reshape(-1)[:n]
                if kind == "torch":
                    flat = result.view(-1)
                    flat.copy_((flat.float() + d).to(result.dtype))
                else:
                    view = raw.view(np.dtype(entry["dtype"]))
                    view[:] = (view.astype(np.float32) + d.numpy()).astype(view.dtype)
            finish.append(apply_delta)
            if kind == "npscalar":
                finish.append(lambda: outputs.__setitem__(index, raw.view(np.dtype(entry["dtype"])).reshape(shape)[()]))
        else:
            tasks.append((entry, entry["chunks"], raw))
            if kind == "npscalar":
                finish.append(lambda: outputs.__setitem__(index, raw.view(np.dtype(entry["dtype"])).reshape(shape)[()]))
        return result


def entry_chunks(entry: dict[str, Any]) -> list[list[Any]]:
    chunks = list(entry.get("chunks", []))
    if "delta" in entry:
        chunks += entry["delta"]["base"] + entry.get("scale", [])
    return chunks


def chunk_refs(manifest: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Every chunk a manifest references (its tree's tensors and its shards): {id: (raw, stored bytes)}."""
    refs: dict[str, tuple[int, int]] = {}
    for entry in sharding.entries(manifest):
        for key, raw_len, stored in entry_chunks(entry):
            refs[key] = (raw_len, stored)
    return refs


def total_bytes(chunks: list[list[Any]]) -> int:
    return sum(raw_len for _, raw_len, _ in chunks)


def torch_dtype(entry: dict[str, Any]) -> Any:
    import torch

    dtype = getattr(torch, str(entry.get("dtype")), None)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"tensor '{entry.get('path')}' has an unknown dtype {entry.get('dtype')!r}: upgrade torch")
    return dtype

