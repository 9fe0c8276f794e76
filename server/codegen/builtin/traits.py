"""What the builtin's program for an Intent is: its task, family, shapes, layers, precision, distribution, loss.

The reading (:mod:`deepdive.codegen.understand`) compares this account with what the prompt states;
every stated property the program would not have becomes a gap, and a request with gaps is not
answered with this program. The account must therefore be the program's truth: tests build the
generated models and compare their modules, output size and layer count with :func:`describe`.
Pure string-level knowledge of the templates (no torch or tensorflow import).

Layer names are the framework's own class names (``Conv2d``/``Conv2D``...), limited to
:data:`CHECKED_LAYERS` (PyTorch) and :data:`CHECKED_KERAS_LAYERS`.
"""

from __future__ import annotations

import math
from typing import Optional

import attrs

from deepdive.codegen.intent import LAYER_TYPES, Intent

__all__ = ["Built", "describe", "CHECKED_LAYERS", "CHECKED_KERAS_LAYERS"]

CHECKED_LAYERS = frozenset({
    "Dropout", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Conv1d", "Conv2d", "Linear", "LSTM", "GRU", "Embedding",
    "TransformerEncoderLayer", "MultiheadAttention", "BasicBlock", "Bottleneck", "MBConv", "InvertedResidual",
})
_IMAGE_DATASETS = ("mnist", "cifar10", "digits", "imagefolder")
CHECKED_KERAS_LAYERS = frozenset({
    "Dropout", "BatchNormalization", "LayerNormalization", "Conv1D", "Conv2D", "Conv2DTranspose", "Dense", "LSTM", "GRU",
    "Embedding", "MultiHeadAttention",
})


@attrs.define(frozen=True)
class Built:
    """The builtin program's properties, in the Spec's vocabulary.

    Attributes:
        framework: "torch" or "tensorflow".
        task: a :data:`~deepdive.codegen.spec.TASK_NAMES` name.
        families: the family names the model answers to (a ResNet is also a CNN, an LSTM an RNN).
        input_shape: one example without the batch dimension; images as (C, H, W) in both frameworks.
        outputs: output units per example, None where that is not one number (few-shot episodes).
        layer_count: (layer type, count) of the counted layer type (``Intent.layer_type``), or None.
        layers: the checked layer types the model contains.
        precision: "mixed" or "fp32".
        distributed: True when the program trains under torchrun / a distribution strategy.
        loss: the loss class name, or None for a composite loss (the VAE's ELBO).
    """

    framework: str
    task: str
    families: frozenset[str]
    input_shape: tuple[int, ...]
    outputs: Optional[int]
    layer_count: Optional[tuple[str, int]]
    layers: frozenset[str]
    precision: str
    distributed: bool
    loss: Optional[str]


def describe(intent: Intent) -> Built:
    """The properties of the program :func:`deepdive.codegen.builtin.generate` writes for ``intent``.

    Raises:
        ValueError: the builtin cannot build ``intent`` (a Keras task or architecture it does not cover).
    """
    if intent.framework == "tensorflow":
        return _describe_keras(intent)
    return _describe_torch(intent)


# ------------------------------------------------------------------------------------------------
# PyTorch
# ------------------------------------------------------------------------------------------------


def _describe_torch(intent: Intent) -> Built:
    from deepdive.codegen.builtin.pytorch import Plan

    p = Plan(intent)
    kind, arch = p.kind, p.arch
    dropout = not p.no_dropout
    shape = tuple(p.input_shape)
    if kind in ("classify", "online", "regress") and p.task != "text-classification":
        if arch == "mlp" or kind in ("online", "regress"):
            families, layers = {"mlp"}, {"Linear"} | ({"Dropout"} if dropout and p.layers > 1 else set())
            layers |= {"BatchNorm1d"} if p.batchnorm and p.layers > 1 else set()
            count = ("Linear", p.layers)
        else:
            families = {arch, "cnn"}
            layers = {"Conv2d", "Linear"} | ({"Dropout"} if dropout else set())
            layers |= set() if p.no_batchnorm else {"BatchNorm2d"}
            layers |= {"resnet": {"Bottleneck" if p.block == "bottleneck" else "BasicBlock"}, "efficientnet": {"MBConv"},
                       "mobilenet": {"InvertedResidual"}}.get(arch, set())
            count = (intent_layer_type(arch, p.block), p.layers)
        outputs = 1 if kind == "regress" else p.num_classes
    elif p.task == "text-classification":
        if p.hf:
            families, layers, count = {"hf-finetune", "transformer"}, {"Embedding", "LayerNorm", "Linear", "Dropout"}, None
        elif arch == "transformer":
            families = {"transformer"}
            layers = {"Embedding", "TransformerEncoderLayer", "MultiheadAttention", "LayerNorm", "Linear"}
            layers |= {"Dropout"} if dropout else set()
            count = ("TransformerEncoderLayer", p.layers)
        else:
            rnn = "GRU" if arch == "gru" else "LSTM"
            families, layers = {rnn.lower(), "rnn"}, {"Embedding", rnn, "Linear"} | ({"Dropout"} if dropout else set())
            count = (rnn, p.layers)
        outputs = p.num_classes
    elif kind == "series":
        if arch == "transformer":
            families = {"transformer"}
            layers = {"Linear", "TransformerEncoderLayer", "MultiheadAttention", "LayerNorm"} | ({"Dropout"} if dropout else set())
            count = ("TransformerEncoderLayer", p.layers)
        elif arch == "mlp":
            families, layers = {"mlp"}, {"Linear"} | ({"Dropout"} if dropout and p.layers > 1 else set())
            count = ("Linear", p.layers)
        else:
            rnn = "GRU" if arch == "gru" else "LSTM"
            families, layers, count = {rnn.lower(), "rnn"}, {rnn, "Linear"}, (rnn, p.layers)
        outputs = p.horizon * p.channels
    else:
        families, layers, outputs = {
            "recon": ({"autoencoder", "mlp"}, {"Linear"} | ({"Dropout"} if dropout else set()), math.prod(shape)),
            "vae": ({"vae", "mlp"}, {"Linear"}, math.prod(shape)),
            "gan": ({"gan", "mlp"}, {"Linear", "BatchNorm1d"} | ({"Dropout"} if dropout else set()), math.prod(shape)),
            "fewshot": ({"protonet", "cnn"}, {"Conv2d", "BatchNorm2d"}, None),
        }[kind]
        count = None
    loss = {"classify": "CrossEntropyLoss", "online": "CrossEntropyLoss", "hf": "CrossEntropyLoss",
            "fewshot": "CrossEntropyLoss", "regress": "MSELoss", "series": "MSELoss", "recon": "MSELoss",
            "vae": None, "gan": "BCEWithLogitsLoss"}[kind]
    if p.multi_label:
        loss = "BCEWithLogitsLoss"
    return Built(framework="torch", task=_torch_task(p), families=frozenset(families), input_shape=shape,
                 outputs=outputs, layer_count=count, layers=frozenset(layers), precision="mixed" if p.has("amp") else "fp32",
                 distributed=p.has("ddp"), loss=loss)


def intent_layer_type(arch: str, block: str) -> str:
    if arch == "resnet":
        return "Bottleneck" if block == "bottleneck" else "BasicBlock"
    return LAYER_TYPES.get((arch, "torch"), "Conv2d")


def _torch_task(p) -> str:
    if p.multi_label:
        return "multi-label-classification"
    if p.task == "image-classification" and len(p.input_shape) != 3 and p.dataset not in _IMAGE_DATASETS:
        return "tabular-classification"
    return p.task


# ------------------------------------------------------------------------------------------------
# Keras
# ------------------------------------------------------------------------------------------------


def _describe_keras(intent: Intent) -> Built:
    from deepdive.codegen.builtin.keras import Choices, validate

    validate(intent)
    s = Choices(intent)
    task, arch = s.task, s.arch
    dropout = not s.no_dropout
    dense_hidden = list(getattr(s, "dense_hidden", []))
    shape = tuple(s.shape)
    if task in ("image-classification", "autoencoder") and len(shape) == 3:
        shape = (shape[2], shape[0], shape[1])  # Keras is channels-last; the Spec's images are (C, H, W)
    count: Optional[tuple[str, int]] = None
    outputs: Optional[int]
    if task == "image-classification":
        outputs = s.classes
        if arch == "cnn":
            families = {"cnn"}
            layers = {"Conv2D", "Dense"} | ({"Dropout"} if dropout else set())
            count = ("Conv2D", len(s.filters))
        elif arch == "resnet":
            families, layers = {"resnet", "cnn"}, {"Conv2D", "BatchNormalization", "Dense"} | ({"Dropout"} if dropout else set())
            count = ("BasicBlock", len(s.blocks))
        else:
            families, layers = {"mlp"}, {"Dense"} | ({"Dropout"} if dropout and dense_hidden else set())
            count = ("Dense", len(dense_hidden) + 1)
    elif task == "text-classification":
        outputs = s.classes
        if arch == "transformer":
            families, layers = {"transformer"}, {"Embedding", "MultiHeadAttention", "LayerNormalization", "Dense"}
            layers |= {"Dropout"} if dropout else set()
            count = ("MultiHeadAttention", s.blocks)
        elif arch in ("lstm", "gru"):
            rnn = arch.upper()
            families, layers = {arch, "rnn"}, {"Embedding", rnn, "Dense"} | ({"Dropout"} if dropout else set())
            count = (rnn, s.rnn_layers)
        else:
            families, layers = {"mlp"}, {"Embedding", "Dense"} | ({"Dropout"} if dropout and dense_hidden else set())
            count = ("Dense", len(dense_hidden) + 1)
    elif task in ("regression", "forecasting") and not hasattr(s, "rnn_layers"):
        outputs = 1 if task == "regression" else s.horizon
        families, layers = {"mlp"}, {"Dense"} | ({"Dropout"} if dropout and dense_hidden else set())
        count = ("Dense", len(dense_hidden) + 1)
    elif task == "forecasting":
        outputs, rnn = s.horizon, arch.upper()
        families, layers = {arch, "rnn"}, {rnn, "Dense"} | ({"Dropout"} if dropout else set())
        count = (rnn, s.rnn_layers)
    else:  # autoencoder
        outputs = math.prod(shape)
        if s.conv:
            families = {"autoencoder", "cnn"}
            layers = {"Conv2D", "Conv2DTranspose"} | ({"Dense"} if s.latent else set()) | ({"Dropout"} if dropout else set())
        else:
            families, layers = {"autoencoder", "mlp"}, {"Dense"} | ({"Dropout"} if dropout else set())
    if task == "image-classification" and len(shape) == 1:
        task = "tabular-classification" if intent.dataset not in _IMAGE_DATASETS else task
    return Built(framework="tensorflow", task=task, families=frozenset(families), input_shape=shape, outputs=outputs,
                 layer_count=count, layers=frozenset(layers), precision="mixed" if s.amp else "fp32", distributed=s.ddp,
                 loss="CrossEntropyLoss" if s.kind == "classify" else "MSELoss")
