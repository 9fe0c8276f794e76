"""What ``--sampler`` and ``--pruner`` resolve to, in words, for every place that shows them.

``auto`` is not a choice made at run time: it names a fixed configuration (see
:func:`deepdive.tune.algorithms.make_sampler` and :func:`~deepdive.tune.algorithms.make_pruner`). Showing
"auto + auto" hides which algorithm runs; these labels name it and keep "(auto)" to say the user
did not pick it. Kept next to each other and beside the factories' choices so they cannot drift
(``tests/tune/test_display.py`` checks every choice has a label).
"""

from __future__ import annotations

_SAMPLERS = {
    "tpe": ("TPE", ["multivariate"]),
    "gp": ("Gaussian process", []),
    "cmaes": ("CMA-ES", []),
    "random": ("random", []),
}
_PRUNERS = {
    "hyperband": "Hyperband (Optuna's schedule)",
    "asha": "successive halving (ASHA, one bracket)",
    "median": "median (after 5 trials)",
    "none": "no pruning",
}
AUTO_SAMPLER = "tpe"
AUTO_PRUNER_LABEL = "Hyperband (auto: fixed variant, first rung at a quarter of a trial's reports)"


def sampler_label(name: str, parallel: int = 1) -> str:
    """``"TPE (auto: multivariate, constant liar)"``-like: what the sampler option runs."""
    base, details = _SAMPLERS.get(AUTO_SAMPLER if name == "auto" else name, (name, []))
    if parallel > 1 and name in ("auto", "tpe"):
        details = [*details, "constant liar"]  # running trials count as taking their likely value
    inner = ", ".join(details)
    if name == "auto":
        return f"{base} (auto: {inner})" if inner else f"{base} (auto)"
    return f"{base} ({inner})" if inner else base


def pruner_label(name: str) -> str:
    """``"Hyperband (auto: fixed variant, ...)"``-like: what the pruner option runs."""
    return AUTO_PRUNER_LABEL if name == "auto" else _PRUNERS.get(name, name)
