"""The default pruner: Hyperband whose first rung waits for a quarter of a trial's reports.

Optuna's ``HyperbandPruner()`` starts its most aggressive bracket at ``min_resource=1``: a trial can
be cut after its second report. Early reports rank configurations badly when some of the best ones
learn slowly (a small learning rate, strong regularisation). On the sentence-polarity search (150
recorded 9-epoch curves of random configurations, ``bench/bench_tune_replay.py``), the rank
correlation between a configuration's best-so-far accuracy after epoch 1, 2, 3 and its best was
0.43, 0.62 and 0.79. Replaying 200 studies of 30 of those configurations, Optuna's Hyperband kept a
top-5 % configuration, when the study had drawn one, in 88 % of them; with the first rung after a
quarter of the trial, 96 %, for 68 % of the epochs of no pruning instead of 61 %.

``max_resource`` is learnt as Optuna learns it, from the first complete trial (its number of
reports); the first rung is then placed at a quarter of it (at least 1). Trials of seven reports or
fewer get Optuna's own Hyperband.

This module imports Optuna; :func:`deepdive.tune.study.make_pruner` imports it only when a study
starts.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

FIRST_RUNG_SHARE = 4  # the first rung at 1/4 of the reports of a complete trial


class LateHyperbandPruner(optuna.pruners.HyperbandPruner):
    """``HyperbandPruner`` with ``min_resource`` = max(1, max_resource // 4), both learnt from the first
    complete trial."""

    def __init__(self, reduction_factor: int = 3, share: int = FIRST_RUNG_SHARE) -> None:
        super().__init__(min_resource=1, max_resource="auto", reduction_factor=reduction_factor)
        self._share = share

    def _try_initialization(self, study: "optuna.study.Study") -> None:
        if self._max_resource == "auto":
            steps = [t.last_step for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.last_step is not None]
            if not steps:
                return  # no complete trial yet: nothing is pruned, as with Optuna's "auto"
            self._max_resource = max(steps) + 1
            self._min_resource = max(1, self._max_resource // self._share)
        super()._try_initialization(study)

    @property
    def first_rung(self) -> Any:
        """The step of the first pruning decision (None until a trial has completed)."""
        return None if self._max_resource == "auto" else self._min_resource
