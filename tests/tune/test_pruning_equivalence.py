"""The coordinator's in-memory pruning mirror decides exactly as Optuna does with direct reporting."""

import math
import random

import optuna
import pytest

from deepdive.tune.study import Ledger, make_pruner, open_storage

optuna.logging.set_verbosity(optuna.logging.ERROR)

PRUNERS = {
    "hyperband-quarter": lambda: make_pruner("hyperband-quarter"),  # deepdive's default: Hyperband, its first rung at a quarter of a trial
    "hyperband": lambda: optuna.pruners.HyperbandPruner(),
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=10),
    "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
}


def _curves(n: int, steps: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    curves = []
    for _ in range(n):
        quality, speed = rng.random(), rng.uniform(0.2, 1.5)
        curves.append([quality * (1 - math.exp(-speed * (k + 1))) + rng.gauss(0, 0.02) for k in range(steps)])
    return curves


def _schedule(n: int):
    """Pairs of trials whose reports interleave (two running at once); every 5th trial is 'external'
    (another process on the same storage, reporting directly) and runs alone: other processes see
    the coordinator's intermediate values when its trials end."""
    groups, current = [], []
    for i in range(n):
        if i % 5 == 4:
            if current:
                groups.append(current)
            groups.append([i])
            current = []
            continue
        current.append(i)
        if len(current) == 2:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def _direct(pruner, curves, direction):
    study = optuna.create_study(study_name="eq", direction=direction, pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    decisions = {}
    for group in _schedule(len(curves)):
        trials = {n: study.ask() for n in group}
        alive = set(group)
        for k in range(len(curves[0])):
            for n in group:
                if n not in alive:
                    continue
                t = trials[n]
                t.report(curves[n][k], step=10 * (k + 1))
                if t.should_prune():
                    study.tell(t, state=optuna.trial.TrialState.PRUNED)
                    decisions[n] = ("pruned", k)
                    alive.discard(n)
        for n in alive:
            study.tell(trials[n], curves[n][-1])
            decisions[n] = ("complete", None)
    return decisions


def _ledger(pruner, curves, direction, url):
    storage = open_storage(url, None, None)
    study = optuna.create_study(storage=storage, study_name="eq", direction=direction, pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    other = optuna.load_study(study_name="eq", storage=open_storage(url, None, None), pruner=pruner)
    ledger = Ledger(study, storage if isinstance(storage, optuna.storages.RDBStorage) else None)
    decisions = {}
    for group in _schedule(len(curves)):
        external = [n for n in group if n % 5 == 4]
        ours = [n for n in group if n not in external]
        trials = {}
        for n in group:  # ask in number order, as the direct run does
            if n in external:
                trials[n] = other.ask()
            else:
                trials[n] = ledger.begin()[0]
            assert trials[n].number == n
        alive = set(group)
        for k in range(len(curves[0])):
            for n in group:
                if n not in alive:
                    continue
                step = 10 * (k + 1)
                if n in external:  # another process reporting straight to the storage
                    t = trials[n]
                    t.report(curves[n][k], step=step)
                    prune = t.should_prune()
                else:
                    prune = ledger.report(n, step, curves[n][k])
                if prune:
                    decisions[n] = ("pruned", k)
                    alive.discard(n)
                    if n in external:
                        other.tell(trials[n], state=optuna.trial.TrialState.PRUNED)
                    else:
                        ledger.finish(n, "pruned")
        for n in alive:
            decisions[n] = ("complete", None)
            if n in external:
                other.tell(trials[n], curves[n][-1])
            else:
                ledger.finish(n, "complete", curves[n][-1])
        del ours
    return decisions, study, ledger


@pytest.mark.parametrize("name, direction", [("hyperband-quarter", "maximize"), ("hyperband", "maximize"), ("hyperband", "minimize"),
                                             ("median", "maximize"), ("halving", "minimize")])
def test_mirror_decides_like_direct_reporting(tmp_path, name, direction):
    curves = _curves(26, 9, seed=len(name) * 7 + len(direction))
    direct = _direct(PRUNERS[name](), curves, direction)
    mirrored, study, ledger = _ledger(PRUNERS[name](), curves, direction, f"sqlite:///{tmp_path / 'eq.db'}")
    assert mirrored == direct
    assert any(state == "pruned" for state, _ in direct.values()), "the scenario should prune something"
    # the persistent storage holds what was reported, written in batches at trial end
    for frozen in study.get_trials(deepcopy=False):
        state, k = direct[frozen.number]
        reported = curves[frozen.number][: (k + 1) if k is not None else None]
        assert [frozen.intermediate_values[10 * (i + 1)] for i in range(len(reported))] == pytest.approx(reported)
        assert frozen.state.name.lower() == state
    n_ours = sum(1 for n in range(len(curves)) if n % 5 != 4)
    reports = sum(len(curves[0]) if direct[n][1] is None else direct[n][1] + 1 for n in range(len(curves)) if n % 5 != 4)
    assert ledger.writes <= 3 * n_ours  # ask + one batch + tell per trial (no suggest here), whatever the reports
    assert reports > 0


def test_journal_storage_mirror(tmp_path):
    curves = _curves(10, 6, seed=3)
    direct = _direct(PRUNERS["median"](), curves, "maximize")
    mirrored, _, _ = _ledger(PRUNERS["median"](), curves, "maximize", f"journal:{tmp_path / 'j.log'}")
    assert mirrored == direct
