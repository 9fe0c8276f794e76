"""Retention: which checkpoints ``gc`` keeps ("the last K plus the best n by a metric").

"The last K" are the K most recently saved checkpoints (by the save time in their manifests, ties
broken by step), all of them while fewer than K exist. In one run that is the K highest steps; after
a run started over in the same folder (``deepdive train --fresh``, whose steps count from 0 again)
it is the new run's checkpoints, so the earlier run's higher steps do not push them out.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union


def recency(manifest: dict[str, Any]) -> tuple[float, int]:
    """The sort key of a checkpoint from newest to oldest save: (save time, step)."""
    return float(manifest.get("time", 0.0)), int(manifest["step"])


def parse_best(spec: Union[str, Sequence[Any], None]) -> Optional[tuple[str, str, int]]:
    """``"val_acc:max"``, ``("val_loss", "min")`` or ``("acc", "max", 2)`` as ``(metric, mode, n)``."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        name, _, mode = spec.partition(":")
        parts: list[Any] = [name, mode or None, 1]
    else:
        parts = [*spec, None, 1][:3] if len(spec) == 1 else [*spec, 1][:3]
    name, mode, n = parts
    if not mode and isinstance(name, str):
        low = name.lower()
        mode = "min" if any(word in low for word in ("loss", "error", "perplexity", "wer")) else "max"
    if not isinstance(name, str) or not name or mode not in ("max", "min") or isinstance(n, bool) \
            or not isinstance(n, int) or n < 1:
        raise ValueError(f"keep_best must look like 'val_acc:max', 'val_loss:min' or (metric, 'max'|'min', n >= 1), "
                         f"not {spec!r}")
    return name, mode, n


def select(manifests: Sequence[dict[str, Any]], keep_last: int,
           keep_best: Optional[tuple[str, str, int]]) -> tuple[set[str], list[str]]:
    """The names to keep under "the last ``keep_last`` plus the best ``n`` by a metric", and the best.

    Each manifest needs ``name`` and ``step``; ``time`` (the save time) orders them, ``metrics``
    ranks them for ``keep_best``. With fewer than ``keep_last`` checkpoints, all are kept.
    """
    newest_first = sorted(manifests, key=recency, reverse=True)
    kept = {m["name"] for m in newest_first[:max(0, keep_last)]}
    best: list[str] = []
    if keep_best is not None:
        metric, mode, n = keep_best
        scored = [m for m in newest_first if isinstance(m.get("metrics", {}).get(metric), (int, float))
                  and math.isfinite(m["metrics"][metric])]
        scored.sort(key=lambda m: (m["metrics"][metric] if mode == "min" else -m["metrics"][metric], -m["step"]))
        best = [m["name"] for m in scored[:n]]
        kept.update(best)
    return kept, best
