"""Pruners replayed on recorded learning curves: what each would have cut, and what it would have lost.

``bench_tune_quality.py --out`` saves every trial's per-epoch curve. A random-search study without
pruning trains every configuration to the end, so its curves say what each configuration would have
reported at every epoch. This bench draws ``--orders`` random sequences of ``--trials`` of those
configurations and feeds each sequence, report by report, through a real Optuna study with each
pruner (``deepdive.tune``'s own ``make_pruner`` names) and, optionally, ``--patience`` (early stopping
inside a trial, as ``deepdive tune --patience``). The sampling is random, so the pruner is the only
difference between the arms, and every arm sees the same sequences.

Figures: ``rank_correlation`` (Spearman) between a configuration's best-so-far value after k reports
and its best, for k = 1..5; then one JSON line per pruner and patience (baseline: no pruning, no
patience, same sequences):

- ``epochs``: epochs trained per study (ratio: against training every configuration to the end);
- ``p_top_kept``: the share of sequences whose best kept (not pruned) trial reaches the target, given
  that a configuration reaching it was drawn (baseline: 1);
- ``p_reached_within_compute``: the share of sequences that reach the target after at most
  ``--compute`` (40 %) of the epochs of training every configuration to the end;
- ``mean_best``: the best value found, mean over sequences.

The target is the ``--top`` (default 0.05) upper quantile of the pool's values: "a configuration in
the top 5 %". No time is measured. Usage::

    python bench/bench_tune_replay.py              # the recorded studies in bench/data (about 5 minutes)
    python bench/bench_tune_replay.py --from-studies a.jsonl,b.jsonl [--trials 30] [--orders 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
# five random-search studies of 30 trials (seeds 3-7), 9 epochs each, scored by their best epoch:
# bench_tune_quality.py --epochs 9 --value best --arms random --out ... with --first-seed 3 --seeds 2, then
# --first-seed 5 --seeds 3
RECORDED = ROOT / "bench" / "data" / "polarity_random_e9.jsonl"


def emit(metric: str, value: Any, unit: str, **extra: Any) -> None:
    print(json.dumps({"bench": "tune_replay", "metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def load_curves(files: list[str]) -> list[list[float]]:
    """Full curves of the random arms' trials (every one trained to the end)."""
    curves = []
    for name in files:
        with open(name) as f:
            for line in f:
                if not line.strip():
                    continue
                study = json.loads(line)
                if study.get("arm") != "random" or study.get("pruner") not in (None, "none"):
                    continue
                curves += [t["curve"] for t in study["trials"] if t.get("curve") and t["state"] == "complete"]
    lengths = {len(c) for c in curves}
    if len(lengths) > 1:
        longest = max(lengths)
        curves = [c for c in curves if len(c) == longest]
    return curves


def ranks(values: list[float]) -> list[float]:
    """Ranks (ties share their mean rank), for Spearman's correlation."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def replay(order: list[list[float]], pruner: Any, patience: Optional[int]) -> tuple[int, Optional[float], list[tuple[int, float]]]:
    """One study: (epochs spent, best kept value, [(epochs spent so far, value)] of each kept trial)."""
    import optuna

    from deepdive.tune.study import STOPPED_ATTR

    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    spent, best, kept = 0, None, []
    for curve in order:
        trial = study.ask()
        top, stale, pruned = None, 0, False
        for step, value in enumerate(curve):  # the curves are already best-so-far (--value best)
            spent += 1
            if top is None or value > top:
                top, stale = value, 0
            else:
                stale += 1
            trial.report(value, step)
            if trial.should_prune():
                pruned = True
                break
            if patience is not None and stale >= patience:  # marked as deepdive tune marks it
                study._storage.set_trial_system_attr(trial._trial_id, STOPPED_ATTR, True)
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        study.tell(trial, top)
        kept.append((spent, top))
        best = top if best is None or top > best else best
    return spent, best, kept


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-studies", default=str(RECORDED),
                        help="bench_tune_quality.py --out file(s), comma-separated (default: the recorded random "
                             "studies in bench/data)")
    parser.add_argument("--trials", type=int, default=30, help="configurations per replayed study")
    parser.add_argument("--orders", type=int, default=200, help="random sequences replayed per arm")
    parser.add_argument("--pruners", default="none,hyperband-quarter,hyperband,asha,median", help="deepdive tune --pruner names")
    parser.add_argument("--patience", default="none,2", help="comma-separated: none or a number of reports")
    parser.add_argument("--top", type=float, default=0.05, help="the target: this upper quantile of the pool's values")
    parser.add_argument("--compute", type=float, default=0.4, help="share of the full epochs for p_reached_within_compute")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import optuna

    from deepdive.tune.study import make_pruner

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    curves = load_curves(args.from_studies.split(","))
    if len(curves) < args.trials:
        print(f"bench_tune_replay: {len(curves)} full curves in {args.from_studies}; need at least --trials "
              f"{args.trials} (save random-search studies with bench_tune_quality.py --out)", file=sys.stderr)
        return 2
    finals = sorted(max(c) for c in curves)
    target = finals[min(len(finals) - 1, int((1 - args.top) * len(finals)))]
    full = args.trials * len(curves[0])
    rng = random.Random(args.seed)
    orders = [rng.sample(curves, args.trials) for _ in range(args.orders)]
    has_top = [any(max(c) >= target for c in order) for order in orders]
    emit("pool", len(curves), "curves", epochs_per_curve=len(curves[0]), target=target, top=args.top,
         sequences_with_a_top_configuration=sum(has_top), orders=args.orders, trials=args.trials)

    finals_in_order = [max(c) for c in curves]
    for k in range(1, min(5, len(curves[0])) + 1):  # how well an early report ranks the configurations
        emit("rank_correlation", statistics.correlation(ranks([max(c[:k]) for c in curves]), ranks(finals_in_order)),
             "spearman", after_reports=k, note="best so far after k reports against the best of the whole curve")

    def arm(name: str, patience: Optional[int]) -> dict[str, float]:
        results = [replay(order, make_pruner(name), patience) for order in orders]
        epochs = statistics.fmean(r[0] for r in results)
        kept = sum(1 for r, top in zip(results, has_top) if top and r[1] is not None and r[1] >= target)
        reached = sum(1 for r in results if any(s <= args.compute * full and v >= target for s, v in r[2]))
        best = statistics.fmean(r[1] for r in results if r[1] is not None)
        return {"epochs": epochs, "p_top_kept": kept / max(1, sum(has_top)), "p_reached": reached / len(orders),
                "mean_best": best}

    base = arm("none", None)
    for name in args.pruners.split(","):
        for text in args.patience.split(","):
            patience = None if text.strip() == "none" else int(text)
            got = base if (name, patience) == ("none", None) else arm(name, patience)
            label = {"pruner": name, "patience": patience}
            emit("epochs", got["epochs"], "epochs", baseline=base["epochs"], ratio=got["epochs"] / base["epochs"], **label)
            emit("p_top_kept", got["p_top_kept"], "share", baseline=base["p_top_kept"], **label)
            emit("p_reached_within_compute", got["p_reached"], "share", baseline=base["p_reached"],
                 compute=args.compute, **label)
            emit("mean_best", got["mean_best"], "accuracy", baseline=base["mean_best"], **label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
