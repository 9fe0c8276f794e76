"""The checks of what a program is built of: framework, input shape, outputs per example, layers."""

from __future__ import annotations

import math
from typing import Any, Optional

from deepdive.codegen.properties.facts import FAILED, MET, NOT_CHECKED, Judgement, ProgramFacts, plural, shape_text, where
from deepdive.codegen.source_facts import Call
from deepdive.codegen.spec import Spec, same_layer


# -- framework, shapes, outputs ---------------------------------------------------------------------


def framework(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    names = {"torch": "PyTorch", "tensorflow": "TensorFlow/Keras", "none": "neither torch nor TensorFlow"}
    got = names.get(f.framework, f.framework)
    if f.framework == expected:
        return MET, f"the program imports {got}"
    return FAILED, f"the program imports {got}, not {names.get(str(expected), expected)}"


def input_shape(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    if spec.get("task") == "gan":
        # A GAN's model reads noise: the data's shape is that of its samples and of the real examples.
        shape, real = f.shape("outputs"), f.shape("targets")
        seen = f"the generator makes samples {shape_text(shape)}"
        if shape and real and real != shape:
            return FAILED, f"{seen}, but the real examples of example_batch() are {shape_text(real)}"
    else:
        shape = f.shape("inputs")
        seen = f"example_batch() gives inputs {shape_text(shape)}"
    if not shape:
        return NOT_CHECKED, "example_batch() returned no tensor inputs"
    got, want = list(shape[1:]), [int(d) for d in expected]
    if got == want:
        return MET, seen
    if len(want) == 3 and len(got) == 3 and (got == want[1:] + want[:1] or got == want[2:] + want[:2]):
        return MET, f"{seen}: {shape_text(want)} with the channels {'last' if got == want[1:] + want[:1] else 'first'}"
    if [d for d in got if d != 1] == [d for d in want if d != 1] and any(d != 1 for d in want):
        return MET, f"{seen}: {shape_text(want)} up to dimensions of size 1"
    return FAILED, f"{seen}: one example is {shape_text(got)}, not {shape_text(want)}"


def _units(shape: list, task: Optional[str], framework: str) -> tuple[int, str]:
    """Output units per example, read the way ``task`` counts them, and how they were read."""
    per = shape[1:]
    if not per:
        return 1, "one value per example"
    if task in ("language-model", "sequence-labeling") and len(per) >= 2:
        return per[-1], "scores per token"
    if task == "semantic-segmentation" and len(per) >= 3:
        return (per[-1] if framework == "tensorflow" else per[0]), "class scores per pixel"
    if len(per) == 1:
        return per[0], "units per example"
    return math.prod(per), "values per example"


def _class_scores(f: ProgramFacts) -> Optional[list]:
    """A detector's class-score tensor: the first float output whose last dimension is not 4 (the boxes')."""
    for t in f.run.get("outputs") or []:
        shape = t.get("shape")
        if shape and None not in shape and len(shape) >= 2 and t.get("dtype") == "float" and shape[-1] != 4:
            return shape
    return None


def _packed_classes(shape: list, classes: int) -> Judgement:
    """One tensor holding, per cell, boxes, objectness and class scores (YOLO-style): its channel
    dimension (second or last) must be A x (5 + classes), A x (4 + classes) or 5B + classes."""
    for d in (shape[1], shape[-1]):
        for a in range(1, 10):
            if d in (a * (5 + classes), a * (4 + classes)) or (d - classes > 0 and (d - classes) % 5 == 0 and d - classes <= 5 * a):
                return MET, f"packed output {shape_text(shape)}: {d} values per cell hold {classes} class scores"
    return FAILED, (f"packed output {shape_text(shape)}: no dimension holds boxes (4), objectness and {classes} class "
                    "scores per cell")


def outputs(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    task = spec.get("task")
    if task == "object-detection":
        outs = [t for t in f.run.get("outputs") or [] if t.get("shape") and None not in t["shape"]]
        if len(outs) == 1 and len(outs[0]["shape"]) >= 3:
            return _packed_classes(outs[0]["shape"], int(expected))
        scores = _class_scores(f)
        if scores is None:
            return NOT_CHECKED, "no class-score output apart from the boxes: the class count is judged with the task"
        seen = f"class scores {shape_text(scores)}: {scores[-1]} per box"
        return (MET, seen) if scores[-1] == int(expected) else (FAILED, f"{seen}, not {expected}")
    shape = f.shape("outputs")
    if not shape or None in shape:
        return NOT_CHECKED, "the forward pass returned no tensor of known shape"
    if task == "graph" and len(shape) >= 2:
        got = shape[-1]
        seen = f"output {shape_text(shape)}: {got} scores per node or graph"
        return (MET, seen) if got == int(expected) else (FAILED, f"{seen}, not {expected}")
    got, how = _units(shape, task, f.framework)
    seen = f"output {shape_text(shape)}: {got} {how}"
    return (MET, seen) if got == int(expected) else (FAILED, f"{seen}, not {expected}")


# -- layers -----------------------------------------------------------------------------------------

# torch.nn.functional calls (and tf.nn's) that are a layer of this type without a module.
_FUNCTIONAL = {"dropout": "Dropout", "dropout1d": "Dropout", "dropout2d": "Dropout", "dropout3d": "Dropout",
               "alpha_dropout": "Dropout", "feature_alpha_dropout": "Dropout", "batch_norm": "BatchNorm2d",
               "layer_norm": "LayerNorm", "conv1d": "Conv1d", "conv2d": "Conv2d", "linear": "Linear"}


def _functional(f: ProgramFacts, name: str) -> list[Call]:
    return [c for c in f.source.calls
            if c.name.rsplit(".", 1)[0] in ("torch.nn.functional", "torch", "tensorflow.nn")
            and c.last in _FUNCTIONAL and same_layer(_FUNCTIONAL[c.last], name)]


def has_layer(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    count, paths = f.layers(str(expected))
    calls = _functional(f, str(expected))
    if count:
        return MET, f"model has {plural(count, str(expected) + ' module')}{where(paths)}"
    if calls:
        return MET, f"the program calls {calls[0].name} (line {calls[0].line})"
    return FAILED, f"model has no {expected} module among its {f.run.get('module_count', 0)} modules"


def no_layer(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    count, paths = f.layers(str(expected))
    calls = _functional(f, str(expected))
    if count:
        return FAILED, f"model has {plural(count, str(expected) + ' module')}{where(paths)}"
    if calls:
        return FAILED, "the program calls " + ", ".join(f"{c.name} (line {c.line})" for c in calls[:3])
    return MET, f"no {expected} module among the model's {f.run.get('module_count', 0)} modules, and no functional {expected}"


def layer_count(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    name, want = str(expected[0]), int(expected[1])
    count, paths = f.layers(name)
    seen = f"model has {plural(count, name + ' layer')}{where(paths)}"
    return (MET, seen) if count == want else (FAILED, f"{seen}, not {want}")
