"""The `deepdive` command line: one-line errors, JSON output, the deep check with its job."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deepdive import __version__
from tests.conftest import torch_version


def run(*args: str, env_home: str | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if env_home:
        env["DEEPDIVE_HOME"] = env_home
    return subprocess.run([sys.executable, "-m", "deepdive", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_version():
    done = run("version", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["version"] == __version__


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["doctor", "--bogus"], "unrecognized arguments: --bogus"),
        (["doctor", "--seconds", "abc"], "argument --seconds: invalid float value"),
        (["doctor", "--deep", "--seconds", "0"], "--seconds must be from 0.1 to 120"),
        (["serve", "--log-level", "LOUD"], "argument --log-level: invalid choice"),
        (["generate", "make me a sandwich"], "could not tell what to build"),
        (["generate", "  "], "the prompt is empty"),
        (["generate", "a CNN for MNIST", "--backend", "openai-compatible", "--endpoint", "http://10.1.2.3:8000",
          "--no-verify"], "allow"),
        (["generate", "a CNN for MNIST", "-o", "/no/such/dir/x.py"], "no such folder"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args, fragment):
    done = run(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and lines[0].startswith("deepdive: error:")
    assert "Traceback" not in done.stderr


def test_doctor_json():
    done = run("doctor", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["torch"]["version"] == torch_version()
    assert report["gpus"]["available"] or report["gpus"]["reason"]


@pytest.mark.slow
def test_doctor_deep_runs_the_job_and_records_it(tmp_path):
    done = run("doctor", "--deep", "--json", "--seconds", "0.2", "--size", "128", env_home=str(tmp_path))
    assert done.returncode == 0, done.stderr
    deep = json.loads(done.stdout)["deep"]
    assert deep["state"] == "succeeded"
    assert {row["device"] for row in deep["result"]["matmul"]} >= {"cpu"}
    assert (tmp_path / "state.db").exists()


def test_generate_writes_a_verified_program_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "mnist_cnn.py"
    done = run("generate", "a 3-layer CNN for MNIST with dropout, trained with mixed precision", "-o", str(out),
               "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verified"] and [c["name"] for c in result["checks"]] == [
        "parse", "imports", "contract", "smoke", "properties"]
    assert result["intent"]["layers"] == 3 and "amp" in result["intent"]["features"]
    assert out.read_text() == result["code"] and "def build_model" in result["code"]
    again = run("generate", "a CNN for MNIST", "-o", str(out), "--no-verify")
    assert again.returncode == 2 and "exists: pass --force" in again.stderr
    assert out.read_text() == result["code"], "a refused overwrite leaves the file as it was"


def test_compress_refuses_an_out_that_is_a_file_before_any_work(tmp_path):
    """--out names a folder; a file there used to fail only after every step had run (13 s)."""
    import time
    from pathlib import Path

    import torch

    model = tmp_path / "tiny.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(64, 10)), model)
    out = tmp_path / "compressed.pt"
    out.write_text("an earlier result")
    started = time.monotonic()
    done = run("compress", str(model), "--eval", str(Path(__file__).parents[1] / "server/examples/digits_eval.py"),
               "--quantize", "int8", "--out", str(out), env_home=str(tmp_path))
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepdive: error: --out ") and "not a folder" in lines[0], lines
    assert str(out) in lines[0] and "Traceback" not in done.stderr
    assert "original" not in done.stderr and took < 5, "refused before loading or measuring anything"
    assert out.read_text() == "an earlier result"
