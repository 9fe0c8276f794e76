"""``make gpu-check`` (deepdive.gpu_check): its CPU mode for real here, every GPU part for real where a GPU is."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from deepdive import gpu_check, gpu_check_parts
from deepdive.gpu_check import PARTS, no_nvml_reason

ROOT = Path(__file__).resolve().parents[1]


def _refuse_nan(token: str) -> float:
    raise ValueError(f"{token} in a results line: not valid JSON")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line, parse_constant=_refuse_nan) for line in path.read_text().splitlines()]


def _check(args: list[str], out: Path, timeout: float, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepdive.gpu_check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OUT": str(out), **env})


@pytest.mark.slow
def test_cpu_mode_rehearses_what_a_cpu_can_and_records_every_gpu_part_as_skipped(tmp_path):
    out = tmp_path / "out"  # through $OUT, as on a lent GPU machine
    proc = _check(["--cpu"], out, timeout=420)
    lines = _lines(out / "results.jsonl")
    assert proc.stdout.splitlines() == [json.dumps(line) for line in lines], "every line is also printed"
    parts = [line for line in lines if "metric" not in line and line["check"] != "summary"]
    for part in PARTS:
        gpu = [line for line in parts if line["check"] == part.name and line["device"] == "cuda"]
        assert len(gpu) == 1 and gpu[0]["skipped"] is True and gpu[0]["ok"] is False, gpu
        assert gpu[0]["reason"] == "--cpu was given"
        cpu = [line for line in parts if line["check"] == part.name and line["device"] == "cpu"]
        assert len(cpu) == int(part.cpu)
        for line in cpu:
            assert line["ok"] is True and line["skipped"] is False, line
            assert isinstance(line["seconds"], float) and isinstance(line["detail"], dict)
    figures = [line for line in lines if "metric" in line]
    assert {f["check"] for f in figures} >= {"amp_bf16", "amp_fp16", "nccl_ddp", "fsdp2_transformer", "tune_pack",
                                              "bench_amp"}
    for figure in figures:
        assert {"bench", "metric", "value", "unit"} <= set(figure) and math.isfinite(figure["value"]), figure
    summary = lines[-1]
    assert summary["check"] == "summary" and summary["ok"] is True and summary["detail"]["failed"] == []
    assert set(summary["detail"]["skipped"]) == {f"{p.name}@cuda" for p in PARTS}
    assert sorted(summary["detail"]["passed"]) == sorted(f"{p.name}@cpu" for p in PARTS if p.cpu)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.log", "results.jsonl"]
    assert "===== amp_fp16 on cpu" in (out / "gpu-check.log").read_text()


def test_a_part_past_its_limit_is_stopped_recorded_and_the_next_part_still_runs(tmp_path):
    proc = _check(["--cpu", "--only", "nccl_ddp,amp_bf16", "--limit-s", "2"], tmp_path, timeout=120)
    lines = _lines(tmp_path / "results.jsonl")
    # result lines only: a part may write a figure before its limit stops it (amp_bf16 did, in CI)
    ran = [line for line in lines if line.get("device") == "cpu" and line["check"] != "summary" and "metric" not in line]
    assert [line["check"] for line in ran] == ["amp_bf16", "nccl_ddp"]  # in the parts' order, not --only's
    for line in ran:
        assert line["ok"] is False and line["skipped"] is False
        assert line["detail"]["error"] == "timed out: stopped after 2 s (its limit)"
        assert isinstance(line["detail"]["output_tail"], list)
    assert lines[-1]["check"] == "summary" and lines[-1]["detail"]["failed"] == ["amp_bf16@cpu", "nccl_ddp@cpu"]
    assert proc.returncode == 1
    left = [p for p in psutil.process_iter(["cmdline"]) if "--part" in (p.info["cmdline"] or [])
            and str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert left == [], "the stopped parts' processes (torchrun and its ranks) are gone"


def test_bad_arguments_are_one_line_and_list_names_every_part(capsys):
    assert gpu_check.main(["--only", "amp_bf16,warp_drive"]) == 2
    assert capsys.readouterr().err == ("gpu-check: unknown part 'warp_drive': choose from "
                                       + ", ".join(p.name for p in PARTS) + "\n")
    assert gpu_check.main(["--budget", "0"]) == 2
    assert gpu_check.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == [p.name for p in PARTS]


def test_the_plan_runs_gpu_parts_on_the_gpu_and_otherwise_rehearses_then_skips_with_the_reason():
    plan = gpu_check._plan(list(PARTS), None, forced_cpu=False)  # CUDA present
    assert [(p.name, device) for p, device, _ in plan if device == "cuda" and p.gate == "cuda"] == [
        (p.name, "cuda") for p in PARTS if p.gate == "cuda"]
    assert all(reason is None for p, _, reason in plan if p.gate == "cuda")
    why = "this torch (2.13.0+cpu) is a CPU-only build: install the CUDA build for your driver"
    plan = gpu_check._plan(list(PARTS), why, forced_cpu=False)
    for part in PARTS:
        steps = [(device, reason) for p, device, reason in plan if p is part]
        skip = no_nvml_reason() if part.gate == "nvml" else why
        expected = ([("cpu", None)] if part.cpu and skip else []) + [("cuda", skip)]
        assert steps == expected, part.name


def test_the_output_folder_is_out_else_a_timestamped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUT", raising=False)
    made = gpu_check.output_dir(None)
    assert re.fullmatch(r"gpu-check/\d{8}T\d{6}Z", made.as_posix()) and made.is_dir()
    monkeypatch.setenv("OUT", str(tmp_path / "lent"))
    assert gpu_check.output_dir(None) == tmp_path / "lent"
    assert gpu_check.output_dir(str(tmp_path / "asked")) == tmp_path / "asked"


def test_a_missing_package_skips_a_part_and_a_broken_deepdive_import_fails_it(tmp_path, monkeypatch):
    ctx = gpu_check_parts.Context(part="environment", device="cpu", out_dir=tmp_path, work_dir=tmp_path)

    def needs_missing(_ctx):
        import torchao_that_is_not_there  # noqa: F401

    def needs_moved(_ctx):
        import deepdive.engine.moved_away  # noqa: F401

    monkeypatch.setitem(gpu_check_parts.CHECKS, "environment", needs_missing)
    outcome = gpu_check_parts.run(ctx)
    assert (outcome.ok, outcome.skipped, outcome.detail) == (False, True, "No module named 'torchao_that_is_not_there'")
    monkeypatch.setitem(gpu_check_parts.CHECKS, "environment", needs_moved)
    outcome = gpu_check_parts.run(ctx)
    assert (outcome.ok, outcome.skipped) == (False, False)
    assert outcome.detail["error"] == "ModuleNotFoundError: No module named 'deepdive.engine.moved_away'"


def test_the_nvml_part_writes_a_fixture_that_the_cpu_tests_can_replay(tmp_path, monkeypatch):
    # NVML is hardware this machine lacks: the synthetic stand-in answers in its place, with pynvml's structures
    from deepdive.telemetry.nvml_replay import differences, load_fixture, replay
    from tests.telemetry.nvml_synthetic import SyntheticNvml

    monkeypatch.setitem(sys.modules, "pynvml", SyntheticNvml())
    ctx = gpu_check_parts.Context(part="nvml", device="cpu", out_dir=tmp_path, work_dir=tmp_path)
    outcome = gpu_check_parts.run(ctx)
    assert outcome.ok, outcome.detail
    path = tmp_path / "nvml-nvidia-h100-80gb-hbm3-synthetic.json"
    assert outcome.detail["fixture"] == str(path) and outcome.detail["driver"] == "synthetic"
    fixture = load_fixture(path)
    assert fixture["synthetic"] is False, "the part records what it reads: a real GPU's readings"
    readings, stand_in = replay(fixture)
    assert differences(fixture["readings"], readings) == [] and stand_in.misses == []
    assert len(readings) == 4 and outcome.detail["unsupported_fields"] == []


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.parametrize("part", [p.name for p in PARTS])
def test_every_gpu_part_passes_on_this_gpu(tmp_path, part):
    proc = _check(["--only", part], tmp_path, timeout=700)
    lines = _lines(tmp_path / "results.jsonl")
    result = [line for line in lines if line["check"] == part and "metric" not in line]
    assert len(result) == 1 and result[0]["device"] == "cuda", lines
    assert result[0]["ok"] or result[0]["skipped"], result[0]["detail"]
    assert proc.returncode == 0


def test_trials_at_once_are_counted_per_worker_from_the_study_events():
    def trial(number: int, state: str, worker: int) -> tuple[str, dict]:
        return "tune.trial", {"number": number, "state": state, "worker": worker}

    # as a study sends them: worker 0 starts trial 2 before trial 0's end is sent, a late update follows an end
    events = [trial(0, "running", 0), trial(1, "running", 1), trial(2, "running", 0), trial(0, "complete", 0),
              trial(0, "running", 0), ("tune.best", {}), trial(1, "complete", 1), trial(3, "running", 1),
              trial(2, "fail", 0), trial(3, "pruned", 1), trial(4, "running", 0)]
    assert gpu_check_parts._concurrency(events) == 2
    assert gpu_check_parts._concurrency([trial(0, "running", 0), trial(0, "complete", 0),
                                         trial(1, "running", 0)]) == 1
