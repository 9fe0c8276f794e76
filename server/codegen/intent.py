"""What the user asked for, in a form every backend and the verifier share.

A prompt ("a 3-layer CNN for MNIST with dropout, trained with mixed precision", or
"用LSTM做情感分类，词表大小20000，两个类别") is parsed into one :class:`Intent`. The builtin backend
composes its program from it, model backends get it (and the builtin's program) as their reference,
and the verifier checks the generated program against :meth:`Intent.expectations` — the
properties a user relies on: the output has ``num_classes`` units, the requested number of layers of
the requested kind is there, autocast is present when mixed precision was asked for.
"""

from __future__ import annotations

from typing import Literal, Optional

import attrs

Framework = Literal["torch", "tensorflow"]

TASKS = (
    "image-classification",
    "text-classification",
    "regression",
    "autoencoder",
    "vae",
    "gan",
    "forecasting",
    "few-shot",
    "streaming-inference",
    "online-learning",
)

ARCHITECTURES = (
    "mlp",
    "cnn",
    "resnet",
    "efficientnet",
    "mobilenet",
    "lstm",
    "gru",
    "transformer",
    "hf-finetune",
    "autoencoder",
    "vae",
    "gan",
    "protonet",
)

# digits: scikit-learn's bundled 8x8 digits (1,797 images, offline), the project's small real task.
DATASETS = ("mnist", "cifar10", "digits", "imagefolder", "csv", "text", "series", "synthetic")

# Training features a prompt can switch on. ``amp``: mixed precision (autocast); ``ddp``: DDP under
# torchrun; ``checkpoint``: save and resume; ``early_stopping``; ``lr_schedule``; ``optuna``:
# hyperparameters through suggest()/an Optuna study; ``quantize`` and ``prune`` after training;
# ``torchscript`` and ``onnx`` export.
FEATURES = (
    "amp",
    "ddp",
    "checkpoint",
    "early_stopping",
    "lr_schedule",
    "optuna",
    "quantize",
    "prune",
    "torchscript",
    "onnx",
)

# The module class whose count ``Intent.layers`` constrains, per architecture and framework. For
# recurrent layers the count is the stack depth (``num_layers`` of nn.LSTM counts each layer).
LAYER_TYPES: dict[tuple[str, str], str] = {
    ("cnn", "torch"): "Conv2d",
    ("mlp", "torch"): "Linear",
    ("lstm", "torch"): "LSTM",
    ("gru", "torch"): "GRU",
    ("transformer", "torch"): "TransformerEncoderLayer",
    ("resnet", "torch"): "BasicBlock",
    ("efficientnet", "torch"): "MBConv",
    ("mobilenet", "torch"): "InvertedResidual",
    ("cnn", "tensorflow"): "Conv2D",
    ("mlp", "tensorflow"): "Dense",
    ("lstm", "tensorflow"): "LSTM",
    ("gru", "tensorflow"): "GRU",
}


@attrs.define
class Intent:
    """A parsed prompt. ``None`` means "not said"; the backend picks a sensible default."""

    prompt: str
    task: str
    architecture: str
    framework: Framework = "torch"
    language: Literal["en", "zh"] = "en"
    dataset: str = "synthetic"
    # Shape of one input example without the batch dimension: (C, H, W) for images, (features,)
    # for tabular/flat inputs, (seq_len,) of token ids for text, (seq_len, channels) for series.
    input_shape: tuple[int, ...] = ()
    num_classes: Optional[int] = None
    layers: Optional[int] = None
    hidden_size: Optional[int] = None
    dropout: Optional[float] = None
    vocab_size: Optional[int] = None
    seq_len: Optional[int] = None
    embed_dim: Optional[int] = None
    latent_dim: Optional[int] = None
    horizon: Optional[int] = None  # forecasting: how many future values
    n_way: Optional[int] = None  # few-shot
    k_shot: Optional[int] = None
    window: Optional[int] = None  # streaming inference: sliding-window length
    model_path: Optional[str] = None  # a local Hugging Face model directory to fine-tune
    csv_path: Optional[str] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    features: frozenset[str] = frozenset()
    # True when the user asked for deepdive's engine ("with deepdive", "through the engine") or a
    # feature that only the engine gives; generated code then imports deepdive.engine.
    use_engine: bool = False
    # Classification with any number of labels per example (one sigmoid per label, BCEWithLogitsLoss).
    multi_label: bool = False
    # ResNet block kind: "basic" (two 3x3 convolutions, ResNet-18/34) or "bottleneck" (1x1-3x3-1x1,
    # ResNet-50/101/152); None: basic.
    block: Optional[str] = None
    # The CSV column to predict ("predict price"); None: the last column.
    target: Optional[str] = None
    # Layer type names the program must not contain ("Dropout", "BatchNorm2d"): what the prompt excluded.
    exclude_layers: frozenset[str] = frozenset()
    # Layer type names the prompt asked for beyond the architecture's own ("BatchNorm2d": "with batch norm").
    include_layers: frozenset[str] = frozenset()
    seed: Optional[int] = None  # the random seed ("seed 42"); None: 0
    gpus: Optional[int] = None  # distributed: the GPUs (processes) on the machine ("on 4 GPUs"); None: 2 in the run line

    def __attrs_post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; one of {', '.join(TASKS)}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; one of {', '.join(ARCHITECTURES)}")
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {', '.join(FEATURES)}")
        if self.block not in (None, "basic", "bottleneck"):
            raise ValueError(f"unknown block {self.block!r}; one of basic, bottleneck")

    def has(self, feature: str) -> bool:
        return feature in self.features

    def layer_type(self) -> Optional[str]:
        """The module class name that ``layers`` counts, or None when a count is not checkable."""
        if self.architecture == "resnet" and self.framework == "torch" and self.block == "bottleneck":
            return "Bottleneck"
        return LAYER_TYPES.get((self.architecture, self.framework))

    def expectations(self) -> list[tuple[str, object]]:
        """The properties the verifier checks, as ``(name, expected)`` pairs.

        Names: ``output_units`` (size of the last output dimension for classifiers), ``layer_count``
        (``(type name, count)``), ``autocast`` (True: the program enters autocast / a mixed
        precision policy), ``framework``.
        """
        out: list[tuple[str, object]] = [("framework", self.framework)]
        if self.num_classes is not None and self.task in ("image-classification", "text-classification"):
            out.append(("output_units", self.num_classes))
        if self.layers is not None and self.layer_type() is not None:
            out.append(("layer_count", (self.layer_type(), self.layers)))
        if self.has("amp"):
            out.append(("autocast", True))
        return out

    def to_json(self) -> dict:
        data = attrs.asdict(self)
        data["features"] = sorted(self.features)
        data["input_shape"] = list(self.input_shape)
        data["exclude_layers"] = sorted(self.exclude_layers)
        data["include_layers"] = sorted(self.include_layers)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Intent":
        data = dict(data)
        data["features"] = frozenset(data.get("features", ()))
        data["input_shape"] = tuple(data.get("input_shape", ()))
        data["exclude_layers"] = frozenset(data.get("exclude_layers", ()))
        data["include_layers"] = frozenset(data.get("include_layers", ()))
        return cls(**data)
