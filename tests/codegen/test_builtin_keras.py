"""The builtin Keras generator: every program it writes really runs under TensorFlow (no mocks).

Programs are generated from Intent objects (and from prompts through the parser), written to a
temporary folder and run as ``python prog.py --smoke`` in subprocesses, two at a time (TensorFlow
takes ~5 s to start). One more subprocess imports every program, calls ``build_model()`` and
``example_batch()``, runs the model and reports output shapes and layer counts by class name.
Real runs read tiny files in the real formats (MNIST idx, CIFAR-10 pickles, PNG folders, CSV, text
CSV); two must learn (scikit-learn's digits as MNIST files, a linear CSV regression). The verifier
(deepdive.codegen.verify) checks two programs end to end when it is there.

    .venv/bin/python -m pytest -q tests/codegen/test_builtin_keras.py      # ~3 min on 2 idle cores
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deepdive.codegen.builtin import keras as kgen
from deepdive.codegen.intent import Intent

PY = sys.executable
TF = "tensorflow"


def I(prompt: str, task: str, arch: str, **kw) -> Intent:  # noqa: E743 - short on purpose
    kw.setdefault("framework", TF)
    if "features" in kw:
        kw["features"] = frozenset(kw["features"])
    return Intent(prompt, task, arch, **kw)


# name -> (intent, expected output shape without batch, {layer class name: count})
CASES: dict[str, tuple[Intent, tuple, dict]] = {
    "mnist_cnn3": (
        I("a 3-layer CNN for MNIST", "image-classification", "cnn", dataset="mnist", input_shape=(1, 28, 28),
          num_classes=10, layers=3),
        (10,), {"Conv2D": 3},
    ),
    "mnist_mlp_flat": (
        I("2-layer MLP on flattened MNIST", "image-classification", "mlp", dataset="mnist", input_shape=(784,),
          num_classes=10, layers=2),
        (10,), {"Dense": 2},
    ),
    "digits_cnn": (
        I("CNN for 8x8 digits", "image-classification", "cnn", dataset="mnist", input_shape=(1, 8, 8),
          num_classes=10, layers=2, lr=3e-3),
        (10,), {"Conv2D": 2},
    ),
    "cifar_cnn_amp": (
        I("keras CNN for CIFAR-10 with mixed precision", "image-classification", "cnn", dataset="cifar10",
          num_classes=10, features={"amp"}),
        (10,), {"Conv2D": 3},
    ),
    "cifar_resnet_sched": (
        I("small resnet for cifar10 with cosine lr", "image-classification", "resnet", dataset="cifar10",
          num_classes=10, layers=4, features={"lr_schedule"}),
        (10,), {"Add": 4},
    ),
    "cifar100_cnn": (
        I("keras CNN for CIFAR-100", "image-classification", "cnn", dataset="cifar10", num_classes=100, layers=2),
        (100,), {"Conv2D": 2},
    ),
    "custom_mlp_es_ckpt": (
        I("mlp on 40x40 rgb images, 5 classes", "image-classification", "mlp", input_shape=(3, 40, 40),
          num_classes=5, layers=4, features={"early_stopping", "checkpoint"}),
        (5,), {"Dense": 4},
    ),
    "text_lstm2": (
        I("2-layer LSTM sentiment", "text-classification", "lstm", dataset="text", vocab_size=20000,
          num_classes=2, layers=2, seq_len=64),
        (2,), {"LSTM": 2, "Embedding": 1},
    ),
    "text_gru_optuna_quant": (
        I("GRU topic classifier tuned with optuna, quantized, onnx", "text-classification", "gru",
          num_classes=3, seq_len=32, vocab_size=5000, features={"optuna", "quantize", "onnx"}),
        (3,), {"GRU": 1},
    ),
    "text_mlp": (
        I("bag of embeddings classifier", "text-classification", "mlp", num_classes=4, seq_len=50, layers=2),
        (4,), {"Dense": 2},
    ),
    "text_transformer_amp": (
        I("2-block transformer sentiment classifier, mixed precision", "text-classification", "transformer",
          dataset="text", num_classes=2, seq_len=40, vocab_size=8000, layers=2, features={"amp"}),
        (2,), {"MultiHeadAttention": 2, "PositionEmbedding": 1},
    ),
    "regression_csv_es": (
        I("regression on a CSV with 8 features with early stopping", "regression", "mlp", dataset="csv",
          input_shape=(8,), layers=3, features={"early_stopping", "prune"}),
        (1,), {"Dense": 3},
    ),
    "custom_regression_plain": (
        I("regression on a CSV with 8 features", "regression", "mlp", dataset="csv", input_shape=(8,), lr=3e-3),
        (1,), {"Dense": 3},
    ),
    "ae_dense_784_32": (
        I("autoencoder 784 -> 32", "autoencoder", "autoencoder", input_shape=(784,), latent_dim=32),
        (784,), {"Dense": 4},
    ),
    "ae_dense_mlp6": (
        I("6-layer mlp autoencoder for mnist", "autoencoder", "mlp", dataset="mnist", layers=6, latent_dim=16),
        (784,), {"Dense": 6},
    ),
    "ae_conv_mnist": (
        I("conv autoencoder for mnist", "autoencoder", "cnn", dataset="mnist", layers=2),
        (28, 28, 1), {"Conv2D": 2, "Conv2DTranspose": 3},
    ),
    "ae_conv_cifar_latent_amp": (
        I("conv autoencoder for cifar with a 64-dim code, mixed precision", "autoencoder", "autoencoder",
          dataset="cifar10", latent_dim=64, features={"amp"}),
        (32, 32, 3), {"Conv2D": 2},
    ),
    "forecast_lstm2_h6_ckpt": (
        I("LSTM forecasting 6 steps", "forecasting", "lstm", dataset="series", seq_len=24, horizon=6, layers=2,
          features={"checkpoint", "ddp"}),
        (6,), {"LSTM": 2},
    ),
    "forecast_gru_multichannel": (
        I("GRU on 3-channel series, 4 steps ahead", "forecasting", "gru", input_shape=(30, 3), horizon=4),
        (4,), {"GRU": 1},
    ),
    "folder_cnn": (
        I("cnn on my image folder of 16x16 pictures, 2 classes", "image-classification", "cnn", dataset="imagefolder",
          input_shape=(3, 16, 16), num_classes=2, layers=2),
        (2,), {"Conv2D": 2},
    ),
    "folder_ae_conv": (
        I("conv autoencoder for my image folder", "autoencoder", "autoencoder", dataset="imagefolder",
          input_shape=(3, 16, 16)),
        (16, 16, 3), {"Conv2D": 2},
    ),
    "forecast_mlp": (
        I("mlp forecaster", "forecasting", "mlp", seq_len=16, horizon=2, layers=2, features={"lr_schedule"}),
        (2,), {"Dense": 2},
    ),
}

PROMPTS = {
    "p_ae": ("keras autoencoder for 784-dim inputs with a 32-dim bottleneck", (784,), {}),
    "p_zh_lstm": ("用Keras的LSTM做情感分类，词表大小20000，两个类别", (2,), {"LSTM": 1}),
    "p_cifar_amp": ("keras CNN for CIFAR-10 with mixed precision", (10,), {}),
    "p_regression": ("tensorflow regression on a CSV with 8 features with early stopping", (1,), {}),
    "p_forecast": ("keras LSTM forecasting the next 12 steps of a time series", (12,), {}),
    "p_mnist_cnn3": ("a 3-layer keras CNN for MNIST", (10,), {"Conv2D": 3}),
}


def _parsed_cases() -> dict[str, tuple[Intent, tuple, dict]]:
    try:
        from deepdive.codegen.parse import parse_intent
    except ImportError:  # the parser is written in parallel
        return {}
    out = {}
    for name, (prompt, shape, layers) in PROMPTS.items():
        it = parse_intent(prompt, framework=TF)
        out[name] = (it, shape, layers)
    return out


ALL_CASES = {**CASES, **_parsed_cases()}


def _env() -> dict:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU in the tests
    return env


def _run(args: list[str], cwd: Path, timeout: float = 180) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([PY, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# Generation: pure strings, no TensorFlow in the generating process


def test_generation_compiles_and_is_deterministic():
    # how fast it is, bench/bench_codegen.py measures; a test asserts no time
    for name, (intent, _, _) in ALL_CASES.items():
        src = kgen.generate(intent)
        assert kgen.generate(intent) == src
        compile(src, name, "exec")
        for needle in ("def build_model(", "def example_batch(", "def main(", "--smoke",
                       'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")', "keras.utils.set_random_seed",
                       'if __name__ == "__main__":\n    sys.exit(main())'):
            assert needle in src, f"{name}: missing {needle!r}"
        assert src.index("TF_CPP_MIN_LOG_LEVEL") < src.index("import tensorflow")
        assert "keras.datasets" not in src  # nothing is downloaded


def test_generator_module_does_not_import_tensorflow():
    code = ("import sys, deepdive.codegen.builtin.keras as k; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)")
    subprocess.run([PY, "-c", code], check=True, timeout=60)


def test_features_applied_or_named():
    src = kgen.generate(CASES["cifar_cnn_amp"][0])
    assert 'keras.mixed_precision.set_global_policy(policy)' in src and '"mixed_bfloat16"' in src
    assert 'dtype="float32", name="output"' in src
    src = kgen.generate(CASES["custom_mlp_es_ckpt"][0])
    assert "EarlyStopping" in src and "ModelCheckpoint" in src and "BackupAndRestore" in src
    src = kgen.generate(CASES["cifar_resnet_sched"][0])
    assert "CosineDecay" in src
    src = kgen.generate(CASES["text_gru_optuna_quant"][0])
    assert "optuna.create_study" in src and "TFLiteConverter" in src
    # asked for, not available for Keras: named in a comment at the top and printed at run time
    head = src.split('"""', 2)[2].split("import argparse")[0]
    assert "# Not applied" in head and "onnx:" in head
    src = kgen.generate(CASES["regression_csv_es"][0])
    assert "#   prune:" in src
    src = kgen.generate(I("mlp with the engine", "regression", "mlp", use_engine=True))
    assert "#   engine:" in src
    # nothing asked for: nothing named
    assert "# Not applied" not in kgen.generate(CASES["mnist_cnn3"][0])


@pytest.mark.parametrize(
    "intent",
    [
        I("keras GAN for MNIST", "gan", "gan", dataset="mnist"),
        I("keras VAE", "vae", "vae"),
        I("keras transformer forecaster", "forecasting", "transformer"),
        I("keras LSTM image classifier", "image-classification", "lstm"),
        I("keras few-shot", "few-shot", "protonet"),
    ],
)
def test_unsupported_intent_raises_one_line(intent):
    with pytest.raises(ValueError) as exc:
        kgen.generate(intent)
    msg = str(exc.value)
    assert "\n" not in msg and "framework torch" in msg and "image-classification" in msg


# ---------------------------------------------------------------------------------------------
# Real TensorFlow runs


def _write(folder: Path, name: str, intent: Intent) -> Path:
    path = folder / f"{name}.py"
    path.write_text(kgen.generate(intent), encoding="utf-8")
    return path


def _write_idx(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.tobytes())


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """A minimal RGB PNG writer (no Pillow here); TensorFlow decodes it in image_dataset_from_directory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + row.astype(np.uint8).tobytes() for row in rgb)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _real_data(root: Path) -> dict[str, Path]:
    """Tiny files in the real formats: MNIST idx, CIFAR-10 python batches, numeric CSV, text CSV."""
    rng = np.random.default_rng(0)
    mnist = root / "mnist"
    mnist.mkdir()
    for prefix, n in (("train", 64), ("t10k", 16)):
        _write_idx(mnist / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(mnist / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    cifar = root / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name, n in (("data_batch_1", 48), ("data_batch_2", 16), ("test_batch", 16)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        with open(cifar / name, "wb") as f:
            pickle.dump(batch, f)
    cifar100 = root / "cifar100" / "cifar-100-python"  # CIFAR-100's own format: train and test, 100 fine labels
    cifar100.mkdir(parents=True)
    for name, n in (("train", 48), ("test", 16)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": list(rng.integers(0, 100, n)),
                 b"coarse_labels": list(rng.integers(0, 20, n))}
        with open(cifar100 / name, "wb") as f:
            pickle.dump(batch, f)
    csv = root / "houses.csv"
    x = rng.standard_normal((120, 8))
    y = x @ rng.standard_normal(8) + 0.1 * rng.standard_normal(120)
    rows = ["f0,f1,f2,f3,f4,f5,f6,f7,price"] + [",".join(f"{v:.4f}" for v in (*xr, yr)) for xr, yr in zip(x, y)]
    csv.write_text("\n".join(rows) + "\n")
    text = root / "reviews.csv"
    words = ["good", "great", "fine", "bad", "awful", "poor", "movie", "plot", "acting"]
    lines = ["text,label"]
    for i in range(80):
        label = i % 2
        lines.append(" ".join(rng.choice(words[:3] if label else words[3:6], 4)) + " " + rng.choice(words[6:]) + f",{label}")
    text.write_text("\n".join(lines) + "\n")
    series = root / "load.csv"
    t = np.arange(200)
    series.write_text("load\n" + "\n".join(f"{np.sin(v / 8):.4f}" for v in t) + "\n")
    from sklearn.datasets import load_digits  # real handwritten digits, 8x8, shipped with scikit-learn

    digits = root / "digits"
    digits.mkdir()
    images, labels = load_digits(return_X_y=True)
    images = (images.reshape(-1, 8, 8) * 15).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:1500], order[1500:]
    _write_idx(digits / "train-images-idx3-ubyte", images[train])
    _write_idx(digits / "train-labels-idx1-ubyte", labels[train])
    _write_idx(digits / "t10k-images-idx3-ubyte", images[test])
    _write_idx(digits / "t10k-labels-idx1-ubyte", labels[test])
    folder = root / "pictures"
    for label, colour in (("dark", 40), ("light", 210)):
        (folder / label).mkdir(parents=True)
        for i in range(10):
            _write_png(folder / label / f"{i}.png", np.clip(colour + rng.normal(0, 20, (16, 16, 3)), 0, 255))
    return {"mnist": mnist, "cifar": root / "cifar", "cifar100": root / "cifar100", "csv": csv, "text": text, "series": series, "folder": folder,
            "digits": digits}


REAL_RUNS = {
    # name -> (case, data key, extra args); the first ones run as `python prog.py`, the rest in the runner
    "real_mnist_cnn": ("mnist_cnn3", "mnist", []),
    "real_text_lstm": ("text_lstm2", "text", []),
    "real_text_transformer": ("text_transformer_amp", "text", []),
    "real_forecast_series": ("forecast_lstm2_h6_ckpt", "series", []),
    "real_regression_csv": ("regression_csv_es", "csv", ["--target", "price"]),
    "real_cifar_resnet": ("cifar_resnet_sched", "cifar", []),
    "real_cifar100_cnn": ("cifar100_cnn", "cifar100", []),
    "real_ae_dense_mnist": ("ae_dense_mlp6", "mnist", []),
    "real_folder_cnn": ("folder_cnn", "folder", []),
    "real_folder_ae_conv": ("folder_ae_conv", "folder", []),
    # it learns: 60 epochs on y = x.w + noise (y's spread ~2.8) bring the validation MAE well below 1
    "learn_regression_csv": ("custom_regression_plain", "csv", ["--epochs", "60"]),
    # it learns a real task: scikit-learn's 8x8 digits as MNIST idx files, 297 held-out images
    "learn_digits_cnn": ("digits_cnn", "digits", ["--epochs", "15", "--batch-size", "32"]),
}
REAL_SUBPROCESS = ("real_mnist_cnn",)

# These run exactly as a user would (`python prog.py --smoke`); every other program's smoke run goes
# through its main(["--smoke"]) in one shared runner process, to pay TensorFlow's start-up once.
# Programs the verifier (parse, imports, smoke, properties) checks end to end.
VERIFIED = ("cifar_cnn_amp", "forecast_lstm2_h6_ckpt")

SMOKE_SUBPROCESS = ("mnist_cnn3", "text_gru_optuna_quant", "p_zh_lstm")

# One process, many programs: main(argv) for smoke and real runs (return code and output captured),
# then build_model() / example_batch() / model(x) with output shapes and layer counts by class name.
RUNNER = r"""
import contextlib, importlib.util, io, json, os, sys, time, traceback
import numpy as np
import keras
tasks = json.loads(sys.argv[1])
results = {}
for i, task in enumerate(tasks):
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.clear_session()
    os.chdir(task["cwd"])
    spec = importlib.util.spec_from_file_location(f"prog_{i}", task["path"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = {}
    if task.get("argv") is not None:
        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                r["rc"] = mod.main(task["argv"])
            except BaseException:
                r["rc"] = "raised"
                traceback.print_exc()
        r["out"], r["wall"] = buf.getvalue(), time.perf_counter() - t0
    if task.get("build"):
        keras.mixed_precision.set_global_policy("float32")
        keras.utils.clear_session()
        model = mod.build_model()
        x, y = mod.example_batch()
        out = np.asarray(model(x, training=False))
        counts = {}
        for layer in model.layers:
            counts[type(layer).__name__] = counts.get(type(layer).__name__, 0) + 1
        r.update({
            "x": list(x.shape), "y": list(y.shape), "shape": list(out.shape), "counts": counts,
            "out_dtype": str(out.dtype), "policy": keras.mixed_precision.global_policy().name,
            "finite": bool(np.isfinite(out).all()), "compiled": model.optimizer is not None,
        })
    results[task["name"]] = r
print("RESULTS " + json.dumps(results))
"""


def _mk(root: Path, name: str, intent: Intent) -> Path:
    d = root / name
    d.mkdir()
    _write(d, "prog", intent)
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every smoke run, real run and bad-input run; two TensorFlow processes at a time."""
    root = tmp_path_factory.mktemp("keras_programs")
    data = _real_data(root)
    jobs: dict[str, tuple[list[str], Path]] = {}
    tasks: list[dict] = []
    for name, (intent, _, _) in ALL_CASES.items():
        d = _mk(root, name, intent)
        if name in SMOKE_SUBPROCESS:
            jobs[name] = (["prog.py", "--smoke"], d)
            tasks.append({"name": name, "path": str(d / "prog.py"), "cwd": str(d), "build": True})
        else:
            tasks.append({"name": name, "path": str(d / "prog.py"), "cwd": str(d), "argv": ["--smoke"], "build": True})
    for name, (case, key, extra) in REAL_RUNS.items():
        d = _mk(root, name, ALL_CASES[case][0])
        argv = ["--data", str(data[key]), "--epochs", "1", "--batch-size", "16", *extra]  # a later --epochs wins
        if name in REAL_SUBPROCESS:
            jobs[name] = (["prog.py", *argv], d)
        else:
            tasks.append({"name": name, "path": str(d / "prog.py"), "cwd": str(d), "argv": argv})
    jobs["bad_missing_data"] = (["prog.py"], _mk(root, "bad", CASES["mnist_cnn3"][0]))
    d = _mk(root, "bad_wrong_columns", CASES["text_lstm2"][0])
    tasks.append({"name": "bad_wrong_columns", "path": str(d / "prog.py"), "cwd": str(d), "argv": ["--data", str(data["csv"])]})

    try:
        from deepdive.codegen.verify import verify
    except ImportError:  # the verifier is written in parallel
        verify = None

    def verified(name):
        t0 = time.perf_counter()
        intent = ALL_CASES[name][0]
        return verify(kgen.generate(intent), intent, timeout_s=300), time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=2) as pool:
        runner = pool.submit(_run, ["-c", RUNNER, json.dumps(tasks)], root, 900)
        futures = {name: pool.submit(_run, args, cwd) for name, (args, cwd) in jobs.items()}
        checked = {name: pool.submit(verified, name) for name in VERIFIED} if verify else {}
        results = {name: f.result() for name, f in futures.items()}
        rc, out, wall = runner.result()
        verifications = {name: f.result() for name, f in checked.items()}
    assert rc == 0, out[-3000:]
    for name, r in json.loads(out.split("RESULTS ", 1)[1].splitlines()[0]).items():
        if name in results:  # a subprocess smoke run: keep its result, add the build checks
            results[name] = (*results[name], r)
        else:
            results[name] = (r.get("rc"), r.get("out", ""), r.get("wall", 0.0), r)
    timings = {name: round(r[2], 1) for name, r in results.items()}
    print(f"\nkeras programs: runner process {wall:.1f} s; per program (s):", json.dumps(timings))
    print("verify (s):", json.dumps({name: round(v[1], 1) for name, v in verifications.items()}))
    return {"root": root, "results": results, "verify": verifications}


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the shared runner fixture is set up inside the first of these
@pytest.mark.parametrize("name", list(ALL_CASES))
def test_smoke_run_exits_zero(runs, name):
    rc, out = runs["results"][name][:2]
    assert rc == 0, out[-3000:]
    assert "smoke ok:" in out
    intent, shape, _ = ALL_CASES[name]
    assert f"output=(8, {', '.join(map(str, shape))})" in out, out[-500:]
    if intent.has("optuna"):
        assert "smoke: optuna best" in out
    if intent.has("quantize"):
        assert "smoke: tflite" in out
    for feature in ("onnx", "prune", "torchscript"):
        if intent.has(feature):
            assert f"note: not applied: {feature}:" in out


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the shared runner fixture is set up inside the first of these
@pytest.mark.parametrize("name", list(REAL_RUNS))
def test_real_run_on_real_format_files(runs, name):
    rc, out = runs["results"][name][:2]
    assert rc == 0, out[-3000:]
    assert "validation:" in out
    d = runs["root"] / name
    assert (d / "model.keras").is_file()
    case = REAL_RUNS[name][0]
    if ALL_CASES[case][0].has("checkpoint"):
        assert (d / "checkpoints" / "best.keras").is_file()
    if name.startswith("learn_"):
        scores = dict(kv.split("=") for kv in out.split("validation: ", 1)[1].splitlines()[0].split(", "))
        if "mae" in scores:
            assert float(scores["mae"]) < 0.8, scores
        else:
            assert float(scores["accuracy"]) > 0.85, scores
        print(f"{name}: validation {scores}")


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the shared runner fixture is set up inside the first of these
def test_bad_input_is_one_line_error(runs):
    rc, out = runs["results"]["bad_missing_data"][:2]
    assert rc == 2 and "Traceback" not in out
    assert "error: MNIST needs --data" in out
    rc, out = runs["results"]["bad_wrong_columns"][:2]
    assert rc == 2 and "Traceback" not in out
    assert "error:" in out and "'text' and 'label'" in out


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the shared runner fixture is set up inside the first of these
@pytest.mark.parametrize("name", list(ALL_CASES))
def test_build_model_shapes_and_layer_counts(runs, name):
    intent, shape, layers = ALL_CASES[name]
    r = runs["results"][name][3]
    assert r["compiled"] and r["finite"], name
    assert tuple(r["shape"]) == (r["x"][0], *shape), r
    if intent.task == "autoencoder":
        assert r["shape"] == r["x"] == r["y"]
    elif intent.task in ("image-classification", "text-classification"):
        assert r["y"] == [r["x"][0]]
    else:
        assert r["y"] == r["shape"]
    for cls, n in layers.items():
        assert r["counts"].get(cls, 0) == n, (cls, r["counts"])
    # the contract every verifier relies on: Intent.layers counts the LAYER_TYPES class
    expected = dict(intent.expectations())
    if "layer_count" in expected:
        cls, n = expected["layer_count"]
        assert r["counts"].get(cls, 0) == n, (cls, r["counts"])
    if "output_units" in expected:
        assert r["shape"][-1] == expected["output_units"]
    if intent.has("amp"):
        assert r["policy"] == "mixed_bfloat16" and r["out_dtype"] == "float32", r


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the shared runner fixture is set up inside the first of these
@pytest.mark.parametrize("name", VERIFIED)
def test_verifier_passes_keras_programs(runs, name):
    if not runs["verify"]:
        pytest.skip("deepdive.codegen.verify is not there yet")
    result, _ = runs["verify"][name]
    checks = {c.name: (c.ok, c.detail) for c in result.checks}
    assert result.ok, (result.message, checks, result.stderr_tail[-2000:])
    assert {"parse", "imports", "smoke", "properties"} <= set(checks), checks


@pytest.mark.parametrize(
    "intent, message",
    [
        (I("one class", "image-classification", "cnn", num_classes=1), "num_classes must be at least 2"),
        (I("dropout", "image-classification", "mlp", dropout=1.5), "dropout must be in [0, 1)"),
        (I("flat cnn", "image-classification", "cnn", input_shape=(10,)), "is not an image"),
        (I("no layers", "forecasting", "lstm", layers=0), "layers must be at least 1"),
    ],
)
def test_bad_values_raise_one_line(intent, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as exc:
        kgen.generate(intent)
    assert "\n" not in str(exc.value)
