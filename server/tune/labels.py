"""What ``--sampler`` and ``--pruner`` run, in words, for every place that shows them.

The defaults are fixed choices, and they are named as what they are (``tpe``, ``asha``, patience 2),
not "auto": nothing is chosen per study at run time. The labels say which algorithm runs and how it
is set up; they sit next to each other and beside the factories' names
(:func:`deepdive.tune.algorithms.make_sampler`, :func:`~deepdive.tune.algorithms.make_pruner`) so
they cannot drift (``tests/tune/test_display.py`` checks every choice has a label).
"""

from __future__ import annotations

from deepdive.vocabulary import TUNE_PRUNERS, TUNE_SAMPLERS

DEFAULT_SAMPLER = TUNE_SAMPLERS[0]
DEFAULT_PRUNER = TUNE_PRUNERS[0]

_SAMPLERS = {
    "tpe": ("TPE", ["multivariate"]),
    "gp": ("Gaussian process", []),
    "cmaes": ("CMA-ES", []),
    "random": ("random", []),
}
_PRUNERS = {
    "hyperband-quarter": "Hyperband, first rung at a quarter of a trial's reports",
    "hyperband": "Hyperband (Optuna's schedule)",
    "asha": "successive halving (ASHA, one bracket; the top quarter of each rung goes on)",
    "median": "median (after 5 trials)",
    "none": "no pruning",
}


def sampler_label(name: str, parallel: int = 1) -> str:
    """``"TPE (multivariate, constant liar)"``-like: what ``--sampler name`` runs."""
    base, details = _SAMPLERS.get(name, (name, []))
    if parallel > 1 and name == "tpe":
        details = [*details, "constant liar"]  # running trials count as taking their likely value
    inner = ", ".join(details)
    return f"{base} ({inner})" if inner else base


def pruner_label(name: str) -> str:
    """``"Hyperband, first rung at a quarter of a trial's reports"``-like: what ``--pruner name`` runs."""
    return _PRUNERS.get(name, name)
