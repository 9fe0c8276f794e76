"""The task checks: what the inputs, outputs and targets of one batch show about the task.

Each task is judged by what can be checked from one batch and one forward pass (a segmentation's
output is class scores per pixel at the input's size; a language model's output is a distribution
per input token); object detection, policies, recommenders and graph networks are judged in
:mod:`.task_more` (a policy's training from rewards read from the source). A task whose nature lies
in its training alone (a GAN's adversarial game, episodic few-shot training) is not checked, and
says so.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from deepdive.codegen.properties import task_more
from deepdive.codegen.properties.facts import FAILED, MET, NOT_CHECKED, Judgement, ProgramFacts, same_spatial, shape_text
from deepdive.codegen.properties.training import loss_keys, losses
from deepdive.codegen.spec import Spec


# -- task -------------------------------------------------------------------------------------------


def task(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    check = _TASKS.get(str(expected))
    if check is None:
        return NOT_CHECKED, _UNCHECKABLE.get(str(expected), f"no check can tell a {expected} program from others")
    return check(f, spec)


def _classifier(f: ProgramFacts, what: str) -> Optional[Judgement]:
    """A failure when the output is not one score vector (or one binary logit) per example, or the
    targets of a many-class output are real values rather than labels."""
    y, t = f.tensor("outputs"), f.tensor("targets")
    if not y or len(y["shape"]) not in (1, 2):
        return FAILED, f"output {shape_text(y and y['shape'])} is not one score vector per example, as a {what} gives"
    if len(y["shape"]) == 2 and y["shape"][1] > 1 and t and t["dtype"] == "float" and len(t["shape"]) == 1:
        return FAILED, f"targets {shape_text(t['shape'])} are real values, not class labels"
    return None


def _task_classification(kind: str, input_rank: tuple[int, ...], input_dtype: Optional[str]) -> Callable:
    def check(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
        x = f.tensor("inputs")
        bad = _classifier(f, f"{kind} classifier")
        if bad:
            return bad
        if not x:
            return NOT_CHECKED, "example_batch() returned no tensor inputs"
        rank = len(x["shape"]) - 1
        if rank not in input_rank:
            return FAILED, f"inputs {shape_text(x['shape'])} are not {kind} inputs ({' or '.join(f'{r}-D' for r in input_rank)} per example)"
        if input_dtype and x["dtype"] != input_dtype:
            return FAILED, f"inputs are {x['dtype']} values, not {'token ids' if input_dtype == 'int' else input_dtype}"
        return MET, f"inputs {shape_text(x['shape'])}, output {shape_text(f.shape('outputs'))}: one score per class"
    return check


def _task_multilabel(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    bad = _classifier(f, "multi-label classifier")
    if bad:
        return bad
    y, t = f.shape("outputs"), f.tensor("targets")
    if t and t["shape"] != y:
        return FAILED, f"targets {shape_text(t['shape'])} are not one 0/1 flag per label like the output {shape_text(y)}"
    used = losses(f)
    if not used:
        return NOT_CHECKED, f"output {shape_text(y)}; no loss found, so independent per-label probabilities were not checked"
    if any(k & {"bce", "bce_logits"} for k in (loss_keys(n) for n, _ in used)):
        return MET, f"output {shape_text(y)}, targets {shape_text(t and t['shape'])}, binary cross-entropy per label"
    return FAILED, f"the loss is {used[0][0]}: a softmax over labels picks one label, not several"


def _task_regression(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    y, t = f.tensor("outputs"), f.tensor("targets")
    if not y:
        return NOT_CHECKED, "the forward pass returned no tensor"
    if t and t["dtype"] != "float":
        return FAILED, f"targets are {t['dtype']} labels, not real values"
    if t and math.prod(t["shape"]) != math.prod(y["shape"]):
        return FAILED, f"targets {shape_text(t['shape'])} do not match the output {shape_text(y['shape'])}"
    return MET, f"output {shape_text(y['shape'])} of real values, targets {shape_text(t and t['shape'])}"


def _task_forecasting(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    x = f.tensor("inputs")
    if not x or len(x["shape"]) not in (2, 3) or x["dtype"] != "float":
        return FAILED, f"inputs {shape_text(x and x['shape'])} are not a window of past values (N, T) or (N, T, C)"
    return _task_regression(f, spec)


def _task_segmentation(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    y = f.shape("outputs")
    if not y or len(y) != 4:
        return FAILED, f"output {shape_text(y)} is not a map of class scores per pixel (N, C, H, W)"
    ok, detail = same_spatial(f)
    return (MET, f"class scores per pixel: {detail}") if ok else (FAILED, detail)


def _task_tokens(kind: str) -> Callable:
    def check(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
        x, y = f.shape("inputs"), f.shape("outputs")
        ids = bool(x) and len(x) == 2 and (f.tensor("inputs") or {}).get("dtype") == "int"
        vectors = kind == "sequence-labeling" and bool(x) and len(x) == 3  # a feature vector per step tags too
        if not (ids or vectors):
            return FAILED, f"inputs {shape_text(x)} are not token ids (N, T)"
        if not y or len(y) != 3 or y[1] != x[1]:
            return FAILED, f"output {shape_text(y)} is not one score vector per input token (N, {x[1]}, classes)"
        what = "a distribution over the vocabulary" if kind == "language-model" else "tag scores"
        return MET, f"inputs {shape_text(x)}, output {shape_text(y)}: {what} per token"
    return check


def autoencoder(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    x, y = f.shape("inputs"), f.shape("outputs")
    if not x or not y or x != y:
        return FAILED, f"output {shape_text(y)} is not a reconstruction of the input {shape_text(x)}"
    width = f.graph.get("min_width")
    if width is None:
        return NOT_CHECKED, f"output {shape_text(y)} has the input's shape; the bottleneck could not be measured"
    inner = math.prod(x[1:])
    if width < inner:
        return MET, f"output {shape_text(y)} reconstructs the input through a bottleneck of {width} values (input {inner})"
    return FAILED, f"no layer narrower than the input's {inner} values: nothing forces a compressed code"


def vae(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    outs = f.run.get("outputs") or []
    x = f.shape("inputs")
    if not outs or outs[0]["shape"] != x:
        return FAILED, f"the first output {shape_text(outs[0]['shape'] if outs else None)} is not a reconstruction of the input {shape_text(x)}"
    stats = [o for o in outs[1:] if len(o["shape"]) == 2]
    if len(stats) >= 2 and stats[0]["shape"] == stats[1]["shape"]:
        return MET, (f"reconstruction {shape_text(x)} and a latent mean and log-variance "
                     f"{shape_text(stats[0]['shape'])}")
    return NOT_CHECKED, "the reconstruction has the input's shape, but the latent mean and variance are not among the outputs"


def _task_diffusion(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    ins, y = f.run.get("inputs") or [], f.shape("outputs")
    steps = [t for t in ins[1:] if len(t["shape"]) == 1]
    if len(ins) < 2 or not steps:
        return FAILED, "the model is not called with a noisy input and a timestep (example_batch() gives no (N,) timesteps)"
    if y != ins[0]["shape"]:
        return FAILED, f"output {shape_text(y)} is not a prediction of the noise in the input {shape_text(ins[0]['shape'])}"
    return MET, f"denoiser: input {shape_text(ins[0]['shape'])} and timesteps {shape_text(steps[0]['shape'])}, output of the input's shape (the noise schedule is not checked)"


def _task_audio(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    bad = _classifier(f, "classifier")
    if bad:
        return bad
    x = f.shape("inputs")
    per = x[1:] if x else []
    if len(per) in (1, 2) or len(per) == 3 and min(per[0], per[-1]) <= 2:
        return MET, f"inputs {shape_text(x)} (a waveform or spectrogram), output {shape_text(f.shape('outputs'))}: one score per class"
    return NOT_CHECKED, f"inputs {shape_text(x)} do not look like a waveform or a spectrogram"


def _task_signal(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    bad = _classifier(f, "classifier")
    if bad:
        return bad
    x = f.shape("inputs")
    if x and len(x) in (2, 3):
        return MET, f"inputs {shape_text(x)} (a 1-D signal per example), output {shape_text(f.shape('outputs'))}"
    return FAILED, f"inputs {shape_text(x)} are not a 1-D signal per example (N, T) or (N, C, T)"


_TASKS: dict[str, Callable[[ProgramFacts, Optional[Spec]], Judgement]] = {
    "image-classification": _task_classification("image", (2, 3), None),
    "text-classification": _task_classification("text", (1,), "int"),
    "tabular-classification": _task_classification("tabular", (1,), "float"),
    "multi-label-classification": _task_multilabel,
    "regression": _task_regression,
    "forecasting": _task_forecasting,
    "semantic-segmentation": _task_segmentation,
    "language-model": _task_tokens("language-model"),
    "sequence-labeling": _task_tokens("sequence-labeling"),
    "autoencoder": autoencoder,
    "vae": vae,
    "diffusion": _task_diffusion,
    "audio-classification": _task_audio,
    "signal-classification": _task_signal,
    "object-detection": task_more.object_detection,
    "policy": task_more.policy,
    "recommendation": task_more.recommendation,
    "graph": task_more.graph,
}

_UNCHECKABLE = {
    "gan": "a GAN's generator and discriminator and their adversarial training cannot be checked by running one forward pass",
    "few-shot": "episodic few-shot training cannot be checked by one forward pass",
    "streaming-inference": "streaming (a sliding window over live input) cannot be checked by one forward pass",
    "online-learning": "learning from a stream, one update at a time, cannot be checked by one forward pass",
}
