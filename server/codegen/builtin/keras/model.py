"""The model part of a Keras program: ``build_model()`` for each task and architecture, as program text."""

from __future__ import annotations

from deepdive.codegen.builtin.keras.blocks import RESIDUAL_BLOCK, TRANSFORMER_BLOCKS
from deepdive.codegen.builtin.keras.choices import Choices

__all__ = ["model_source"]


def model_source(c: Choices) -> str:
    """``build_model()`` (and the helper blocks it calls): the layers for the task and architecture."""
    body: list[str] = []
    helpers = ""
    if c.amp:
        body.append("configure_precision()")
    dtype = ', dtype="int32"' if c.task == "text-classification" else ""
    body.append(f"inputs = keras.Input(shape=INPUT_SHAPE{dtype})")
    t, a = c.task, c.arch
    out_dense = 'keras.layers.Dense({units}, activation={act}, dtype="float32", name="output")(x)'
    if t == "image-classification":
        if a == "cnn":
            body += [
                "x = inputs",
                "for filters, pool in zip(CONV_FILTERS, POOL_AFTER):",
                '    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)',
                "    if pool:",
                "        x = keras.layers.MaxPooling2D()(x)",
                "x = keras.layers.Flatten()(x)" if c.flatten else "x = keras.layers.GlobalAveragePooling2D()(x)",
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
        if c.no_dropout:  # the encoder block's own Dropout goes too (its attention dropout is 0.0)
            helpers = helpers.replace("ff = keras.layers.Dropout(dropout)(keras.layers.Dense(EMBED_DIM)(ff))",
                                      "ff = keras.layers.Dense(EMBED_DIM)(ff)")
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
    elif t == "autoencoder" and c.conv:
        body += [
            "x = inputs",
            "for filters, stride in zip(CONV_FILTERS, CONV_STRIDES):  # encoder",
            '    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)',
        ]
        if c.latent:
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
    if c.no_dropout:
        body = [line for line in body if "keras.layers.Dropout(dropout)(x)" not in line]
    name = f"{c.arch}_{c.task.replace('-', '_')}"
    body += [
        f'model = keras.Model(inputs, outputs, name="{name}")',
        "compile_model(model, lr, decay_steps)",
        "return model",
    ]
    doc = '    """The model, compiled (Adam, {loss}). ``lr``, ``dropout``: the hyperparameters a study tunes."""'
    text = (
        "def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):\n"
        + doc.format(loss=_loss_name(c))
        + "\n"
        + "\n".join("    " + line for line in body)
    )
    return (helpers + "\n\n" + text) if helpers else text


def _loss_name(c: Choices) -> str:
    return {"classify": "sparse categorical cross-entropy on softmax outputs"}.get(c.kind, "mean squared error")
