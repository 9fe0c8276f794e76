"""The parts of a PyTorch program chosen by the plan: the model, ``example_batch()``, ``compute_loss()``, the data loader.

Each is a block of :mod:`deepdive.codegen.builtin.blocks`, its placeholders filled, without the layer
types the prompt excluded.
"""

from __future__ import annotations

import math
import re

from deepdive.codegen.builtin.blocks.batches import (EXAMPLE_FEWSHOT, EXAMPLE_GAN, EXAMPLE_HF, EXAMPLE_IMAGE_CLS,
                                                     EXAMPLE_RECON, EXAMPLE_REGRESSION, EXAMPLE_SERIES, EXAMPLE_TEXT,
                                                     EXAMPLE_TEXT_MULTILABEL, LOSS_AUTOENCODER, LOSS_CLASSIFY,
                                                     LOSS_FEWSHOT, LOSS_HF, LOSS_MULTILABEL, LOSS_REGRESSION,
                                                     LOSS_SERIES, LOSS_VAE)
from deepdive.codegen.builtin.blocks.common import SYNTHETIC_DEFAULT
from deepdive.codegen.builtin.blocks.data import (CIFAR10, CIFAR100, CSV_CLASSIFY, CSV_READER, CSV_RECON, CSV_REGRESSION, DIGITS,
                                                  FEWSHOT_DATA, IMAGES_CLASSIFY, IMAGES_GAN, IMAGES_RECON, IMAGE_FOLDER,
                                                  LABEL_SETS, MNIST, NO_DATA, SERIES_DATA, TEXT_DATA, TEXT_HF,
                                                  TEXT_VOCAB)
from deepdive.codegen.builtin.blocks.models import (AUTOENCODER, BASIC_BLOCK, BOTTLENECK, CNN, EFFICIENTNET, GAN,
                                                    HF_MODEL, MLP, MOBILENET, PROTONET, RESNET, SERIES_MLP, SERIES_RNN,
                                                    SERIES_TRANSFORMER, TEXT_RNN, TEXT_TRANSFORMER, VAE)
from deepdive.codegen.builtin.pytorch.plan import Plan
from deepdive.codegen.builtin.pytorch.text import fill


def model(p: Plan) -> str:
    """The model's classes and ``build_model()``, without the layer types the prompt excluded."""
    return _without(p, _model_source(p))


def _without(p: Plan, code: str) -> str:
    """The model source without the layer types the prompt excluded (what traits.describe() promises)."""
    if p.no_dropout:
        code = code.replace(", nn.Dropout(DROPOUT)", "").replace("nn.Dropout(DROPOUT)", "nn.Identity()")
        code = code.replace("global average pooling, dropout and", "global average pooling and")
        # nn.TransformerEncoderLayer makes its own Dropout modules: replace them after it is built.
        code = re.sub(r"\n( +)(self\.encoder = nn\.TransformerEncoder\([^\n]*\))\n",
                      "\n\\1\\2\n\\1for block in self.encoder.layers:  # the prompt excluded dropout\n"
                      "\\1    block.dropout, block.dropout1, block.dropout2 = nn.Identity(), nn.Identity(), nn.Identity()\n",
                      code)
    if p.no_batchnorm and p.arch == "cnn":
        code = code.replace("nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), ",
                            "nn.Conv2d(c_in, c_out, 3, padding=1), ")
        code = code.replace("3x3 convolution, batch norm, ReLU", "3x3 convolution, ReLU")
    if p.no_batchnorm and p.arch in ("resnet", "efficientnet", "mobilenet"):
        # Each BatchNorm2d becomes an identity (the blocks keep their shape), and the convolutions, which
        # left their bias to the batch norm after them, get it back.
        code = re.sub(r"nn\.BatchNorm2d\([^()]*\)", "nn.Identity()", code).replace(", bias=False)", ")")
        code = code.replace("class ", "# Without batch normalization (the prompt excluded it): nn.Identity() where the "
                            "network normalizes.\nclass ", 1)
    return code


def _model_source(p: Plan) -> str:
    if p.kind in ("classify", "online", "regress") and p.task != "text-classification":
        n_in = math.prod(p.input_shape)
        if p.arch == "mlp" or p.kind in ("online", "regress"):
            out = "NUM_CLASSES" if p.kind in ("classify", "online") else "1"
            code = fill(MLP, LAYERS=p.layers, IN_FEATURES="math.prod(INPUT_SHAPE)", OUT_FEATURES=out)
            if p.batchnorm:  # batch norm after each hidden layer, before its activation
                code = code.replace("nn.Linear(width, HIDDEN), nn.ReLU()", "nn.Linear(width, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU()")
                code = code.replace(" nn.Linear layers (", " nn.Linear layers, batch norm after each hidden one (")
            return code
        if p.arch == "cnn":
            return fill(CNN, LAYERS=p.layers)
        if p.arch == "resnet":
            block = "Bottleneck" if p.block == "bottleneck" else "BasicBlock"
            return (BOTTLENECK if block == "Bottleneck" else BASIC_BLOCK) + fill(
                RESNET, STAGES=_stages(p.layers, p.block), BLOCKS_TOTAL=p.layers, BLOCK=block)
        if p.arch == "efficientnet":
            return fill(EFFICIENTNET, BLOCKS_TOTAL=p.layers)
        if p.arch == "mobilenet":
            return fill(MOBILENET, BLOCKS_TOTAL=p.layers)
        del n_in
    if p.task == "text-classification":
        if p.hf:
            return fill(HF_MODEL, NUM_CLASSES=p.num_classes)
        if p.arch == "transformer":
            return fill(TEXT_TRANSFORMER, LAYERS=p.layers, HEADS=_heads(p.embed))
        return fill(TEXT_RNN, LAYERS=p.layers, RNN="GRU" if p.arch == "gru" else "LSTM")
    if p.kind == "series":
        if p.arch == "transformer":
            return fill(SERIES_TRANSFORMER, LAYERS=p.layers, D_MODEL=64, HEADS=4)
        if p.arch == "mlp":
            return fill(SERIES_MLP, LAYERS=p.layers)
        return fill(SERIES_RNN, LAYERS=p.layers, RNN="GRU" if p.arch == "gru" else "LSTM")
    return {"recon": AUTOENCODER, "vae": VAE, "gan": GAN, "fewshot": PROTONET}[p.kind]


# Blocks per stage of the published ResNets, by total block count: ResNet-18 and -34 (basic blocks),
# ResNet-50, -101 and -152 (bottlenecks).
_PUBLISHED_STAGES = {("basic", 8): (2, 2, 2, 2), ("basic", 16): (3, 4, 6, 3), ("bottleneck", 16): (3, 4, 6, 3),
                     ("bottleneck", 33): (3, 4, 23, 3), ("bottleneck", 50): (3, 8, 36, 3)}


def _stages(n: int, block: str = "basic") -> tuple[int, ...]:
    if (block, n) in _PUBLISHED_STAGES:
        return _PUBLISHED_STAGES[(block, n)]
    stages = tuple(n // 4 + (1 if i < n % 4 else 0) for i in range(4))
    return tuple(s for s in stages if s) or (1,)


def _heads(dim: int) -> int:
    for h in (8, 4, 2):
        if dim % h == 0:
            return h
    return 1


def example(p: Plan) -> str:
    """``example_batch()`` (and the synthetic dataset it makes) for the plan's kind of model."""
    if p.kind == "hf":
        return EXAMPLE_HF + SYNTHETIC_DEFAULT
    if p.multi_label:
        return EXAMPLE_TEXT_MULTILABEL + SYNTHETIC_DEFAULT
    if p.task == "text-classification":
        return EXAMPLE_TEXT + SYNTHETIC_DEFAULT
    if p.kind in ("classify", "online"):
        return EXAMPLE_IMAGE_CLS + SYNTHETIC_DEFAULT
    return {"regress": EXAMPLE_REGRESSION + SYNTHETIC_DEFAULT, "series": EXAMPLE_SERIES + SYNTHETIC_DEFAULT,
            "recon": EXAMPLE_RECON + SYNTHETIC_DEFAULT, "vae": EXAMPLE_RECON + SYNTHETIC_DEFAULT,
            "gan": EXAMPLE_GAN, "fewshot": EXAMPLE_FEWSHOT}[p.kind]


def loss(p: Plan) -> str:
    """``compute_loss()`` for the plan's kind of model (the GAN's loop computes its own)."""
    if p.multi_label:
        return LOSS_MULTILABEL
    return {"classify": LOSS_CLASSIFY, "online": LOSS_CLASSIFY, "hf": LOSS_HF, "fewshot": LOSS_FEWSHOT,
            "regress": LOSS_REGRESSION, "series": LOSS_SERIES, "recon": LOSS_AUTOENCODER, "vae": LOSS_VAE,
            "gan": ""}[p.kind]


def data(p: Plan) -> str:
    """The data loader: the reader of the plan's real files, or one that says the program has none."""
    d, k = p.dataset, p.kind
    if k == "online":
        return CSV_READER
    if k == "hf":
        return TEXT_DATA + TEXT_HF
    if p.multi_label:
        return TEXT_DATA + LABEL_SETS + _replace_once(TEXT_VOCAB, "y = label_ids(labels)", "y = label_sets(labels)")
    if p.task == "text-classification":
        return TEXT_DATA + TEXT_VOCAB
    if k == "series":
        return SERIES_DATA
    if k == "fewshot":
        return IMAGE_FOLDER + FEWSHOT_DATA
    image_src = {"mnist": MNIST, "cifar10": CIFAR100 if p.cifar100 else CIFAR10, "digits": DIGITS, "imagefolder": IMAGE_FOLDER}.get(d)
    if image_src and k in ("classify", "recon", "vae", "gan"):
        wrap = {"classify": IMAGES_CLASSIFY, "recon": IMAGES_RECON, "vae": IMAGES_RECON, "gan": IMAGES_GAN}[k]
        return image_src + wrap
    if k == "regress":
        return CSV_READER + CSV_REGRESSION
    if k == "classify" and (d == "csv" or len(p.input_shape) == 1):
        return CSV_READER + CSV_CLASSIFY
    if k in ("recon", "vae") and len(p.input_shape) == 1:
        return CSV_READER + CSV_RECON
    if k == "classify" and len(p.input_shape) == 3:
        return IMAGE_FOLDER + IMAGES_CLASSIFY
    if k in ("recon", "vae", "gan") and len(p.input_shape) == 3:
        return IMAGE_FOLDER + {"recon": IMAGES_RECON, "vae": IMAGES_RECON, "gan": IMAGES_GAN}[k]
    return NO_DATA


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"template anchor {old!r} not found exactly once")
    return text.replace(old, new)
