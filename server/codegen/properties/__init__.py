"""Judge each property a request states against the generated program: met, failed or not checked.

The verifier's ``properties`` stage gathers facts about the program — in the sandbox
(:mod:`deepdive.codegen.probe`: modules, shapes, the forward pass's data flow) and from its source
(:mod:`deepdive.codegen.source_facts`: calls of autocast, DDP, losses) — and :func:`judge` compares
them with the request's :class:`~deepdive.codegen.spec.Spec`, never with what a template made of it.

A property is ``met`` only when a check that could fail says it holds, ``failed`` when that check says
it does not, and ``not_checked`` when nothing here can tell (a GAN's adversarial training, a policy's
rewards); each comes with one line saying what was seen. A result is verified only when every stated
property is met (:func:`verdict`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from deepdive.codegen.generation import GenerateCheck, PropertyCheck
from deepdive.codegen.properties import family, shapes, task, training
from deepdive.codegen.properties.facts import FAILED, MET, NOT_CHECKED, Judgement, ProgramFacts, plural
from deepdive.codegen.spec import Spec, Stated

__all__ = ["ProgramFacts", "judge", "not_checked", "verdict", "wants", "label", "line", "MET", "FAILED", "NOT_CHECKED"]

#: Families and tasks whose checks need the forward pass's data flow (:class:`deepdive.codegen.probe.GraphRecorder`).
_GRAPH_FAMILIES = {"resnet", "unet", "transformer", "vit", "autoencoder", "vae"}
_GRAPH_TASKS = {"autoencoder", "vae", "graph", "recommendation"}  # the last two: which inputs the output reads


def wants(spec: Optional[Spec]) -> list[str]:
    """What the probe must record for ``spec``'s checks (the data flow costs a little; only when needed)."""
    if spec is None:
        return []
    if spec.get("family") in _GRAPH_FAMILIES or spec.get("task") in _GRAPH_TASKS:
        return ["graph"]
    return []


def label(stated: Stated) -> str:
    """The property in a few words: ``no_layer Dropout``, ``outputs 10``, ``input_shape 1×28×28``."""
    value = stated.value
    if stated.name == "input_shape" and isinstance(value, list):
        text = "×".join(str(d) for d in value)
    elif stated.name == "layer_count" and isinstance(value, (list, tuple)) and len(value) == 2:
        text = f"{value[1]} {value[0]}"
    elif stated.name == "distributed":
        text = "yes" if value else "no"
    else:
        text = str(value)
    return f"{stated.name} {text}"


def line(p: PropertyCheck) -> str:
    """One property's line: ``no_layer Dropout: failed — model has 2 Dropout modules (features.3, head.1)``."""
    status = {"met": "met", "failed": "failed", "not_checked": "not checked"}[p.status]
    return f"{p.label}: {status}" + (f" — {p.detail}" if p.detail else "")


def judge(spec: Optional[Spec], facts: ProgramFacts) -> list[PropertyCheck]:
    """Each stated property of ``spec`` judged against ``facts``, in the order the prompt states them."""
    if spec is None:
        return []
    out = []
    for stated in spec.stated:
        check = _JUDGES.get(stated.name)
        if check is None:
            status, detail = NOT_CHECKED, f"no check for the property {stated.name!r}"
        else:
            try:
                status, detail = check(stated.value, facts, spec)
            except (TypeError, ValueError, IndexError, KeyError) as exc:  # a value of an unexpected form
                status, detail = NOT_CHECKED, f"could not check the value {stated.value!r}: {exc}"
        out.append(_make(stated, status, detail))
    return out


def not_checked(spec: Optional[Spec], why: str) -> list[PropertyCheck]:
    """Every stated property as not checked, for ``why`` (verification stopped early, or was off)."""
    return [_make(s, NOT_CHECKED, why) for s in (spec.stated if spec is not None else [])]


def _make(stated: Stated, status: str, detail: str) -> PropertyCheck:
    return PropertyCheck(name=stated.name, expected=stated.value, status=status, detail=detail, text=stated.text,
                         label=label(stated))


#: ``Stated.text`` of a property the model read (frames.reading), not the parser.
MODEL_READING = "read by the model"


def verdict(checks: list[GenerateCheck], properties: list[PropertyCheck], spec: Optional[Spec]) -> Optional[str]:
    """None when the result is verified; else why not, in one line.

    Verified means: the checks ran and passed, every stated property was checked and met, and nothing
    of the prompt was left not understood.
    """
    failed = [p for p in properties if p.status == FAILED]
    # The properties check fails for its failed properties (said below) or because the probe failed.
    failed_checks = [c for c in checks if not c.ok and not (c.name == "properties" and failed)]
    if failed_checks:
        first = failed_checks[0]
        return f"verification failed: {first.name}: {first.detail}" if first.detail else f"verification failed: {first.name}"
    if not checks:
        return "verification did not run"
    if failed:
        return (f"verification failed: {plural(len(failed), 'stated property')} not met: "
                + "; ".join(f"{p.label} — {p.detail}" for p in failed))
    unchecked = [p for p in properties if p.status == NOT_CHECKED]
    if unchecked:
        return (f"checks incomplete: {plural(len(unchecked), 'stated property')} not checked: "
                + "; ".join(f"{p.label} — {p.detail}" for p in unchecked))
    left = (spec.unknown + spec.unplaced_numbers) if spec is not None else []
    if left:
        return "checks incomplete: part of the request was not understood, so it was not checked: " + ", ".join(
            repr(w) for w in left)
    by_model = [s.name for s in spec.stated if s.text == MODEL_READING] if spec is not None else []
    if by_model:
        # The model's reading guides the checks but is not the request: a misreading would verify a wrong program.
        return ("checks incomplete: " + ", ".join(by_model) + " came from the model's reading of the request, "
                "not from the request as parsed: compare them with what you asked")
    return None


_JUDGES: dict[str, Callable[[Any, ProgramFacts, Spec], Judgement]] = {
    "framework": shapes.framework, "input_shape": shapes.input_shape, "outputs": shapes.outputs,
    "has_layer": shapes.has_layer, "no_layer": shapes.no_layer, "layer_count": shapes.layer_count,
    "family": family.family, "task": task.task, "loss": training.loss, "precision": training.precision,
    "distributed": training.distributed,
}
