"""``--sampler auto``: which Optuna sampler proposes each trial, chosen from what the study shows.

Gaussian-process Bayesian optimisation (Optuna's ``GPSampler``) finds good configurations in fewer
trials than TPE when the budget is small, but fitting its model costs about a second a trial here at
30-100 trials (5 s at 150, growing with the cube of the trials). On the sentence-polarity benchmark
(``bench/bench_tune_quality.py``, 5 seeds x 30 trials, Hyperband pruning) it came within 0.3 points of
the best configuration found on every seed, where TPE did not. So ``auto`` asks the GP while the study
holds fewer than :data:`GP_MAX_TRIALS` complete trials and its trials take at least
:data:`GP_MIN_TRIAL_S` seconds (median of this session's; the next trial is sampled while the workers
train, so the fit is hidden behind them), and multivariate TPE (``constant_liar`` with parallel
workers) otherwise: for short trials, large studies, or without scipy. Both start with the same ten
random trials. A trial keeps the sampler chosen when it was created.
"""

from __future__ import annotations

import collections
import importlib.util
import statistics
from typing import Any, Callable, Optional, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

GP_MAX_TRIALS = 200
"""From this many complete trials on, TPE: the GP's fit grows with the cube of the trials."""
GP_MIN_TRIAL_S = 5.0
"""Below this median trial time, TPE: a trial would wait for the GP's sample."""


class AutoSampler(BaseSampler):
    """GP for small studies of slow trials, multivariate TPE otherwise (see the module's docstring).

    Args:
        parallel: the number of workers (TPE's ``constant_liar`` when above 1; the GP counts running
            trials as pending by itself).
        seed: seeds both samplers.
        trial_seconds: returns the run times of the trials finished so far (this session's).
    """

    def __init__(self, parallel: int, seed: Optional[int], trial_seconds: Callable[[], Sequence[float]],
                 min_trial_s: float = GP_MIN_TRIAL_S, max_trials: int = GP_MAX_TRIALS):
        self.tpe = optuna.samplers.TPESampler(multivariate=True, constant_liar=parallel > 1, seed=seed)
        self.seed = seed
        self.trial_seconds = trial_seconds
        self.min_trial_s = min_trial_s
        self.max_trials = max_trials
        self.has_scipy = importlib.util.find_spec("scipy") is not None
        self._gp: Optional[BaseSampler] = None
        self._choice: dict[int, str] = {}  # trial number -> "gp" or "tpe", fixed when the trial is created
        self.picks: collections.Counter[str] = collections.Counter()

    @property
    def gp(self) -> BaseSampler:
        if self._gp is None:  # imports torch (for the GP): only when a study first needs it
            try:
                self._gp = optuna.samplers.GPSampler(seed=self.seed, warn_independent_sampling=False)
            except TypeError:  # an Optuna before 4.2
                self._gp = optuna.samplers.GPSampler(seed=self.seed)
        return self._gp

    def decide(self, study: optuna.Study) -> str:
        """``"gp"`` or ``"tpe"`` for the next trial."""
        if not self.has_scipy:
            return "tpe"
        seconds = list(self.trial_seconds())
        if len(seconds) < 3 or statistics.median(seconds) < self.min_trial_s:
            return "tpe"  # short trials (or nothing measured yet: the random start-up trials, alike for both)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return "tpe" if len(complete) >= self.max_trials else "gp"

    def _sampler(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        name = self._choice.get(trial.number)
        if name is None:
            name = self._choice[trial.number] = self.decide(study)
            self.picks[name] += 1
        return self.gp if name == "gp" else self.tpe

    def reseed_rng(self) -> None:
        self.tpe.reseed_rng()
        if self._gp is not None:
            self._gp.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._sampler(study, trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._sampler(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._sampler(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Optional[Sequence[float]]) -> None:
        name = self._choice.pop(trial.number, None)  # None: a trial this process did not create
        (self.gp if name == "gp" else self.tpe).after_trial(study, trial, state, values)

    def describe(self) -> str:
        """E.g. ``"auto: gp 20, tpe 10"``: which sampler proposed how many of this session's trials."""
        return "auto: " + ", ".join(f"{name} {n}" for name, n in sorted(self.picks.items())) if self.picks else "auto"
