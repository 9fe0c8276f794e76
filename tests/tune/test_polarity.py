"""server/examples/polarity.py: the contract (--smoke, build_model, example_batch), its one-line data
error, and one epoch on the real sentence polarity data learning (skipped when the data is absent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepdive.examples import polarity

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "server" / "examples" / "polarity.py"

pytestmark = pytest.mark.slow

DATA = polarity.default_data_dir()
NO_DATA = polarity.missing_data(DATA)


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("DEEPDIVE_PARAMS", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_smoke_and_contract():
    out = _run("--smoke")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("smoke ok")
    model = polarity.build_model()
    ids, lengths, labels = polarity.example_batch(4)
    logits = model(ids, lengths)
    assert logits.shape == (4, 2) and labels.shape == (4,)
    from deepdive.tune.apply import find_suggest_names

    names = set(find_suggest_names(SCRIPT.read_text()))
    assert names == {"embed_dim", "hidden", "dropout", "lr", "weight_decay", "batch_size"}


def test_missing_data_is_one_line(tmp_path):
    out = _run("--data", str(tmp_path / "nowhere"), "--epochs", "1")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "rt-polarity.pos" in lines[0] and "--data" in lines[0], out.stderr


@pytest.mark.skipif(NO_DATA is not None, reason=NO_DATA or "")
def test_one_epoch_on_real_data_learns():
    out = _run("--epochs", "1", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["train_size"], result["val_size"]) == (9595, 1067)  # the fixed seeded 90/10 split
    assert len(result["val_acc_per_epoch"]) == 1
    assert result["val_acc"] > 0.6, result
