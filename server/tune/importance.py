"""Parameter importance (Optuna's fANOVA): when it is shown, and computing it beside the trials.

fANOVA ranks parameters by chance on a handful of trials, so importance appears only after
``IMPORTANCE_MIN_COMPLETE`` complete trials, with a note saying why until then. During a study the
coordinator computes it every ten complete trials in a thread (:class:`BackgroundImportance`:
fANOVA takes seconds, and the workers' reports keep being answered meanwhile). Optuna (and
scikit-learn, for fANOVA) load when first used.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

IMPORTANCE_MIN_COMPLETE = 20
"""Complete trials before parameter importance is shown: with fewer, fANOVA named the most important
of four parameters right in about a third of random studies (chance: a quarter); 60% at 20, 80% at 30
(README, *Hyperparameter search*)."""

Importance = tuple[dict[str, float], Optional[str]]
"""Each parameter's importance (empty when not shown), and a note saying why not, or None."""


def importance(study: Any) -> Importance:
    """The study's parameter importances, or none and the reason (too few complete trials, fANOVA failed)."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < IMPORTANCE_MIN_COMPLETE:
        return {}, (f"importance appears after {IMPORTANCE_MIN_COMPLETE} completed trials ({len(complete)} so far): "
                    "with fewer, fANOVA's ranking of the parameters is mostly chance")
    try:
        values = optuna.importance.get_param_importances(study)
    except Exception as exc:  # e.g. every complete trial has the same parameters
        return {}, f"parameter importance unavailable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return {name: float(v) for name, v in values.items()}, None


def import_importance() -> None:
    """Import fANOVA's modules (scikit-learn, ~2 s), e.g. in a thread while the workers start."""
    try:
        import optuna.importance  # noqa: F401
    except Exception:  # noqa: BLE001 - importance() reports the problem when it runs
        return


class BackgroundImportance:
    """Importance of a snapshot of the study's complete trials, computed in a daemon thread.

    :meth:`start` takes the snapshot and starts the thread (unless one still runs); the
    coordinator's loop collects the result with :meth:`take` when it is there.
    """

    def __init__(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._ready: Optional[Importance] = None

    def start(self, study: Any) -> None:
        """Compute the importance of ``study``'s complete trials so far, unless a computation still runs."""
        import optuna
        from optuna.trial import TrialState

        if self._thread is not None and self._thread.is_alive():
            return
        snapshot = optuna.create_study(directions=study.directions)
        snapshot.add_trials([t for t in study.get_trials(deepcopy=True) if t.state == TrialState.COMPLETE])

        def compute() -> None:
            self._ready = importance(snapshot)

        self._thread = threading.Thread(target=compute, name="deepdive-importance", daemon=True)
        self._thread.start()

    def take(self) -> Optional[Importance]:
        """The finished computation's result, once (None: none finished since the last take)."""
        ready, self._ready = self._ready, None
        return ready
