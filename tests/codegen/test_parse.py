"""The rule-based prompt parser: English and Chinese prompts -> Intent fields."""

from __future__ import annotations


import pytest

from deepdive.codegen.intent import Intent
from deepdive.codegen.parse import parse_intent

T, IMG, TXT = "torch", "image-classification", "text-classification"

# prompt -> the fields it must produce (others are not asserted)
CASES: list[tuple[str, dict]] = [
    ("a 3-layer CNN for MNIST with dropout, trained with mixed precision",
     dict(task=IMG, architecture="cnn", framework=T, dataset="mnist", input_shape=(1, 28, 28), num_classes=10, layers=3,
          dropout=0.3, features={"amp"}, use_engine=False)),
    ("ResNet-18 style classifier for CIFAR-10, 10 classes, with early stopping and checkpoints",
     dict(task=IMG, architecture="resnet", dataset="cifar10", input_shape=(3, 32, 32), num_classes=10, layers=8,
          features={"checkpoint", "early_stopping"})),
    ("用LSTM做情感分类，词表大小20000，两个类别",
     dict(task=TXT, architecture="lstm", language="zh", dataset="text", num_classes=2, vocab_size=20000)),
    ("keras autoencoder for 784-dim inputs with a 32-dim bottleneck",
     dict(task="autoencoder", architecture="autoencoder", framework="tensorflow", input_shape=(784,), latent_dim=32)),
    ("a GAN that generates 28x28 grayscale images to augment a small dataset",
     dict(task="gan", architecture="gan", input_shape=(1, 28, 28))),
    ("prototypical network for 5-way 5-shot classification of 84x84 RGB images",
     dict(task="few-shot", architecture="protonet", input_shape=(3, 84, 84), n_way=5, k_shot=5)),
    ("forecast the next 24 values of a univariate series with a transformer encoder",
     dict(task="forecasting", architecture="transformer", dataset="series", horizon=24)),
    ("regression MLP on a CSV with 12 numeric features, tuned with optuna",
     dict(task="regression", architecture="mlp", dataset="csv", input_shape=(12,), features={"optuna"})),
    ("fine-tune the BERT model in /data/models/bert-tiny for spam detection, 2 classes",
     dict(task=TXT, architecture="hf-finetune", model_path="/data/models/bert-tiny", num_classes=2, features=set())),
    ("用三层卷积网络识别CIFAR-10图片，训练二十轮，批大小六十四，混合精度",
     dict(task=IMG, architecture="cnn", language="zh", dataset="cifar10", layers=3, epochs=20, batch_size=64, features={"amp"})),
    ("2-layer GRU text classifier for news, 4 classes, vocab 5000, sequence length 32",
     dict(task=TXT, architecture="gru", num_classes=4, layers=2, vocab_size=5000, seq_len=32, input_shape=(32,))),
    ("a small transformer encoder with 2 layers for sentiment analysis of reviews",
     dict(task=TXT, architecture="transformer", layers=2)),
    ("tensorflow CNN for CIFAR-10 with 4 conv layers",
     dict(task=IMG, architecture="cnn", framework="tensorflow", layers=4, num_classes=10)),
    ("tf.keras LSTM sentiment classifier, vocabulary size 10k, max length 200",
     dict(task=TXT, architecture="lstm", framework="tensorflow", vocab_size=10000, seq_len=200)),
    ("MLP with 2 hidden layers of 64 units for a CSV at data/houses.csv, regression",
     dict(task="regression", architecture="mlp", layers=3, hidden_size=64, csv_path="data/houses.csv", dataset="csv")),
    ("a VAE for MNIST with latent dim 8",
     dict(task="vae", architecture="vae", dataset="mnist", input_shape=(1, 28, 28), latent_dim=8, num_classes=None)),
    ("sliding-window streaming inference over a sensor stream with a window of 16, GRU",
     dict(task="streaming-inference", architecture="gru", window=16, input_shape=(16, 1))),
    ("online learning of a classifier from a stream of 8 features, 3 classes",
     dict(task="online-learning", architecture="mlp", input_shape=(8,), num_classes=3)),
    ("CNN for CIFAR-10 trained with DDP under torchrun and mixed precision, batch size 128, lr 0.01, 30 epochs",
     dict(features={"amp", "ddp"}, batch_size=128, lr=0.01, epochs=30, use_engine=False)),
    ("ResNet-34 on CIFAR-100 with cosine schedule",
     dict(architecture="resnet", layers=16, num_classes=100, features={"lr_schedule"})),
    ("EfficientNet classifier for 224x224 RGB images in an image folder, 120 classes",
     dict(architecture="efficientnet", dataset="imagefolder", input_shape=(3, 224, 224), num_classes=120)),
    ("quantize to int8 and prune a 3-layer MLP on MNIST, export ONNX and TorchScript",
     dict(architecture="mlp", layers=3, features={"quantize", "prune", "onnx", "torchscript"})),
    ("a 3-layer CNN for MNIST trained with deepdive's engine", dict(use_engine=True, architecture="cnn")),
    ("train a resnet with gradient compression on 4 nodes for CIFAR-10",
     dict(use_engine=True, features={"ddp"}, architecture="resnet")),
    ("用两层GRU预测未来十二步的时间序列",
     dict(task="forecasting", architecture="gru", layers=2, horizon=12, language="zh")),
    ("用变分自编码器学习MNIST，潜在维度十六", dict(task="vae", latent_dim=16, dataset="mnist")),
    ("用生成对抗网络生成28x28灰度图片做数据增强", dict(task="gan", input_shape=(1, 28, 28))),
    ("基于Transformer的文本分类，三个类别，两层，早停",
     dict(task=TXT, architecture="transformer", num_classes=3, layers=2, features={"early_stopping"})),
    ("小样本学习：原型网络，5-way 1-shot，84x84彩色图片",
     dict(task="few-shot", n_way=5, k_shot=1, input_shape=(3, 84, 84))),
    ("用Keras搭建一个全连接网络做回归，输入13个特征",
     dict(task="regression", architecture="mlp", framework="tensorflow", input_shape=(13,))),
    ("多卡分布式训练ResNet-18，CIFAR-10，断点续训",
     dict(architecture="resnet", layers=8, features={"ddp", "checkpoint"})),
    ("用optuna调参的LSTM文本分类，词表大小三万，序列长度一百二十八",
     dict(task=TXT, vocab_size=30000, seq_len=128, features={"optuna"})),
    ("用BERT微调做新闻分类，十个类别，模型在 /models/chinese-bert",
     dict(task=TXT, architecture="hf-finetune", num_classes=10, model_path="/models/chinese-bert")),
    ("a denoising autoencoder for 64x64 grayscale images with a 16-dim latent code",
     dict(task="autoencoder", input_shape=(1, 64, 64), latent_dim=16)),
    ("LSTM that predicts the next value of a multivariate time series with 5 variables from the last 30 steps",
     dict(task="forecasting", architecture="lstm", input_shape=(30, 5), seq_len=30, horizon=1)),
    ("classify tweets into positive/negative with a GRU, dropout 0.2, embedding dim 100",
     dict(task=TXT, architecture="gru", num_classes=2, dropout=0.2, embed_dim=100)),
    ("few-shot learning, 10-way 5-shot, 28x28 grayscale characters",
     dict(task="few-shot", n_way=10, k_shot=5, input_shape=(1, 28, 28))),
    ("image classifier for 32x32 RGB images, 10 classes, onecycle learning rate, early stopping",
     dict(task=IMG, architecture="cnn", input_shape=(3, 32, 32), features={"lr_schedule", "early_stopping"})),
    ("dense network on tabular csv with 20 features, 4 classes",
     dict(task=IMG, architecture="mlp", dataset="csv", input_shape=(20,), num_classes=4)),
    ("incremental learning from streaming rows with 6 features", dict(task="online-learning", input_shape=(6,))),
    ("a 4-layer MLP for 100-dim feature vectors, 5 classes, hidden 512, dropout 30%",
     dict(architecture="mlp", input_shape=(100,), num_classes=5, layers=4, hidden_size=512, dropout=0.3)),
    ("LSTM forecaster with hidden size 64 and window of 96, horizon 24, quantized to int8",
     dict(task="forecasting", hidden_size=64, seq_len=96, horizon=24, features={"quantize"})),
    ("GAN with a 100-dim noise vector generating 64x64 RGB faces",
     dict(task="gan", latent_dim=100, input_shape=(3, 64, 64))),
    ("a 2-layer CNN for the sklearn digits dataset, with mixed precision",
     dict(task=IMG, architecture="cnn", dataset="digits", input_shape=(1, 8, 8), num_classes=10, layers=2, features={"amp"})),
    ("ＣＮＮ分类ＭＮＩＳＴ，３层，批大小３２", dict(architecture="cnn", dataset="mnist", layers=3, batch_size=32)),
    ("fine-tune ./checkpoints/distilbert on reviews, 5 classes, learning rate 3e-5",
     dict(architecture="hf-finetune", model_path="./checkpoints/distilbert", lr=3e-5, num_classes=5)),
]


@pytest.mark.parametrize("prompt,expected", CASES, ids=[f"c{i:02d}" for i in range(len(CASES))])
def test_prompt(prompt: str, expected: dict) -> None:
    intent = parse_intent(prompt)
    assert isinstance(intent, Intent) and intent.prompt == prompt
    for field, value in expected.items():
        got = getattr(intent, field)
        if field == "features":
            got = set(got)
        assert got == value, f"{field}: {got!r} != {value!r}"
    zh = any("\u4e00" <= ch <= "\u9fff" for ch in prompt)
    assert intent.language == ("zh" if zh else "en")


def test_enough_cases() -> None:
    assert len(CASES) >= 40
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in p) for p, _ in CASES) >= 8
    assert {parse_intent(p).task for p, _ in CASES} == {
        "image-classification", "text-classification", "regression", "autoencoder", "vae", "gan", "forecasting",
        "few-shot", "streaming-inference", "online-learning"}
    assert {parse_intent(p).framework for p, _ in CASES} == {"torch", "tensorflow"}


@pytest.mark.parametrize("framework,expected", [("keras", "tensorflow"), ("tf", "tensorflow"), ("tensorflow", "tensorflow"),
                                                 ("pytorch", "torch"), ("torch", "torch")])
def test_framework_argument_overrides(framework: str, expected: str) -> None:
    assert parse_intent("keras CNN for MNIST", framework=framework).framework == expected
    assert parse_intent("pytorch CNN for MNIST", framework=framework).framework == expected


def test_unknown_framework() -> None:
    with pytest.raises(ValueError, match="unknown framework"):
        parse_intent("CNN for MNIST", framework="jax")


@pytest.mark.parametrize("prompt", ["hello world", "make it faster please", "", "   ", "今天天气很好"])
def test_unknown_prompt(prompt: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_intent(prompt)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not tell what to build from")
    assert "CNN classifier for MNIST" in message


def test_fine_tune_is_not_hyperparameter_tuning() -> None:
    assert "optuna" not in parse_intent("fine-tune a local BERT at /m/bert for sentiment").features
    assert "optuna" in parse_intent("LSTM sentiment classifier, tuned").features


def test_deterministic() -> None:
    # how fast it is, bench/bench_codegen.py measures; a test asserts no time
    prompts = [p for p, _ in CASES]
    assert [parse_intent(p) for p in prompts] == [parse_intent(p) for p in prompts]


def test_intent_round_trips_through_json() -> None:
    intent = parse_intent(CASES[0][0])
    assert Intent.from_json(intent.to_json()) == intent


# The misreadings of issue #19: each prompt now gives what it says, or a one-line refusal naming what
# the builtin cannot build (never a nearby template in silence).
FIXED: list[tuple[str, dict]] = [
    ("a CNN classifier for MNIST, do not use mixed precision", dict(architecture="cnn", features=set())),
    ("don't use a transformer, use a GRU", dict(task=TXT, architecture="gru")),
    ("resnet50 on imagenet", dict(task=IMG, architecture="resnet", layers=16, block="bottleneck", num_classes=1000,
                                  input_shape=(3, 224, 224), dataset="imagefolder")),
    ("LSTM that reads 48 past values and predicts the next 12",
     dict(task="forecasting", architecture="lstm", seq_len=48, horizon=12, input_shape=(48, 1))),
    ("a multi-label text classifier with 20 labels", dict(task=TXT, multi_label=True, num_classes=20)),
    ("train on data.csv to predict price", dict(task="regression", dataset="csv", csv_path="data.csv", target="price")),
    ("用卷积网络识别MNIST，不要用dropout", dict(architecture="cnn", dropout=0.0, exclude_layers=frozenset({"Dropout"}))),
]


@pytest.mark.parametrize("prompt,expected", FIXED, ids=[f"f{i}" for i in range(len(FIXED))])
def test_issue_misreadings_fixed(prompt: str, expected: dict) -> None:
    intent = parse_intent(prompt)
    for field, value in expected.items():
        got = set(intent.features) if field == "features" else getattr(intent, field)
        assert got == value, f"{field}: {got!r} != {value!r}"


@pytest.mark.parametrize("prompt,named", [
    ("a U-Net for semantic segmentation of medical images, without dropout", "segmentation"),
    ("a character-level language model", "language model"),
    ("a 1-D CNN over signals", "signal"),
    ("object detection of cars in street photos", "detection"),
    ("a VGG classifier for CIFAR-10", "VGG"),
])
def test_what_the_builtin_cannot_build_is_named(prompt: str, named: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_intent(prompt)
    message = str(info.value)
    assert "\n" not in message and named in message
    assert not message.startswith("could not tell what to build")


def test_intent_with_new_fields_round_trips_through_json() -> None:
    intent = parse_intent("multi-label text classifier, 20 labels, without dropout")
    assert intent.multi_label and intent.exclude_layers == frozenset({"Dropout"})
    assert Intent.from_json(intent.to_json()) == intent
    intent = parse_intent("an MLP with 2 hidden layers on a CSV with 30 features, 2 classes, batch norm after each hidden layer")
    assert intent.include_layers == frozenset({"BatchNorm2d"}) and Intent.from_json(intent.to_json()) == intent
    intent = parse_intent("ResNet-18 for CIFAR-100 with DDP on 4 GPUs")
    assert intent.gpus == 4 and Intent.from_json(intent.to_json()) == intent
