"""The telemetry reporter's JSON: compact and strict, with non-finite floats as strings and tensors as numbers.

:func:`encode` turns a sample or an event into the text that goes to the hub and the JSONL file
(the value rules are in :mod:`deepdive.engine.reporter`'s contract).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["encode"]

_SEPARATORS = (",", ":")


def _plain(value: Any) -> Any:
    """JSON fallback for objects json does not know: tensors, NumPy values, anything else."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (ValueError, RuntimeError, TypeError):
            pass  # more than one element: fall through to tolist
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (str, int)) or value is None:
        return value
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return _finite(_plain(value))


def encode(obj: dict) -> str:
    """Compact, strict JSON of a sample or event (non-finite floats as strings).

    Raises:
        TypeError, ValueError, RecursionError: when ``obj`` cannot be made JSON (e.g. a key that is
            not a string, number or bool, or a reference cycle).
    """
    try:
        return _ENCODER.encode(obj)
    except ValueError:  # a non-finite float somewhere (or a cycle, which _finite turns into RecursionError)
        return _ENCODER.encode(_finite(obj))


# One encoder for all calls: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(default=_plain, allow_nan=False, separators=_SEPARATORS)
