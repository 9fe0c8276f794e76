"""bench_engine.py and bench_powersgd.py: the bound the PowerSGD figures are judged by, and both benchmarks
run end to end in their --quick form (figures present and consistent; no time is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.bench.load import BENCH, ROOT, load_bench

bench_powersgd = load_bench("bench_powersgd")


def run_bench(name: str, *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, list[dict]]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, lines


# --------------------------------------------------------------------------------------------
# The PowerSGD bound
# --------------------------------------------------------------------------------------------


def test_bound_counts_factors_for_matrices_and_vectors_dense():
    # Linear 1000x512 (P: 1000x2, Q: 512x2), its bias dense, a 7x7 conv as 64 x 147.
    got = bench_powersgd.powersgd_bound([(1000, 512), (1000,), (64, 3, 7, 7)], rank=2)
    assert got["bytes"] == (1000 + 512) * 2 * 4 + 1000 * 4 + (64 + 147) * 2 * 4
    assert got["dense_bytes"] == (1000 * 512 + 1000 + 64 * 147) * 4
    assert (got["compressed"], got["dense_tensors"], got["dense_tensor_bytes"]) == (2, 1, 4000)


def test_bound_sends_a_matrix_dense_where_its_factors_would_be_larger_as_the_hook_does():
    # BERT's token-type embedding, 2 x 768: at rank 2 the factors are (2 + 768) * 2 = 1540 > 1536 elements.
    at_r2 = bench_powersgd.powersgd_bound([(2, 768)], rank=2)
    assert at_r2["bytes"] == 2 * 768 * 4 and at_r2["dense_tensors"] == 1
    assert at_r2["textbook_bytes"] == (2 + 768) * 2 * 4
    at_r1 = bench_powersgd.powersgd_bound([(2, 768)], rank=1)
    assert at_r1["bytes"] == (2 + 768) * 4 and at_r1["compressed"] == 1
    # The rank is capped by the smaller side: 3 x 1000 at rank 4 runs at rank 3, and (3 + 1000) * 3 > 3000: dense.
    assert bench_powersgd.powersgd_bound([(3, 1000)], rank=4)["bytes"] == 3000 * 4
    with pytest.raises(ValueError, match="rank must be >= 1"):
        bench_powersgd.powersgd_bound([(4, 4)], rank=0)


def test_resnet18_has_torchvisions_parameter_shapes():
    model = bench_powersgd.resnet18()
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision.models.resnet18()
    assert len(shapes) == 62
    assert shapes[0] == (64, 3, 7, 7) and shapes[-2:] == [(1000, 512), (1000,)]


@pytest.mark.slow
def test_powersgd_quick_measures_the_hooks_bytes_at_the_bound_on_resnet18():
    proc, lines = run_bench("bench_powersgd", "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_metric = {line["metric"]: line for line in lines}
    dense = by_metric["dense_bytes_per_step_resnet18"]
    assert dense["value"] == dense["baseline"] == 4 * 11_689_512
    bound = by_metric["bytes_vs_bound_resnet18_r2"]
    assert bound["value"] == bound["baseline"] and bound["processes"] == 2
    ratio = by_metric["compression_ratio_resnet18_r2"]
    assert ratio["value"] == pytest.approx(dense["value"] / bound["value"], rel=1e-3)
    assert ratio["value"] >= 100


# --------------------------------------------------------------------------------------------
# The engine overhead benchmark
# --------------------------------------------------------------------------------------------


def test_engine_bench_refuses_fewer_pairs_than_an_interval_needs():
    proc, _ = run_bench("bench_engine", "--pairs", "5", timeout=60)
    assert proc.returncode == 2
    assert "--pairs must be at least 6" in proc.stderr


@pytest.mark.slow
def test_engine_quick_reports_the_median_ratio_of_alternating_pairs_with_its_interval_at_1_and_2_processes():
    proc, lines = run_bench("bench_engine", "--quick")
    skipped = [line["reason"] for line in lines if line["metric"] == "skipped"]
    assert proc.returncode == 0 and not skipped, skipped or proc.stderr[-3000:]
    assert [line["metric"] for line in lines] == [
        "step_time_engine_fp32_1proc", "cpu_time_engine_fp32_1proc",
        "step_time_engine_fp32_2proc", "cpu_time_engine_fp32_2proc",
    ]
    for line, processes in zip(lines, (1, 1, 2, 2)):
        assert line["bench"] == "engine" and line["unit"] == "ms" and line["processes"] == processes
        assert line["pairs"] == 6 and line["confidence"] >= 0.95
        assert line["value"] > 0 and line["baseline"] > 0
        assert line["ci_low"] <= line["ratio"] <= line["ci_high"]
        assert line["overhead_pct"] == pytest.approx((line["ratio"] - 1) * 100, abs=0.01)
