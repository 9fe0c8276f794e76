"""Hyperparameters declared in the script (define-by-run): ``run.suggest("lr", 1e-4, 1e-1, log=True, default=3e-3)``.

Outside a search the default comes back. A search (``deepdive tune``) runs the script with the
trial's values bound in-process (:func:`bind_trial`, used by the tune workers that execute the script
with ``runpy``) or, in a fresh process, in the environment variable ``DEEPDIVE_PARAMS`` (a JSON
object); every value is checked against the declared range. Each declaration is recorded in
:attr:`Hyperparameters.space`.

Reporting to the search: while a trial is bound, ``run.log(**metrics)`` with the study's metric name
reports an intermediate value (:meth:`TrialBinding.report`); when the pruner says stop, the engine
raises :class:`TrialPruned`, which the tune worker turns into a clean end marked *pruned*; when the
search's patience runs out (``--patience``), it raises :class:`TrialStopped`, a clean end marked
*complete* with the trial's best report as its value.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Optional, Sequence, Union

import attrs

ENV_PARAMS = "DEEPDIVE_PARAMS"
Value = Union[int, float, str, bool]


class TrialPruned(Exception):
    """Raised by ``run.log`` when the search's pruner stops this trial; the tune worker ends it as pruned.

    Do not catch it in the script (or re-raise it): the trial is over.
    """


class TrialStopped(Exception):
    """Raised by ``run.log`` when the search ends this trial early as *complete*: its metric has not
    improved on its best for ``deepdive tune --patience N`` reports (early stopping); the trial's
    value is its best report. Do not catch it in the script (or re-raise it): the trial is over.
    """


@attrs.define
class TrialBinding:
    """The trial a tune worker runs in this process: its parameters and where reports go.

    Attributes:
        suggest: ``suggest(param) -> value``: the search's value for a declaration (define-by-run:
            the tune coordinator asks its sampler when the script declares the parameter).
        metric: the metric name that ``run.log`` reports (e.g. ``"accuracy"``).
        report: ``report(step, value) -> bool``; True means "prune now".
        params: filled with the values the script got (name -> value).
        last: the last value reported for ``metric`` (the trial's value by default), or None.
        best: the best value reported for ``metric`` in ``direction`` (the trial's value with
            ``deepdive tune --value best``: the epoch early stopping would keep), or None.
        direction: ``"maximize"`` or ``"minimize"``: what ``best`` means.
        reports: how many values were reported.
    """

    suggest: Callable[["Param"], Any]
    metric: Optional[str] = None
    report: Optional[Callable[[int, float], bool]] = None
    params: dict[str, Any] = attrs.Factory(dict)
    last: Optional[float] = None
    best: Optional[float] = None
    direction: str = "minimize"
    reports: int = 0
    step_seconds: float = 0.0
    """Wall time of the training steps of the trial's runs (``run.batches``), summed by the engine."""
    seed: Optional[int] = None
    """The trial's training seed (the study's ``--seed`` or 0; a ``--confirm`` re-training's fresh one): the
    worker seeds random, NumPy and torch with it, and ``dd.setup(seed=...)`` takes it instead of the
    script's own, so a script that seeds itself still trains with the seed the search asked for."""

    def record(self, value: float) -> None:
        """A reported value of the metric: the last one, and the best one so far in ``direction``."""
        self.last = value
        if improves(value, self.best, self.direction):
            self.best = value


def improves(value: float, best: Optional[float], direction: str) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) in ``direction``; NaN never does."""
    return value == value and (best is None or (value > best if direction == "maximize" else value < best))


_BINDING: Optional[TrialBinding] = None


def bind_trial(binding: Optional[TrialBinding]) -> None:
    """Bind (or, with None, unbind) the trial that this process runs; used by ``deepdive.tune``."""
    global _BINDING
    _BINDING = binding


def current_trial() -> Optional[TrialBinding]:
    """The bound trial, or None outside a search."""
    return _BINDING


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
        self.binding = _BINDING if overrides is None else None
        if overrides is None and self.binding is not None:
            overrides = {}
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
        if self.binding is not None:
            value = self.binding.suggest(param)
            self.binding.params[name] = value
        else:
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
