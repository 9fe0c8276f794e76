"""Program text of the Keras programs, other than data loading: imports, precision, layers, training.

Plain strings: no formatting, so braces are literal. :mod:`.program` and :mod:`.model` put them
together; tests/codegen/test_builtin_keras.py runs the programs they make.
"""

from __future__ import annotations

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
