"""What a model is told in frame mode: write these definitions, the frame has the rest.

The system prompt starts with text that is the same for every request of a framework, then the
example (the same text for every request it serves), so a local runtime that keeps earlier prompts'
states (the llama.cpp worker keeps them in a RAM cache) reuses them, and the first token of a request
whose example an earlier one used waits only for the request's own parts: what to write, the frame's
constants and functions, the properties the checker verifies.
"""

from __future__ import annotations

from typing import Optional, Sequence

from deepdive.codegen.frames import Frame, installed as _installed
from deepdive.codegen.generation import GenerateCheck, PropertyCheck
from deepdive.codegen.instructions import FRAMEWORK_NAMES, property_lines
from deepdive.codegen.spec import Spec

__all__ = ["frame_system_prompt", "frame_repair_message", "frame_retry_request", "prompt_prefix", "warm_prefixes",
           "WHAT"]

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


def warm_prefixes() -> list[str]:
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
