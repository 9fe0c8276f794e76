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
    # the summary's speed-ups come from the original and the final model timed in alternating rounds
    summary = report["summary"]
    for batch in ("b1", "b32"):
        paired = summary["latency_paired_ms"][batch]
        assert paired["runs"] >= 20 and paired["original"] > 0 and paired["compressed"] > 0
        assert summary[f"speedup_{batch}"] == pytest.approx(paired["original"] / paired["compressed"])
        # each at its fastest thread count of those measured (one, and the caller's)
        for name in ("original", "compressed"):
            count = paired["threads"][name]
            assert paired[name] == min(v for k, v in paired["by_threads"].items() if k.startswith(name + "@"))
            assert paired["by_threads"][f"{name}@{count}"] == paired[name]
    assert "alternating rounds" in Path(report["outputs"]["markdown"]).read_text()
    # the files: the compressed model loads and runs; the JSON and Markdown reports
    outputs = report["outputs"]
    assert json.loads(Path(outputs["json"]).read_text())["summary"] == report["summary"]
    table = Path(outputs["markdown"]).read_text()
    assert "| quantize |" in table and "Overall" in table
    from deepdive.engine.compress.pipeline import load_compressed

    # the final model runs as measured fastest: eager (a pickled module) or traced TorchScript
    assert quantized["detail"]["runtime"] == ("torchscript" if outputs["format"] == "torchscript" else "eager")
    model = load_compressed(outputs["model"], outputs["format"])
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


# -- depth reduction in the pipeline, on a small BERT-style encoder (synthetic sentences) -------------

TEXT_EVAL = '''
import torch
import torch.nn.functional as F
from deepdive.examples.polarity_bert import PolarityBERT

def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 13, (n,), generator=g)
    ids = torch.randint(2, 40, (n, 16), generator=g)
    ids[torch.arange(16).expand(n, 16) >= lengths[:, None]] = 0  # PAD after each sentence
    positive = ((ids >= 2) & (ids < 21)).sum(1) > ((ids >= 21) & (ids < 40)).sum(1)
    return ids, positive.long()

TRAIN, VAL = _data(512, 0), _data(256, 1)

def build_model():
    return PolarityBERT(40, dim=64, heads=4, ff=128, layers=4, dropout=0.0)

def train_loader():
    ids, y = TRAIN
    return [(ids[i:i + 64], y[i:i + 64]) for i in range(0, len(y), 64)]

def evaluate(model):
    ids, y = VAL
    return float((model(ids).argmax(1) == y).float().mean())

def example_inputs(batch_size):
    return (VAL[0][:batch_size],)
'''


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> tuple[Path, Path]:
    """A 4-layer encoder trained on the synthetic sentences (a whole module) and its evaluation script."""
    import runpy

    folder = tmp_path_factory.mktemp("text")
    script = folder / "text_eval.py"
    script.write_text(TEXT_EVAL)
    ns = runpy.run_path(str(script))
    torch.manual_seed(0)
    model = ns["build_model"]()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(6):
        for x, y in ns["train_loader"]():
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    path = folder / "text.pt"
    torch.save(model.eval(), path)
    return path, script


def test_layers_step_progressive_distillation_and_compiled_runtime(text_model, tmp_path):
    path, script = text_model
    report = compress(CompressConfig(str(path), str(script), prune=0.5, layers=2, distill=True, quantize="int8",
                                     fine_tune_epochs=1, distill_epochs=2, out=str(tmp_path), latency_budget_s=0.2))
    steps = [row["step"] for row in report["steps"]]
    assert steps == ["original", "prune", "layers", "distill", "quantize"]
    original, pruned, shallow, distilled, quantized = report["steps"]
    layers = shallow["detail"]
    assert (layers["blocks"], layers["block"], layers["layers_before"], layers["layers_after"]) == \
        ("layers", "EncoderLayer", 4, 2)
    assert layers["kept"] == [0, 3] and layers["fine_tune"] == "distilled from prune"
    assert shallow["params"] < pruned["params"] < original["params"]
    assert distilled["detail"]["teacher"] == "prune"  # progressive: original -> pruned -> shallow student
    # the final model runs in the runtime measured fastest; TorchScript only if it matched the eager outputs
    detail = quantized["detail"]
    assert detail["runtime"] in ("eager", "torchscript")
    assert any(note.startswith("runtime: ") for note in detail["notes"])
    assert any("Linear" in note and "batch 1" in note for note in detail["notes"])  # int8 vs fp32 Linear, measured
    assert report["summary"]["size_ratio"] > 2
    # well above chance after the cut and recovery; int8 tables (and fp32 or int8 Linears) predict like fp32
    assert original["accuracy"] > 0.8 and distilled["accuracy"] > 0.6
    assert quantized["accuracy"] == pytest.approx(distilled["accuracy"], abs=0.03)
    # the saved model gives the report's accuracy on sentences of other lengths than the traced example
    from deepdive.engine.compress.pipeline import load_compressed
    import runpy

    saved = load_compressed(report["outputs"]["model"], report["outputs"]["format"])
    ns = runpy.run_path(str(script))
    with torch.inference_mode():
        assert ns["evaluate"](saved) == pytest.approx(quantized["accuracy"], abs=0.02)
    assert "| layers |" in Path(report["outputs"]["markdown"]).read_text()


def test_traced_runtime_rejected_when_outputs_differ(tmp_path):
    """A forward whose trim is frozen by tracing (a Python int) gives other outputs on longer inputs: kept eager."""
    from deepdive.engine.compress.pipeline import Pipeline

    script = tmp_path / "frozen_eval.py"
    script.write_text('''
import torch
from torch import nn

class Trim(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 2)
    def forward(self, x):
        n = int((x != 0).sum(1).max())  # a Python int: tracing records the example's value
        return self.fc(x[:, :n].sum(1, keepdim=True))

def evaluate(model):
    return 1.0

def example_inputs(batch_size):
    x = torch.zeros(batch_size, 8)
    x[:, :2] = 1.0
    x[1:, :6] = 2.0  # batch 32 has longer rows than batch 1
    return (x,)
''')
    pipeline = Pipeline(CompressConfig(str(tmp_path / "m.pt"), str(script), quantize="int8", latency_budget_s=0.1))
    from deepdive.engine.compress.pipeline import load_eval

    pipeline.namespace = load_eval(str(script))
    import runpy

    model = runpy.run_path(str(script))["Trim"]().eval()
    notes: list[str] = []
    assert pipeline._runtime(model, notes) is model
    assert notes and "runtime: eager; the traced model gave other outputs" in notes[0]


def test_layers_errors(text_model, tmp_path):
    path, script = text_model
    done = _cli(str(path), "--eval", str(script), "--layers", "4", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "deepdive: error: --layers 4 is out of range: layers (4 EncoderLayer) can keep 1 to 3 of its 4 blocks"]
    with pytest.raises(CompressError, match="--layers is the number of repeated blocks kept, at least 1"):
        compress(CompressConfig(str(path), str(script), layers=0))
    assert not list(tmp_path.glob("*.compress*"))


def test_layers_alone_is_the_final_model(text_model, tmp_path):
    """--layers as the only step: the shallow model (in its measured runtime) is what is saved."""
    import runpy

    from deepdive.engine.compress.pipeline import load_compressed

    path, script = text_model
    report = compress(CompressConfig(str(path), str(script), layers=1, fine_tune_epochs=0, out=str(tmp_path),
                                     latency_budget_s=0.1))
    original, shallow = report["steps"]
    assert shallow["step"] == "layers" and shallow["detail"]["fine_tune"] == "none"
    assert shallow["detail"]["kept"] == [0] and shallow["detail"]["accuracy_after_cut"] == shallow["accuracy"]
    assert shallow["params"] < original["params"]
    runtime = shallow["detail"]["runtime"]
    assert report["outputs"]["format"] == ("torchscript" if runtime == "torchscript" else "module")
    saved = load_compressed(report["outputs"]["model"], report["outputs"]["format"])
    with torch.inference_mode():
        assert runpy.run_path(str(script))["evaluate"](saved) == pytest.approx(shallow["accuracy"], abs=1e-6)
    if runtime == "eager":
        assert len(saved.layers) == 1
