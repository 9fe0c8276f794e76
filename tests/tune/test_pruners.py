"""The default pruner: Hyperband whose first decision waits for a quarter of a trial's reports."""

import math
import random

import optuna
import pytest

from deepdive.tune.pruners import LearntHyperbandPruner
from deepdive.tune.study import STOPPED_ATTR, make_pruner

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _pruned_at(pruner, steps: int, n: int = 60, seed: int = 0) -> tuple[list[int], optuna.Study]:
    """Run n trials whose curves rise at different speeds to different heights; the step each pruned one
    was stopped at."""
    rng = random.Random(seed)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed))
    stopped = []
    for _ in range(n):
        trial = study.ask()
        quality, speed = rng.random(), rng.uniform(0.2, 1.5)
        value = None
        for step in range(steps):
            value = quality * (1 - math.exp(-speed * (step + 1)))
            trial.report(value, step)
            if trial.should_prune():
                stopped.append(step)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
    return stopped, study


def test_the_default_is_hyperband_with_its_first_rung_after_a_quarter_of_the_reports():
    pruner = make_pruner("hyperband-quarter")
    assert isinstance(pruner, LearntHyperbandPruner) and pruner.first_rung is None  # learnt from a complete trial
    stopped, _ = _pruned_at(pruner, steps=9)
    assert pruner.first_rung == 2  # 9 reports: no decision before the third (step 2)
    assert stopped and min(stopped) >= 2, stopped
    # Optuna's own Hyperband cuts after the second report (step 1) in the same scenario
    plain, _ = _pruned_at(optuna.pruners.HyperbandPruner(), steps=9)
    assert 1 in plain, plain


@pytest.mark.parametrize("steps, first", [(4, 1), (7, 1), (8, 2), (40, 10)])
def test_the_first_rung_scales_with_the_trial(steps, first):
    pruner = LearntHyperbandPruner()
    stopped, _ = _pruned_at(pruner, steps=steps, n=30)
    assert pruner.first_rung == first
    assert all(step >= first for step in stopped), stopped


def test_nothing_is_pruned_before_a_trial_completes():
    pruner = LearntHyperbandPruner()
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    good = study.ask()
    for step in range(8):
        good.report(1.0, step)
    bad = study.ask()
    for step in range(8):  # far below the running trial, but no trial has completed to tell how long one is
        bad.report(-1.0, step)
        assert not bad.should_prune()
    study.tell(good, 1.0)
    study.tell(bad, -1.0)
    # now R = 8 reports, the first rung at step 2: trials below the others stop there (or at a later rung)
    stops = []
    for i in range(20):
        worse = study.ask()
        for step in range(8):
            worse.report(-2.0 - i / 100, step)  # each new trial a little worse than the last
            if worse.should_prune():
                stops.append(step)
                study.tell(worse, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(worse, -2.0 - i / 100)
    assert pruner.first_rung == 2 and stops and min(stops) >= 2, stops


def test_a_trial_patience_ended_does_not_set_the_length_of_a_full_trial():
    """--patience ends a trial complete after fewer reports; Hyperband must learn a full trial's length
    from a trial that ran its course, or it would prune after the second report of a 9-epoch search."""
    for name, first in (("hyperband-quarter", 2), ("hyperband", 1)):
        pruner = make_pruner(name)
        study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
        short = study.ask()
        for step in range(4):
            short.report(0.5, step)
        study._storage.set_trial_system_attr(short._trial_id, STOPPED_ATTR, True)  # as the coordinator marks it
        study.tell(short, 0.5)
        probe = study.ask()
        probe.report(0.1, 0)
        probe.report(0.1, 1)
        assert not probe.should_prune() and pruner.max_resource is None  # nothing learnt from the stopped trial
        study.tell(probe, state=optuna.trial.TrialState.PRUNED)
        full = study.ask()
        for step in range(9):
            full.report(0.9, step)
        study.tell(full, 0.9)
        _pruned_at_after(study, 9)
        assert pruner.max_resource == 9 and pruner.first_rung == first, name


def _pruned_at_after(study, steps: int) -> None:
    probe = study.ask()
    for step in range(steps):
        probe.report(0.0, step)
        if probe.should_prune():
            break
