"""``deepdive.tune``: Bayesian hyperparameter search (Optuna) over a script's ``run.suggest`` calls.

Python API::

    from deepdive.tune import StudyConfig, run_study
    result = run_study(StudyConfig("train.py", n_trials=30, metric="accuracy", seed=0))
    print(result.best_value, result.best_params)

See :mod:`deepdive.tune.study` for the design (warm workers, in-memory pruning mirror, crash
recovery) and :mod:`deepdive.tune.apply` for writing the best parameters back into the script.
Importing this package is cheap: Optuna loads when a study runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StudyConfig", "StudyResult", "TuneError", "run_study", "apply_best"]


def __getattr__(name: str) -> Any:
    if name in ("StudyConfig", "StudyResult", "TuneError", "run_study"):
        from deepdive.tune import study

        return getattr(study, name)
    if name == "apply_best":
        from deepdive.tune.apply import apply_best

        return apply_best
    raise AttributeError(f"module 'deepdive.tune' has no attribute {name!r}")
