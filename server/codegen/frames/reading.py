"""The model's reading of a request the parser did not fully understand.

When the parser leaves words or numbers unread, or finds no task, the model is asked for the
request's properties as one JSON object (task, framework, shapes, outputs, family, exclusions,
precision, distribution). What it adds goes into the Spec with the text "read by the model", is
shown under "Understood as" and is checked like the rest. It never removes what the parser left
unread: a result whose prompt the parser did not fully understand is not called verified, however
the model read it (a model's misreading must not become a verified wrong program).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Optional

from deepdive.codegen.properties import MODEL_READING
from deepdive.codegen.spec import FAMILY_NAMES, LAYER_ALIASES, TASK_NAMES, Spec, Stated
from deepdive.vocabulary import FRAMEWORKS

__all__ = ["needs_reading", "reading_prompt", "parse_reading", "merge_reading", "read_with_model", "MODEL_TEXT"]

MODEL_TEXT = MODEL_READING
MAX_READING_TOKENS = 200

_KNOWN_LAYERS = sorted({name for group in LAYER_ALIASES for name in group} | {"BatchNorm1d", "Embedding"})


def needs_reading(spec: Spec) -> bool:
    """The parser left something unread or found no task: ask the model."""
    return not spec.understood or spec.get("task") is None


def reading_prompt(spec: Spec) -> tuple[str, list[dict]]:
    """The system prompt and the one user message that ask for the JSON reading."""
    system = "\n".join([
        "You read a request for a machine-learning training program and answer with ONE JSON object, nothing else.",
        "Keys (use null for what the request does not say; never guess numbers the request does not give):",
        f'- "task": one of {", ".join(TASK_NAMES)}',
        '- "framework": "torch" or "tensorflow" (Keras)',
        '- "input_shape": one example\'s shape without the batch dimension, a list of integers; images as '
        '[channels, height, width]; a series of T values as [T, 1]',
        '- "outputs": output units per example (classes, labels, forecast steps, vocabulary size), an integer',
        f'- "family": the architecture, one of {", ".join(FAMILY_NAMES)}',
        f'- "exclude": layer types the request says not to use, from {", ".join(_KNOWN_LAYERS)}',
        '- "precision": "mixed" or "fp32" (only when the request says), "distributed": true or false (only when said)',
    ])
    lines = [f"Request: {spec.prompt}"]
    if spec.unknown or spec.unplaced_numbers:
        lines.append("Words a parser could not place: " + ", ".join(spec.unknown + spec.unplaced_numbers))
    return system, [{"role": "user", "content": "\n".join(lines)}]


def _int_list(value: Any) -> Optional[list[int]]:
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1_000_000
                                                 for v in value):
        return list(value)
    return None


def parse_reading(answer: str) -> list[Stated]:
    """The properties in the model's JSON answer that are valid in the Spec's vocabulary (others dropped)."""
    match = re.search(r"\{.*\}", answer, re.S)
    if not match:
        return []
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    out: list[Stated] = []
    if data.get("task") in TASK_NAMES:
        out.append(Stated("task", data["task"], MODEL_TEXT))
    if data.get("framework") in FRAMEWORKS:
        out.append(Stated("framework", data["framework"], MODEL_TEXT))
    shape = _int_list(data.get("input_shape"))
    if shape:
        out.append(Stated("input_shape", shape, MODEL_TEXT))
    outputs = data.get("outputs")
    if isinstance(outputs, int) and not isinstance(outputs, bool) and 0 < outputs < 10_000_000:
        out.append(Stated("outputs", outputs, MODEL_TEXT))
    if data.get("family") in FAMILY_NAMES:
        out.append(Stated("family", data["family"], MODEL_TEXT))
    for layer in data.get("exclude") or []:
        if isinstance(layer, str) and layer in _KNOWN_LAYERS:
            out.append(Stated("no_layer", layer, MODEL_TEXT))
    if data.get("precision") in ("mixed", "fp32"):
        out.append(Stated("precision", data["precision"], MODEL_TEXT))
    if isinstance(data.get("distributed"), bool):
        out.append(Stated("distributed", data["distributed"], MODEL_TEXT))
    return out


#: Words a property the model read must find in the prompt to be taken (a 0.5B model fills every key).
_GROUNDS = {
    "framework": r"keras|tensorflow|\btf\.|torch",
    "precision": r"mixed|fp16|bf16|half|amp\b|autocast|fp32|float32|full precision|混合精度|半精度",
    "distributed": r"distributed|\bddp\b|torchrun|multi-?gpu|gpus|nodes|single[- ]gpu|one gpu|分布式|多卡|单卡",
}
_LAYER_WORDS = {"Dropout": r"dropout", "BatchNorm1d": r"batch ?norm|\bbn\b|批归一化", "BatchNorm2d": r"batch ?norm|\bbn\b|批归一化",
                "BatchNormalization": r"batch ?norm|\bbn\b|批归一化", "LayerNorm": r"layer ?norm", "Embedding": r"embedding",
                "LSTM": r"lstm", "GRU": r"gru", "Linear": r"linear|dense|mlp", "Dense": r"linear|dense|mlp"}


def grounded(stated: Stated, prompt: str) -> bool:
    """True when the prompt has the words of a property the model read: its numbers, its layer's name,
    the framework, precision or distribution named (the model's reading of a small model invents)."""
    text = prompt.lower()
    if stated.name in ("input_shape", "outputs"):
        numbers = stated.value if isinstance(stated.value, list) else [stated.value]
        found = {int(n) for n in re.findall(r"\d+", text.replace(",", ""))} | {int(n) * 1000 for n in re.findall(r"(\d+)k\b", text)}
        return all(int(n) in found or int(n) == 1 for n in numbers) and any(int(n) in found for n in numbers)
    if stated.name == "no_layer":
        words = _LAYER_WORDS.get(str(stated.value))
        if words is None:
            for group in LAYER_ALIASES:
                if stated.value in group:
                    words = "|".join(re.escape(n.lower()) for n in group)
        return bool(words and re.search(words, text))
    if stated.name in _GROUNDS:
        return bool(re.search(_GROUNDS[stated.name], text))
    return True  # task and family: named by the model from the request's words


def merge_reading(spec: Spec, read: list[Stated]) -> Spec:
    """``spec`` with the model's properties that the parser did not state; the parser's win any conflict.

    A property is taken only when the prompt has its words (:func:`grounded`). ``no_layer`` adds each
    layer the parser did not exclude already. Unknown words and unplaced numbers stay as they were:
    the verdict still says the parser did not understand them.
    """
    read = [s for s in read if grounded(s, spec.prompt)]
    stated = list(spec.stated)
    have = {s.name for s in stated}
    excluded = set(spec.all("no_layer"))
    for s in read:
        if s.name == "no_layer":
            if s.value not in excluded:
                stated.append(s)
                excluded.add(s.value)
        elif s.name not in have:
            stated.append(s)
            have.add(s.name)
    return Spec(prompt=spec.prompt, language=spec.language, stated=stated, unknown=list(spec.unknown),
                unplaced_numbers=list(spec.unplaced_numbers), exclusions=list(spec.exclusions))


def read_with_model(backend: Any, spec: Spec, cancel: threading.Event) -> Spec:
    """The spec with the model's reading merged in (the spec itself when the model's answer has none)."""
    system, messages = reading_prompt(spec)
    answer: list[str] = []
    stream = backend.stream(system, messages, cancel)
    try:
        for text in stream:
            answer.append(text)
            if sum(len(a) for a in answer) > 4 * MAX_READING_TOKENS * 4:
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return merge_reading(spec, parse_reading("".join(answer)))
