"""Orchestration overhead of `deepdive tune` per trial, against a naive orchestrator, in the same run.

Both studies search the digits MLP (server/examples/digits.py: lr, weight decay, hidden size,
dropout) with short trials (default: two epochs, batch 256, fp32: about 0.3 s of training on a laptop
core), the default persistent storage (SQLite in the workspace's .deepdive/tune.db), TPE with
Hyperband pruning, the same seed, one trial at a time:

* ``deepdive tune``: warm workers (torch imported once) executing the script in-process, pruning
  decided on the coordinator's in-memory mirror, intermediate values written once per trial;
* naive baseline: a fresh Python process per trial (interpreter start, torch import) and every
  intermediate value reported straight to the storage, the pruner reading the storage each time.

Overhead = (wall time - sum of the scripts' own training time) / wall time, where the training time
is what the engine measures of the training steps (``run.batches``) inside the process that runs
the script. Figures, one JSON line each: ``overhead_fraction``, ``overhead_per_trial_s``,
``steady_overhead_per_trial_s`` (the same without the time to the first ready worker, which the
warm pool pays once and the naive way pays for every trial anyway),
``train_s_per_trial``, ``script_s_per_trial`` (the whole script after the imports: data loading,
setup, evaluation included) and ``storage_writes_per_trial`` (value: deepdive tune; baseline: naive;
ratio = value / baseline). No time is asserted. Usage: python bench/bench_tune.py [--trials 12] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from deepdive.tune.study import StudyConfig, run_study

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "server" / "examples" / "digits.py"


def measure(trials: int, epochs: int, warm: bool, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as workspace:
        config = StudyConfig(str(DIGITS), n_trials=trials, metric="accuracy", seed=seed, workspace=workspace,
                             script_args=["--epochs", str(epochs), "--batch-size", "256", "--precision", "fp32"],
                             warm=warm, direct_reports=not warm, reuse_workers=False)
        started = time.perf_counter()
        result = run_study(config)
        wall = time.perf_counter() - started
    n = result.session_trials
    return {
        "wall_s": wall, "script_s": result.train_seconds, "trials": n,
        "overhead_fraction": (wall - result.train_seconds) / wall,
        "overhead_per_trial_s": (wall - result.train_seconds) / n,
        # after the first worker is ready: what each further trial costs beyond its training
        "steady_overhead_per_trial_s": (wall - (result.startup_seconds or 0.0) - result.train_seconds) / n,
        "startup_s": result.startup_seconds,
        "storage_writes_per_trial": result.storage_writes / n,
        "train_s_per_trial": result.train_seconds / n,
        "script_s_per_trial": result.script_seconds / n,
        "pruned": result.n_pruned, "complete": result.n_complete,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ours = measure(args.trials, args.epochs, warm=True, seed=args.seed)
    naive = measure(args.trials, args.epochs, warm=False, seed=args.seed)
    units = {"overhead_fraction": "fraction of wall time", "overhead_per_trial_s": "s",
             "steady_overhead_per_trial_s": "s",
             "train_s_per_trial": "s", "script_s_per_trial": "s", "storage_writes_per_trial": "writes"}
    for metric, unit in units.items():
        value, baseline = ours[metric], naive[metric]
        print(json.dumps({"bench": "tune", "metric": metric, "value": round(value, 4), "unit": unit,
                          "baseline": round(baseline, 4), "ratio": round(value / baseline, 4) if baseline else None,
                          "trials": args.trials, "epochs": args.epochs,
                          "detail": {"ours": ours, "naive": naive} if metric == "overhead_fraction" else None}),
              flush=True)


if __name__ == "__main__":
    main()
