"""server/examples/digits_fsdp.py, the demo's FSDP2 step: sharded on 2 processes, resumed on 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "server" / "examples" / "digits_fsdp.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(tmp_path: Path, nproc: int, epochs: int) -> str:
    done = subprocess.run([sys.executable, "-m", "deepdive", "train", str(SCRIPT), "--nproc", str(nproc),
                           "--checkpoint-dir", str(tmp_path / "ckpt"), "--", "--epochs", str(epochs), "--layers", "2"],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.slow
def test_each_layer_is_a_unit_and_the_sharded_checkpoint_resumes_on_one_process(tmp_path):
    first = train(tmp_path, 2, 1)
    assert "strategy: fsdp" in first and "2 x EncoderLayer, then the root" in first
    assert "from meta unit by unit" in first
    steps = int(first.split("done: ")[1].split(" steps")[0])
    second = train(tmp_path, 1, 2)
    assert f"resumed after step {steps} on 1 process(es), epoch 2" in second
    assert f"done: {steps + -(-len_train() // 32)} steps" in second


def len_train() -> int:
    from deepdive.examples.digits import load_data

    return len(load_data()[0])
