"""How the metrics store folds samples into one: the aggregation behind its ``1s`` and ``1m`` tiers
(:mod:`deepdive.telemetry.store`) and behind queries at a coarser resolution than a tier holds.

Aggregation works on the nested JSON value of each sample: numeric fields become their mean
(weighted by the number of raw samples behind each row), and fields named ``*_peak*`` or
``mem_*`` their maximum (memory pressure must not be averaged away); counters and identities
(``step``, ``epoch``, ``total_steps``, ``skipped_steps``, ``index``, ``pid``) keep the last value;
non-numeric fields (strings, booleans, lists such as ``throttle_reasons``) keep the value of the last
raw sample; dicts are aggregated key by key and lists of dicts that carry an ``index`` (the GPUs)
element by element. Non-finite floats travel as ``"NaN"``/``"Infinity"``/``"-Infinity"`` (the
reporter's convention) and count as numbers: a window holding a NaN loss has a NaN mean.

Nothing here touches the database: :func:`aggregate_rows` takes decoded samples and gives one back,
and :func:`dumps` writes a value the way the store keeps it.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional, Sequence, Union

LAST_KEYS = frozenset({"step", "epoch", "total_steps", "skipped_steps", "index", "pid", "seq"})
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def numeric(value: Any) -> Optional[float]:
    """``value`` as a float when it is a number (or a non-finite one's string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    return None


def _json_number(x: float) -> Union[float, str]:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _is_max_key(key: str) -> bool:
    return key.startswith("mem_") or "_peak" in key


def aggregate(values: Sequence[Any], weights: Sequence[int], key: str = "") -> Any:
    """Aggregate the values of one field over a bucket (rules in the module docstring).

    Args:
        values (Sequence): the field's values, oldest first (at least one).
        weights (Sequence[int]): raw samples behind each value.
        key (str): the field's name (selects mean, max or last).

    Returns:
        Any: the aggregate, JSON-ready.
    """
    last = values[-1]
    if key in LAST_KEYS:
        return last
    if isinstance(last, dict):
        pairs = [(v, w) for v, w in zip(values, weights) if isinstance(v, dict)]
        keys = list(dict.fromkeys(k for v, _ in pairs for k in v))
        out = {}
        for k in keys:
            sub = [(v[k], w) for v, w in pairs if k in v]
            out[k] = aggregate([s for s, _ in sub], [w for _, w in sub], k)
        return out
    if isinstance(last, list) and last and all(isinstance(x, dict) and "index" in x for x in last):
        groups: dict[Any, list[tuple[Any, int]]] = {}
        for v, w in zip(values, weights):
            if isinstance(v, list):
                for item in v:
                    if isinstance(item, dict) and "index" in item:
                        groups.setdefault(item["index"], []).append((item, w))
        return [aggregate([i for i, _ in groups[x["index"]]], [w for _, w in groups[x["index"]]], key)
                for x in last]
    if numeric(last) is None:
        return last
    nums = [(x, w) for x, w in ((numeric(v), w) for v, w in zip(values, weights)) if x is not None]
    if _is_max_key(key):
        xs = [x for x, _ in nums]
        return _json_number(math.nan if any(math.isnan(x) for x in xs) else max(xs))
    total = sum(w for _, w in nums)
    mean = math.fsum(x * w for x, w in nums) / total if total else nums[-1][0]
    return _json_number(mean)


def aggregate_rows(rows: Sequence[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    """Aggregate whole samples ``[(data, n), ...]`` (oldest first) into one."""
    return aggregate([d for d, _ in rows], [n for _, n in rows])


def _clean(value: Any) -> Any:
    """JSON-ready copy: non-finite floats as the reporter's strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return _json_number(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON of ``value`` as the store keeps it (non-finite floats as the reporter's strings)."""
    return json.dumps(_clean(value), separators=(",", ":"), allow_nan=False, default=str)
