"""``deepdive deploy export`` end to end in a subprocess: the table and the exit status, ``--json``, job
events, a form that fails, bad input, and a ``deepdive compress`` output (TorchScript static int8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from tests.deploy import _export_scripts as scripts
from tests.deploy.conftest import DIGITS_SCRIPT


def _deploy(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepdive", "deploy", "export", *args], cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True, text=True,
                          timeout=300)


def test_export_prints_the_table_and_exits_1_naming_the_form_that_failed(tmp_path: Path) -> None:
    script = scripts.write(tmp_path, "branchy", scripts.BRANCHY)
    done = _deploy(str(script), "--forms", "torchscript,pt2", cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["form", "file", "size", "max"]
    assert any(line.startswith("torchscript") and "model.ts" in line and "1,3,8" in line for line in lines)
    assert any(line.startswith("pt2") and "failed:" in line for line in lines)
    assert "1 form(s) failed: pt2" in done.stdout
    folder = tmp_path / "deploy" / "branchy"  # the default --out
    manifest = json.loads((folder / "deploy.json").read_text())
    assert set(manifest["forms"]) == {"eager", "torchscript"} and "pt2" in manifest["failed"]
    assert "untrained" in done.stderr  # no --model: said


def test_export_json_and_job_events(tmp_path: Path) -> None:
    script = scripts.write(tmp_path, "tiny", scripts.TINY)
    read_end, write_end = os.pipe()
    env = {"DEEPDIVE_EVENTS_FD": str(write_end)}
    try:
        done = subprocess.run([sys.executable, "-m", "deepdive", "deploy", "export", str(script), "--out",
                               str(tmp_path / "out"), "--forms", "eager,onnx", "--json"], cwd=tmp_path,
                              env={**os.environ, "OMP_NUM_THREADS": "1", **env}, capture_output=True, text=True,
                              timeout=300, pass_fds=(write_end,))
    finally:
        os.close(write_end)
    with os.fdopen(read_end) as f:
        events = [json.loads(line) for line in f.read().splitlines() if line.strip()]
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # stdout holds the JSON only: the exporters' chatter is kept off it
    assert result["folder"] == str((tmp_path / "out").resolve()) and set(result["forms"]) == {"eager", "onnx"}
    assert result["forms"]["onnx"]["max_abs_diff"] < 1e-4
    fractions = [e["fraction"] for e in events if e.get("type") == "progress" and e.get("fraction") is not None]
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any(e.get("type") == "result" for e in events)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _deploy(str(tmp_path / "absent.py"), cwd=tmp_path)
    assert done.returncode == 2 and "no such script" in done.stderr and "Traceback" not in done.stderr
    done = _deploy(str(DIGITS_SCRIPT), "--forms", "tflite", cwd=tmp_path)
    assert done.returncode == 2 and "--forms is 'all' or a comma-separated list" in done.stderr


def test_a_compress_output_exports(digits_model: Path, tmp_path: Path) -> None:
    """`deepdive compress --quantize int8` writes a CNN as TorchScript (static int8): export takes it as it is."""
    import torch

    from deepdive.engine.compress import CompressConfig, compress

    torch.set_num_threads(1)
    report = compress(CompressConfig(str(digits_model), str(DIGITS_SCRIPT), quantize="int8", out=str(tmp_path / "c")))
    assert report["outputs"]["format"] == "torchscript"
    done = _deploy(str(DIGITS_SCRIPT), "--model", report["outputs"]["model"], "--out", str(tmp_path / "out"),
                   "--json", cwd=tmp_path)
    result = json.loads(done.stdout)
    assert done.returncode == 1  # pt2 and onnx are made from a Python module, and this one is TorchScript
    assert {"eager", "torchscript", "int8"} <= set(result["forms"]), result["failed"]
    assert result["forms"]["int8"]["mode"] == "as given" and result["forms"]["eager"]["format"] == "torchscript"
    assert all(result["forms"][f]["max_abs_diff"] <= 1e-3 for f in ("eager", "torchscript", "int8"))
    assert "TorchScript" in result["failed"]["pt2"] and "TorchScript" in result["failed"]["onnx"]
