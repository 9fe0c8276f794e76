"""Search quality at equal trial budget on a real task: what a user gets from each arm's chosen configuration.

The task is real: ``server/examples/polarity.py`` (sentence polarity, Rotten Tomatoes snippets, a
fixed seeded 90/10 split; validation accuracy reported after every epoch). For each study seed, one
study of ``--trials`` trials per arm runs through :func:`deepdive.tune.run_study` (warm workers,
``--parallel`` of them, one CPU thread each; a fresh SQLite storage per study), the arms in turn:

- ``random``:  random sampling, no pruning (every trial trains ``--epochs`` epochs), a trial valued
  by ``--value`` (default ``best``: its best epoch, what keeping the best checkpoint gives);
- ``default``: ``deepdive tune``'s defaults as shipped, nothing set (sampler ``tpe``, pruner ``asha``,
  ``--patience 2``, which makes the value mode ``best``);
- ``tool``:    another setting to compare: ``--sampler``/``--pruner``/``--patience`` (default: the
  previous defaults' Hyperband, ``hyperband-quarter``, with ``--patience 2``).

**The goal (issue #24), on what a user gets**: each study's chosen configuration (its best trial) is
re-trained with ``--reeval-seeds`` fresh training seeds (default 3; the search trained with the study's
seed) and scored by the mean of its re-trained accuracy (``--score``: each re-training's best epoch,
default, or its last). Per arm, over the study seeds: ``retrained_mean`` with its 95 % confidence
interval (Student's t over studies), ``retrained_vs_random_points`` (the paired difference against the
random study of the same seed, with its interval), ``train_seconds_share`` (the arm's training seconds
over random search's, same seeds) and ``goal``: re-trained mean >= random's - ``--goal-margin`` (0.1)
points with at most ``--goal-share`` (35 %) of random's training seconds. Measured, never asserted.

Older figures, kept per arm (``arm`` field; ``baseline`` = random): ``best_val_acc_after_N_trials``
(the search's own best, which overstates its configuration: the winner's curse), ``epochs_spent``,
``train_seconds``, ``wall_seconds``, ``winners_curse_points``, ``reeval_seed_spread``.

``--out FILE`` saves every study (each trial's curve and training seconds) and, when it exists, a
run continues it: a study of the same arm, seed, trial count and epochs already there is not rerun
(a cut run resumes where it stopped; ``make bench-tune-quality`` does this); ``--from-studies
FILE[,FILE...]`` recomputes the figures from such files (no search rerun); ``--reeval-cache FILE``
keeps the re-trainings (each written as it ends), so reruns train nothing twice; ``--first-seed``
adds seeds (e.g. ``--first-seed 5 --seeds 3``).

Usage::

    .venv/bin/python bench/bench_tune_quality.py --out tq.jsonl --reeval-cache tq-re.jsonl   # 5 seeds x 3 arms x 30 trials x 9 epochs (hours on 2 cores)
    .venv/bin/python bench/bench_tune_quality.py --seeds 1 --trials 4 --epochs 2 --reeval-seeds 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "server" / "examples" / "polarity.py"


ARMS = ("random", "default", "tool")
def emit(metric: str, value: Any, unit: str, **extra: Any) -> None:
    print(json.dumps({"bench": "tune_quality", "metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def mean(values: list[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def ratio(value: Optional[float], baseline: Optional[float]) -> Optional[float]:
    if value is None or baseline in (None, 0):
        return None
    return value / baseline  # type: ignore[operator]


def ci95(values: list[float]) -> Optional[list[float]]:
    """The mean's 95 % confidence interval (Student's t, as ``--confirm`` computes it), None with fewer than two."""
    from deepdive.tune.confirm import summarize

    return summarize(list(values))[2]


def arm_config(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """What ``deepdive tune`` is given in ``arm`` (None: the tool's default, as shipped)."""
    if arm == "random":
        return {"sampler": "random", "pruner": "none", "patience": 0, "value": args.value}  # 0: no early stopping
    if arm == "default":
        return {"sampler": None, "pruner": None, "patience": None, "value": None}
    if arm == "tool":
        return {"sampler": args.sampler, "pruner": args.pruner, "patience": args.patience or 0,
                "value": "best" if args.patience else args.value}
    raise SystemExit(f"bench_tune_quality: unknown arm {arm!r} (one of {', '.join(ARMS)})")


def saved_config(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """What a saved study of ``arm`` must have run with to be reused (the defaults as shipped today)."""
    if arm == "default":
        from deepdive.tune.config import DEFAULT_PATIENCE, StudyConfig

        shipped = StudyConfig("x")
        return {"sampler": shipped.sampler, "pruner": shipped.pruner, "patience": DEFAULT_PATIENCE}
    return {k: (v or None) if k == "patience" else v for k, v in arm_config(arm, args).items() if k != "value"}


def study(arm: str, seed: int, args: argparse.Namespace, workspace: str) -> dict[str, Any]:
    """Run one study; return its trials in number order with the epochs each ran."""
    from deepdive.tune import StudyConfig, run_study

    chosen = arm_config(arm, args)
    given = {k: v for k, v in chosen.items() if v is not None}  # None: StudyConfig's default
    script_args = ["--epochs", str(args.epochs)]
    if args.data:
        script_args += ["--data", args.data]
    config = StudyConfig(
        str(SCRIPT), n_trials=args.trials, script_args=script_args, parallel=args.parallel,
        storage=f"sqlite:///{workspace}/{arm}-{seed}.db", study_name=f"polarity-{arm}-{seed}",
        metric="val_acc", direction="maximize", seed=seed, workspace=workspace, **given,
    )
    started = time.perf_counter()
    result = run_study(config)
    wall = time.perf_counter() - started
    trials = sorted(result.trials, key=lambda t: t["number"])
    rows = [{"number": t["number"], "state": t["state"],
             "value": t["value"] if t["state"] == "complete" else None,
             "epochs": len(t["intermediate"]), "train_s": t.get("train_s"), "params": t["params"],
             "curve": [v for _, v in t["intermediate"]]} for t in trials]
    return {"arm": arm, "seed": seed, "trials_per_study": args.trials, "epochs": args.epochs, "sampler": config.sampler, "pruner": config.pruner, "patience": result.patience,
            "value_mode": result.value_mode, "n_stopped": result.n_stopped, "trials": rows, "wall_s": wall,
            "train_s": result.train_seconds, "n_complete": result.n_complete, "n_pruned": result.n_pruned,
            "n_fail": result.n_fail}


def best_after(rows: list[dict[str, Any]], n: int) -> Optional[float]:
    values = [r["value"] for r in rows[:n] if r["value"] is not None]
    return max(values) if values else None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="studies per arm (seeds FIRST..FIRST+N-1)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first study seed (to add seeds to saved studies)")
    parser.add_argument("--trials", type=int, default=30, help="trials per study")
    parser.add_argument("--epochs", type=int, default=9, help="epochs of a trial that is not pruned")
    parser.add_argument("--parallel", type=int, default=2, help="warm workers per study (one CPU thread each)")
    parser.add_argument("--checkpoints", default="5,10,20,30", help="report the search's best after these trial counts")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"which arms run, in this order per seed ({', '.join(ARMS)})")
    parser.add_argument("--sampler", default="tpe", help="the tool arm's sampler (deepdive tune --sampler)")
    parser.add_argument("--pruner", default="hyperband-quarter", help="the tool arm's pruner (deepdive tune --pruner)")
    parser.add_argument("--patience", type=int, default=2,
                        help="the tool arm's early stopping inside a trial (deepdive tune --patience; implies --value "
                             "best); 0: none")
    parser.add_argument("--value", default="best", choices=("last", "best"),
                        help="a trial's value in the random and tool arms: its best epoch's accuracy or its last "
                             "(deepdive tune --value; the default arm keeps the tool's default)")
    parser.add_argument("--score", default="best", choices=("last", "best"),
                        help="a re-training's score: its best epoch's validation accuracy (what keeping the best "
                             "checkpoint gives) or its last epoch's; the same for every arm")
    parser.add_argument("--reeval-seeds", type=int, default=3,
                        help="re-train each study's chosen configuration with this many fresh training seeds "
                             "(1000 + 100 x study seed + 1..K) and score it by the mean (0: off)")
    parser.add_argument("--reeval-cache", default=None,
                        help="JSONL of re-trainings already done (read, and appended to), so reruns train nothing twice")
    parser.add_argument("--goal-margin", type=float, default=0.1,
                        help="the goal: re-trained mean >= random's - this many points")
    parser.add_argument("--goal-share", type=float, default=0.35,
                        help="the goal: with at most this share of random search's training seconds")
    parser.add_argument("--data", default=None, help="the rt-polarity folder (default: the script's)")
    parser.add_argument("--out", default=None, help="also write every study's trials here (JSONL, appended)")
    parser.add_argument("--from-studies", default=None,
                        help="recompute the figures from --out file(s), comma-separated (no search rerun)")
    args = parser.parse_args(argv)
    if args.patience == 0:
        args.patience = None
    if args.reeval_seeds == 1:
        parser.error("--reeval-seeds needs 2 or more for a confidence interval (0: off)")

    sys.path.insert(0, str(SCRIPT.parent))
    import polarity  # noqa: E402 - the example's own data check

    reason = polarity.missing_data(Path(args.data) if args.data else polarity.default_data_dir())
    if reason and not args.from_studies:  # (saved studies with a full --reeval-cache need no data)
        print(f"bench_tune_quality: {reason}", file=sys.stderr)
        return 2
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    configs = {arm: arm_config(arm, args) for arm in arms}
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if c.strip() and int(c) <= args.trials})
    emit("budget", args.seeds * args.trials * len(arms), "trials", seeds=args.seeds, first_seed=args.first_seed,
         trials_per_study=args.trials, epochs_per_trial=args.epochs, parallel=args.parallel, arms=configs,
         score=args.score, reeval_seeds=args.reeval_seeds, checkpoints=checkpoints, cpus=os.cpu_count(),
         from_studies=args.from_studies)

    if args.from_studies:
        studies = []
        for name in args.from_studies.split(","):
            with open(name) as f:
                studies += [json.loads(line) for line in f if line.strip()]
        print(f"# figures from {args.from_studies} ({len(studies)} studies; no search rerun)", file=sys.stderr)
    else:
        studies = run_all(args, arms)
    code = report(studies, checkpoints)
    if args.reeval_seeds > 0:
        reevaluate(studies, args)
    return code


def run_all(args: argparse.Namespace, arms: list[str]) -> list[dict[str, Any]]:
    """Every seed's studies, the arms in turn (so the machine's load falls on every arm alike)."""
    studies: list[dict[str, Any]] = []
    saved: dict[tuple[str, int], dict[str, Any]] = {}
    if args.out and os.path.exists(args.out):  # a cut run continues: studies already saved are not rerun
        with open(args.out) as f:
            for line in f:
                if line.strip():
                    s = json.loads(line)
                    wanted = saved_config(s["arm"], args) if s["arm"] in ARMS else {}
                    same = all(s.get(k) == v for k, v in wanted.items())
                    if same and (s.get("trials_per_study"), s.get("epochs")) == (args.trials, args.epochs):
                        saved[(s["arm"], s["seed"])] = s
    out = open(args.out, "a") if args.out else None
    with tempfile.TemporaryDirectory(prefix="bench-tune-quality-") as workspace:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for arm in arms:
                if (arm, seed) in saved:
                    studies.append(saved[(arm, seed)])
                    print(f"# seed {seed} {arm}: saved in {args.out} (not rerun)", file=sys.stderr, flush=True)
                    continue
                done = study(arm, seed, args, workspace)
                studies.append(done)
                best = best_after(done["trials"], args.trials)
                print(f"# seed {seed} {arm}: best {best}, {sum(r['epochs'] for r in done['trials'])} epochs, "
                      f"{done['n_complete']} complete / {done['n_pruned']} pruned / {done['n_fail']} failed, "
                      f"{done['train_s']:.0f} s training, {done['wall_s']:.0f} s", file=sys.stderr, flush=True)
                if out:
                    out.write(json.dumps(done) + "\n")
                    out.flush()
    if out:
        out.close()
    return studies


def by_arm(studies: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """arm -> seed -> study (a later study of the same arm and seed replaces an earlier one)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for s in studies:
        out.setdefault(s["arm"], {})[s["seed"]] = s
    return out


def report(studies: list[dict[str, Any]], checkpoints: list[int]) -> int:
    """The search's own figures per arm against random search (same seeds where both ran)."""
    arms = by_arm(studies)
    if not studies:
        emit("goal", None, "bool", note="no study")
        return 1
    rand = arms.get("random", {})
    for arm, runs in arms.items():
        if arm == "random":
            continue
        seeds = sorted(runs)
        paired = [seed for seed in seeds if seed in rand]
        for n in checkpoints:
            values = [best_after(runs[seed]["trials"], n) for seed in seeds]
            base = [best_after(rand[seed]["trials"], n) for seed in paired]
            emit(f"best_val_acc_after_{n}_trials", mean(values), "accuracy", arm=arm, baseline=mean(base),
                 ratio=ratio(mean(values), mean(base)), per_seed=values, seeds=seeds,
                 note="the search's own best value (it overstates its configuration: see winners_curse_points)")
        epochs = [sum(r["epochs"] for r in runs[seed]["trials"]) for seed in paired]
        base_epochs = [sum(r["epochs"] for r in rand[seed]["trials"]) for seed in paired]
        emit("epochs_spent", mean(epochs), "epochs", arm=arm, baseline=mean(base_epochs),
             ratio=ratio(sum(epochs), sum(base_epochs)), per_seed=epochs, baseline_per_seed=base_epochs, seeds=paired)
        for key, metric in (("train_s", "train_seconds"), ("wall_s", "wall_seconds")):
            value = [runs[seed][key] for seed in paired]
            base = [rand[seed][key] for seed in paired]
            emit(metric, mean(value), "s", arm=arm, baseline=mean(base), ratio=ratio(sum(value), sum(base)),
                 per_seed=value, baseline_per_seed=base, seeds=paired)
        emit("trials_pruned", mean([runs[seed]["n_pruned"] for seed in seeds]), "trials", arm=arm,
             per_seed=[runs[seed]["n_pruned"] for seed in seeds])
        emit("trials_stopped_early", mean([runs[seed].get("n_stopped", 0) for seed in seeds]), "trials", arm=arm,
             per_seed=[runs[seed].get("n_stopped", 0) for seed in seeds], note="ended by --patience (complete)")
    return 0


def best_row(study: dict[str, Any]) -> Optional[dict[str, Any]]:
    done = [r for r in study["trials"] if r["value"] is not None]
    return max(done, key=lambda r: r["value"]) if done else None


def retrain_key(params: dict[str, Any], seed: int, args: argparse.Namespace) -> str:
    return json.dumps({"params": params, "seed": seed, "epochs": args.epochs, "value": args.score}, sort_keys=True)


def retrain(jobs: list[tuple[str, dict[str, Any], int]], args: argparse.Namespace) -> dict[str, float]:
    """Train each (key, params, seed) once, ``--parallel`` processes at a time, one CPU thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done: dict[str, float] = {}
    queue = list(jobs)
    running: list[tuple[str, subprocess.Popen]] = []
    total = len(queue)
    cache = open(args.reeval_cache, "a") if args.reeval_cache else None
    try:
        while queue or running:
            while queue and len(running) < args.parallel:
                key, params, seed = queue.pop(0)
                argv = [sys.executable, str(SCRIPT), "--epochs", str(args.epochs), "--seed", str(seed), "--json"] + (
                    ["--data", args.data] if args.data else [])
                running.append((key, subprocess.Popen(argv, env={**env, "DEEPDIVE_PARAMS": json.dumps(params)},
                                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
            key, proc = running.pop(0)
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"bench_tune_quality: a re-training failed: {err.strip().splitlines()[-1:]}")
            result = json.loads(out.strip().splitlines()[-1])
            done[key] = result["best_val_acc"] if args.score == "best" else result["val_acc"]
            if cache:  # at once: a cut run keeps every re-training it finished
                cache.write(json.dumps({"key": key, "acc": done[key]}) + "\n")
                cache.flush()
            print(f"# re-trained {len(done)}/{total}: {done[key]:.4f}", file=sys.stderr, flush=True)
    finally:
        if cache:
            cache.close()
    return done


def reevaluate(studies: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Each study's chosen configuration, re-trained with fresh seeds: what the search's choice is worth.

    A single training run's validation accuracy moves with the seed (initialisation and shuffling) by
    more than the goal's margin, and the best of a study is the largest of many such draws: it
    overstates its configuration (the winner's curse). The mean over fresh seeds does not."""
    arms = by_arm(studies)
    cache: dict[str, float] = {}
    if args.reeval_cache and os.path.exists(args.reeval_cache):
        with open(args.reeval_cache) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    cache[row["key"]] = row["acc"]

    def fresh_seeds(study_seed: int) -> list[int]:
        return [1000 + 100 * study_seed + k for k in range(1, args.reeval_seeds + 1)]  # none shared between studies

    chosen = [(s, best_row(s)) for runs in arms.values() for s in runs.values()]
    todo, seen = [], set()
    for study, row in chosen:
        if row is None:
            continue
        for seed in fresh_seeds(study["seed"]):
            key = retrain_key(row["params"], seed, args)
            if key not in cache and key not in seen:
                todo.append((key, row["params"], seed))
                seen.add(key)
    cache.update(retrain(todo, args) if todo else {})

    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for study, row in chosen:
        if row is None:
            continue
        accs = [cache[retrain_key(row["params"], seed, args)] for seed in fresh_seeds(study["seed"])]
        rows.setdefault(study["arm"], {})[study["seed"]] = {
            "search_value": row["value"], "mean": statistics.fmean(accs), "accs": accs, "params": row["params"]}
        print(f"# {study['arm']} seed {study['seed']}: search {row['value']:.4f}, re-trained "
              f"{', '.join(f'{a:.4f}' for a in accs)} (mean {statistics.fmean(accs):.4f})", file=sys.stderr)
    spread = [statistics.stdev(r["accs"]) for runs in rows.values() for r in runs.values() if len(r["accs"]) > 1]
    emit("reeval_seed_spread", mean(spread), "accuracy", seeds=args.reeval_seeds,
         note="standard deviation of one configuration's accuracy over training seeds, mean over the chosen ones")
    rand = rows.get("random", {})
    for arm, runs in rows.items():
        seeds = sorted(runs)
        means = [runs[seed]["mean"] for seed in seeds]
        emit("retrained_mean", statistics.fmean(means), "accuracy", arm=arm, ci95=ci95(means), per_seed=means,
             seeds=seeds, reeval_seeds=args.reeval_seeds, score=args.score,
             note="each study's chosen configuration re-trained with fresh seeds; mean over studies, "
                  "interval over studies")
        emit("winners_curse_points", mean([100 * (runs[s]["search_value"] - runs[s]["mean"]) for s in seeds]),
             "points", arm=arm, note="the search's best value minus its configuration's re-trained mean")
        if arm == "random":
            continue
        paired = [seed for seed in seeds if seed in rand]
        diffs = [100 * (runs[seed]["mean"] - rand[seed]["mean"]) for seed in paired]
        emit("retrained_vs_random_points", mean(diffs), "points", arm=arm, ci95=ci95(diffs), per_seed=diffs,
             seeds=paired, note="re-trained mean minus random search's, same study seed")
        study_runs = by_arm(studies)
        train = [study_runs[arm][seed]["train_s"] for seed in paired]
        base = [study_runs["random"][seed]["train_s"] for seed in paired]
        share = ratio(sum(train), sum(base)) if paired else None
        emit("train_seconds_share", share, "ratio", arm=arm, value_s=sum(train), baseline_s=sum(base),
             per_seed=[ratio(a, b) for a, b in zip(train, base)], seeds=paired,
             note="the arm's training seconds over random search's (same seeds)")
        arm_mean = mean([runs[seed]["mean"] for seed in paired])
        rand_mean = mean([rand[seed]["mean"] for seed in paired])
        met = None if arm_mean is None or rand_mean is None or share is None else bool(
            arm_mean >= rand_mean - args.goal_margin / 100 and share <= args.goal_share)
        emit("goal", met, "bool", arm=arm, retrained_mean=arm_mean, random_retrained_mean=rand_mean,
             train_seconds_share=share, seeds=paired,
             statement=f"re-trained mean >= random search's - {args.goal_margin} points with <= "
                       f"{args.goal_share:.0%} of its training seconds, over {len(paired)} study seeds "
                       "(measured, not asserted)")


if __name__ == "__main__":
    sys.exit(main())
