"""The choices one Keras program is made of, resolved once from the :class:`Intent`: shapes, sizes, features.

:mod:`.model` and :mod:`.program` write the program from them; :func:`deepdive.codegen.builtin.traits.describe`
reads them to say what the program holds, without writing it.
"""

from __future__ import annotations

import math

from deepdive.codegen.builtin.keras.coverage import ENGINE_NOTE, NOT_APPLIED
from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import same_layer

__all__ = ["Choices"]


def _hwc(shape: tuple[int, ...], default: tuple[int, int, int]) -> tuple[int, int, int]:
    """Intent image shapes are (C, H, W); Keras wants (H, W, C). Accept either."""
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side * side != shape[0]:
            raise ValueError(f"input shape {shape} is not an image; give (channels, height, width)")
        return (side, side, 1)
    if len(shape) == 2:
        return (shape[0], shape[1], 1)
    if len(shape) != 3:
        return default
    c, h, w = shape
    if c <= 4 and h > 4 and w > 4:
        return (h, w, c)
    return tuple(shape)  # already channels-last


def _downsamples(h: int, w: int, limit: int) -> int:
    """How many times (h, w) halves exactly while staying >= 4."""
    n = 0
    while n < limit and h % 2 == 0 and w % 2 == 0 and h // 2 >= 4 and w // 2 >= 4:
        h, w, n = h // 2, w // 2, n + 1
    return n


class Choices:
    """Resolved choices for one program: what :mod:`.model` and :mod:`.program` write it from."""

    def __init__(self, it: Intent) -> None:
        self.it = it
        self.task = it.task
        self.arch = it.architecture
        f = set(it.features)
        self.amp = "amp" in f
        self.early = "early_stopping" in f
        self.ckpt = "checkpoint" in f
        self.sched = "lr_schedule" in f
        self.optuna = "optuna" in f
        self.quant = "quantize" in f
        self.ddp = "ddp" in f
        self.ignored = {k: v for k, v in NOT_APPLIED.items() if k in f}
        if it.use_engine:
            self.ignored["engine"] = ENGINE_NOTE
        self.dataset = it.dataset or "synthetic"
        self.consts: list[tuple[str, object, str]] = []  # (NAME, value, comment)
        self.lr = it.lr if it.lr is not None else 1e-3
        # "without dropout": no Dropout layers in the model (the transformer block keeps its own; see traits).
        self.no_dropout = any(same_layer(name, "Dropout") for name in it.exclude_layers)
        self.dropout = 0.0 if self.no_dropout else it.dropout if it.dropout is not None else 0.2
        self._resolve()

    def _resolve(self) -> None:
        it, task = self.it, self.task
        if task == "image-classification":
            self._resolve_image()
        elif task == "text-classification":
            self._resolve_text()
        elif task == "regression":
            self._resolve_regression()
        elif task == "autoencoder":
            self._resolve_autoencoder()
        elif task == "forecasting":
            self._resolve_forecasting()
        self.epochs = it.epochs if it.epochs is not None else self.default_epochs
        self.batch = it.batch_size if it.batch_size is not None else self.default_batch

    def _image_shape(self) -> tuple[int, int, int]:
        defaults = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "imagefolder": (64, 64, 3)}
        default = defaults.get(self.dataset, (28, 28, 1))
        if self.it.input_shape:
            return _hwc(tuple(self.it.input_shape), default)
        return default

    def _resolve_image(self) -> None:
        it = self.it
        if self.arch == "mlp" and len(it.input_shape) == 1:
            self.shape = tuple(it.input_shape)  # flat features: an MLP takes them as they are
        else:
            self.shape = self._image_shape()
        self.classes = it.num_classes or 10
        # The dataset "cifar10" is CIFAR-100 when the request has its 100 classes: its own files and labels.
        self.cifar100 = self.dataset == "cifar10" and self.classes == 100
        self.hidden = it.hidden_size or 128
        self.default_epochs, self.default_batch = 5, 64
        self.kind = "classify"
        h, w = self.shape[0], self.shape[1] if len(self.shape) > 1 else 1
        if self.arch == "cnn":
            n = it.layers if it.layers is not None else (3 if self.dataset == "cifar10" else 2)
            n = max(1, n)
            self.filters = [min(32 * 2 ** (i // max(1, math.ceil(n / 3))), 256) for i in range(n)]
            pools = _downsamples(h, w, n)
            # pool after the last `pools` convs spread evenly: after conv i when i >= n - pools
            self.pool_after = [i >= n - pools for i in range(n)]
            hh, ww = h // 2**pools, w // 2**pools
            self.flatten = hh * ww * self.filters[-1] <= 16384
        elif self.arch == "resnet":
            n = max(1, it.layers if it.layers is not None else 3)
            widths = [32, 64, 128]
            blocks = []
            prev = None
            downs = _downsamples(h, w, 2)
            for i in range(n):
                stage = min(i * 3 // n, 2)
                width = widths[stage]
                stride = 2 if prev is not None and width != prev and stage <= downs else 1
                blocks.append((width, stride))
                prev = width
            self.blocks = blocks
        elif self.arch == "mlp":
            n = max(1, it.layers if it.layers is not None else 3)
            self.dense_hidden = [self.hidden] * (n - 1)

    def _resolve_text(self) -> None:
        it = self.it
        self.seq_len = it.seq_len or (it.input_shape[0] if it.input_shape else 200)
        self.shape = (self.seq_len,)
        self.vocab = it.vocab_size or 20000
        self.embed = it.embed_dim or 128
        self.hidden = it.hidden_size or 64
        self.classes = it.num_classes or 2
        self.default_epochs, self.default_batch = 3, 32
        self.kind = "classify"
        if self.arch in ("lstm", "gru"):
            self.rnn_layers = max(1, it.layers if it.layers is not None else 1)
        elif self.arch == "transformer":
            self.blocks = max(1, it.layers if it.layers is not None else 2)
            self.embed = it.embed_dim or 64
            self.heads = next(h for h in (4, 2, 1) if self.embed % h == 0)
            self.hidden = it.hidden_size or 2 * self.embed
        else:
            n = max(1, it.layers if it.layers is not None else 2)
            self.dense_hidden = [self.hidden] * (n - 1)

    def _resolve_regression(self) -> None:
        it = self.it
        nfeat = it.input_shape[0] if it.input_shape else 8
        self.shape = (int(nfeat),)
        self.hidden = it.hidden_size or 64
        self.targets = 1
        self.default_epochs, self.default_batch = 20, 32
        self.kind = "regress"
        n = max(1, it.layers if it.layers is not None else 3)
        self.dense_hidden = [self.hidden] * (n - 1)

    def _resolve_autoencoder(self) -> None:
        it = self.it
        shape = tuple(it.input_shape)
        image_data = self.dataset in ("mnist", "cifar10", "imagefolder")
        self.conv = self.arch != "mlp" and (len(shape) >= 2 or (not shape and image_data))
        if self.arch == "cnn" and not self.conv:
            self.conv = True
        self.latent = it.latent_dim
        self.kind = "reconstruct"
        self.default_epochs, self.default_batch = 10, 64
        if self.conv:
            self.shape = self._image_shape() if (shape or image_data) else (28, 28, 1)
            n = max(1, it.layers if it.layers is not None else 2)
            h, w, _ = self.shape
            downs = _downsamples(h, w, n)
            self.filters = [min(16 * 2**i, 128) for i in range(n)]
            self.strides = [2 if i < downs else 1 for i in range(n)]
        else:
            if len(shape) == 1:
                dim = shape[0]
            elif shape:
                dim = math.prod(shape)
            else:
                dim = {"mnist": 784, "cifar10": 3072}.get(self.dataset, 784)
            self.shape = (int(dim),)
            self.latent = it.latent_dim or 32
            total = max(2, it.layers if it.layers is not None else 4)
            enc = math.ceil(total / 2)  # encoder Dense layers, bottleneck included
            dec = total - enc  # decoder Dense layers, output included
            hidden = it.hidden_size or max(self.latent * 2, min(256, dim // 4))
            enc_sizes = [max(self.latent, hidden // 2**i) for i in range(enc - 1)] + [self.latent]
            dec_sizes = list(reversed(enc_sizes[:-1]))[: dec - 1]
            while len(dec_sizes) < dec - 1:
                dec_sizes.append(hidden)
            self.enc_sizes, self.dec_sizes = enc_sizes, dec_sizes

    def _resolve_forecasting(self) -> None:
        it = self.it
        shape = tuple(it.input_shape)
        self.seq_len = it.seq_len or (shape[0] if shape else 48)
        self.channels = shape[1] if len(shape) >= 2 else 1
        self.shape = (int(self.seq_len), int(self.channels))
        self.horizon = it.horizon or 1
        self.hidden = it.hidden_size or 64
        self.default_epochs, self.default_batch = 10, 32
        self.kind = "forecast"
        if self.arch in ("lstm", "gru"):
            self.rnn_layers = max(1, it.layers if it.layers is not None else 1)
        else:
            n = max(1, it.layers if it.layers is not None else 3)
            self.dense_hidden = [self.hidden] * (n - 1)

    def data_kind(self) -> str:
        """Which loader the program reads its data with: a dataset, csv, series, text or synthetic."""
        ds = self.dataset
        if self.task == "text-classification":
            return "text" if ds not in ("synthetic",) else "synthetic"
        if self.task == "regression":
            return "csv" if ds != "synthetic" or self.it.csv_path else "synthetic"
        if self.task == "forecasting":
            return "series" if ds != "synthetic" or self.it.csv_path else "synthetic"
        if ds in ("mnist", "cifar10", "imagefolder"):
            return ds
        return "synthetic"
