"""The nested state of a checkpoint as JSON: containers and plain values inline, arrays by reference.

No pickle anywhere: loading a checkpoint never runs code. What can be stored:

- ``torch.Tensor`` (any strided CPU/GPU tensor; loaded on the CPU unless ``map_location``),
  ``numpy.ndarray`` and numpy scalars (not ``object`` dtype): their bytes go to chunks, the manifest
  holds ``{"$tensor": i}``;
- ``None``, ``bool``, ``int`` (any size), ``float`` (NaN and infinities included), ``str``;
- ``bytes``/``bytearray`` (base64), ``torch.dtype``, ``torch.device``, ``torch.Size``;
- ``dict`` (any keys made of the above scalars: optimizer states use int keys), ``list``, ``tuple``
  (kept a tuple: ``random.setstate`` needs one);
- :class:`ShardRef`: where a sharded checkpoint's tensor stands (its bytes are the shards that every
  rank wrote, see :mod:`deepdive.engine.ckpt.shards`); ``{"$shard": key}`` in the manifest.

A tensor object that appears twice (tied weights) is stored once and loaded as one object again.
"""

from __future__ import annotations

import base64
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

_TAGS = ("$tensor", "$tuple", "$dict", "$bytes", "$float", "$dtype", "$device", "$size", "$shard")


@dataclass(frozen=True)
class ShardRef:
    """A tensor of a sharded checkpoint, by its key in the checkpoint's ``dcp`` section: the tree keeps
    the place, the shards written by each rank hold the bytes."""

    key: str


def _torch() -> Any:
    return sys.modules.get("torch")


def is_array(obj: Any) -> bool:
    torch = _torch()
    return isinstance(obj, (np.ndarray, np.generic)) or (torch is not None and isinstance(obj, torch.Tensor))


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def encode(state: Any, on_array: Callable[[str, Any], int]) -> Any:
    """``state`` as JSON-able data; ``on_array(path, array)`` stores an array and returns its index."""
    seen: dict[int, int] = {}

    def enc(obj: Any, path: str) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, ShardRef):
            return {"$shard": obj.key}
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj) if math.isfinite(obj) else {"$float": repr(obj)}
        if is_array(obj):
            if not isinstance(obj, np.generic) and id(obj) in seen:
                return {"$tensor": seen[id(obj)]}
            index = on_array(path or "<root>", obj)
            if not isinstance(obj, np.generic):
                seen[id(obj)] = index
            return {"$tensor": index}
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in obj):
                return {k: enc(v, join(path, k)) for k, v in obj.items()}
            pairs = []
            for k, v in obj.items():
                if not (k is None or isinstance(k, (bool, int, float, str, bytes, tuple))):
                    raise TypeError(f"cannot checkpoint the dict key {k!r} at '{path or '<root>'}': "
                                    "keys must be strings, numbers, bytes or tuples of them")
                pairs.append([enc(k, join(path, "<key>")), enc(v, join(path, k))])
            return {"$dict": pairs}
        if isinstance(obj, tuple) and type(obj).__name__ == "Size" and _torch() is not None \
                and isinstance(obj, _torch().Size):
            return {"$size": [int(x) for x in obj]}
        if isinstance(obj, tuple):
            return {"$tuple": [enc(v, join(path, i)) for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [enc(v, join(path, i)) for i, v in enumerate(obj)]
        if isinstance(obj, (bytes, bytearray)):
            return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
        torch = _torch()
        if torch is not None and isinstance(obj, torch.dtype):
            return {"$dtype": str(obj).removeprefix("torch.")}
        if torch is not None and isinstance(obj, torch.device):
            return {"$device": str(obj)}
        raise TypeError(f"cannot checkpoint a {type(obj).__module__}.{type(obj).__qualname__} at "
                        f"'{path or '<root>'}': store tensors, numpy arrays, numbers, strings, bytes, None, "
                        "or dicts/lists/tuples of them (no pickle)")

    return enc(state, "")


def decode(data: Any, arrays: list[Any]) -> Any:
    """The inverse of :func:`encode`; ``arrays[i]`` is the loaded array of ``{"$tensor": i}``."""
    if isinstance(data, list):
        return [decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1:
        (tag, value), = data.items()
        if tag == "$tensor":
            return arrays[value]
        if tag == "$tuple":
            return tuple(decode(v, arrays) for v in value)
        if tag == "$dict":
            return {_hashable(decode(k, arrays)): decode(v, arrays) for k, v in value}
        if tag == "$bytes":
            return base64.b64decode(value)
        if tag == "$float":
            return float(value)
        if tag == "$shard":
            return ShardRef(str(value))
        if tag in ("$dtype", "$device", "$size"):
            import torch

            if tag == "$dtype":
                dtype = getattr(torch, value, None)
                if not isinstance(dtype, torch.dtype):
                    raise ValueError(f"unknown torch dtype {value!r}")
                return dtype
            return torch.device(value) if tag == "$device" else torch.Size(value)
    return {k: decode(v, arrays) for k, v in data.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
