"""The generation pipeline: prompt -> reading -> program (builtin or a model) -> verification -> repair.

:func:`generate` serves ``deepdive/generate``. It is synchronous: the daemon runs it in a worker
thread and hands ``on_partial`` a function that forwards each :class:`GeneratePartial` as a
``$/progress`` value. It never imports torch, tensorflow or transformers in the calling process:
reading and composing are string work, model backends run in a subprocess or behind HTTP, and
verification runs the program in a sandboxed subprocess.

The prompt is read first (:func:`~deepdive.codegen.understand.read_request`): what it states (a
:class:`~deepdive.codegen.spec.Spec`), the closest program the builtin can build, and what of the
request the builtin cannot honour (``gaps``). The reading never refuses on a model's behalf:

- the builtin answers a request it can build exactly as asked; any other gets no program, only
  what is missing and what a local model would add;
- a model backend gets every request, with the stated properties as what the checker verifies
  (:mod:`deepdive.codegen.instructions`) and the builtin's closest program, if any, as the frame.
  In frame mode a request the builtin can build exactly as asked is first answered by the builtin's
  program; only when that program is not verified does the model write into the frame.
  When verification fails, the failing checks' and properties' own details and the program's stderr
  tail go back to the model, at most :data:`MAX_REPAIR_ROUNDS` times. When the prompt does not fit
  the model's context, the reference program is left out (then the older repair rounds).

A result is verified only when every check passed and every stated property was checked and met
(:func:`deepdive.codegen.properties.verdict`).
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from deepdive.codegen.answer import CodeStream, extract_code
from deepdive.codegen.backends import Backend, BackendError, Cancelled, make_backend
from deepdive.codegen.generation import GenerateCheck, GenerateParams, GeneratePartial, GenerateResult
from deepdive.codegen.instructions import repair_message, system_prompt
from deepdive.codegen.rounds import MAX_REPAIR_ROUNDS, with_frame, with_model
from deepdive.codegen.run import VERIFY_OFF, OnPartial, Request, Run

__all__ = [
    "Cancelled",
    "BackendError",
    "MAX_REPAIR_ROUNDS",
    "BUILTIN_PHASE",
    "generate",
    "extract_code",
    "CodeStream",
    "system_prompt",
    "repair_message",
]

VERIFY_TIMEOUT_S = 120.0

#: The builtin's one phase: it composes the whole program at once, there are no tokens to stream.
BUILTIN_PHASE = "builtin: composing the program from templates (not streamed token by token)"
#: The frame check of a model backend's request that the builtin's own program answered, verified.
BUILTIN_COMPLETE = ("the builtin's templates build this request exactly as asked and their program met every "
                    "stated property: the model was not asked to write anything")
#: What a local model adds, for the builtin's answers without a program.
MODEL_HINT = ("a local model would write it and be checked against the same properties: `deepdive model pull` "
              "(or `deepdive model add`) sets one up, then generate with the auto backend")


def generate(
    params: GenerateParams,
    *,
    on_partial: OnPartial = None,
    cancel: Optional[threading.Event] = None,
    backend: Optional[Backend] = None,
    verify_timeout_s: float = VERIFY_TIMEOUT_S,
    frame: bool = True,
    repair_rounds: Optional[int] = None,
) -> GenerateResult:
    """Write the program ``params.prompt`` asks for, verify it, repair it with the model if needed.

    The builtin answers a request it cannot build as asked with no program and a message saying what
    is missing; a model backend gets every request.

    A model writes into a frame (:mod:`deepdive.codegen.frames`) unless ``frame`` is False or no
    builtin program can serve as one; then it writes the whole program. ``repair_rounds`` caps the
    repair rounds (default :data:`MAX_REPAIR_ROUNDS`; 0: none).

    Raises ValueError (an unknown framework), BackendError (the model backend failed, one line) and
    :class:`Cancelled` (``cancel`` was set).
    """
    from deepdive.codegen.understand import read_request

    start = time.perf_counter()
    run = Run(on_partial, cancel)
    run.check_cancel()
    if backend is None:
        from deepdive.models.resolve import resolve

        params = resolve(params)  # `auto` / no backend: the registry's default model, else the builtin
    request = Request(params, read_request(params.prompt, params.framework), start)
    name = params.backend or "builtin"
    builtin = name == "builtin" and backend is None
    if params.verify and not (builtin and request.no_program):
        from deepdive.codegen import warm

        warm.prewarm(request.framework, allow_gpu=params.allow_gpu)  # torch imports while the program is written
    if builtin:
        return _builtin(request, run, verify_timeout_s)
    if backend is None:
        backend = make_backend(
            name,
            model_path=params.model_path,
            endpoint=params.endpoint,
            model=params.model,
            allow_remote=params.allow_remote,
        )
    if frame and params.verify and not request.no_program:
        # The templates build this request exactly as asked: when their program meets every stated
        # property, the model has nothing left to write.
        done = _builtin_complete(request, run, verify_timeout_s)
        if done is not None:
            return done
    rounds = MAX_REPAIR_ROUNDS if repair_rounds is None else max(0, int(repair_rounds))
    if frame:
        from deepdive.codegen.frames import frame_for

        the_frame = frame_for(request.spec, request.intent, request.framework)
        if the_frame is not None:
            return with_frame(request, run, name, backend, the_frame, verify_timeout_s, rounds)
    return with_model(request, run, name, backend, verify_timeout_s, rounds)


def _builtin(request: Request, run: Run, verify_timeout_s: float) -> GenerateResult:
    """The builtin's answer: the program when it can build the request exactly as asked, else what is missing."""
    from deepdive.codegen import builtin

    if request.no_program:
        from deepdive.codegen import properties as props

        return request.result("", "builtin", None, message=_missing(request),
                              properties=props.not_checked(request.spec, "no program: the builtin cannot build this as asked"))
    run.phase(BUILTIN_PHASE)
    program = builtin.generate(request.intent)
    run.check_cancel()
    run.emit(GeneratePartial(kind="text", text=program.code))  # the whole program at once: nothing to stream
    if not request.params.verify:
        return request.result(program.code, "builtin", program.filename, message=VERIFY_OFF)
    outcome = run.verify(program.code, request.intent, request.spec, allow_gpu=request.params.allow_gpu,
                         timeout_s=verify_timeout_s)
    return request.result(program.code, "builtin", program.filename, outcome=outcome)


def _builtin_complete(request: Request, run: Run, verify_timeout_s: float) -> Optional[GenerateResult]:
    """A model backend's first step in frame mode: the builtin's program, when it is verified.

    The frame is the builtin's closest program; when the reading found nothing the builtin cannot
    build (no gaps), that program is the whole answer if verification proves every stated property.
    Otherwise (a property unchecked or failed) None: the model writes into the frame as usual."""
    from deepdive.codegen import builtin

    run.phase(BUILTIN_PHASE)
    try:
        program = builtin.generate(request.intent)
    except (ValueError, NotImplementedError, RuntimeError):
        return None
    run.check_cancel()
    run.emit(GeneratePartial(kind="text", text=program.code))
    outcome = run.verify(program.code, request.intent, request.spec, allow_gpu=request.params.allow_gpu,
                         timeout_s=verify_timeout_s)
    if not outcome.verified:
        run.emit(GeneratePartial(kind="reset"))
        return None
    done = GenerateCheck(name="frame", ok=True, detail=BUILTIN_COMPLETE)
    run.emit(GeneratePartial(kind="check", check=done))
    outcome.checks.insert(0, done)
    return request.result(program.code, "builtin", program.filename, outcome=outcome)


def _missing(request: Request) -> str:
    """Why the builtin has no program for this request, and what a local model would add."""
    spec = request.spec
    if request.intent is None and not spec.stated:
        short = " ".join(spec.prompt.split())
        short = short if len(short) <= 60 else short[:57] + "..."
        return (f'could not tell what to build from "{short}"; name a task such as "CNN classifier for MNIST" '
                f'or "LSTM sentiment classifier". No program: {MODEL_HINT}')
    missing = list(request.gaps) or ["no builtin template fits this request"]
    return f"the builtin generator cannot build this as asked: {'; '.join(missing)}. No program: {MODEL_HINT}"
