"""What code generation is asked and what it answers, in codegen's own types.

The pipeline (:func:`deepdive.codegen.pipeline.generate`), the verifier, the properties' judge and
the prompts speak these classes, and nothing of the editor's protocol: codegen is a library that the
daemon, the command line and the benchmarks call alike. The daemon converts them to and from the
wire types of ``deepdive/generate`` (:mod:`deepdive.daemon.generate_wire`); nothing under
``deepdive.codegen`` imports :mod:`deepdive.protocol` (tests/codegen/test_layering.py). Not ``types.py``:
nsinit.py and zygote.py run as scripts from this folder, where that name would hide the standard library's.

The field names are the wire's, so that the conversion is field by field and a test can say when
the two drift apart (tests/daemon/test_generate_wire.py).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs

__all__ = ["GenerateParams", "GenerateCheck", "PropertyCheck", "PropertyStatus", "PartialKind", "GeneratePartial",
           "GenerateResult"]

#: How a stated property came out: checked and holds, checked and does not hold, or no check could tell.
PropertyStatus = Literal["met", "failed", "not_checked"]
#: What a partial result carries: text to append, a restart, a finished check, or a new stage.
PartialKind = Literal["text", "reset", "check", "phase"]


@attrs.define
class GenerateParams:
    """One request: the sentence, the backend that answers it, and whether the program is run."""

    prompt: str
    """What to write, in a sentence (English or Chinese)."""
    framework: Optional[str] = None
    """``torch`` or ``tensorflow`` (also ``keras``, ``pytorch``, ``tf``): overrides the prompt's choice."""
    backend: Optional[str] = None
    """``auto`` or None: the registry's default model, else ``builtin``; otherwise a name that
    :func:`deepdive.codegen.backends.make_backend` knows."""
    model_path: Optional[str] = None
    """``transformers``: a local Hugging Face model directory; ``llamacpp``: a GGUF file."""
    endpoint: Optional[str] = None
    """``openai-compatible``: the server's base URL (localhost unless ``allow_remote``)."""
    model: Optional[str] = None
    """``openai-compatible``: the model name the server knows; ``auto``: a registered model's name."""
    allow_remote: bool = False
    verify: bool = True
    """Run the generated program's checks (parse, imports, ``--smoke`` in a sandbox, properties)."""
    allow_gpu: bool = False
    """Let the ``--smoke`` run see the GPU."""


@attrs.define
class GenerateCheck:
    """One verification check of a generated program."""

    name: str
    ok: bool
    detail: str = ""
    seconds: Optional[float] = None


@attrs.define
class PropertyCheck:
    """One property the prompt states, judged against the generated program (see :mod:`deepdive.codegen.spec`)."""

    name: str
    """The property: task, framework, input_shape, outputs, family, layer_count, has_layer, no_layer,
    precision, distributed or loss."""
    expected: Any
    """Its stated value (JSON): "semantic-segmentation", [1, 28, 28], 10, "Dropout", ["Conv2d", 3], true, ..."""
    status: PropertyStatus
    detail: str = ""
    """What was seen, in one line: "model has 2 Dropout modules (features.3, head.1)"."""
    text: str = ""
    """The prompt's words that state it ("without dropout")."""
    label: str = ""
    """The property and its value in a few words, for lists: "no_layer Dropout", "outputs 10"."""


@attrs.define
class GeneratePartial:
    """Something the pipeline produced on the way, handed to ``on_partial`` as it happens."""

    kind: PartialKind
    """``text``: append ``text``; ``reset``: discard what came so far (a repair round starts over);
    ``check``: a verification check finished; ``phase``: a new stage started (``text`` names it)."""
    text: Optional[str] = None
    check: Optional[GenerateCheck] = None


@attrs.define
class GenerateResult:
    """The answer to one request: the program (or none), every check, every stated property, the verdict."""

    code: str
    """The complete program; empty when the builtin cannot build the request as asked."""
    backend: str
    framework: str
    intent: dict[str, Any]
    """What the prompt was understood as (task, architecture, shapes, features)."""
    verified: bool
    """True only when every check passed, every property the prompt states was checked and met, and
    nothing of the prompt was left not understood."""
    checks: list[GenerateCheck] = attrs.Factory(list)
    rounds: int = 0
    """Repair rounds a model backend needed (0: the first program passed)."""
    seconds: float = 0.0
    filename: Optional[str] = None
    """A suggested file name for the program."""
    message: Optional[str] = None
    """Why the result is not verified, or why there is no program, in one line."""
    properties: list[PropertyCheck] = attrs.Factory(list)
    """Each property the prompt states, checked-and-met, checked-and-failed or not checked."""
    understood_as: Optional[dict[str, Any]] = None
    """The request's stated properties as the parser read them (a Spec's JSON)."""
    not_understood: list[str] = attrs.Factory(list)
    """Words of the prompt no property took: unknown task or architecture words, unplaced numbers."""
    gaps: list[str] = attrs.Factory(list)
    """Stated properties the builtin generator cannot honour (then the builtin writes no program)."""
