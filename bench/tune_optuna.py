"""The plain-Optuna arm of ``bench/bench_tune.py``: what a user would write instead of ``deepdive tune``.

One process: ``optuna.create_study`` on a SQLite storage and ``study.optimize(objective, n_trials=N)``,
where ``objective(trial)`` declares the same space as ``bench/tune_objective.py``'s script with
``trial.suggest_float`` and calls the same :func:`tune_objective.train`, reporting each epoch's
accuracy with ``trial.report`` and ``trial.should_prune`` (every report a storage round trip, the
pruner reading the study from the storage: Optuna's way).

Sampler and pruner: the ones ``bench_tune.py`` gives ``deepdive tune`` (``--pruner hyperband-quarter
--patience 0``; its sampler is the default) with one trial at a time, built from Optuna's public
classes: ``TPESampler(multivariate=True, seed=S)`` and Optuna's ``HyperbandPruner`` with
``min_resource=max(1, epochs // 4)``, ``max_resource="auto"``, ``reduction_factor=3``. Deepdive's
``hyperband-quarter`` is that class with that schedule (its ``max_resource`` learnt from the first
complete trial, its first rung at a quarter of it), so on this objective both arms prune by the same rule: neither arm's non-training share moves because it pruned more or less training
away. Optuna's out-of-the-box ``HyperbandPruner()`` (first rung after the second report) would prune
earlier and so train less, which raises a share for reasons other than overhead.

Usage: python bench/tune_optuna.py --storage sqlite:///s.db --trials 6 --steps 800 --epochs 8 --seed 0
[--batch-size 128] [--record trials.jsonl] [--study NAME]
"""

from __future__ import annotations

import argparse
import sys
import warnings

import optuna

from tune_objective import BATCH, LR, METRIC, MOMENTUM, WEIGHT_DECAY, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="an Optuna storage URL, e.g. sqlite:///study.db")
    parser.add_argument("--study", default="tune_objective")
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, required=True, help="epochs per trial (one report each)")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed and every trial's training seed")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--record", default=None, help="append one JSON line per trial here")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.steps < 1 or args.epochs < 1:
        parser.error("--trials, --steps and --epochs must be at least 1")

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as deepdive tune sets it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate TPE
        sampler = optuna.samplers.TPESampler(multivariate=True, seed=args.seed)
    pruner = optuna.pruners.HyperbandPruner(min_resource=max(1, args.epochs // 4), max_resource="auto",
                                            reduction_factor=3)
    study = optuna.create_study(storage=args.storage, study_name=args.study, direction="maximize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        params = {
            "lr": trial.suggest_float("lr", LR[0], LR[1], log=True),
            "weight_decay": trial.suggest_float("weight_decay", WEIGHT_DECAY[0], WEIGHT_DECAY[1], log=True),
            "momentum": trial.suggest_float("momentum", MOMENTUM[0], MOMENTUM[1]),
        }

        def report(epoch: int, accuracy: float) -> None:
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {epoch} ({METRIC} {accuracy:.6g})")

        return train(params, args.steps, args.epochs, args.seed, report, args.record, args.batch_size)

    study.optimize(objective, n_trials=args.trials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
