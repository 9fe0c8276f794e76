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

The modules, in the order a program is made: :mod:`.coverage` (what is covered, what is not applied),
:mod:`.choices` (every choice, resolved once from the Intent), :mod:`.model` (``build_model()``),
:mod:`.program` (the whole program around it), and the program text they put together,
:mod:`.blocks` (imports, layers, training) and :mod:`.data` (the data loaders).
"""

from __future__ import annotations

from deepdive.codegen.builtin.keras.choices import Choices
from deepdive.codegen.builtin.keras.coverage import COVERED, ENGINE_NOTE, NOT_APPLIED, coverage, validate
from deepdive.codegen.builtin.keras.program import render
from deepdive.codegen.intent import Intent

__all__ = ["COVERED", "NOT_APPLIED", "ENGINE_NOTE", "Choices", "coverage", "generate", "validate"]


def generate(intent: Intent) -> str:
    """Return the source of a complete TensorFlow/Keras 3 program for ``intent``.

    Raises ValueError (one line) for a task/architecture this generator does not cover.
    """
    validate(intent)
    return render(Choices(intent))
