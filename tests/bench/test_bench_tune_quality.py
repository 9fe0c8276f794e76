"""bench_tune_quality.py's restated goal (issue #24), computed from saved studies and re-trainings: the
chosen configuration per study, its re-trained mean and interval, the pairing with random search by
seed, the training-seconds share, and the goal's verdict. No training runs here (every re-training is
in the cache, as a rerun over a finished run finds it); no time is asserted."""

from __future__ import annotations

import contextlib
import io
import json
import statistics
from pathlib import Path

import pytest

from tests.bench.load import load_bench

bench = load_bench("bench_tune_quality")


def _study(arm: str, seed: int, values: list[float], train_s: float, params_tag: str) -> dict:
    trials = [{"number": i, "state": "complete", "value": v, "epochs": 9, "train_s": train_s / len(values),
               "params": {"cfg": f"{params_tag}{i}"}, "curve": [v]} for i, v in enumerate(values)]
    return {"arm": arm, "seed": seed, "trials": trials, "train_s": train_s, "wall_s": train_s * 1.1,
            "n_complete": len(values), "n_pruned": 0, "n_fail": 0, "n_stopped": 0}


def _run(tmp_path: Path, studies: list[dict], retrained: dict[tuple[str, int], list[float]], *extra: str) -> list[dict]:
    """The bench over saved ``studies``; ``retrained[(cfg, study seed)]``: the re-trainings' accuracies."""
    saved = tmp_path / "studies.jsonl"
    saved.write_text("".join(json.dumps(s) + "\n" for s in studies))
    cache = tmp_path / "cache.jsonl"
    args = type("A", (), {"epochs": 9, "score": "best"})
    with cache.open("w") as f:
        for (cfg, study_seed), accs in retrained.items():
            for k, acc in enumerate(accs, start=1):
                key = bench.retrain_key({"cfg": cfg}, 1000 + 100 * study_seed + k, args)
                f.write(json.dumps({"key": key, "acc": acc}) + "\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = bench.main(["--from-studies", str(saved), "--reeval-cache", str(cache), "--reeval-seeds", "3",
                           "--checkpoints", "2", *extra])
    assert code == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _line(lines: list[dict], metric: str, arm: str | None = None) -> dict:
    return next(line for line in lines if line["metric"] == metric and line.get("arm") == arm)


def test_the_goal_reads_re_trained_means_not_the_searchs_lucky_best(tmp_path):
    studies, retrained = [], {}
    for seed in range(3):
        # random: its best trial (r1) re-trains at 0.780; the tool's best (t1) looks worse in the search
        # (0.790 against 0.800) but re-trains at 0.781, with 30 % of random's training seconds
        studies.append(_study("random", seed, [0.70, 0.800], 100.0, "r"))
        studies.append(_study("tool", seed, [0.70, 0.790], 30.0, "t"))
        studies.append(_study("default", seed, [0.70, 0.805], 80.0, "d"))
        retrained[("r1", seed)] = [0.779, 0.780, 0.781]
        retrained[("t1", seed)] = [0.780, 0.781, 0.782]
        retrained[("d1", seed)] = [0.770, 0.772, 0.774]  # the search's highest, re-trains lowest
    lines = _run(tmp_path, studies, retrained)
    assert _line(lines, "retrained_mean", "random")["value"] == pytest.approx(0.780)
    tool = _line(lines, "retrained_mean", "tool")
    assert tool["value"] == pytest.approx(0.781) and tool["per_seed"] == pytest.approx([0.781] * 3)
    assert _line(lines, "retrained_vs_random_points", "tool")["value"] == pytest.approx(0.1)
    assert _line(lines, "train_seconds_share", "tool")["value"] == pytest.approx(0.3)
    assert _line(lines, "goal", "tool")["value"] is True
    # the default arm: the search's best is the highest of all, but re-trained it is 0.8 points below
    # random's (goal: no more than 0.1 below) and it spent 80 % of random's training seconds
    assert _line(lines, "retrained_vs_random_points", "default")["value"] == pytest.approx(-0.8)
    assert _line(lines, "goal", "default")["value"] is False
    assert _line(lines, "winners_curse_points", "default")["value"] == pytest.approx(100 * (0.805 - 0.772))


def test_the_interval_is_students_t_over_studies_and_only_paired_seeds_count(tmp_path):
    means = [0.78, 0.79, 0.80]
    studies = [_study("random", seed, [0.8], 100.0, "r") for seed in range(2)]  # no random study for seed 2
    retrained = {("r0", seed): [0.78] * 3 for seed in range(2)}
    for seed, m in enumerate(means):
        studies.append(_study("tool", seed, [0.8], 20.0, "t"))
        retrained[("t0", seed)] = [m - 0.01, m, m + 0.01]
    lines = _run(tmp_path, studies, retrained)
    tool = _line(lines, "retrained_mean", "tool")
    half = 4.303 * statistics.stdev(means) / 3 ** 0.5  # t(0.975, 2 degrees of freedom)
    assert tool["ci95"] == pytest.approx([0.79 - half, 0.79 + half])
    goal = _line(lines, "goal", "tool")
    assert goal["seeds"] == [0, 1] and goal["retrained_mean"] == pytest.approx(0.785)  # seed 2 has no pair
    assert goal["train_seconds_share"] == pytest.approx(0.2)


def test_a_retraining_count_of_one_is_refused_as_it_gives_no_interval(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--from-studies", str(tmp_path / "none.jsonl"), "--reeval-seeds", "1"])
    assert "--reeval-seeds needs 2 or more" in capsys.readouterr().err


def test_a_saved_study_is_reused_only_if_it_ran_what_the_arm_runs_today():
    """A cut run resumes from --out, but a 'default' study saved before the defaults changed (TPE +
    hyperband-quarter, no patience) is not today's defaults and runs again; random search never has
    early stopping (patience 0, saved as None), whatever the default patience."""
    args = bench.argparse.Namespace(sampler="tpe", pruner="hyperband-quarter", patience=2, value="best")
    assert bench.saved_config("default", args) == {"sampler": "tpe", "pruner": "asha", "patience": 2}
    assert bench.saved_config("random", args) == {"sampler": "random", "pruner": "none", "patience": None}
    assert bench.arm_config("random", args)["patience"] == 0  # given as 0 (off), not None (the default, 2)
    assert bench.saved_config("tool", args) == {"sampler": "tpe", "pruner": "hyperband-quarter", "patience": 2}
    args.patience = None  # --patience 0 on the bench's command line: the tool arm without early stopping
    assert bench.arm_config("tool", args)["patience"] == 0 and bench.saved_config("tool", args)["patience"] is None
