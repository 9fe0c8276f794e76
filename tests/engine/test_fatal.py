"""A worker's fatal exception reaches torchrun's error file (deepdive.engine.fatal), so torchrun's
failure summary names the root cause instead of "error_file: <N/A>"."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_the_exception_that_ends_a_worker_is_its_error_file_and_torchruns_root_cause(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import deepdive.engine as dd\n"
                      "run = dd.setup(device='cpu')\n"
                      "raise RuntimeError('the loader found no files in data/')\n")
    logs = tmp_path / "logs"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "--log-dir",
         str(logs), str(script)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    files = list(logs.rglob("error.json"))
    assert len(files) == 1, done.stderr[-3000:]
    record = json.loads(files[0].read_text())
    assert record["message"]["message"] == "RuntimeError: the loader found no files in data/"
    assert "fails.py" in record["message"]["extraInfo"]["py_callstack"]
    assert f"error_file: {files[0]}" in done.stderr and "<N/A>" not in done.stderr
    assert done.stderr.count("RuntimeError: the loader found no files in data/") >= 2, \
        "printed by the worker as before, and again in torchrun's root cause"


def test_outside_torchrun_nothing_is_installed(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("import sys\nhook = sys.excepthook\nimport deepdive.engine as dd\nrun = dd.setup(device='cpu')\n"
                      "print(sys.excepthook is hook)\n")
    env = {k: v for k, v in os.environ.items() if k != "TORCHELASTIC_ERROR_FILE"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr[-2000:]
