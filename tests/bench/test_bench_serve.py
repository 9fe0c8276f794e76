"""bench_serve.py --quick end to end: every arm serves the same model (answers equal the eager model's), each level
gives figures for each arm, the comparison lines are consistent, batching off runs one row per batch, and an
impossible --target-p99 is refused. No time is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.bench.load import BENCH, ROOT


@pytest.mark.slow
def test_bench_serve_quick_measures_every_arm_at_every_level():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(BENCH / "bench_serve.py"), "--quick"], capture_output=True, text=True,
                          timeout=280, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines and all(line["bench"] == "serve" and {"metric", "value", "unit"} <= set(line) for line in lines)
    digits = [line for line in lines if line["model"] == "digits_cnn"]
    arms = ["batching_on", "batching_off"]
    litserve_skipped = [line for line in digits if line["arm"] == "litserve" and line["metric"] == "skipped"]
    if importlib.util.find_spec("litserve") is None:
        assert litserve_skipped and "not installed" in litserve_skipped[0]["value"]
    else:
        assert not litserve_skipped, litserve_skipped
        arms.append("litserve")
    for arm in arms:
        (diff,) = [line["value"] for line in digits if line["arm"] == arm and line["metric"] == "max_abs_diff_vs_eager"]
        assert diff < 1e-4, f"{arm} answers differently from the eager model"
        for level in (1, 8):
            mine = {line["metric"]: line for line in digits if line["arm"] == arm and line.get("concurrency") == level
                    and "baseline" not in line}
            assert mine["throughput"]["value"] > 0 and mine["throughput"]["requests"] > 0
            assert mine["p50"]["value"] <= mine["p99"]["value"]
            assert mine["errors"]["value"] == 0, mine["errors"]
            if arm == "batching_off":
                assert mine["mean_batch"]["value"] == 1.0  # each request alone
            elif arm == "batching_on":
                assert mine["mean_batch"]["value"] >= 1.0
    compared = [line for line in digits if "baseline" in line]
    assert {line["against"] for line in compared} == set(arms) - {"batching_on"}
    for line in compared:
        assert line["ratio"] == pytest.approx(line["value"] / line["baseline"])
    (goal,) = [line for line in digits if line["metric"] == "goal_batching_3x_p99_no_worse"]
    assert isinstance(goal["value"], bool) and goal["concurrency"] == 8
    target = [line for line in digits if line["arm"] == "target_p99"]
    served = [line for line in target if line["metric"] in ("p99", "refused")]
    assert len(served) == 1 and served[0]["target_ms"] == 1000.0
    (impossible,) = [line for line in target if line["metric"] == "refuses_impossible"]
    assert impossible["value"] is True and impossible["exit_code"] == 2 and "--target-p99" in impossible["reason"]
