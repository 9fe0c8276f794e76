"""The builtin PyTorch generator: programs generated from prompts, run and checked by verify().

Every prompt's program is verified once (module fixture, two at a time: the machine has two
cores); each parametrized test then asserts on its result. No mocks: the programs really run
(``--smoke`` and the property checks) in sandboxed subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deepdive.codegen.builtin import GeneratedProgram, generate
from deepdive.codegen.parse import parse_intent
from deepdive.codegen.understand import read_request
from deepdive.codegen.verify import verify

# (prompt, expected file name, the feature markers the source must contain)
PROMPTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("a 3-layer CNN for MNIST with dropout, trained with mixed precision", "mnist_cnn.py", ("torch.autocast", "nn.Dropout")),
    ("ResNet-18 style classifier for CIFAR-10, 10 classes, with early stopping and checkpoints", "cifar10_resnet.py",
     ("class BasicBlock", "os.replace", "early stopping")),
    ("EfficientNet-style classifier for 64x64 RGB images in an image folder, 5 classes, 4 MBConv blocks",
     "images_efficientnet.py", ("class MBConv", "read_image_folder")),
    ("MobileNetV2 for 96x96 RGB photos in an image folder, 5 classes, 9 inverted residual blocks", "images_mobilenet.py",
     ("class InvertedResidual", "groups=hidden", "nn.ReLU6", "class MobileNetV2", "num_blocks: int = 9")),
    ("4-layer MLP on MNIST with hidden size 128", "mnist_mlp.py", ("HIDDEN = 128",)),
    ("a 2-layer CNN for 48x48 grayscale images, 7 classes, cosine learning rate schedule", "cnn.py", ("CosineAnnealingLR",)),
    ("2-layer GRU text classifier for news, 4 classes, vocab 5000, sequence length 32", "text_gru.py", ("nn.GRU", "VOCAB_SIZE = 5000")),
    ("a small transformer encoder with 2 layers for sentiment analysis of reviews, onecycle lr", "text_transformer.py",
     ("nn.TransformerEncoderLayer", "OneCycleLR")),
    ("regression MLP on a CSV with 12 numeric features, tuned with optuna", "csv_regression_mlp.py",
     ("optuna.create_study", "INPUT_SHAPE = (12,)")),
    ("an autoencoder for 784-dim inputs with a 32-dim bottleneck", "autoencoder.py", ("LATENT_DIM = 32",)),
    ("a VAE for MNIST with latent dim 8", "mnist_vae.py", ("LATENT_DIM = 8", "kl")),
    ("a GAN that generates 28x28 grayscale images to augment a small dataset", "gan.py", ("class Discriminator", "generate_samples")),
    ("prototypical network for 5-way 5-shot classification of 84x84 RGB images", "fewshot_protonet.py",
     ("N_WAY = 5", "K_SHOT = 5", "torch.cdist")),
    ("forecast the next 24 values of a univariate series with a transformer encoder", "series_forecast_transformer.py",
     ("HORIZON = 24",)),
    ("2-layer LSTM to forecast the next 12 steps from the past 48 values, with checkpoints", "series_forecast_lstm.py",
     ("SEQ_LEN = 48", "load_checkpoint")),
    ("sliding-window streaming inference over a sensor stream with a window of 16, GRU", "series_streaming_gru.py",
     ("collections.deque", "SEQ_LEN = 16")),
    ("online learning of a classifier from a stream of 8 features, 3 classes", "online_mlp.py", ("test-then-train",)),
    ("CNN for CIFAR-10 trained with DDP under torchrun and mixed precision", "cifar10_cnn.py",
     ("DistributedSampler", "DDP(", "init_process_group", "GradScaler")),
    ("MLP classifier on a CSV with 10 features and 3 classes, quantized to int8 after training", "csv_mlp.py",
     ("quantize_dynamic",)),
    ("3-layer CNN for MNIST, prune the weights after training and export to TorchScript", "mnist_cnn.py",
     ("l1_unstructured", "torch.jit.trace")),
    ("ResNet classifier for CIFAR-10 exported to ONNX", "cifar10_resnet.py", ("torch.onnx.export", "pip install onnx")),
    ("a 3-layer CNN for MNIST trained with deepdive's engine and mixed precision", "mnist_cnn.py",
     ("import deepdive.engine as dd", "run.prepare", "run.autocast", "run.suggest")),
    ("text classifier with a 2-layer LSTM, 5 classes, quantize to int8", "text_lstm.py", ("quantize_dynamic",)),
    ("time series forecasting with an MLP of 3 layers, next 6 values, early stopping and cosine schedule",
     "series_forecast_mlp.py", ("HORIZON = 6", "patience")),
    ("GAN for 32x32 RGB images with checkpoints and mixed precision", "gan.py", ("torch.autocast", "os.replace")),
    ("online learning with checkpoints from a stream of 4 features, 2 classes", "online_mlp.py", ("os.replace",)),
    ("LSTM sentiment classifier with optuna hyperparameter search and checkpoints", "text_lstm.py", ("optuna",)),
    ("EfficientNet for CIFAR-10 with 3 MBConv blocks, resume from checkpoint, lr schedule, through the engine",
     "cifar10_efficientnet.py", ("dd.setup", "load_checkpoint")),
    # Chinese
    ("用LSTM做情感分类，词表大小20000，两个类别", "text_lstm.py", ("VOCAB_SIZE = 20000", "NUM_CLASSES = 2")),
    ("用三层卷积网络识别CIFAR-10图片，训练二十轮，批大小六十四，混合精度", "cifar10_cnn.py",
     ("EPOCHS = 20", "BATCH_SIZE = 64", "torch.autocast")),
    ("用两层GRU预测未来十二步的时间序列", "series_forecast_gru.py", ("HORIZON = 12", "nn.GRU")),
    ("用变分自编码器学习MNIST，潜在维度十六", "mnist_vae.py", ("LATENT_DIM = 16",)),
    ("用生成对抗网络生成28x28灰度图片做数据增强", "gan.py", ("INPUT_SHAPE = (1, 28, 28)",)),
    ("基于Transformer的文本分类，三个类别，两层，早停", "text_transformer.py", ("NUM_CLASSES = 3", "patience")),
    ("小样本学习：原型网络，5-way 1-shot，84x84彩色图片", "fewshot_protonet.py", ("K_SHOT = 1",)),
]


@pytest.fixture(scope="module")
def verified() -> dict[str, tuple[GeneratedProgram, object, object]]:
    """Every prompt generated and verified once against what it states (its Spec), two at a time."""
    def one(prompt: str):
        reading = read_request(prompt)
        program = generate(reading.intent)
        return prompt, (program, verify(program.code, reading.intent, spec=reading.spec, timeout_s=240), reading)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, [p for p, _, _ in PROMPTS]))


def test_enough_prompts() -> None:
    assert len(PROMPTS) >= 30
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in p) for p, _, _ in PROMPTS) >= 6
    assert any(parse_intent(p).use_engine for p, _, _ in PROMPTS)


@pytest.mark.parametrize("prompt,filename,markers", PROMPTS, ids=[f"p{i:02d}" for i in range(len(PROMPTS))])
def test_generated_source(prompt: str, filename: str, markers: tuple[str, ...]) -> None:
    """Fast: the file name, the contract's names and the requested features are in the source."""
    program = generate(parse_intent(prompt))
    assert program.framework == "torch"
    assert program.filename == filename
    code = program.code
    for name in ("def build_model(", "def example_batch(", "def main(", "--smoke", 'if __name__ == "__main__":',
                 "sys.exit(main())", "torch.manual_seed"):
        assert name in code, name
    for marker in markers:
        assert marker in code, marker
    compile(code, filename, "exec")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first one waits for the fixture: every program verified, two at a time
@pytest.mark.parametrize("prompt", [p for p, _, _ in PROMPTS], ids=[f"p{i:02d}" for i in range(len(PROMPTS))])
def test_program_verifies(verified, prompt: str) -> None:
    program, result, reading = verified[prompt]
    assert result.ok, f"{result.message}\n{result.stderr_tail}"
    assert [c.name for c in result.checks] == ["parse", "imports", "contract", "smoke", "properties"]
    # Every property the prompt states was judged, none failed, and all were met (a stated layer count
    # among them) except the task of a GAN, few-shot, streaming or online-learning program, which one
    # forward pass cannot check: those programs are "not checked", never "verified".
    judged = [(p.name, p.status, p.detail) for p in result.properties]
    assert [p.name for p in result.properties] == [s.name for s in reading.spec.stated], judged
    unmet = [(name, status) for name, status, _ in judged if status != "met"]
    assert unmet in ([], [("task", "not_checked")]), judged
    assert result.verified == (unmet == [])


def test_generation_is_deterministic() -> None:
    # how fast it is, bench/bench_codegen.py measures (p50/p95); a test asserts no time
    for intent in (parse_intent(p) for p, _, _ in PROMPTS):
        assert generate(intent).code == generate(intent).code


def test_generator_does_not_import_torch() -> None:
    code = ("import sys\nfrom deepdive.codegen.parse import parse_intent\nfrom deepdive.codegen.builtin import generate\n"
            "generate(parse_intent('ResNet-18 for CIFAR-10 with mixed precision and checkpoints'))\n"
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tensorflow_intent_goes_to_the_keras_generator() -> None:
    intent = parse_intent("keras autoencoder for 784-dim inputs with a 32-dim bottleneck")
    assert intent.framework == "tensorflow"
    program = generate(intent)
    assert program.framework == "tensorflow" and "def build_model" in program.code


def _run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_checkpoint_program_resumes(tmp_path: Path) -> None:
    program = generate(parse_intent("3-layer MLP classifier for MNIST with checkpoints and early stopping"))
    (tmp_path / program.filename).write_text(program.code, encoding="utf-8")
    first = _run([program.filename, "--synthetic", "--epochs", "1", "--max-steps", "2"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "checkpoint.pt.tmp").exists()
    second = _run([program.filename, "--synthetic", "--epochs", "2", "--max-steps", "2", "--resume"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resumed from checkpoint.pt at epoch 1" in second.stdout
    assert "epoch 2/2" in second.stdout and "epoch 1/2" not in second.stdout
    # Missing real data: one line on stderr, exit 2, no traceback.
    missing = _run([program.filename, "--data", str(tmp_path / "nowhere")], tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and "never downloads" in missing.stderr


def _tiny_bert(path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = ["good", "bad", "great", "awful", "movie", "film", "the", "was", "very", "not"]
    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(str(path))
    config = BertConfig(vocab_size=15, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(str(path))


@pytest.mark.slow
def test_hf_finetune_against_a_tiny_local_bert(tmp_path: Path) -> None:
    model_dir = tmp_path / "tiny-bert"
    _tiny_bert(model_dir)
    intent = parse_intent(f"fine-tune the BERT model in {model_dir} for sentiment classification of reviews, 2 classes, 16 tokens")
    assert intent.architecture == "hf-finetune" and intent.model_path == str(model_dir)
    program = generate(intent)
    result = verify(program.code, intent, timeout_s=240)
    assert result.ok, f"{result.message}\n{result.stderr_tail}"
    # A real run on a labelled text file, tokenised by the model's own tokenizer.
    (tmp_path / "train.tsv").write_text("".join(f"{i % 2}\tthe film was {'good' if i % 2 else 'bad'}\n" for i in range(20)))
    (tmp_path / "prog.py").write_text(program.code, encoding="utf-8")
    run = _run(["prog.py", "--data", "train.tsv", "--epochs", "1", "--batch-size", "8"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "val accuracy" in run.stdout


@pytest.mark.slow
def test_hf_finetune_tiny_gpt2_and_missing_directory(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model_dir = tmp_path / "tiny-gpt2"
    config = GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(str(model_dir))  # a base language model: the head is new
    reading = read_request(f"fine-tune the GPT-2 model at {model_dir} to classify tweets into 3 classes")
    assert reading.gaps == [] and reading.spec.get("outputs") == 3
    program = generate(reading.intent)
    result = verify(program.code, reading.intent, spec=reading.spec, timeout_s=240)
    assert result.ok, f"{result.message}\n{result.stderr_tail}"
    assert [(p.name, p.status) for p in result.properties if p.name == "outputs"] == [("outputs", "met")]

    gone = parse_intent(f"fine-tune the BERT model in {tmp_path / 'missing-model'} for spam detection, 2 classes")
    result = verify(generate(gone).code, gone, timeout_s=240)
    assert not result.ok and result.checks[-1].name == "smoke"
    assert "not found" in result.message and "never downloads" in result.message


def _write_idx(path: Path, array) -> None:
    import gzip
    import struct

    import numpy as np

    data = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 8, data.ndim) + b"".join(struct.pack(">I", d) for d in data.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + data.tobytes())


def _real_data_cases(root: Path) -> list[tuple[str, list[str], str]]:
    """(prompt, arguments, expected stdout text) with tiny real files in the formats each reader expects."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    mnist = root / "mnist"
    mnist.mkdir()
    for split, n in (("train", 40), ("t10k", 10)):
        _write_idx(mnist / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(mnist / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (6, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 6))}
        (cifar / name).write_bytes(pickle.dumps(batch))
    cifar100 = root / "c100" / "cifar-100-python"  # CIFAR-100's own format: train and test, 100 fine labels
    cifar100.mkdir(parents=True)
    for name, n in (("train", 24), ("test", 8)):
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"fine_labels": list(rng.integers(0, 100, n)),
                 b"coarse_labels": list(rng.integers(0, 20, n))}
        (cifar100 / name).write_bytes(pickle.dumps(batch))
    rows = rng.normal(size=(60, 5))
    (root / "reg.csv").write_text("a,b,c,d,y\n" + "".join(",".join(f"{v:.3f}" for v in r) + "\n" for r in rows))
    (root / "cls.csv").write_text("".join(",".join(f"{v:.3f}" for v in r[:4]) + f",{int(r[4] > 0)}\n" for r in rows))
    words = ["good", "bad", "fine", "awful", "great", "boring"]
    (root / "train.tsv").write_text("".join(f"{i % 2}\t{words[i % 6]} movie {words[(i * 7) % 6]}\n" for i in range(50)))
    (root / "series.csv").write_text("value\n" + "".join(f"{np.sin(i / 5):.4f}\n" for i in range(200)))
    (root / "values.txt").write_text("".join(f"{np.sin(i / 5):.4f}\n" for i in range(40)))
    (root / "rows.csv").write_text("".join(",".join(f"{v:.3f}" for v in r[:4]) + f",{int(r[0] > 0)}\n" for r in rows))
    small = ["--epochs", "1", "--batch-size", "8"]
    return [
        ("a 2-layer CNN for MNIST", ["--data", str(mnist), *small], "val accuracy"),
        ("a 2-layer CNN for CIFAR-10", ["--data", str(root), *small], "val accuracy"),
        ("a 2-layer CNN for CIFAR-100", ["--data", str(root / "c100"), *small], "val accuracy"),
        ("a 2-layer CNN for the sklearn digits dataset", ["--epochs", "1"], "val accuracy"),
        ("regression MLP on a CSV with 4 numeric features", ["--data", str(root / "reg.csv"), "--target", "y", *small],
         "best validation loss"),
        ("MLP classifier on a CSV with 4 features and 2 classes", ["--data", str(root / "cls.csv"), *small], "val accuracy"),
        ("LSTM sentiment classifier, vocab 100, 2 classes", ["--data", str(root / "train.tsv"), *small], "val accuracy"),
        ("forecast the next 4 values from the past 16 with an LSTM", ["--data", str(root / "series.csv"), *small],
         "best validation loss"),
        ("sliding-window streaming inference with a window of 8", ["--data", str(root / "series.csv"), "--stream",
                                                                    str(root / "values.txt"), *small], "\n39,"),
        ("online learning from a stream of 4 features, 2 classes", ["--stream", str(root / "rows.csv"), "--report-every", "20"],
         "60 examples: accuracy"),
    ]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_programs_read_real_data_files(tmp_path: Path) -> None:
    cases = _real_data_cases(tmp_path)

    def one(case):
        prompt, args, expected = case
        program = generate(parse_intent(prompt))
        folder = tmp_path / program.filename.replace(".py", "") / str(abs(hash(prompt)))
        folder.mkdir(parents=True)
        (folder / program.filename).write_text(program.code, encoding="utf-8")
        return prompt, expected, _run([program.filename, *args], folder)

    with ThreadPoolExecutor(2) as pool:
        for prompt, expected, proc in pool.map(one, cases):
            assert proc.returncode == 0, f"{prompt}: {proc.stderr[-2000:]}"
            assert expected in proc.stdout, f"{prompt}: {proc.stdout[-1000:]}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ddp_program_runs_under_torchrun(tmp_path: Path) -> None:
    """Two gloo processes: DistributedSampler shards the data, DDP averages gradients, rank 0 saves."""
    program = generate(parse_intent("MLP classifier for MNIST trained with DDP under torchrun, with checkpoints"))
    (tmp_path / program.filename).write_text(program.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           program.filename, "--synthetic", "--epochs", "1", "--max-steps", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=500, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch 1/1") == 1  # printed by rank 0 only
    assert (tmp_path / "checkpoint.pt").exists()


@pytest.mark.slow
def test_image_folder_program(tmp_path: Path) -> None:
    """Reads root/<class>/*.png with Pillow; without Pillow it says so in one line."""
    program = generate(parse_intent("CNN classifier for 16x16 RGB images in an image folder, 2 classes, 2 layers"))
    (tmp_path / program.filename).write_text(program.code, encoding="utf-8")
    data = tmp_path / "images"
    try:
        from PIL import Image
    except ImportError:
        (data / "cats").mkdir(parents=True)
        proc = _run([program.filename, "--data", str(data)], tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.strip() == "error: reading an image folder needs Pillow: pip install pillow"
        return
    for label, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (data / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20 + i, 20), colour).save(data / label / f"{i}.png")
    proc = _run([program.filename, "--data", str(data), "--epochs", "1", "--batch-size", "4"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "val accuracy" in proc.stdout
