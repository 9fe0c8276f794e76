"""`deploy bench`: candidates measured on this machine, the fastest within tolerance chosen and saved."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepdive.deploy.choose import Candidate, bench, candidates, decide, open_choice
from deepdive.deploy.errors import DeployError
from deepdive.deploy.manifest import read

REPO = Path(__file__).resolve().parents[2]
FAST = {"batch_sizes": (1, 8), "threads": 1, "budget_s": 0.4}


@pytest.fixture()
def folder(digits_export: Path, tmp_path: Path) -> Path:
    """A private copy of the digits export folder (eager form) that a test may change."""
    return Path(shutil.copytree(digits_export, tmp_path / "export"))


def _row(label: str, batch: int, p50: float, eligible: bool = True) -> dict:
    return {"label": label, "batch": batch, "p50_ms": p50, "p90_ms": p50 * 1.2, "eligible": eligible,
            "why_not": None if eligible else "max abs diff 0.04 > tolerance 0.001", "max_abs_diff": 0.0}


def test_decide_skips_a_faster_candidate_out_of_tolerance() -> None:
    rows = [_row("eager", 1, 1.0), _row("eager", 8, 4.0),
            _row("eager:bf16", 1, 0.2, False), _row("eager:bf16", 8, 0.5, False),   # fastest, out of tolerance
            _row("onnx:CPUExecutionProvider", 1, 0.5), _row("onnx:CPUExecutionProvider", 8, 3.0),
            _row("torchscript", 1, 0.9), _row("torchscript", 8, 3.9)]
    best, score, scores = decide(rows, [1, 8])
    assert best == "onnx:CPUExecutionProvider"
    assert score == pytest.approx((0.5 * 0.75) ** 0.5)   # geometric mean of p50 ratios to eager
    assert scores["eager:bf16"] < score                  # measured and scored, but not eligible
    # a candidate slower than eager never displaces it
    best, score, _ = decide([_row("eager", 1, 1.0), _row("pt2", 1, 1.3)], [1])
    assert (best, score) == ("eager", 1.0)


def test_bench_chooses_the_fastest_eligible_and_saves_it(folder: Path) -> None:
    # bf16 (forced on any CPU when named) differs from fp32 eager by far more than 1e-6: measured, not eligible
    choice = bench(folder, forms=["bf16"], tolerance=1e-6, **FAST)
    labels = {row["label"] for row in choice["measured"]}
    assert labels == {"eager", "eager:bf16"}
    bf16 = [row for row in choice["measured"] if row["label"] == "eager:bf16"]
    assert all(not row["eligible"] and "tolerance" in row["why_not"] and row["max_abs_diff"] > 1e-6 for row in bf16)
    assert choice["label"] == "eager" and choice["form"] == "eager"
    assert {row["batch"] for row in choice["measured"]} == {1, 8}
    assert all(row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"] and row["runs"] >= 3 for row in choice["measured"])
    saved = read(folder).choice
    assert saved == json.loads(json.dumps(choice))          # written into deploy.json and read back whole
    assert set(saved["latency_ms"]) == {"1", "8"}
    assert "eager" in saved["reason"] and "ms" in saved["reason"]

    # a loose tolerance makes bf16 eligible: the choice is then whichever measured faster
    loose = bench(folder, forms=["bf16"], tolerance=1.0, **FAST)
    _, _, scores = decide(loose["measured"], [1, 8])
    assert all(row["eligible"] for row in loose["measured"])
    assert loose["label"] == min(scores, key=scores.get)
    runner = open_choice(folder)                            # what the server opens: the chosen candidate
    rows = read(folder).example_rows(folder)["input__0"][:4]
    out = runner.run([rows])[0]
    assert out.shape == (4, 10) and out.dtype == np.float32   # bf16 autocast results come back as the manifest's FP32


def test_choice_is_written_atomically(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deepdive.fsutil as fsutil

    before = (folder / "deploy.json").read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(fsutil.os, "replace", crash)
    with pytest.raises(OSError):
        bench(folder, forms=["eager"], **FAST)
    assert (folder / "deploy.json").read_bytes() == before   # the old manifest whole, no half-written one
    assert sorted(p.name for p in folder.iterdir()) == sorted(["deploy.json", "examples.npz", "model.pt"])


def test_candidates_skip_what_is_missing_and_refuse_unknown_names(folder: Path) -> None:
    manifest = read(folder)
    found, skipped = candidates(folder, manifest, ["eager", "onnx", "int8"])
    assert [c.label for c in found] == ["eager"]
    assert {s["label"] for s in skipped} == {"onnx", "int8"}
    assert all("deploy export" in s["why"] for s in skipped)
    with pytest.raises(DeployError, match="unknown form 'tensorrt'|unknown form tensorrt"):
        candidates(folder, manifest, ["tensorrt"])
    assert Candidate("onnx", provider="CPUExecutionProvider").label == "onnx:CPUExecutionProvider"


def test_bad_input_is_one_line(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(DeployError, match="deploy.json not found") as info:
        bench(tmp_path, **FAST)
    assert "\n" not in str(info.value)
    with pytest.raises(DeployError, match="batch sizes"):
        bench(folder, batch_sizes=(0,), budget_s=0.1)
    (folder / "examples.npz").unlink()
    with pytest.raises(DeployError, match="no example inputs"):
        bench(folder, **FAST)


def test_cli_bench_end_to_end(folder: Path, tmp_path: Path) -> None:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "deepdive", "deploy", "bench", str(folder), "--batch-sizes", "1,4",
                           "--threads", "1", "--budget-s", "0.4", "--forms", "eager", "--json"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    choice = json.loads(done.stdout)
    assert choice["form"] == "eager" and read(folder).choice["batch_sizes"] == [1, 4]
    bad = subprocess.run([sys.executable, "-m", "deepdive", "deploy", "bench", str(tmp_path / "none"), "--forms", "x"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "deploy.json not found" in bad.stderr


def test_int8_classifier_is_judged_by_top1_agreement(folder: Path, digits_model: Path) -> None:
    from deepdive.deploy.export import export
    from deepdive.deploy.source import load_source
    from tests.deploy.conftest import DIGITS_SCRIPT

    export(load_source(str(DIGITS_SCRIPT), str(digits_model)), folder, forms=("int8",))
    choice = bench(folder, forms=["int8"], tolerance=1e-3, int8_agreement=0.9, **FAST)
    int8 = [row for row in choice["measured"] if row["label"] == "int8"]
    assert len(int8) == 2
    for row in int8:
        assert row["max_abs_diff"] > 1e-3                      # int8 logits are never within a float tolerance...
        assert 0.9 <= row["top1_agreement"] <= 1.0             # ...but it picks the same digit for >= 90 % of rows
        assert row["eligible"] and row["why_not"] is None
    strict = bench(folder, forms=["int8"], tolerance=1e-3, int8_agreement=1.0, save=False, **FAST)
    row = next(r for r in strict["measured"] if r["label"] == "int8")
    assert row["eligible"] == (row["top1_agreement"] == 1.0)
    if not row["eligible"]:
        assert "top-1 agreement" in row["why_not"] and strict["label"] == "eager"
