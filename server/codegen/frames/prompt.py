"""What a model is told in frame mode: write these definitions, the frame has the rest.

Two forms (:func:`frame_prompt`; ``DEEPDIVE_FRAME_PROMPT=compact|full``). Both start with text that is the
same for every request of a framework, then the example (the same for every request it serves), so a
local runtime that keeps earlier prompts' states (the llama.cpp worker keeps them in a RAM cache and
evaluates :func:`warm_prefixes` while idle) reuses them:

- ``compact`` (the default): the system prompt holds nothing of the request — the instructions, the
  example, what to write, how the checker reads a request of the example's kind — so a warmed state
  covers all of it, and the user message carries the request's own part in about 130 tokens: the frame,
  the constants the part to write may use (``NAME = value``), the request, the properties checked.
- ``full``: the request's part ends the system prompt in longer form (the frame's constants as code,
  each property in the checker's words, about 300-500 tokens evaluated before the first token).
"""

from __future__ import annotations

import ast
import json
import os
import re
from typing import Optional, Sequence

from deepdive.codegen.frames import Frame, installed as _installed
from deepdive.codegen.generation import GenerateCheck, PropertyCheck
from deepdive.codegen.instructions import _FAMILIES, _TASKS, FRAMEWORK_NAMES, property_lines, user_message
from deepdive.codegen.spec import Spec

__all__ = ["frame_prompt", "frame_system_prompt", "frame_repair_message", "frame_retry_request", "prompt_prefix",
           "warm_prefixes", "prompt_style", "STYLES", "STYLE_ENV", "WHAT"]

#: The two forms of the frame prompt (:func:`frame_prompt`); ``DEEPDIVE_FRAME_PROMPT`` picks one.
STYLES = ("compact", "full")
STYLE_ENV = "DEEPDIVE_FRAME_PROMPT"
DEFAULT_STYLE = "compact"


def prompt_style() -> str:
    """``$DEEPDIVE_FRAME_PROMPT`` when it names a style, else :data:`DEFAULT_STYLE`."""
    chosen = os.environ.get(STYLE_ENV, "").strip().lower()
    return chosen if chosen in STYLES else DEFAULT_STYLE

#: What each definition the model may write is, per framework.
WHAT = {
    "torch": {
        "build_model": "`build_model()` returns the model, a torch.nn.Module; write the model class(es) it uses too",
        "example_batch": "`example_batch(batch_size=8)` returns `(inputs, targets)`: random tensors with the task's "
                         "shapes and dtypes (no files, no downloads); inputs may be a tuple when the model takes several",
        "compute_loss": "`compute_loss(model, batch)` takes `(inputs, targets)` and returns `(loss, correct)`: "
                        "the scalar training loss, and the number of correct predictions (a tensor) or None",
        "load_data": "`load_data(args)` reads the real data from `args.data` and returns `(train_set, val_set)`, "
                     "torch Datasets of `(inputs, targets)`; raise `DataError(\"...\")` with what to do when it is missing",
        "synthetic_dataset": "`synthetic_dataset(n)` returns a torch Dataset of n random examples for --synthetic "
                             "(write it when one example is not one row of a batch, e.g. a whole graph)",
    },
    "tensorflow": {
        "build_model": "`build_model(lr=LR, dropout=DROPOUT, decay_steps=1000)` (keep this signature) returns the "
                       "keras.Model, compiled with its optimizer and loss",
        "example_batch": "`example_batch(batch_size=8)` returns `(inputs, targets)`: random numpy arrays with the "
                         "task's shapes and dtypes (no files, no downloads)",
        "load_data": "`load_data(path)` reads the real data and returns `(train, val)` the way fit() takes them; "
                     "raise ValueError(\"...\") with what to do when it is missing",
    },
}

_COMMON = {
    "torch": "`import math`, `import torch`, `import torch.nn.functional as F` and `from torch import nn` "
             "(not numpy: import it if you use it)",
    "tensorflow": "`import numpy as np`, `import tensorflow as tf` and `import keras`",
}


def frame_prompt(frame: Frame, spec: Optional[Spec], prompt: str, style: Optional[str] = None) -> tuple[str, str]:
    """The system prompt and the user message of a frame request, in ``style`` (default :func:`prompt_style`).

    ``full``: the system prompt ends with this request's part (what to write, the frame's functions and
    constants as code, each stated property in the checker's words); the user message is the request and
    what the parser understood. ``compact``: the system prompt holds nothing of the request (the
    instructions, the example, what to write, how the checker reads a request of the example's kind), so
    the state a warmed runtime keeps covers all of it (:func:`warm_prefixes`), and the user message carries
    the request's own part in as few tokens as it takes: the frame and its constants on one line each, the
    request, the properties checked. Measured on the 0.5B: the full form leaves a median 372 tokens of the
    system prompt and 81 of the user message to evaluate before the first token (2.7 s here); what the
    compact form leaves is what ``bench/bench_frame_ttft.py`` reports."""
    style = style or prompt_style()
    what = ", ".join(f"{n}()" for n in frame.write)
    ending = f"Write the model class and {what} in one ```python block."
    if style == "full":
        return frame_system_prompt(frame, spec), f"{user_message(spec, prompt)}\n{ending}"
    if frame.framework == "tensorflow":
        # "the model class" made a 0.5B model write a keras.Model subclass with build_model as its method
        # (3 of the compact form's 4 Keras failures: "defines ... but not build_model()")
        ending = f"Write {what} as top-level functions (not methods of a class) in one ```python block."
    system = _compact_system(frame.framework, frame.example, frame.example_title, frame.write, frame.optional,
                             frame.task_changed, frame.reference_tasks, frame.reference_families)
    return system, "\n".join(_compact_request(frame, spec, prompt) + [ending])


def frame_system_prompt(frame: Frame, spec: Optional[Spec]) -> str:
    """The system prompt, in the order that lets a runtime reuse the most of an earlier prompt's state:
    the framework's constant instructions, the example (the same text for every request it serves),
    then this request's own parts (what to write, the frame's constants, the stated properties)."""
    return prompt_prefix(frame) + "\n" + _request_part(frame, spec)


def prompt_prefix(frame: Frame) -> str:
    """The part of the system prompt that does not depend on the request's words: the instructions and
    the example."""
    title = frame.example_title or "the frame's current version of these definitions"
    return _prefix(frame.framework, frame.example, title)


def _prefix(fw: str, example: str, title: str) -> str:
    parts = _head(fw)
    if example.strip():
        parts += ["", f"{title[0].upper()}{title[1:]}. Follow its conventions (constants, shapes, dtypes, what "
                      "example_batch() and the loss return) and change what the request asks differently (sizes, "
                      "counts, layers, exclusions):",
                  "```python", example.rstrip(), "```",
                  "Copy what already fits unchanged (a helper function stays a function); rewrite only what differs."]
    return "\n".join(parts)


def _head(fw: str) -> list[str]:
    name = FRAMEWORK_NAMES.get(fw, fw)
    return [
        f"You write one part of a {name} training program. Deepdive's frame around that part is ready: imports, "
        "constants, data loading, the training loop (with mixed precision and distributed training when asked), "
        "evaluation, the command line with --smoke, and the `if __name__ == \"__main__\":` guard.",
        "An automatic checker runs the whole program and verifies the properties the request states.",
        "Write ONLY the top-level definitions asked for below (and any class or helper function they use), in one "
        "```python block. You may redefine a constant (e.g. `NUM_CLASSES = 3`) and add an import. Do not write "
        "main(), a training loop, argument parsing or the __main__ guard: the frame has them.",
        f"The frame imports {_COMMON.get(fw, fw)}.",
    ] + _absent_line(fw)


#: Packages a model reaches for in a model part (pretrained backbones, audio front ends, graph layers): the
#: prompt names those not installed where the program runs, so the model writes the layers itself rather
#: than import them (a repair message saying so after the fact did not change a 0.5B model's answer).
_REACHED_FOR = {"torch": ("torchvision", "torchaudio", "timm", "torch_geometric", "torchtext"),
                "tensorflow": ("tensorflow_hub", "keras_nlp", "keras_cv", "tensorflow_addons")}


def _absent_line(fw: str) -> list[str]:
    absent = [name for name in _REACHED_FOR.get(fw, ()) if not _installed(name)]
    if not absent:
        return []
    return [f"Not installed where the program runs: {', '.join(absent)}. Do not import them: write the layers "
            f"you need yourself with the frame's imports ({'torch.nn' if fw == 'torch' else 'keras.layers'})."]


def _request_part(frame: Frame, spec: Optional[Spec]) -> str:
    """What to write and the frame's functions (the same text for most requests of a kind: kept next to
    the prefix, so a cached state covers them too), then the frame's constants and the properties (this
    request's own)."""
    fw = frame.framework
    parts = _write_part(fw, frame.write, frame.optional, frame.task_changed)
    if frame.keeps:
        parts += ["The frame's other functions (call them if useful; do not rewrite them):"]
        parts += [f"- `{k}`" for k in frame.keeps]
    parts += ["", f"The frame is {frame.base}. Its constants (already defined: redefine only what changes):",
              "```python", frame.constants.rstrip(), "```"]
    lines = property_lines(spec, fw)
    if lines:
        parts += ["", "The request states these properties; the checker verifies each one and accepts the program "
                      "only when all hold:"]
        parts += [f"- {line}" for line in lines]
    return "\n".join(parts)


def _write_part(fw: str, write: Sequence[str], optional: Sequence[str], task_changed: bool) -> list[str]:
    parts = ["", "Write:"]
    parts += [f"- {WHAT[fw][n]}" for n in write if n in WHAT.get(fw, {})]
    extra = [n for n in optional if n in WHAT.get(fw, {}) and n not in write]
    if extra:
        parts.append("You may also write:" if not task_changed else "Also write, for the task's real data:")
        parts += [f"- {WHAT[fw][n]}" for n in extra]
    return parts


def _compact_system(fw: str, example: str, title: str, write: Sequence[str], optional: Sequence[str],
                    task_changed: bool, tasks: Sequence[str], families: Sequence[str]) -> str:
    """The compact form's system prompt: nothing in it depends on the request's words."""
    parts = [_prefix(fw, example, title or "the frame's current version of these definitions")]
    parts += _write_part(fw, write, optional, task_changed)
    if fw in _HELPERS:
        parts += [f"The frame's helpers, where it has them (call them if useful; do not rewrite them): {_HELPERS[fw]}."]
    parts += ["", "The request comes after `Frame:` (the program around your part) and `Constants:` (the frame's "
                  "constants your part may use, already defined: redefine only what changes), with what the "
                  "checker verifies; the program is accepted only when all of it holds. The checker reads:",
              "- input: the shape of ONE example of example_batch()'s inputs (the batch dimension comes first)",
              "- outputs: the units per example in the model's output",
              "- NO X: the model contains no X layer (no module and no functional call of it)"]
    parts += [f"- task {t}: {_TASKS[t]}" for t in tasks if t in _TASKS]
    parts += [f"- family {f}: {_FAMILIES[f]}" for f in families if f in _FAMILIES]
    return "\n".join(parts)


#: The frame's functions a model part may call, named once in the compact system prompt (a frame defines
#: those its program needs: :data:`deepdive.codegen.frames._USEFUL`).
_HELPERS = {"torch": "DataError, to_device(obj, device), split(dataset, val_fraction), read_csv(path, target)"}

#: The constants the frame's training loop uses and a model part does not (left out of the compact form).
_LOOP_CONSTANTS = {"torch": {"SEED", "EPOCHS", "BATCH_SIZE", "LR", "DEFAULT_DATA", "NOTES"},
                   "tensorflow": {"SEED", "EPOCHS", "BATCH_SIZE", "DEFAULT_DATA", "NOTES"}}


def _compact_constants(frame: Frame) -> list[str]:
    """``NAME = value`` of the frame's constants that the part the model writes may use, comments left out:
    those the request states, and those the example shown reads (the frame's other constants belong to
    its loop or to the model part the answer replaces)."""
    shown = set(re.findall(r"\b[A-Z][A-Z0-9_]*\b", frame.example))
    lines = (frame.constants or "").splitlines()
    out = []
    for node in ast.parse(frame.constants or "").body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            stated = "as the request states" in "".join(lines[node.lineno - 1:node.end_lineno])
            if name.isupper() and name not in _LOOP_CONSTANTS.get(frame.framework, set()) and (stated or name in shown):
                out.append(f"{name} = {ast.unparse(node.value)}")
    return out


def _signature(line: str) -> str:
    """``def split(dataset, val_fraction: float = 0.1):`` as ``split(dataset, val_fraction)``; a class by its name."""
    try:
        node = ast.parse(line.strip() + "\n    ...").body[0]
    except SyntaxError:
        return line.strip().removesuffix(":")
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
        return f"{node.name}({', '.join(names)})"
    return getattr(node, "name", line.strip())


def _compact_request(frame: Frame, spec: Optional[Spec], prompt: str) -> list[str]:
    """The compact form's user message, without its last line (what to write)."""
    lines = [f"Frame: {frame.base}."]
    named = {h.split("(")[0] for h in _HELPERS.get(frame.framework, "").split(", ")}
    others = [sig for sig in map(_signature, frame.keeps) if sig.split("(")[0] not in named]
    if others:  # a helper the system prompt does not name
        lines[0] += " Call if useful, do not rewrite: " + ", ".join(others) + "."
    constants = _compact_constants(frame)
    if constants:
        lines.append("Constants: " + "; ".join(constants))
    lines.append(f"Request: {prompt}")
    checked = [c for s in (spec.stated if spec is not None else []) if (c := _checked(s.name, s.value, frame))]
    if checked:
        lines.append("Checked: " + "; ".join(checked))
    if spec is not None and (spec.unknown or spec.unplaced_numbers):
        lines.append("Not understood by the parser (read the request for them): "
                     + ", ".join(spec.unknown + spec.unplaced_numbers))
    return lines


def _checked(name: str, value: object, frame: Frame) -> str:
    """One stated property, as short as the system prompt's reading of it allows."""
    fw = frame.framework
    if name == "task":
        described = str(value) in frame.reference_tasks or str(value) not in _TASKS
        return f"task {value}" if described else f"task {value}: {_TASKS[str(value)]}"
    if name == "framework":  # the system prompt is the framework's: only a request for the other says it
        return "" if value == fw else f"{FRAMEWORK_NAMES.get(str(value), value)} only"
    if name == "input_shape" and isinstance(value, (list, tuple)):
        shape = tuple(value)
        if fw == "tensorflow" and len(shape) == 3 and shape[0] < min(shape[1:]):
            shape = shape[1:] + shape[:1]  # Keras images are channels-last (the checker takes either)
        return f"input {shape}"
    if name == "outputs":
        return f"outputs {value}"
    if name == "family":
        described = str(value) in frame.reference_families or str(value) not in _FAMILIES
        return f"family {value}" if described else f"the model is {_FAMILIES[str(value)]}"
    if name == "layer_count" and isinstance(value, (list, tuple)):
        return f"exactly {value[1]} {value[0]} layer(s)"
    if name == "has_layer":
        return f"a {value} layer"
    if name == "no_layer":
        return f"NO {value}"
    if name == "precision":
        return "mixed precision (the frame's loop)" if value == "mixed" else "no mixed precision"
    if name == "distributed":
        return "DistributedDataParallel (the frame's loop)" if value else "one process, no DDP"
    if name == "loss":
        return f"loss {value}"
    return f"{name} {json.dumps(value, ensure_ascii=False)}"


def warm_prefixes(style: Optional[str] = None) -> list[str]:
    """The system prompts' shared beginnings a local runtime can evaluate before any request: the
    reading prompt (the same for every request), and each reference example's instructions, example
    and what a request of its kind writes.

    The llama.cpp worker evaluates them while it is idle (:meth:`ModelWorker.warm`) and keeps their
    states, so a request with one of these examples waits only for its own part (the frame's constants,
    the properties, the request): about 300-450 tokens instead of 1,000-1,600."""
    from deepdive.codegen.frames.examples import EXAMPLES
    from deepdive.codegen.frames.reading import reading_prompt
    from deepdive.codegen.spec import Spec

    texts = [reading_prompt(Spec(prompt=""))[0]]  # the model's reading of a request the parser did not understand
    if (style or prompt_style()) == "compact":
        return texts + _compact_systems()
    for example in EXAMPLES:
        fw = example.framework
        write = ("build_model", "example_batch") + (("compute_loss",) if fw == "torch" else ())
        optional = ("load_data", "synthetic_dataset") if fw == "torch" else ("load_data",)
        head = _prefix(fw, example.source, f"a reference example: {example.title}")
        texts.append(head + "\n" + "\n".join(_write_part(fw, write, optional, True)))
    return texts


def frame_repair_message(checks: Sequence[GenerateCheck], stderr_tail: str, message: Optional[str],
                         properties: Sequence[PropertyCheck] = ()) -> str:
    """After a failed verification: each failure's own detail, and to answer with the definitions again."""
    from deepdive.codegen.instructions import repair_message

    text = repair_message(list(checks), stderr_tail, message, properties)
    ending = "Fix it. Answer with the complete corrected program in one ```python block."
    return text.replace(ending, "Fix it. Answer with the definitions you change (the classes they use too), in one ```python block.")


def frame_retry_request(ask: str, failures: Sequence[str]) -> str:
    """A repair as a fresh request: the request, then what earlier answers got wrong, without those answers.

    In the conversation form (the failed answer, then the checker's message) a 0.5B model repeats its
    answer token for token, at temperature 0.4 too (measured: 553 tokens three times over, an import of a
    package the message said is not installed three times over): the answer in its context is what it
    copies. Here it writes the definitions again from the request and the reference example, told what
    to avoid."""
    ending = "Fix it. Answer with the complete corrected program in one ```python block."
    notes = []
    for n, failure in enumerate(failures, start=1):
        body = failure.replace(ending, "").replace("The program failed verification.", "").strip()
        notes.append(f"Earlier answer {n} failed the checker:\n{body}")
    return (ask + "\n\n" + "\n\n".join(notes) + "\n\nWrite every definition asked for again, so that none of "
            "this happens, in one ```python block.")


def _compact_systems() -> list[str]:
    """Every compact system prompt a reference example gives: per example (and its LSTM/GRU form), the
    frame of a task the builtin has no program for (the model writes the task's parts too) and, where the
    builtin writes the example's task, its own frame (the model writes the model part only)."""
    from deepdive.codegen.frames import BUILTIN_TASKS
    from deepdive.codegen.frames.examples import EXAMPLES, _in_family

    texts: list[str] = []
    for base in EXAMPLES:
        for example in dict.fromkeys([base, _in_family(base, "lstm"), _in_family(base, "gru")]):
            fw = example.framework
            title = f"a reference example: {example.title}"
            variants = [True] + ([False] if set(example.tasks) & set(BUILTIN_TASKS) else [])
            for task_changed in variants:
                write = ("build_model",) + ((("example_batch",) + (("compute_loss",) if fw == "torch" else ()))
                                            if task_changed else ())
                optional = ("load_data",) + (("synthetic_dataset",) if fw == "torch" and task_changed else ())
                text = _compact_system(fw, example.source, title, write, optional, task_changed, example.tasks,
                                       example.families)
                if text not in texts:
                    texts.append(text)
    return texts
