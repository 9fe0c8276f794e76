"""A model's rounds: it writes the program (whole, or its part into a frame), the checks judge it, and
the failing checks' own details go back to it, at most :data:`MAX_REPAIR_ROUNDS` times.

:func:`with_model` asks for the whole program, with the builtin's closest program as a reference;
:func:`with_frame` asks for the model part only and splices it into the builtin's frame
(:mod:`deepdive.codegen.frames`). Both stream the program's text as it comes (:func:`_answer`) and
leave out what no longer fits the model's context, older parts first.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

from deepdive.codegen.answer import CodeStream, extract_code
from deepdive.codegen.backends import Backend, PromptTooLong
from deepdive.codegen.generation import GenerateCheck, GeneratePartial, GenerateResult
from deepdive.codegen.instructions import repair_message, system_prompt, user_message
from deepdive.codegen.run import VERIFY_OFF, Request, Run, default_filename

__all__ = ["MAX_REPAIR_ROUNDS", "with_model", "with_frame"]

MAX_REPAIR_ROUNDS = 2
#: A frame-mode repair samples at this temperature when the backend otherwise answers greedily.
REPAIR_TEMPERATURE = 0.4


def with_model(request: Request, run: Run, name: str, backend: Backend, verify_timeout_s: float,
               max_rounds: int = MAX_REPAIR_ROUNDS) -> GenerateResult:
    """A model writes the program, the checks judge it, the model repairs it with their details."""
    from deepdive.codegen import builtin

    params, spec, intent = request.params, request.spec, request.intent
    reference: Optional[str] = None
    filename = default_filename(spec, intent)
    if intent is not None:
        try:
            program = builtin.generate(intent)
            reference, filename = program.code, program.filename
        except (ValueError, NotImplementedError, RuntimeError):
            pass
    messages: list[dict] = [{"role": "user", "content": user_message(spec, params.prompt)}]

    def system(ref: Optional[str]) -> str:
        return system_prompt(spec, ref, intent=intent, gaps=request.gaps, framework=request.framework)

    prompt = system(reference)
    code, outcome, rounds = "", None, 0
    for attempt in range(max_rounds + 1):
        if attempt:
            rounds = attempt
            run.phase("repairing")
            run.emit(GeneratePartial(kind="reset"))
        else:
            run.phase("generating")
        while True:
            try:
                raw = _answer(run, backend, prompt, messages)
                break
            except PromptTooLong:
                # A small context: drop the reference program first, then older repair rounds.
                if reference is not None:
                    reference = None
                    prompt = system(None)
                elif len(messages) > 3:
                    messages = [messages[0], *messages[-2:]]
                else:
                    raise
        code = extract_code(raw)
        if not params.verify:
            return request.result(code, name, filename, rounds=rounds, message=VERIFY_OFF)
        if not code:
            check = GenerateCheck(name="program", ok=False, detail="the model's answer contains no program")
            run.emit(GeneratePartial(kind="check", check=check))
            outcome = _NoProgram([check], request)
            feedback = repair_message([check], "", None)
        else:
            outcome = run.verify(code, intent, spec, allow_gpu=params.allow_gpu, timeout_s=verify_timeout_s)
            if outcome.verified:
                return request.result(code, name, filename, outcome=outcome, rounds=rounds)
            if outcome.ok:
                # Nothing failed, but a property could not be checked or words were not understood:
                # another round cannot change that.
                return request.result(code, name, filename, outcome=outcome, rounds=rounds)
            feedback = repair_message(list(outcome.checks), getattr(outcome, "stderr_tail", "") or "",
                                      outcome.message, outcome.properties)
        messages = messages + [{"role": "assistant", "content": raw}, {"role": "user", "content": feedback}]
    why = outcome.message if outcome is not None else "the model's answer contains no program"
    why = why.removeprefix("verification failed: ")
    return request.result(code, name, filename, outcome=outcome, rounds=rounds,
                          message=f"verification failed {_after(rounds)}: {why}")


class _NoProgram:
    """The outcome of an answer without a program: one failed check, every property not checked."""

    def __init__(self, checks: list[GenerateCheck], request: Request) -> None:
        from deepdive.codegen import properties as props

        self.checks = checks
        self.ok = False
        self.verified = False
        self.message = checks[0].detail
        self.properties = props.not_checked(request.spec, checks[0].detail)


def with_frame(request: Request, run: Run, name: str, backend: Backend, frame: Any, verify_timeout_s: float,
               max_rounds: int) -> GenerateResult:
    """The model writes the model part (and the task's parts) into the frame; the checks judge the whole."""
    from deepdive.codegen.frames import SpliceError
    from deepdive.codegen.frames.prompt import frame_prompt, frame_repair_message, frame_retry_request
    from deepdive.codegen.frames.reading import needs_reading, read_with_model

    params = request.params
    if needs_reading(request.spec):
        run.phase("reading the request with the model (the parser did not understand all of it)")
        request.spec = read_with_model(backend, request.spec, run.cancel)
        run.check_cancel()
    filename = default_filename(request.spec, request.intent)
    system, ask = frame_prompt(frame, request.spec, params.prompt)
    what = ", ".join(f"{n}()" for n in frame.write)
    messages: list[dict] = [{"role": "user", "content": ask}]
    earlier: list[str] = []  # the answers placed so far: a repair may rewrite only some definitions
    failures: list[str] = []  # what each failed answer got wrong: a repair is a fresh request told to avoid it
    code, outcome, rounds = "", None, 0
    for attempt in range(max_rounds + 1):
        if attempt:
            rounds = attempt
            run.phase(f"repairing: the model rewrites {what}")
            run.emit(GeneratePartial(kind="reset"))
        else:
            run.phase(f"generating: the model writes {what} into {frame.base}")
        while True:
            try:
                with _temperature(backend, REPAIR_TEMPERATURE if attempt else None):
                    raw = _answer(run, backend, system, messages)
                break
            except PromptTooLong:
                if len(messages) > 3:  # older repair rounds go first
                    messages = [messages[0], *messages[-2:]]
                else:
                    raise
        answer, dropped = frame.drop_broken(extract_code(raw), earlier)
        try:
            code = frame.splice(answer, earlier)
        except SpliceError as exc:
            if _defines_something(answer):
                earlier.append(answer)  # incomplete, but its definitions count with the next answer's
            check = GenerateCheck(name="frame", ok=False, detail=str(exc))
            run.emit(GeneratePartial(kind="check", check=check))
            outcome, code = _NoProgram([check], request), ""
            failures.append(frame_repair_message([check], "", None))
            messages = [{"role": "user", "content": frame_retry_request(ask, failures)}]
            continue
        earlier.append(answer)
        if frame.filename and frame.filename != filename:
            code = code.replace(f"python {frame.filename} ", f"python {filename} ")  # the docstring's run lines
        run.emit(GeneratePartial(kind="reset"))
        run.emit(GeneratePartial(kind="text", text=code))  # the whole program: the model's part in its frame
        placed = GenerateCheck(name="frame", ok=True, detail="; ".join([_frame_detail(frame, earlier), *dropped]))
        run.emit(GeneratePartial(kind="check", check=placed))
        if not params.verify:
            return request.result(code, name, filename, rounds=rounds, message=VERIFY_OFF)
        outcome = run.verify(code, request.intent, request.spec, allow_gpu=params.allow_gpu, timeout_s=verify_timeout_s)
        outcome.checks.insert(0, placed)
        if outcome.verified or outcome.ok:
            return request.result(code, name, filename, outcome=outcome, rounds=rounds)
        stderr_tail = "\n".join((getattr(outcome, "stderr_tail", "") or "").strip().splitlines()[-12:])
        failures.append(frame_repair_message(list(outcome.checks), stderr_tail, outcome.message, outcome.properties))
        messages = [{"role": "user", "content": frame_retry_request(ask, failures)}]
    why = (outcome.message if outcome is not None else "") or "the model's answer contains no program"
    why = why.removeprefix("verification failed: ")
    return request.result(code, name, filename, outcome=outcome, rounds=rounds,
                          message=f"verification failed {_after(rounds)}: {why}")


@contextlib.contextmanager
def _temperature(backend: Backend, value: Optional[float]) -> Iterator[None]:
    """Sample at ``value`` for one answer when the backend samples greedily: a greedy small model
    repeats its failed answer word for word after the checker's message."""
    before = getattr(backend, "temperature", None)
    if value is None or before is None or before > 0:
        yield
        return
    backend.temperature = value
    try:
        yield
    finally:
        backend.temperature = before


def _after(rounds: int) -> str:
    return f"after {rounds} repair round{'s' if rounds != 1 else ''}" if rounds else "(no repair round)"


def _defines_something(answer: str) -> bool:
    from deepdive.codegen.frames.splice import top_level_names

    try:
        return bool(top_level_names(answer))
    except SyntaxError:
        return False


def _frame_detail(frame: Any, answers: list[str]) -> str:
    """What of the program the model wrote (over its answers so far) and what the frame is."""
    from deepdive.codegen.frames import NO_READER_NOTE, keras_params_note
    from deepdive.codegen.frames.splice import FRAME_OWNED, top_level_names

    names: list[str] = []
    for answer in answers:
        names += [n for n in top_level_names(answer) if n not in FRAME_OWNED and n not in names]
    text = f"the model wrote {', '.join(names)}"
    added = frame.added_build_model(answers[-1], answers[:-1])
    if added:
        text += f"; build_model() returning {added}() was added (the model wrote the class only)"
    widened = frame.widened_build_model(answers[-1], answers[:-1])
    if widened:
        text += f"; {keras_params_note(widened)}"
    borrowed = top_level_names(frame.borrowed(answers[-1], answers[:-1]) or "\n")
    if borrowed:
        text += f"; from the reference example ({frame.example_title.removeprefix('a reference example: ')}): {', '.join(borrowed)}"
    text += f"; the rest is {frame.base}"
    return text + (f"; {NO_READER_NOTE}" if frame.no_reader(answers[-1], answers[:-1]) else "")


def _answer(run: Run, backend: Backend, system: str, messages: list[dict]) -> str:
    """One answer of the model, its program streamed as ``text`` partials; returns the whole answer."""
    answer: list[str] = []
    code_stream = CodeStream()
    stream = backend.stream(system, messages, run.cancel)
    try:
        for text in stream:
            answer.append(text)
            piece = code_stream.feed(text)
            if piece:
                run.emit(GeneratePartial(kind="text", text=piece))
    except PromptTooLong:
        if answer:  # said after some text (a server that streams first): start over
            run.emit(GeneratePartial(kind="reset"))
        raise
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # stops the model at once when on_partial raised
    piece = code_stream.finish()
    if piece:
        run.emit(GeneratePartial(kind="text", text=piece))
    run.check_cancel()
    return "".join(answer)
