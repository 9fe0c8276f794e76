"""``--sampler auto``: the GP for small studies of slow trials, TPE otherwise (plain Optuna studies)."""

import optuna
import pytest

from deepdive.tune.samplers import AutoSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial: optuna.Trial) -> float:
    """The echo test script's score: the maximum is 30 (x=1, n=8, c="c")."""
    x = trial.suggest_float("x", 0.1, 1.0, log=True)
    n = trial.suggest_int("n", 0, 8, step=2)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    return x + n + 10 * "abc".index(c) + 1


def study_with(sampler: AutoSampler, n_trials: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return study


def test_slow_trials_of_a_small_study_go_to_the_gp():
    sampler = AutoSampler(1, 2, lambda: [12.0, 9.0, 30.0])
    study = study_with(sampler, 13)
    assert sampler.picks == {"gp": 13} and sampler.describe() == "auto: gp 13"
    # after the ten random start-up trials the GP goes straight for the maximum
    assert max(t.value for t in study.trials[10:]) >= 29, [t.value for t in study.trials]


def test_short_trials_large_studies_and_no_scipy_go_to_tpe():
    fast = AutoSampler(1, 2, lambda: [0.3, 0.5, 0.4, 8.0])  # the median decides: 0.45 s
    study_with(fast, 12)
    assert fast.picks == {"tpe": 12}
    unknown = AutoSampler(1, 2, lambda: [20.0])  # fewer than three finished trials: nothing measured yet
    study_with(unknown, 3)
    assert unknown.picks == {"tpe": 3}
    big = AutoSampler(1, 2, lambda: [12.0] * 3, max_trials=5)  # from five complete trials on: TPE
    study_with(big, 8)
    assert big.picks == {"gp": 5, "tpe": 3}
    bare = AutoSampler(2, 2, lambda: [12.0] * 3)
    bare.has_scipy = False
    study_with(bare, 4)
    assert bare.picks == {"tpe": 4} and bare.tpe._constant_liar  # parallel workers: constant liar


@pytest.mark.parametrize("seconds, expected", [([6.0] * 3, "gp"), ([4.0] * 3, "tpe")])
def test_the_choice_is_made_once_per_trial(seconds, expected):
    times = list(seconds)
    sampler = AutoSampler(1, 0, lambda: times)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trial = study.ask()
    times[:] = [1.0] * 3 if expected == "gp" else [60.0] * 3  # trials finish meanwhile: this one keeps its sampler
    trial.suggest_float("x", 0.1, 1.0, log=True)
    study.tell(trial, 1.0)
    assert sampler.picks == {expected: 1}
