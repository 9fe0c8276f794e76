"""Reference examples for frame mode: a short definition of the right kind of model for the request.

A 0.5B model copies whatever example it is shown: shown the builtin's CNN classifier (the frame's own
model part) for a U-Net request, it writes a CNN classifier. So the frame prompt also shows one short
reference example of the request's kind: a U-Net with its skip concatenations for a segmentation, a
1-D CNN over ``(N, C, T)`` for a signal, a REINFORCE loss for a policy. Each example is a model part
in the frame's conventions (the frame already imports ``math``, ``torch``, ``torch.nn.functional as
F`` and ``from torch import nn``, or ``numpy as np``, ``tensorflow as tf`` and ``keras``): the
constants it uses, the model class(es), ``build_model()``, ``example_batch(batch_size=8)`` returning
random ``(inputs, targets)``, and in torch ``compute_loss(model, batch)`` returning ``(loss,
correct_or_None)``. Spliced into its frame, each one passes the verifier for a request of its kind
(tests/codegen/test_frame_examples.py). ``INPUT_SHAPE`` is always a literal and other constants are
derived from it (``SEQ_LEN = INPUT_SHAPE[0]``), never the other way: the splice puts a redefined
constant where the frame's was, near the top, so ``INPUT_SHAPE = (SEQ_LEN,)`` would name a constant
not yet defined. The GCN also replaces the frame's ``synthetic_dataset`` so a batch stacks whole
graphs (the frame's stacks examples, which would split one graph's nodes).

:func:`example_for` picks by the request's family first, then by its task (an example may be the first
choice of its task for some families: the GPT for a transformer language model), and gives a GRU example
LSTM layers (or the other way) when the request names the other. Families and tasks the
builtin's frame already shows well (ResNet, transformer, LSTM/GRU classifiers, image classification)
have no example here. The examples' code is in :mod:`.torch_sources` and :mod:`.keras_sources`.
"""

from __future__ import annotations

import re
from typing import Optional

import attrs

from deepdive.codegen.frames.examples import keras_sources as K
from deepdive.codegen.frames.examples import torch_sources as T
from deepdive.codegen.spec import Spec

__all__ = ["Example", "EXAMPLES", "example_for"]


@attrs.define(frozen=True)
class Example:
    """One reference definition shown to the model.

    Attributes:
        key (str): a short name (``"unet"``); with ``framework`` it names one example.
        framework (str): ``"torch"`` or ``"tensorflow"`` (Keras).
        title (str): one line for the prompt ("a small U-Net for semantic segmentation").
        source (str): the code: constants, model class(es), ``build_model``, ``example_batch`` and, in
            torch, ``compute_loss``.
        tasks (tuple[str, ...]): the tasks it is an example for, the one it is made for first.
        families (tuple[str, ...]): the families it is an example for (empty: picked by task only).
        ranks (Optional[tuple[int, ...]]): the ranks of one example's input (``len(input_shape)``) it
            shows; a request that states another is not shown it (None: any).
        prefer (tuple[str, ...]): families for which it is the first choice among its task's examples, and
            only there (a GPT for a transformer language model, not for a transformer classifier).
        outputs (Optional[str]): ``"one"`` output per example or ``"many"``; a request that states the other
            is not shown it (a score per (user, item) pair, or scores over all items; None: any).
    """

    key: str
    framework: str
    title: str
    source: str
    tasks: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    ranks: Optional[tuple[int, ...]] = None
    prefer: tuple[str, ...] = ()
    outputs: Optional[str] = None


def _torch(key: str, title: str, source: str, tasks: tuple[str, ...], families: tuple[str, ...] = (),
           ranks: Optional[tuple[int, ...]] = None, prefer: tuple[str, ...] = (), outputs: Optional[str] = None) -> Example:
    return Example(key, "torch", title, source, tasks, families, ranks, prefer, outputs)


def _keras(key: str, title: str, source: str, tasks: tuple[str, ...], families: tuple[str, ...] = (),
           ranks: Optional[tuple[int, ...]] = None, outputs: Optional[str] = None) -> Example:
    return Example(key, "tensorflow", title, source, tasks, families, ranks, outputs=outputs)


#: Every example, in the order :func:`example_for` prefers them among equals.
EXAMPLES: tuple[Example, ...] = (
    _torch("unet", "a small U-Net for semantic segmentation", T.UNET, ("semantic-segmentation",), ("unet",), (3,)),
    _torch("cnn1d", "a 1-D CNN classifier over signals (N, channels, time)", T.CNN1D,
           ("signal-classification", "audio-classification"), ("cnn1d",), (1, 2)),
    _torch("char-lm", "a character-level GRU language model", T.CHAR_LM, ("language-model",), (), (1,)),
    _torch("gpt-lm", "a small GPT-style (decoder-only transformer) language model", T.GPT_LM, ("language-model",), (),
           (1,), prefer=("transformer",)),
    _torch("multi-label", "a CNN multi-label image classifier (one sigmoid per label)", T.MULTI_LABEL,
           ("multi-label-classification",), (), (3,)),
    _torch("forecasting", "an LSTM that forecasts the next HORIZON values of a series", T.FORECAST,
           ("forecasting",), (), (1, 2)),
    _torch("diffusion", "a small U-Net noise predictor for a denoising diffusion model", T.DIFFUSION,
           ("diffusion",), ("diffusion", "unet"), (3,)),
    _torch("spectrogram", "a CNN classifier of spectrograms (N, 1, mel bins, frames)", T.SPECTROGRAM,
           ("audio-classification",), (), (3,)),
    _torch("tagger", "a BiLSTM sequence tagger (a tag per token)", T.TAGGER, ("sequence-labeling",), (), (1,)),
    _torch("gcn", "a graph convolutional network in plain torch for node classification", T.GCN, ("graph",),
           ("gnn",), (1,)),
    _torch("detection", "a small detector: conv backbone, boxes and class scores per anchor", T.DETECTION,
           ("object-detection",), ("yolo",), (3,)),
    _torch("policy", "a policy network trained with REINFORCE", T.POLICY, ("policy",), (), (1,)),
    _torch("recommender", "a matrix-factorisation recommender of clicks (user and item embeddings)", T.RECOMMENDER,
           ("recommendation",), outputs="one"),
    _torch("recommender-all", "a recommender that scores every item for a user (a user embedding against all items)",
           T.RECOMMENDER_ALL, ("recommendation",), outputs="many"),
    _torch("tabular-regression", "an MLP regressor on the numeric columns of a CSV", T.TABULAR, ("regression",),
           (), (1,)),
    _keras("unet", "a small Keras U-Net for semantic segmentation", K.UNET, ("semantic-segmentation",),
           ("unet",), (3,)),
    _keras("cnn1d", "a Keras 1-D CNN classifier over signals (N, time, channels)", K.CNN1D,
           ("signal-classification", "audio-classification"), ("cnn1d",), (1, 2)),
    _keras("spectrogram", "a Keras CNN classifier of spectrograms (N, mel bins, frames, 1)", K.SPECTROGRAM,
           ("audio-classification",), (), (3,)),
    _keras("tagger", "a Keras bidirectional GRU sequence tagger (a tag per token)", K.TAGGER,
           ("sequence-labeling",), (), (1,)),
    _keras("multi-label", "a Keras CNN multi-label image classifier (one sigmoid per label)", K.MULTI_LABEL,
           ("multi-label-classification",), (), (3,)),
    _keras("recommender", "a Keras recommender of clicks (user and item embeddings, dot product)", K.RECOMMENDER,
           ("recommendation",), outputs="one"),
    _keras("recommender-all", "a Keras recommender that scores every item for a user (a user embedding, a score per item)",
           K.RECOMMENDER_ALL, ("recommendation",), outputs="many"),
)


def example_for(spec: Spec, framework: str) -> Optional[Example]:
    """The reference example for this request, or None when no example here fits it.

    The request's family picks first (a U-Net for any U-Net request; among a family's examples the one
    made for the request's task: a diffusion U-Net for a diffusion request); else its task. Only
    examples of ``framework`` are shown (torch code would mislead a Keras frame), and none whose input
    rank differs from the rank the request states (an image CNN for 300-token documents would too), nor
    one with one output per example when the request states several (or the other way).
    """
    family, task = spec.get("family"), spec.get("task")
    shape = spec.get("input_shape")
    rank = len(shape) if isinstance(shape, (list, tuple)) else None
    outputs = spec.get("outputs")
    count = None if not isinstance(outputs, int) else "one" if outputs == 1 else "many"
    pool = [e for e in EXAMPLES if e.framework == framework and (rank is None or e.ranks is None or rank in e.ranks)
            and (count is None or e.outputs is None or e.outputs == count)]
    by_family = [e for e in pool if family is not None and family in e.families]
    by_task = [e for e in pool if task is not None and task in e.tasks]
    preferred = [e for e in by_task if family is not None and family in e.prefer]
    matches = preferred or by_family or by_task
    if not matches:
        return None
    # The first example made for this task, else the first of the family (min keeps the table's order).
    chosen = min(matches, key=lambda e: e.tasks.index(task) if task in e.tasks else len(e.tasks))
    return _in_family(chosen, family)


#: How an example's code names a recurrent layer, by framework.
_RNN_CALL = {"torch": "nn.{}(", "tensorflow": "layers.{}("}


def _in_family(example: Example, family: Optional[str]) -> Example:
    """The example with its GRU layers made LSTM ones, or the other way, when the request asks for the other
    (the 0.5B model copies the recurrent layer it is shown: a GRU character model for an LSTM request). Both
    take the same arguments and return ``(output, state)``, and the examples read only the output."""
    if family not in ("lstm", "gru"):
        return example
    want, other = family.upper(), "GRU" if family == "lstm" else "LSTM"
    call = _RNN_CALL[example.framework]
    if call.format(other) not in example.source or call.format(want) in example.source:
        return example
    title = re.sub(rf"\b(Bi)?{other}\b", lambda m: (m.group(1) or "") + want, example.title)
    return attrs.evolve(example, source=example.source.replace(call.format(other), call.format(want)), title=title)
