"""Hyperparameters declared in the script (define-by-run): ``run.suggest("lr", 1e-4, 1e-1, log=True, default=3e-3)``.

Outside a search the default comes back. A search (``deepdive tune``) runs the script with the
trial's values in the environment variable ``DEEPDIVE_PARAMS`` (a JSON object); every value is
checked against the declared range. Each declaration is recorded in :attr:`Hyperparameters.space`.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Optional, Sequence, Union

import attrs

ENV_PARAMS = "DEEPDIVE_PARAMS"
Value = Union[int, float, str, bool]


@attrs.define
class Param:
    name: str
    kind: str  # "float", "int" or "categorical"
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[list[Value]] = None
    default: Optional[Value] = None


class Hyperparameters:
    def __init__(self, overrides: Optional[dict[str, Any]] = None):
        if overrides is None:
            raw = os.environ.get(ENV_PARAMS)
            try:
                overrides = json.loads(raw) if raw else {}
            except ValueError:
                raise ValueError(f"{ENV_PARAMS} is not valid JSON: {raw[:80]!r}") from None
            if not isinstance(overrides, dict):
                raise ValueError(f"{ENV_PARAMS} must be a JSON object, got {type(overrides).__name__}")
        self.overrides = overrides
        self.space: dict[str, Param] = {}
        self.values: dict[str, Value] = {}

    def suggest(self, name: str, low: Optional[float] = None, high: Optional[float] = None, *,
                default: Optional[Value] = None, log: bool = False, step: Optional[float] = None,
                choices: Optional[Sequence[Value]] = None) -> Value:
        """Declare a hyperparameter and get its value for this run.

        Raises:
            ValueError: an inconsistent declaration (no default, default outside the range, log
                scale with low <= 0), a name declared twice differently, or an override outside it.
        """
        if choices is not None:
            param = Param(name, "categorical", choices=list(choices), default=default)
            if default is None or default not in param.choices:
                raise ValueError(f"suggest({name!r}): default must be one of the choices {param.choices}")
        else:
            if low is None or high is None or default is None:
                raise ValueError(f"suggest({name!r}): give low, high and default (or choices=[...])")
            if not low <= high:
                raise ValueError(f"suggest({name!r}): low {low} is above high {high}")
            if log and low <= 0:
                raise ValueError(f"suggest({name!r}): a log scale needs low > 0, got {low}")
            kind = "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, default)) else "float"
            param = Param(name, kind, low=low, high=high, log=log, step=step, default=default)
            if not low <= default <= high:  # type: ignore[operator]
                raise ValueError(f"suggest({name!r}): default {default} is outside [{low}, {high}]")
        known = self.space.get(name)
        if known is not None and known != param:
            raise ValueError(f"suggest({name!r}) declared twice with different ranges")
        self.space[name] = param
        value = self.overrides.get(name, default)
        self._check(param, value)
        self.values[name] = value  # type: ignore[assignment]
        return value  # type: ignore[return-value]

    @staticmethod
    def _check(param: Param, value: Any) -> None:
        if param.kind == "categorical":
            if value not in (param.choices or []):
                raise ValueError(f"{ENV_PARAMS}: {param.name}={value!r} is not one of {param.choices}")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"{ENV_PARAMS}: {param.name}={value!r} is not a number")
        if not param.low <= value <= param.high:  # type: ignore[operator]
            raise ValueError(f"{ENV_PARAMS}: {param.name}={value} is outside [{param.low}, {param.high}]")
