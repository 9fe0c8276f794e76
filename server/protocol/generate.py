"""Code generation: `deepdive/generate`, its params, result and the partial results that stream."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import attrs

from deepdive.protocol.base import MAX_CHARS, MAX_PROMPT_CHARS, CodegenBackend, Framework


@attrs.define
class GenerateParams:
    prompt: str = attrs.field(metadata={MAX_CHARS: MAX_PROMPT_CHARS})
    """What to write, in a sentence (English or Chinese); at most 65,536 characters."""
    framework: Optional[Framework] = None
    """Overrides what the prompt says; null: the prompt's choice, else PyTorch."""
    backend: Optional[CodegenBackend] = None
    """`auto` or null: the default model of the registry (`deepdive model default`), else `builtin`."""
    model_path: Optional[str] = None
    """`transformers`: a local Hugging Face model directory; `llamacpp`: a GGUF file."""
    endpoint: Optional[str] = None
    """`openai-compatible`: the server's base URL (localhost unless `allow_remote`)."""
    model: Optional[str] = None
    """`openai-compatible`: the model name the server knows; `auto`: a registered model's name instead of the default."""
    allow_remote: bool = False
    verify: bool = True
    """Run the generated program's checks (parse, imports, `--smoke` in a sandbox, properties)."""
    allow_gpu: bool = False
    """Let the `--smoke` run see the GPU."""
    work_done_token: Optional[Union[int, str]] = None
    partial_result_token: Optional[Union[int, str]] = None
    """Chunks of code and check results arrive as `$/progress` with this token (GeneratePartial)."""


@attrs.define
class GenerateCheck:
    """One verification check of a generated program."""

    name: str
    ok: bool
    detail: str = ""
    seconds: Optional[float] = None


@attrs.define
class PropertyCheck:
    """One property the prompt states, judged against the generated program (see deepdive.codegen.spec)."""

    name: str
    """The property: task, framework, input_shape, outputs, family, layer_count, has_layer, no_layer,
    precision, distributed or loss."""
    expected: Any
    """Its stated value (JSON): "semantic-segmentation", [1, 28, 28], 10, "Dropout", ["Conv2d", 3], true, ..."""
    status: Literal["met", "failed", "not_checked"]
    """`met`: checked and holds; `failed`: checked and does not hold; `not_checked`: no check could tell."""
    detail: str = ""
    """What was seen, in one line: "model has 2 Dropout modules (features.3, head.1)"."""
    text: str = ""
    """The prompt's words that state it ("without dropout")."""
    label: str = ""
    """The property and its value in a few words, for lists: "no_layer Dropout", "outputs 10",
    "input_shape 1×28×28", "layer_count 3 Conv2d"."""


@attrs.define
class GeneratePartial:
    """A `$/progress` value on the request's partial-result token while a program is generated."""

    kind: Literal["text", "reset", "check", "phase"]
    """`text`: append `text`; `reset`: discard what came so far (a repair round starts over);
    `check`: a verification check finished; `phase`: a new stage started (`text` names it)."""
    text: Optional[str] = None
    check: Optional[GenerateCheck] = None


@attrs.define
class GenerateResult:
    code: str
    """The complete program."""
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
    """A suggested file name for "Generate into New File"."""
    message: Optional[str] = None
    """Why the result is not verified (a failed check or property, properties not checked, words not
    understood, verification skipped), or why there is no program, in one line."""
    properties: list[PropertyCheck] = attrs.Factory(list)
    """Each property the prompt states, checked-and-met, checked-and-failed or not checked."""
    understood_as: Optional[dict[str, Any]] = None
    """The request's stated properties as the parser read them (a Spec's JSON)."""
    not_understood: list[str] = attrs.Factory(list)
    """Words of the prompt no property took: unknown task or architecture words, unplaced numbers."""
    gaps: list[str] = attrs.Factory(list)
    """Stated properties the builtin generator cannot honour; with the builtin backend there is then
    no program, and the message says what a local model would add."""
