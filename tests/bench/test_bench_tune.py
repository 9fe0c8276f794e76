"""bench_tune.py: the overhead benchmark runs both arms (plain Optuna's ``study.optimize`` and ``deepdive tune``) on
the same objective and reports the non-training share of each; its training function times training only.

No time is asserted: the figures' presence, their consistency with the measured parts, and what each arm ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.bench.load import BENCH, ROOT, load_bench

SHORT_METRICS = ["non_training_share_short", "steady_non_training_share_short", "non_training_s_short",
                 "startup_s_short", "exit_s_short",
                 "overhead_per_trial_ms_short", "train_s_per_trial_short", "wall_s_short"]


def run_bench(*args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, list[dict]]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(BENCH / "bench_tune.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    return proc, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_bench_refuses_an_unknown_trial_length_in_one_line():
    proc, lines = run_bench("--lengths", "short,huge", timeout=60)
    assert proc.returncode == 2 and not lines
    assert "--lengths takes short and/or realistic" in proc.stderr.strip().splitlines()[-1]


def test_training_time_leaves_out_the_report_calls_and_a_cut_trial_records_its_epochs(tmp_path):
    objective = load_bench("tune_objective")
    record = tmp_path / "trials.jsonl"
    seen: list[tuple[int, float]] = []

    class Cut(Exception):
        pass

    def report(epoch: int, accuracy: float) -> None:  # a slow pruner that stops the trial at its second report
        seen.append((epoch, accuracy))
        time.sleep(0.3)
        if epoch == 1:
            raise Cut

    with pytest.raises(Cut):
        objective.train({"lr": 0.05, "weight_decay": 1e-4, "momentum": 0.9}, 5, 4, 0, report, str(record))
    accuracy = objective.train({"lr": 0.05, "weight_decay": 1e-4, "momentum": 0.9}, 5, 2, 0, lambda e, a: None,
                               str(record))
    cut, full = [json.loads(line) for line in record.read_text().splitlines()]
    assert [epoch for epoch, _ in seen] == [0, 1] and all(0.0 <= acc <= 1.0 for _, acc in seen)
    assert (cut["cut"], cut["epochs"], full["cut"], full["epochs"]) == (True, 2, False, 2)
    assert cut["start"] <= cut["ready"] < cut["end"] and 0 < cut["train_s"]
    # the 0.6 s the two reports slept are in the trial's span, not in its training time
    assert cut["end"] - cut["ready"] >= cut["train_s"] + 0.6
    assert full["train_s"] > 0 and 0.0 <= accuracy <= 1.0


@pytest.mark.slow
def test_quick_run_measures_both_arms_on_the_same_objective():
    proc, lines = run_bench("--quick", "--lengths", "short")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line["metric"] for line in lines] == SHORT_METRICS
    for line in lines:
        assert line["bench"] == "tune" and line["trials"] == 3 and line["epochs"] == 4 and line["steps"] >= 1
        assert line["value"] > 0 and line["baseline"] > 0
        assert line["ratio"] == pytest.approx(line["value"] / line["baseline"], rel=1e-2)
    share = lines[0]
    assert 0 < share["value"] < 1 and 0 < share["baseline"] < 1 and share["goal"] == "value <= baseline"
    assert share["goal_met"] == (share["value"] <= share["baseline"])
    detail = share["detail"]
    assert sorted(detail["space"]) == ["lr", "momentum", "weight_decay"]
    (row,) = detail["rounds"]
    assert row["first"] == "optuna"
    assert row["deepdive"]["sampler"] and row["deepdive"]["pruner"]  # deepdive tune's --json said what it ran
    for arm in ("optuna", "deepdive"):
        ran = row[arm]
        assert ran["trials"] == 3 and ran["processes"] == 1  # one process: Optuna's, or deepdive's one warm worker
        assert ran["epochs"] == 12 if ran["cut"] == 0 else 4 < ran["epochs"] < 12  # a cut trial ran fewer epochs
        assert 0 < ran["train_s"] < ran["span_s"] and ran["startup_s"] > 0 and ran["exit_s"] > 0
        assert ran["wall_s"] == pytest.approx(ran["startup_s"] + ran["span_s"] + ran["exit_s"], abs=1e-6)
    measured = {arm: (row[arm]["wall_s"] - row[arm]["train_s"]) / row[arm]["wall_s"] for arm in ("deepdive", "optuna")}
    assert share["value"] == pytest.approx(measured["deepdive"], abs=1e-4)
    assert share["baseline"] == pytest.approx(measured["optuna"], abs=1e-4)
    seconds = lines[2]
    assert seconds["value"] == pytest.approx(row["deepdive"]["wall_s"] - row["deepdive"]["train_s"], abs=1e-3)
