"""`deepdive diagnose`: bad input is one line and exit status 2; --static behaves as a linter; the measured run
prints only the report's JSON with --json and writes it where it says; --keep writes the fix only into an
unchanged script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepdive.cli import UsageError, main
from deepdive.cli_diagnose import _keep
from deepdive.diagnose.report import report_path

FIXTURES = Path(__file__).parent / "fixtures"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["diagnose", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    shutil.copy(FIXTURES / "item_loop.py", tmp_path / "item_loop.py")
    shutil.copy(FIXTURES / "loader_no_workers.py", tmp_path / "loader_no_workers.py")
    (tmp_path / "broken.py").write_text("for x in range(3)\n    print(x)\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "clean.py").write_text("import torch\n\nprint(torch.ones(2))\n")
    return tmp_path


@pytest.mark.parametrize("argv,message", [
    (["missing.py"], "no such script: {d}/missing.py"),
    (["notes.txt"], "{d}/notes.txt is not a Python file (.py): name the training script"),
    (["broken.py"], "{d}/broken.py is not valid Python: line 1: expected ':'"),
    (["item_loop.py", "--fix", "DD101"], "--fix must be CODE@LINE, e.g. DD101@35, got 'DD101'"),
    (["item_loop.py", "--fix", "DD101@26"], "no DD101 finding at line 26 of item_loop.py (its findings: DD110@26)"),
    (["item_loop.py", "--fix", "DD110@26"], "DD110 at line 26 has no mechanical fix"),
    (["loader_no_workers.py", "--fix", "DD101@36"], "no DD101 finding at line 36 of loader_no_workers.py "
                                                    "(DD101 is at line 35)"),
    (["item_loop.py", "--fix", "DD999@3"], "no rule DD999"),
    (["item_loop.py", "--disable", "DD110,XX1"], "--disable: no rule XX1"),
    (["item_loop.py", "--steps", "0"], "--steps must be from 1 to 1000, got 0"),
    (["item_loop.py", "--warmup", "5000"], "--warmup must be from 0 to 1000, got 5000"),
    (["item_loop.py", "--keep"], "--pairs and --keep go with --fix CODE@LINE"),
])
def test_bad_input_is_one_line_and_exit_status_2(capsys, scripts: Path, monkeypatch, argv, message):
    monkeypatch.chdir(scripts)
    argv = [str(scripts / argv[0]), *argv[1:]]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepdive: error: ")
    assert message.format(d=scripts) in lines[0]


def test_static_prints_findings_as_a_linter_does_and_exits_1_only_with_findings(capsys, scripts: Path):
    code, out, _ = run_cli(capsys, str(scripts / "item_loop.py"), "--static")
    assert code == 1
    assert out.splitlines()[0].startswith(f"{scripts / 'item_loop.py'}:26:")
    assert " DD110 " in out
    code, out, _ = run_cli(capsys, str(scripts / "item_loop.py"), "--static", "--disable", "dd110")
    assert (code, out) == (0, "")
    code, out, _ = run_cli(capsys, str(scripts / "clean.py"), "--static", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = run_cli(capsys, str(scripts / "loader_no_workers.py"), "--static", "--json")
    found = json.loads(out)
    assert code == 1 and any(f["code"] == "DD101" and f["line"] == 35 and f["fix"] for f in found)


def test_the_measured_run_prints_only_the_reports_json_and_writes_it_in_the_scripts_folder(scripts: Path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("DEEPDIVE_HUB", None)
    proc = subprocess.run([sys.executable, "-m", "deepdive", "diagnose", str(scripts / "item_loop.py"), "--steps", "2",
                           "--warmup", "1", "--json", "--", "--steps", "20"], capture_output=True, text=True,
                          env=env, cwd=scripts, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)  # nothing else on stdout: the script's own print went to stderr
    assert report["steps"] == 2 and report["script"] == str(scripts / "item_loop.py")
    written = report_path(str(scripts / "item_loop.py"), str(scripts))
    assert written.parent == scripts / ".deepdive" / "diagnose"
    assert json.loads(written.read_text()) == report
    assert "worst per-sample loss" not in proc.stdout


def test_keep_writes_the_fix_into_an_unchanged_script_and_refuses_a_changed_one(scripts: Path):
    script = scripts / "loader_no_workers.py"
    measured = script.read_text()
    said = _keep(script, measured, "DD101", 35)
    assert said.startswith("kept: ") and str(script) in said
    kept = script.read_text()
    assert "num_workers=4" in kept.splitlines()[34] and kept != measured
    with pytest.raises(UsageError, match="changed while it was measured"):
        _keep(script, measured, "DD101", 35)
    assert script.read_text() == kept


def test_two_scripts_of_the_same_name_in_one_workspace_keep_two_reports(tmp_path: Path):
    import hashlib

    a, b = tmp_path / "a" / "train.py", tmp_path / "b" / "train.py"
    ra, rb = report_path(str(a), str(tmp_path)), report_path(str(b), str(tmp_path))
    assert ra != rb and ra.parent == rb.parent == tmp_path / ".deepdive" / "diagnose"
    # the extension names it the same way: <stem>-<first 8 hex digits of the SHA-1 of the absolute path>.json
    assert ra.name == f"train-{hashlib.sha1(str(a).encode()).hexdigest()[:8]}.json"
