"""The sampler and the pruner a study runs, built from their names (``--sampler``, ``--pruner``).

``SAMPLERS`` and ``PRUNERS`` are the names the options accept; :mod:`deepdive.tune.labels` says
what each runs, in words, and :mod:`deepdive.tune.pruners` holds the default pruner. Optuna (and
the optional scipy, cmaes) load when a factory is called, not on import.
"""

from __future__ import annotations

from typing import Any, Optional

from deepdive.extras import pip_command
from deepdive.tune.errors import TuneError
from deepdive.vocabulary import TUNE_PRUNERS as PRUNERS
from deepdive.vocabulary import TUNE_SAMPLERS as SAMPLERS


def make_sampler(name: str, parallel: int, seed: Optional[int]) -> Any:
    """The Optuna sampler ``--sampler name`` runs (``parallel`` > 1: TPE treats running trials as lies)."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, constant_liar=parallel > 1, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":  # Gaussian-process Bayesian optimisation: for small budgets; running trials count as pending
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise TuneError(f"the gp sampler needs scipy: {pip_command('tune')}") from None
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise TuneError(f"the CMA-ES sampler needs the cmaes package: {pip_command('tune')}") from None
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise TuneError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


def make_pruner(name: str) -> Any:
    """The Optuna pruner ``--pruner name`` runs."""
    import optuna

    if name in ("hyperband-quarter", "hyperband"):
        from deepdive.tune.pruners import LearntHyperbandPruner

        # hyperband-quarter (the default): the first rung after a quarter of a full trial's reports;
        # hyperband: Optuna's schedule (after the second report). Both learn a full trial's length from
        # trials --patience did not end.
        return LearntHyperbandPruner(first_rung_share=4 if name == "hyperband-quarter" else None)
    if name == "asha":  # successive halving, one bracket: every trial is judged at every rung
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TuneError(f"pruner must be one of {', '.join(PRUNERS)}, got {name!r}")
