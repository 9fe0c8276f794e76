"""`deepdive compress` end to end on the digits model: prune -> distill -> int8, measured and reported."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepdive.engine.compress import CompressConfig, CompressError, compress

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "server" / "examples"
EVAL = EXAMPLES / "digits_eval.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory) -> Path:
    """The digits example trained for a few epochs and saved whole, the way the tour does it."""
    out = tmp_path_factory.mktemp("digits") / "digits.pt"
    subprocess.run([sys.executable, str(EXAMPLES / "digits.py"), "--epochs", "6", "--precision", "fp32",
                    "--save", str(out)], check=True, capture_output=True, timeout=300)
    return out


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepdive", "compress", *args], capture_output=True, text=True,
                          timeout=600)


def test_prune_distill_quantize_report(digits_model, tmp_path):
    done = _cli(str(digits_model), "--eval", str(EVAL), "--prune", "0.5", "--distill", "--quantize", "int8",
                "--epochs", "1", "--distill-epochs", "3", "--out", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    steps = [row["step"] for row in report["steps"]]
    assert steps == ["original", "prune", "distill", "quantize"]
    original, pruned, distilled, quantized = report["steps"]
    # pruning removed about half of the hidden neurons: the first two Linear layers lose ~half
    # their inputs/outputs, so the parameters fall by well over a third
    assert pruned["params"] < 0.65 * original["params"]
    assert quantized["size_mb"] < 0.5 * pruned["size_mb"]  # int8 weights
    assert report["summary"]["size_ratio"] > 4
    # accuracy is measured by the user's evaluate() at every step and stays close to the original
    assert original["accuracy"] > 0.9
    assert report["summary"]["accuracy_drop_points"] < 3.0
    for row in report["steps"]:
        for batch in ("b1", "b32"):
            lat = row["latency_ms"][batch]
            assert 0 < lat["p50"] <= lat["p95"] and lat["runs"] >= 20
    # the files: the compressed model loads and runs; the JSON and Markdown reports
    outputs = report["outputs"]
    assert json.loads(Path(outputs["json"]).read_text())["summary"] == report["summary"]
    table = Path(outputs["markdown"]).read_text()
    assert "| quantize |" in table and "Overall" in table
    model = torch.load(outputs["model"], weights_only=False)
    x = torch.randn(4, 64)
    assert model(x).shape == (4, 10)


def test_markdown_table_printed_by_the_cli(digits_model, tmp_path):
    done = _cli(str(digits_model), "--eval", str(EVAL), "--quantize", "int8-dynamic", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| original |" in done.stdout and "| quantize |" in done.stdout
    assert (tmp_path / "digits.compress.md").is_file() and (tmp_path / "digits.compressed.pt").is_file()


def test_one_line_errors(digits_model, tmp_path):
    missing = _cli(str(tmp_path / "nope.pt"), "--eval", str(EVAL), "--quantize", "int8")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"deepdive: error: no such model file: {tmp_path / 'nope.pt'} (save one with torch.save(model, PATH), "
        "e.g. digits.py --save PATH)"]

    no_evaluate = tmp_path / "eval_without.py"
    no_evaluate.write_text("def example_inputs(batch_size):\n    return ()\n")
    done = _cli(str(digits_model), "--eval", str(no_evaluate), "--quantize", "int8")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"deepdive: error: {no_evaluate} defines no evaluate(): add `def evaluate(model) -> float`"]

    with pytest.raises(CompressError, match="nothing to do"):
        compress(CompressConfig(str(digits_model), str(EVAL)))
    with pytest.raises(CompressError, match="between 0 and 1"):
        compress(CompressConfig(str(digits_model), str(EVAL), prune=1.5))
    with pytest.raises(CompressError, match="needs a student"):
        compress(CompressConfig(str(digits_model), str(EVAL), distill=True))
    # nothing was written for the failed runs
    assert not list(tmp_path.glob("*.compress*"))


def test_static_int8_cnn_is_saved_and_loads(tmp_path):
    """A CNN gets static int8 with fusion; pickle cannot save the FX graph, so the model is TorchScript."""
    from deepdive.engine.compress.pipeline import load_compressed
    from deepdive.examples import digits_cnn

    model = digits_cnn.train(epochs=3)
    path = tmp_path / "cnn.pt"
    torch.save(model, path)
    report = compress(CompressConfig(str(path), str(EXAMPLES / "digits_cnn.py"), quantize="int8",
                                     latency_budget_s=0.2))
    original, quantized = report["steps"]
    assert "static" in quantized["detail"]["method"]
    assert quantized["size_mb"] < 0.5 * original["size_mb"]
    assert quantized["accuracy"] > original["accuracy"] - 0.02
    assert report["outputs"]["format"] in ("module", "torchscript")
    loaded = load_compressed(report["outputs"]["model"], report["outputs"]["format"])
    x = digits_cnn.example_inputs(64)[0]
    with torch.inference_mode():  # the saved int8 model predicts like the fp32 one
        assert (loaded(x).argmax(1) == model(x).argmax(1)).float().mean() >= 0.95
