"""The builtin TensorFlow/Keras 3 generator: an :class:`Intent` in, a complete runnable program out.

Pure string composition from small blocks (no tensorflow import here; the daemon imports this
module). Every program defines ``build_model()`` (a compiled ``keras.Model``), ``example_batch()``
(synthetic inputs and targets of the right shapes) and ``main()``, accepts ``--smoke`` (one tiny
fit on synthetic data, exit 0, no files needed) and ends with ``sys.exit(main())``.

Covered (task: architectures):

- image-classification: mlp, cnn, resnet (MNIST idx/npz files, CIFAR-10 python batches, an image
  folder, or synthetic data of any shape)
- text-classification: lstm, gru, mlp (Embedding + pooled Dense), transformer (encoder blocks of
  MultiHeadAttention) from a CSV of text,label or a folder with one sub-folder per class
- regression: mlp on a numeric CSV
- autoencoder: dense (flat inputs, or architecture mlp) and convolutional (image inputs)
- forecasting: lstm, gru, mlp on a numeric CSV series, predicting ``horizon`` future values

Layer counts (``intent.layers``) follow :data:`deepdive.codegen.intent.LAYER_TYPES`: cnn -> that
many ``Conv2D``; mlp -> that many ``Dense`` in total (output included); lstm/gru -> that many
stacked ``LSTM``/``GRU``; resnet -> that many residual blocks; transformer -> that many encoder
blocks (each one ``MultiHeadAttention``).

Features: amp (mixed_bfloat16 on CPU / mixed_float16 on GPU, float32 output layer),
early_stopping, checkpoint (ModelCheckpoint + BackupAndRestore), lr_schedule (CosineDecay), optuna
(a study over lr and dropout), quantize (TFLite dynamic-range conversion), ddp
(tf.distribute.MirroredStrategy over the GPUs of one host). Not generated for Keras, named in a
comment at the top of the program and printed when it runs: prune, onnx, torchscript, and the
deepdive engine (torch only).
"""

from __future__ import annotations

import math
from typing import Optional

from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import same_layer

COVERED = {
    "image-classification": ("mlp", "cnn", "resnet"),
    "text-classification": ("lstm", "gru", "mlp", "transformer"),
    "regression": ("mlp",),
    "autoencoder": ("autoencoder", "mlp", "cnn"),
    "forecasting": ("lstm", "gru", "mlp"),
}

# Features this generator does not apply, and why (a comment in the program and a printed note).
NOT_APPLIED = {
    "prune": "structured pruning is not generated for Keras 3 (tensorflow-model-optimization does not "
    "support Keras 3); use framework torch with the deepdive engine",
    "onnx": "ONNX export is not generated for Keras (needs tf2onnx); use framework torch, or "
    "model.export(path, format='onnx') with tf2onnx installed",
    "torchscript": "TorchScript is a PyTorch format; this Keras program saves a .keras model instead",
}
ENGINE_NOTE = "the deepdive engine is torch-only; this Keras program uses keras callbacks instead"


def coverage() -> str:
    return "; ".join(f"{task} ({', '.join(archs)})" for task, archs in COVERED.items())


def generate(intent: Intent) -> str:
    """Return the source of a complete TensorFlow/Keras 3 program for ``intent``.

    Raises ValueError (one line) for a task/architecture this generator does not cover.
    """
    validate(intent)
    spec = _Spec(intent)
    return spec.render()


def validate(intent: Intent) -> None:
    """Raise ValueError (one line) when this generator cannot build ``intent``."""
    archs = COVERED.get(intent.task)
    if archs is None or intent.architecture not in archs:
        raise ValueError(
            f"the builtin Keras generator does not cover {intent.task} with {intent.architecture}; "
            f"it covers {coverage()}; try framework torch"
        )
    if intent.num_classes is not None and intent.num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (got {intent.num_classes})")
    for name in ("layers", "horizon", "seq_len", "vocab_size", "hidden_size", "latent_dim", "epochs", "batch_size"):
        value = getattr(intent, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1 (got {value})")
    if intent.dropout is not None and not 0 <= intent.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1) (got {intent.dropout})")


# --------------------------------------------------------------------------------------------
# Helpers


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


def _lit(value) -> str:
    return repr(value)


class _Spec:
    """Resolved choices for one program, and the code blocks that follow from them."""

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

    # ---- choices ----------------------------------------------------------------------------

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

    # ---- rendering --------------------------------------------------------------------------

    def render(self) -> str:
        parts = [
            self._header(),
            IMPORTS,
            self._constants(),
        ]
        if self.amp:
            parts.append(PRECISION_AMP)
        parts.append(self._model())
        parts.append(self._compile())
        parts.append(self._example_batch())
        parts.append(self._data())
        parts.append(self._training())
        parts.append(self._main())
        return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"

    def _title(self) -> str:
        names = {
            "image-classification": "image classifier",
            "text-classification": "text classifier",
            "regression": "regression model",
            "autoencoder": "autoencoder",
            "forecasting": "time-series forecaster",
        }
        arch = self.arch.upper() if self.arch in ("mlp", "cnn", "lstm", "gru") else self.arch
        if self.task == "autoencoder":
            arch = "convolutional" if self.conv else "dense"
        elif self.arch == "resnet":
            arch = "ResNet-style"
        return f"Keras {arch} {names[self.task]} ({self.dataset})"

    def _header(self) -> str:
        prompt = " ".join(self.it.prompt.split()).replace('"""', "'''")
        data_help = {
            "mnist": "--data DIR with mnist.npz or the MNIST idx files (train-images-idx3-ubyte[.gz], ...)",
            "cifar10": "--data DIR with the CIFAR-10 python batches (cifar-10-batches-py)",
            "imagefolder": "--data DIR with one sub-folder of images per class",
            "csv": "--data FILE.csv (numeric columns with a header; --target names the target, default the last column)",
            "text": "--data FILE.csv with text,label columns, or DIR with one sub-folder of .txt files per class",
            "series": "--data FILE.csv (numeric columns with a header; --target names the forecast column, default the first)",
            "synthetic": "no --data: synthetic data (or --data FILE.npz with arrays x and y)",
        }[self._data_kind()]
        lines = [
            "#!/usr/bin/env python",
            f'"""{self._title()}. Generated by Deepdive (builtin Keras generator).',
            "",
            f"Prompt: {prompt}" if prompt else "Prompt: (none)",
            "",
            "Real run:  python THIS_FILE [--data PATH] [--epochs N]   (python THIS_FILE --help for all options)",
            "Smoke run: python THIS_FILE --smoke   (one tiny step on synthetic data, no files needed)",
            f"Data: {data_help}. Nothing is downloaded.",
            '"""',
        ]
        if self.ignored:
            lines.append("# Not applied by this program (asked for, not available for Keras here):")
            for name, why in self.ignored.items():
                lines.append(f"#   {name}: {why}")
        return "\n".join(lines)

    def _data_kind(self) -> str:
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

    def _constants(self) -> str:
        c: list[tuple[str, object, str]] = [("SEED", self.it.seed or 0, "")]
        c.append(("INPUT_SHAPE", tuple(self.shape), "one example, channels-last, no batch dimension"))
        if self.kind == "classify":
            c.append(("NUM_CLASSES", self.classes, ""))
        if self.task == "text-classification":
            c += [("VOCAB_SIZE", self.vocab, ""), ("SEQ_LEN", self.seq_len, ""), ("EMBED_DIM", self.embed, "")]
        if self.task == "forecasting":
            c += [("SEQ_LEN", self.seq_len, "past steps in"), ("HORIZON", self.horizon, "future steps out")]
        if hasattr(self, "hidden"):
            c.append(("HIDDEN", self.hidden, ""))
        if self.task == "autoencoder" and self.latent:
            c.append(("LATENT_DIM", self.latent, "bottleneck"))
        if self.arch == "cnn" and self.task == "image-classification":
            c.append(("CONV_FILTERS", tuple(self.filters), "one Conv2D per entry"))
            c.append(("POOL_AFTER", tuple(self.pool_after), "MaxPooling2D after that Conv2D"))
        if self.arch == "resnet":
            c.append(("BLOCKS", tuple(self.blocks), "(filters, stride) per residual block"))
        if self.arch == "transformer":
            c.append(("NUM_BLOCKS", self.blocks, "encoder blocks"))
            c.append(("NUM_HEADS", self.heads, "attention heads; HIDDEN is the feed-forward width"))
        if self.task == "autoencoder" and self.conv:
            c.append(("CONV_FILTERS", tuple(self.filters), "one Conv2D per entry in the encoder"))
            c.append(("CONV_STRIDES", tuple(self.strides), ""))
        if self.task == "autoencoder" and not self.conv:
            c.append(("ENCODER_UNITS", tuple(self.enc_sizes), "Dense sizes, bottleneck last"))
            c.append(("DECODER_UNITS", tuple(self.dec_sizes), "hidden Dense sizes before the output"))
        if hasattr(self, "dense_hidden"):
            c.append(("DENSE_UNITS", tuple(self.dense_hidden), "hidden Dense layers before the output"))
        if hasattr(self, "rnn_layers"):
            c.append(("RNN_LAYERS", self.rnn_layers, f"stacked {self.arch.upper()} layers"))
        c += [
            ("DROPOUT", self.dropout, ""),
            ("LR", self.lr, ""),
            ("EPOCHS", self.epochs, ""),
            ("BATCH_SIZE", self.batch, ""),
        ]
        default_data = self.it.csv_path if self._data_kind() in ("csv", "series", "text") else None
        c.append(("DEFAULT_DATA", default_data, ""))
        c.append(("NOTES", tuple(f"{k}: {v}" for k, v in self.ignored.items()), "asked for, not applied"))
        out = []
        for name, value, comment in c:
            line = f"{name} = {_lit(value)}"
            if comment:
                line += f"  # {comment}"
            out.append(line)
        return "\n".join(out)

    # ---- model ------------------------------------------------------------------------------

    def _model(self) -> str:
        body: list[str] = []
        helpers = ""
        if self.amp:
            body.append("configure_precision()")
        dtype = ', dtype="int32"' if self.task == "text-classification" else ""
        body.append(f"inputs = keras.Input(shape=INPUT_SHAPE{dtype})")
        t, a = self.task, self.arch
        out_dense = 'keras.layers.Dense({units}, activation={act}, dtype="float32", name="output")(x)'
        if t == "image-classification":
            if a == "cnn":
                body += [
                    "x = inputs",
                    "for filters, pool in zip(CONV_FILTERS, POOL_AFTER):",
                    '    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)',
                    "    if pool:",
                    "        x = keras.layers.MaxPooling2D()(x)",
                    "x = keras.layers.Flatten()(x)" if self.flatten else "x = keras.layers.GlobalAveragePooling2D()(x)",
                    "x = keras.layers.Dropout(dropout)(x)",
                    'x = keras.layers.Dense(HIDDEN, activation="relu")(x)',
                    "x = keras.layers.Dropout(dropout)(x)",
                ]
            elif a == "resnet":
                helpers = RESIDUAL_BLOCK
                body += [
                    'x = keras.layers.Conv2D(BLOCKS[0][0], 3, padding="same", use_bias=False)(inputs)',
                    "x = keras.layers.BatchNormalization()(x)",
                    'x = keras.layers.Activation("relu")(x)',
                    "for filters, stride in BLOCKS:",
                    "    x = residual_block(x, filters, stride)",
                    "x = keras.layers.GlobalAveragePooling2D()(x)",
                    "x = keras.layers.Dropout(dropout)(x)",
                ]
            else:  # mlp
                body += [
                    "x = keras.layers.Flatten()(inputs)",
                    "for units in DENSE_UNITS:",
                    '    x = keras.layers.Dense(units, activation="relu")(x)',
                    "    x = keras.layers.Dropout(dropout)(x)",
                ]
            body.append("outputs = " + out_dense.format(units="NUM_CLASSES", act='"softmax"'))
        elif t == "text-classification" and a == "transformer":
            helpers = TRANSFORMER_BLOCKS
            body += [
                "x = keras.layers.Embedding(VOCAB_SIZE, EMBED_DIM)(inputs)",
                "x = PositionEmbedding(SEQ_LEN, EMBED_DIM)(x)",
                "for _ in range(NUM_BLOCKS):",
                "    x = encoder_block(x, dropout)",
                "x = keras.layers.GlobalAveragePooling1D()(x)",
                "x = keras.layers.Dropout(dropout)(x)",
                "outputs = " + out_dense.format(units="NUM_CLASSES", act='"softmax"'),
            ]
        elif t == "text-classification":
            body.append("x = keras.layers.Embedding(VOCAB_SIZE, EMBED_DIM, mask_zero=True)(inputs)  # id 0 is padding")
            if a in ("lstm", "gru"):
                cls = "LSTM" if a == "lstm" else "GRU"
                body += [
                    "for i in range(RNN_LAYERS):",
                    f"    x = keras.layers.{cls}(HIDDEN, return_sequences=i < RNN_LAYERS - 1)(x)",
                    "x = keras.layers.Dropout(dropout)(x)",
                ]
            else:
                body += [
                    "x = keras.layers.GlobalAveragePooling1D()(x)",
                    "for units in DENSE_UNITS:",
                    '    x = keras.layers.Dense(units, activation="relu")(x)',
                    "    x = keras.layers.Dropout(dropout)(x)",
                ]
            body.append("outputs = " + out_dense.format(units="NUM_CLASSES", act='"softmax"'))
        elif t == "regression":
            body += [
                "x = inputs  # features are standardized in load_data()",
                "for units in DENSE_UNITS:",
                '    x = keras.layers.Dense(units, activation="relu")(x)',
                "    x = keras.layers.Dropout(dropout)(x)",
                "outputs = " + out_dense.format(units="1", act="None"),
            ]
        elif t == "forecasting":
            if a in ("lstm", "gru"):
                cls = "LSTM" if a == "lstm" else "GRU"
                body += [
                    "x = inputs",
                    "for i in range(RNN_LAYERS):",
                    f"    x = keras.layers.{cls}(HIDDEN, return_sequences=i < RNN_LAYERS - 1)(x)",
                    "x = keras.layers.Dropout(dropout)(x)",
                ]
            else:
                body += [
                    "x = keras.layers.Flatten()(inputs)",
                    "for units in DENSE_UNITS:",
                    '    x = keras.layers.Dense(units, activation="relu")(x)',
                    "    x = keras.layers.Dropout(dropout)(x)",
                ]
            body.append("outputs = " + out_dense.format(units="HORIZON", act="None"))
        elif t == "autoencoder" and self.conv:
            body += [
                "x = inputs",
                "for filters, stride in zip(CONV_FILTERS, CONV_STRIDES):  # encoder",
                '    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)',
            ]
            if self.latent:
                body += [
                    "encoded_shape = tuple(x.shape[1:])",
                    "x = keras.layers.Flatten()(x)",
                    'x = keras.layers.Dense(LATENT_DIM, activation="relu", name="bottleneck")(x)',
                    'x = keras.layers.Dense(math.prod(encoded_shape), activation="relu")(x)',
                    "x = keras.layers.Reshape(encoded_shape)(x)",
                ]
            body += [
                "x = keras.layers.Dropout(dropout)(x)",
                "for filters, stride in zip(reversed(CONV_FILTERS), reversed(CONV_STRIDES)):  # decoder",
                '    x = keras.layers.Conv2DTranspose(filters, 3, strides=stride, padding="same", activation="relu")(x)',
                "outputs = keras.layers.Conv2DTranspose(",
                '    INPUT_SHAPE[-1], 3, padding="same", activation="sigmoid", dtype="float32", name="output"',
                ")(x)",
            ]
        else:  # dense autoencoder
            body += [
                "x = inputs",
                "for i, units in enumerate(ENCODER_UNITS):  # encoder, bottleneck last",
                "    last = i == len(ENCODER_UNITS) - 1",
                '    x = keras.layers.Dense(units, activation="relu", name="bottleneck" if last else None)(x)',
                "x = keras.layers.Dropout(dropout)(x)",
                "for units in DECODER_UNITS:  # decoder",
                '    x = keras.layers.Dense(units, activation="relu")(x)',
                "outputs = " + out_dense.format(units="INPUT_SHAPE[0]", act='"sigmoid"'),
            ]
        if self.no_dropout:
            body = [line for line in body if "keras.layers.Dropout(dropout)(x)" not in line]
        name = f"{self.arch}_{self.task.replace('-', '_')}"
        body += [
            f'model = keras.Model(inputs, outputs, name="{name}")',
            "compile_model(model, lr, decay_steps)",
            "return model",
        ]
        doc = '    """The model, compiled (Adam, {loss}). ``lr``, ``dropout``: the hyperparameters a study tunes."""'
        text = (
            "def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):\n"
            + doc.format(loss=self._loss_name())
            + "\n"
            + "\n".join("    " + line for line in body)
        )
        return (helpers + "\n\n" + text) if helpers else text

    def _loss_name(self) -> str:
        return {"classify": "sparse categorical cross-entropy on softmax outputs"}.get(self.kind, "mean squared error")

    def _compile(self) -> str:
        loss, metrics = {
            "classify": ('"sparse_categorical_crossentropy"', '["accuracy"]'),
            "regress": ('"mse"', '["mae"]'),
            "forecast": ('"mse"', '["mae"]'),
            "reconstruct": ('"mse"', '["mae"]'),
        }[self.kind]
        lines = ["def compile_model(model, lr, decay_steps):"]
        if self.sched:
            lines += [
                "    # cosine learning-rate schedule over the whole run",
                "    learning_rate = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, decay_steps))",
            ]
        else:
            lines.append("    learning_rate = lr")
        lines.append(f"    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss={loss}, metrics={metrics})")
        return "\n".join(lines)

    def _example_batch(self) -> str:
        k, t = self.kind, self.task
        lines = [
            "def example_batch(batch_size=8):",
            '    """Synthetic (inputs, targets) with the shapes the model trains on."""',
            "    rng = np.random.default_rng(SEED)",
        ]
        if t == "text-classification":
            lines.append("    x = rng.integers(1, VOCAB_SIZE, size=(batch_size, *INPUT_SHAPE)).astype(\"int32\")")
        elif t in ("regression", "forecasting"):
            lines.append('    x = rng.standard_normal((batch_size, *INPUT_SHAPE)).astype("float32")')
        else:
            lines.append('    x = rng.random((batch_size, *INPUT_SHAPE)).astype("float32")')
        if k == "classify":
            lines.append('    y = rng.integers(0, NUM_CLASSES, size=(batch_size,)).astype("int32")')
        elif t == "regression":
            lines.append('    y = rng.standard_normal((batch_size, 1)).astype("float32")')
        elif t == "forecasting":
            lines.append('    y = rng.standard_normal((batch_size, HORIZON)).astype("float32")')
        else:
            lines.append("    y = x.copy()  # an autoencoder reconstructs its input")
        lines.append("    return x, y")
        return "\n".join(lines)

    def _data(self) -> str:
        kind = self._data_kind()
        if self.task == "autoencoder":
            block = DATA_BLOCKS[kind] if kind != "synthetic" else DATA_SYNTHETIC
            wrapper = AE_WRAP_FLAT if not self.conv else AE_WRAP_IMAGE
            return block + "\n\n" + wrapper
        return DATA_BLOCKS[kind] if kind != "synthetic" else DATA_SYNTHETIC

    def _training(self) -> str:
        parts = [CALLBACKS_HEAD]
        if self.early:
            parts.append(CALLBACK_EARLY)
        if self.ckpt:
            parts.append(CALLBACK_CKPT)
        parts.append(CALLBACKS_TAIL)
        blocks = ["\n".join(p.strip("\n") for p in parts), FIT]
        if self.optuna:
            blocks.append(TUNE)
        if self.quant:
            blocks.append(QUANTIZE)
        blocks.append(STRATEGY_DDP if self.ddp else STRATEGY_DEFAULT)
        return "\n\n\n".join(b.strip("\n") for b in blocks)

    def _main(self) -> str:
        args = [
            '    parser.add_argument("--smoke", action="store_true", help="one tiny step on synthetic data, then exit")',
            '    parser.add_argument("--data", default=DEFAULT_DATA, help="training data (see the top of this file)")',
        ]
        if self._data_kind() in ("csv", "series"):
            args.append(f'    parser.add_argument("--target", default={self.it.target!r}, help="target column name")')
        args += [
            '    parser.add_argument("--epochs", type=int, default=EPOCHS)',
            '    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)',
            '    parser.add_argument("--lr", type=float, default=LR)',
            '    parser.add_argument("--out", default="model.keras", help="where the trained model is saved")',
        ]
        if self.ckpt:
            args.append('    parser.add_argument("--ckpt-dir", default="checkpoints", help="checkpoints; a rerun resumes from here")')
        if self.optuna:
            args.append('    parser.add_argument("--trials", type=int, default=10, help="Optuna trials before the final run")')
        if self.quant:
            args.append('    parser.add_argument("--tflite", default="model.tflite", help="dynamic-range quantized TFLite model")')
        args.append('    parser.add_argument("--debug", action="store_true", help="show tracebacks")')

        load_call = "load_data(args.data, args.target)" if self._data_kind() in ("csv", "series") else "load_data(args.data)"
        smoke = [
            "def smoke(args):",
            '    """Build the model and fit one step on example_batch(); files go to a temporary folder."""',
            "    x, y = example_batch()",
            "    with tempfile.TemporaryDirectory() as tmp:",
        ]
        if self.optuna:
            smoke += [
                "        params = tune(((x, y), (x, y)), trials=2, epochs=1, batch_size=len(x))",
                '        print(f"smoke: optuna best {params}")',
            ]
        smoke += [
            "        with strategy().scope():",
            "            model = build_model(decay_steps=1)",
            f"        cbs = make_callbacks({'tmp' if self.ckpt else 'None'})",
            "        hist = fit(model, (x, y), (x, y), epochs=1, batch_size=len(x), callbacks=cbs, verbose=0)",
            "        out = model.predict(x, verbose=0)",
        ]
        if self.quant:
            smoke += ['        size = export_tflite(model, os.path.join(tmp, "model.tflite"))', '        print(f"smoke: tflite {size} bytes")']
        smoke += [
            '        print(f"smoke ok: loss={hist.history[\'loss\'][-1]:.4f} output={tuple(out.shape)}")',
            "    return 0",
        ]
        train = [
            "def train(args):",
            f"    train_data, val_data = {load_call}",
            "    steps = args.epochs * steps_per_epoch(train_data, args.batch_size)",
            "    lr, dropout = args.lr, DROPOUT",
        ]
        if self.optuna:
            train += [
                "    params = tune((train_data, val_data), trials=args.trials, epochs=args.epochs, batch_size=args.batch_size)",
                '    lr, dropout = params["lr"], params["dropout"]',
                '    print(f"optuna: best lr={lr:.3g} dropout={dropout:.2f}")',
            ]
        train += [
            "    with strategy().scope():",
            "        model = build_model(lr=lr, dropout=dropout, decay_steps=steps)",
            "    model.summary()",
            f"    cbs = make_callbacks({'args.ckpt_dir' if self.ckpt else 'None'})",
            "    fit(model, train_data, val_data, epochs=args.epochs, batch_size=args.batch_size, callbacks=cbs, verbose=1)",
            '    scores = evaluate(model, val_data, args.batch_size)',
            '    print("validation: " + ", ".join(f"{k}={float(v):.4f}" for k, v in scores.items()))',
            "    model.save(args.out)",
            '    print(f"saved {args.out}")',
        ]
        if self.quant:
            train += ["    size = export_tflite(model, args.tflite)", '    print(f"saved {args.tflite} ({size} bytes, dynamic-range int8 weights)")']
        train.append("    return 0")
        main = [
            "def main(argv=None):",
            '    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])',
            *args,
            "    args = parser.parse_args(argv)",
            "    keras.utils.set_random_seed(SEED)",
            "    for note in NOTES:",
            '        print(f"note: not applied: {note}", file=sys.stderr)',
            "    try:",
            "        return smoke(args) if args.smoke else train(args)",
            "    except (OSError, ValueError, KeyError) as exc:",
            "        if args.debug:",
            "            raise",
            '        print(f"error: {exc}", file=sys.stderr)',
            "        return 2",
            "",
            "",
            'if __name__ == "__main__":',
            "    sys.exit(main())",
        ]
        return "\n".join(smoke) + "\n\n\n" + "\n".join(train) + "\n\n\n" + "\n".join(main)


# --------------------------------------------------------------------------------------------
# Building blocks (program text). Plain strings: no formatting, so braces are literal.

IMPORTS = '''
import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"  # a TensorFlow program: tf.data, tf.lite and tf.distribute below

import numpy as np
import tensorflow as tf
import keras
'''

PRECISION_AMP = '''
def configure_precision():
    """Mixed precision (asked for): bfloat16 compute on CPU, float16 on GPU; the output layer stays float32."""
    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy
'''

RESIDUAL_BLOCK = '''
def residual_block(x, filters, stride):
    """Two 3x3 Conv2D with batch norm and a shortcut (1x1 Conv2D when the shape changes)."""
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Activation("relu")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = keras.layers.BatchNormalization()(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        shortcut = keras.layers.BatchNormalization()(shortcut)
    return keras.layers.Activation("relu")(keras.layers.Add()([y, shortcut]))
'''

TRANSFORMER_BLOCKS = '''
@keras.saving.register_keras_serializable(package="deepdive")
class PositionEmbedding(keras.layers.Layer):
    """A learned embedding of each position, added to the token embeddings."""

    def __init__(self, length, dim, **kwargs):
        super().__init__(**kwargs)
        self.length, self.dim = length, dim

    def build(self, input_shape):
        self.positions = self.add_weight(shape=(self.length, self.dim), initializer="random_normal", name="positions")

    def call(self, x):
        return x + keras.ops.cast(self.positions, x.dtype)

    def get_config(self):
        return {**super().get_config(), "length": self.length, "dim": self.dim}


def encoder_block(x, dropout):
    """Post-norm Transformer encoder block: self-attention and a feed-forward layer, each with a residual."""
    attn = keras.layers.MultiHeadAttention(NUM_HEADS, EMBED_DIM // NUM_HEADS, dropout=dropout)(x, x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x + attn)
    ff = keras.layers.Dense(HIDDEN, activation="relu")(x)
    ff = keras.layers.Dropout(dropout)(keras.layers.Dense(EMBED_DIM)(ff))
    return keras.layers.LayerNormalization(epsilon=1e-6)(x + ff)
'''

_SPLIT = '''

def split(x, y, val_fraction=0.1):
    """Shuffle (seeded) and hold out a validation fraction."""
    order = np.random.default_rng(SEED).permutation(len(x))
    n_val = max(1, int(len(x) * val_fraction))
    val, tr = order[:n_val], order[n_val:]
    return (x[tr], y[tr]), (x[val], y[val])
'''

DATA_MNIST = '''
def _read_idx(path):
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz]")


def load_data(path):
    """MNIST from local files: mnist.npz (x_train, y_train, x_test, y_test) or the four idx files."""
    if not path:
        raise FileNotFoundError("MNIST needs --data DIR (mnist.npz or the idx files); nothing is downloaded")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    npz = p if p.is_file() else p / "mnist.npz"
    if npz.is_file():
        with np.load(npz) as d:
            x_tr, y_tr, x_te, y_te = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    else:
        x_tr, y_tr = _read_idx(_find(p, "train-images-idx3-ubyte")), _read_idx(_find(p, "train-labels-idx1-ubyte"))
        x_te, y_te = _read_idx(_find(p, "t10k-images-idx3-ubyte")), _read_idx(_find(p, "t10k-labels-idx1-ubyte"))
    prep = lambda x: (x.astype("float32") / 255.0).reshape((-1, *INPUT_SHAPE))
    return (prep(x_tr), y_tr.astype("int32")), (prep(x_te), y_te.astype("int32"))
'''

DATA_CIFAR = '''
def _unpickle(path):
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def load_data(path):
    """CIFAR-10 from the python batches (data_batch_1..5, test_batch), in DIR or DIR/cifar-10-batches-py."""
    if not path:
        raise FileNotFoundError("CIFAR-10 needs --data DIR (cifar-10-batches-py); nothing is downloaded")
    p = Path(path)
    if (p / "cifar-10-batches-py").is_dir():
        p = p / "cifar-10-batches-py"
    if not (p / "data_batch_1").is_file():
        raise FileNotFoundError(f"{p}: no CIFAR-10 python batches (data_batch_1 ... test_batch)")

    def read(names):
        batches = [_unpickle(p / n) for n in names]
        x = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([b[b"labels"] for b in batches]).astype("int32")
        x = x.astype("float32") / 255.0
        if len(INPUT_SHAPE) == 1:
            x = x.reshape((len(x), -1))  # a dense model takes the flattened image
        elif tuple(x.shape[1:]) != tuple(INPUT_SHAPE):
            x = tf.image.resize(x, INPUT_SHAPE[:2]).numpy()
        return x, y

    train_names = sorted(n.name for n in p.glob("data_batch_*"))
    return read(train_names), read(["test_batch"])
'''

DATA_IMAGEFOLDER = '''
def load_data(path):
    """Images from DIR/<class name>/*.png|jpg, resized to INPUT_SHAPE, 10% held out for validation."""
    if not path or not Path(path).is_dir():
        raise FileNotFoundError(f"--data must be a folder with one sub-folder of images per class (got {path!r})")
    common = dict(
        validation_split=0.1, seed=SEED, image_size=INPUT_SHAPE[:2], batch_size=None,
        color_mode="grayscale" if INPUT_SHAPE[-1] == 1 else "rgb",
    )
    train = keras.utils.image_dataset_from_directory(path, subset="training", **common)
    val = keras.utils.image_dataset_from_directory(path, subset="validation", **common)
    if "NUM_CLASSES" in globals() and len(train.class_names) != NUM_CLASSES:
        raise ValueError(f"{path}: {len(train.class_names)} class folders, the model has NUM_CLASSES={NUM_CLASSES}")
    scale = lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)
    return train.map(scale), val.map(scale)
'''

DATA_CSV = '''
def read_csv(path):
    """A numeric CSV with a header row -> (column names, float32 array)."""
    import csv

    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"--data must be a CSV file (got {path!r}); nothing is downloaded")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 3:
        raise ValueError(f"{path}: needs a header row and at least two data rows")
    header, body = rows[0], [r for r in rows[1:] if r]
    try:
        values = np.asarray(body, dtype="float32")
    except ValueError:
        raise ValueError(f"{path}: every column must be numeric") from None
    return header, values
''' + _SPLIT + '''

def load_data(path, target=None):
    """Features and one numeric target column (default: the last), standardized with training statistics."""
    header, values = read_csv(path)
    col = header.index(target) if target else len(header) - 1
    if target and target not in header:
        raise ValueError(f"{path}: no column {target!r}; columns: {', '.join(header)}")
    x = np.delete(values, col, axis=1)
    y = values[:, col : col + 1]
    if x.shape[1] != INPUT_SHAPE[0]:
        raise ValueError(f"{path}: {x.shape[1]} feature columns, the model expects {INPUT_SHAPE[0]}")
    (x_tr, y_tr), (x_val, y_val) = split(x, y)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
    return ((x_tr - mean) / std, y_tr), ((x_val - mean) / std, y_val)
'''

DATA_SERIES = DATA_CSV.split("\n\ndef load_data")[0] + '''

def load_data(path, target=None):
    """Sliding windows over a numeric CSV: SEQ_LEN rows of every column in, the next HORIZON values of
    the target column (default: the first) out. Standardized with statistics of the training part."""
    header, values = read_csv(path)
    if target and target not in header:
        raise ValueError(f"{path}: no column {target!r}; columns: {', '.join(header)}")
    col = header.index(target) if target else 0
    if values.shape[1] != INPUT_SHAPE[-1]:
        raise ValueError(f"{path}: {values.shape[1]} columns, the model expects {INPUT_SHAPE[-1]} channels")
    n_windows = len(values) - SEQ_LEN - HORIZON + 1
    if n_windows < 2:
        raise ValueError(f"{path}: {len(values)} rows, need at least {SEQ_LEN + HORIZON + 1}")
    cut = int(len(values) * 0.9)
    mean, std = values[:cut].mean(axis=0), values[:cut].std(axis=0) + 1e-6
    values = (values - mean) / std
    starts = np.arange(n_windows)
    x = np.stack([values[s : s + SEQ_LEN] for s in starts]).astype("float32")
    y = np.stack([values[s + SEQ_LEN : s + SEQ_LEN + HORIZON, col] for s in starts]).astype("float32")
    n_val = max(1, n_windows // 10)  # the most recent windows validate (no shuffling across time)
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])
'''

DATA_TEXT = '''
def read_texts(path):
    """(texts, labels, class names) from a CSV with text,label columns or DIR/<class>/*.txt."""
    import csv

    p = Path(path) if path else None
    if p is None or not p.exists():
        raise FileNotFoundError(f"--data must be a CSV (text,label) or a folder of class sub-folders (got {path!r})")
    if p.is_dir():
        classes = sorted(d.name for d in p.iterdir() if d.is_dir())
        texts, labels = [], []
        for i, name in enumerate(classes):
            for f in sorted((p / name).glob("*.txt")):
                texts.append(f.read_text(encoding="utf-8", errors="replace"))
                labels.append(i)
        return texts, np.asarray(labels, dtype="int32"), classes
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "text" not in rows[0] or "label" not in rows[0]:
        raise ValueError(f"{p}: needs a header with 'text' and 'label' columns")
    classes = sorted({r["label"] for r in rows})
    if all(c.lstrip("-").isdigit() for c in classes):
        classes = sorted(classes, key=int)
    index = {c: i for i, c in enumerate(classes)}
    return [r["text"] for r in rows], np.asarray([index[r["label"]] for r in rows], dtype="int32"), classes
''' + _SPLIT + '''

def load_data(path):
    """Texts -> token ids (TextVectorization fitted on the training texts, VOCAB_SIZE, SEQ_LEN)."""
    texts, labels, classes = read_texts(path)
    if len(classes) != NUM_CLASSES:
        raise ValueError(f"{path}: {len(classes)} classes, the model has NUM_CLASSES={NUM_CLASSES}")
    (t_tr, y_tr), (t_val, y_val) = split(np.asarray(texts, dtype=object), labels)
    vectorize = keras.layers.TextVectorization(max_tokens=VOCAB_SIZE, output_sequence_length=SEQ_LEN)
    vectorize.adapt(t_tr.astype(str))
    ids = lambda t: np.asarray(vectorize(t.astype(str)), dtype="int32")
    return (ids(t_tr), y_tr), (ids(t_val), y_val)
'''

DATA_SYNTHETIC = '''
def load_data(path=None, target=None):
    """No dataset named: --data FILE.npz with arrays x and y, else 1024 synthetic examples."""
    if path:
        if not Path(path).is_file() or Path(path).suffix != ".npz":
            raise FileNotFoundError(f"{path}: expected an .npz file with arrays x and y")
        with np.load(path) as d:
            x, y = d["x"], d["y"]
    else:
        print("note: no --data; training on synthetic data", file=sys.stderr)
        x, y = example_batch(1024)
    n_val = max(1, len(x) // 10)
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val])
'''

DATA_BLOCKS = {
    "mnist": DATA_MNIST,
    "cifar10": DATA_CIFAR,
    "imagefolder": DATA_IMAGEFOLDER,
    "csv": DATA_CSV,
    "series": DATA_SERIES,
    "text": DATA_TEXT,
}

# An autoencoder trains on (x, x): the wrappers reuse the image loaders and drop their labels.
AE_WRAP_IMAGE = '''
_load_labelled = load_data


def load_data(path=None):
    """Images only: the target of an autoencoder is its input."""
    train, val = _load_labelled(path)
    if isinstance(train, tuple):
        return (train[0], train[0]), (val[0], val[0])
    return train.map(lambda x, y: (x, x)), val.map(lambda x, y: (x, x))
'''

AE_WRAP_FLAT = '''
_load_labelled = load_data


def load_data(path=None):
    """Flattened inputs in [0, 1]; the target of an autoencoder is its input."""
    train, val = _load_labelled(path)
    if not isinstance(train, tuple):
        raise ValueError("a dense autoencoder takes array data; use an image folder with a conv autoencoder")
    flat = lambda x: x.reshape((len(x), -1))[:, : INPUT_SHAPE[0]]
    if train[0].reshape((len(train[0]), -1)).shape[1] != INPUT_SHAPE[0]:
        raise ValueError(f"inputs have {train[0][0].size} values, the model expects {INPUT_SHAPE[0]}")
    return (flat(train[0]), flat(train[0])), (flat(val[0]), flat(val[0]))
'''

CALLBACKS_HEAD = '''
def make_callbacks(ckpt_dir=None):
    """The training callbacks asked for."""
    cbs = []'''

CALLBACK_EARLY = '''    # early stopping on the validation loss, best weights restored
    cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True))'''

CALLBACK_CKPT = '''    if ckpt_dir:
        # best model on disk, and BackupAndRestore: a rerun after an interruption resumes at the last epoch
        os.makedirs(ckpt_dir, exist_ok=True)
        cbs.append(keras.callbacks.ModelCheckpoint(os.path.join(ckpt_dir, "best.keras"), monitor="val_loss", save_best_only=True))
        cbs.append(keras.callbacks.BackupAndRestore(os.path.join(ckpt_dir, "backup")))'''

CALLBACKS_TAIL = "    return cbs"

FIT = '''
def steps_per_epoch(data, batch_size):
    if isinstance(data, tuple):
        return max(1, math.ceil(len(data[0]) / batch_size))
    n = int(data.cardinality())
    return max(1, math.ceil(n / batch_size)) if n > 0 else 1000


def _batched(data, batch_size):
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit(model, train, val, epochs, batch_size, callbacks=(), verbose=1):
    """model.fit on arrays (x, y) or on an unbatched tf.data.Dataset."""
    if isinstance(train, tuple):
        return model.fit(train[0], train[1], batch_size=batch_size, epochs=epochs, validation_data=val,
                         callbacks=list(callbacks), verbose=verbose)
    return model.fit(_batched(train, batch_size), epochs=epochs, validation_data=_batched(val, batch_size),
                     callbacks=list(callbacks), verbose=verbose)


def evaluate(model, data, batch_size):
    if isinstance(data, tuple):
        return model.evaluate(data[0], data[1], batch_size=batch_size, verbose=0, return_dict=True)
    return model.evaluate(_batched(data, batch_size), verbose=0, return_dict=True)
'''

TUNE = '''
def tune(data, trials, epochs, batch_size):
    """An Optuna study (TPE, seeded) over lr and dropout; returns the best parameters."""
    import optuna

    (train, val) = data
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        keras.utils.clear_session()
        with strategy().scope():
            model = build_model(lr=lr, dropout=dropout, decay_steps=epochs * steps_per_epoch(train, batch_size))
        hist = fit(model, train, val, epochs=epochs, batch_size=batch_size, callbacks=[], verbose=0)
        return float(min(hist.history["val_loss"]))

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=SEED))
    study.optimize(objective, n_trials=trials, show_progress_bar=sys.stderr.isatty())
    return study.best_params
'''

QUANTIZE = '''
def export_tflite(model, path):
    """Post-training dynamic-range quantization (int8 weights) to a TFLite flatbuffer; returns its size."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # recurrent layers need a few TensorFlow ops the TFLite builtins lack
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    data = converter.convert()
    Path(path).write_bytes(data)
    return len(data)
'''

STRATEGY_DDP = '''
def strategy():
    """Data parallel over every GPU of this host (MirroredStrategy); the default strategy otherwise."""
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
'''

STRATEGY_DEFAULT = '''
def strategy():
    return tf.distribute.get_strategy()
'''
