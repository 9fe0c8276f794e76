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

import contextlib
import re
import threading
import time
from typing import Any, Callable, Iterator, Optional

from deepdive.codegen.backends import Backend, BackendError, Cancelled, PromptTooLong, make_backend
from deepdive.codegen.instructions import framework_of_request, repair_message, system_prompt, user_message
from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import Spec
from deepdive.protocol import GenerateCheck, GenerateParams, GeneratePartial, GenerateResult, PropertyCheck

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

MAX_REPAIR_ROUNDS = 2
#: A frame-mode repair samples at this temperature when the backend otherwise answers greedily.
REPAIR_TEMPERATURE = 0.4
VERIFY_TIMEOUT_S = 120.0

#: The builtin's one phase: it composes the whole program at once, there are no tokens to stream.
BUILTIN_PHASE = "builtin: composing the program from templates (not streamed token by token)"
#: The frame check of a model backend's request that the builtin's own program answered, verified.
BUILTIN_COMPLETE = ("the builtin's templates build this request exactly as asked and their program met every "
                    "stated property: the model was not asked to write anything")
#: What a local model adds, for the builtin's answers without a program.
MODEL_HINT = ("a local model would write it and be checked against the same properties: `deepdive model pull` "
              "(or `deepdive model add`) sets one up, then generate with the auto backend")
VERIFY_OFF = "verification is off: the program was not run and no stated property was checked"

OnPartial = Optional[Callable[[GeneratePartial], None]]


# ------------------------------------------------------------------------------------------------
# Extracting the program from a model's answer
# ------------------------------------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)


def extract_code(text: str) -> str:
    """The program in a model's answer: the longest ```python block (else the longest plain ``` block,
    else the whole answer), reasoning (``<think>...</think>``) removed."""
    text = _THINK.sub("", text)
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    plain = [body for lang, body in blocks if not lang]
    pick = python or plain
    code = max(pick, key=len) if pick else text
    code = code.strip("\n")
    return code + "\n" if code.strip() else ""


class CodeStream:
    """Turns a model's streamed answer into the streamed program: what goes out as ``text`` partials.

    Prose before the first fence, the fence lines themselves, reasoning (``<think>...</think>``) and
    everything after the closing fence are dropped, so that the editor shows code while it streams.
    An answer with no fence within its first :data:`PROSE_LIMIT` characters is taken as bare code and
    passed through. The final program is :func:`extract_code` of the whole answer (the same for a
    single block; the longest block when there are several).
    """

    PROSE_LIMIT = 800

    def __init__(self) -> None:
        self.state = "start"  # start -> (think ->) code -> after, or start -> raw
        self.buf = ""
        self.mid = False  # in "code": part of the current line went out already

    def feed(self, text: str) -> str:
        self.buf += text
        out: list[str] = []
        while True:
            if self.state == "start":
                head = self.buf.lstrip()
                if head.startswith("<think>") or "<think>".startswith(head) and head:
                    if not head.startswith("<think>"):
                        break  # maybe "<thi": wait
                    end = self.buf.find("</think>")
                    if end < 0:
                        break
                    self.buf = self.buf[end + len("</think>") :]
                    continue
                fence = self.buf.find("```")
                if fence >= 0:
                    eol = self.buf.find("\n", fence)
                    if eol < 0:
                        break  # the fence line is not complete yet
                    self.state, self.buf = "code", self.buf[eol + 1 :]
                    continue
                if len(self.buf) > self.PROSE_LIMIT:
                    self.state = "raw"
                    continue
                break
            if self.state == "raw":
                out.append(self.buf)
                self.buf = ""
                break
            if self.state == "code":
                # Complete lines go out unless one is the closing fence; a partial line goes out
                # once it cannot be the start of a fence.
                while True:
                    eol = self.buf.find("\n")
                    line = self.buf if eol < 0 else self.buf[: eol + 1]
                    if self.mid:  # the rest of a line already partly out: never a fence
                        out.append(line)
                        self.buf = "" if eol < 0 else self.buf[eol + 1 :]
                        self.mid = eol < 0
                        if eol < 0:
                            break
                        continue
                    if line.lstrip().startswith("```"):
                        self.state, self.buf = "after", ""
                        break
                    if eol < 0:
                        stripped = line.lstrip()
                        if line and stripped and not "```".startswith(stripped):
                            out.append(line)
                            self.buf = ""
                            self.mid = True
                        break
                    out.append(line)
                    self.buf = self.buf[eol + 1 :]
                break
            self.buf = ""  # after the closing fence
            break
        return "".join(out)

    def finish(self) -> str:
        """What is left at the end of the answer (a bare answer shorter than the prose limit)."""
        rest, self.buf = self.buf, ""
        if self.state in ("start", "raw") and "```" not in rest:
            return _THINK.sub("", rest)
        if self.state == "code" and (self.mid or not rest.lstrip().startswith("```")):
            return rest
        return ""


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 600) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _default_filename(spec: Spec, intent: Optional[Intent]) -> str:
    if intent is not None:
        return f"{intent.task.replace('-', '_')}_{intent.architecture.replace('-', '_')}.py"
    words = [str(spec.get(name)) for name in ("task", "family") if spec.get(name)]
    return "_".join(re.sub(r"[^a-z0-9]+", "_", w.lower()).strip("_") for w in words) + ".py" if words else "generated.py"


class _Run:
    def __init__(self, on_partial: OnPartial, cancel: Optional[threading.Event]) -> None:
        self.on_partial = on_partial
        self.cancel = cancel or threading.Event()

    def emit(self, partial: GeneratePartial) -> None:
        if self.on_partial is not None:
            self.on_partial(partial)

    def phase(self, name: str) -> None:
        self.check_cancel()
        self.emit(GeneratePartial(kind="phase", text=name))

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("generation cancelled")

    def verify(self, code: str, intent: Optional[Intent], spec: Spec, *, allow_gpu: bool, timeout_s: float) -> Any:
        from deepdive.codegen.verify import verify

        self.phase("verifying")

        def on_check(check: GenerateCheck) -> None:
            if self.cancel.is_set():
                # An abandoned verification stays quiet, and raising here stops it before its next sandboxed run.
                raise Cancelled("generation cancelled")
            self.emit(GeneratePartial(kind="check", check=check))

        result = verify(code, intent, spec=spec, timeout_s=timeout_s, allow_gpu=allow_gpu, on_check=on_check,
                        cancel=self.cancel)
        self.check_cancel()
        return result


class _Request:
    """One request as read: the params, the reading and what every result of it carries."""

    def __init__(self, params: GenerateParams, reading: Any, start: float) -> None:
        self.params = params
        self.spec: Spec = reading.spec
        self.intent: Optional[Intent] = reading.intent
        self.gaps: list[str] = list(reading.gaps)
        self.start = start
        self.framework = framework_of_request(self.spec, self.intent, params.framework)

    @property
    def no_program(self) -> bool:
        """The builtin cannot build this request as asked (no template fits, or something would be missed)."""
        return self.intent is None or bool(self.gaps)

    def result(self, code: str, backend: str, filename: Optional[str], *, outcome: Any = None, rounds: int = 0,
               message: Optional[str] = None, properties: Optional[list[PropertyCheck]] = None) -> GenerateResult:
        """The answer; verified only when ``outcome`` (a VerifyResult) is."""
        from deepdive.codegen import properties as props

        verified = bool(outcome is not None and outcome.verified)
        if properties is None:
            properties = list(outcome.properties) if outcome is not None else props.not_checked(self.spec, message or "")
        return GenerateResult(
            code=code,
            backend=backend,
            framework=self.framework,
            intent=self.intent.to_json() if self.intent is not None else {},
            verified=verified,
            checks=list(outcome.checks) if outcome is not None else [],
            rounds=rounds,
            seconds=round(time.perf_counter() - self.start, 3),
            filename=filename,
            message=None if verified else _one_line(message or (outcome.message if outcome is not None else "") or ""),
            properties=properties,
            understood_as=self.spec.to_json(),
            not_understood=list(self.spec.unknown) + list(self.spec.unplaced_numbers),
            gaps=list(self.gaps),
        )


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
    run = _Run(on_partial, cancel)
    run.check_cancel()
    if backend is None:
        from deepdive.models.resolve import resolve

        params = resolve(params)  # `auto` / no backend: the registry's default model, else the builtin
    request = _Request(params, read_request(params.prompt, params.framework), start)
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
            return _with_frame(request, run, name, backend, the_frame, verify_timeout_s, rounds)
    return _with_model(request, run, name, backend, verify_timeout_s, rounds)


def _builtin(request: _Request, run: _Run, verify_timeout_s: float) -> GenerateResult:
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


def _builtin_complete(request: _Request, run: _Run, verify_timeout_s: float) -> Optional[GenerateResult]:
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


def _missing(request: _Request) -> str:
    """Why the builtin has no program for this request, and what a local model would add."""
    spec = request.spec
    if request.intent is None and not spec.stated:
        short = " ".join(spec.prompt.split())
        short = short if len(short) <= 60 else short[:57] + "..."
        return (f'could not tell what to build from "{short}"; name a task such as "CNN classifier for MNIST" '
                f'or "LSTM sentiment classifier". No program: {MODEL_HINT}')
    missing = list(request.gaps) or ["no builtin template fits this request"]
    return f"the builtin generator cannot build this as asked: {'; '.join(missing)}. No program: {MODEL_HINT}"


def _with_model(request: _Request, run: _Run, name: str, backend: Backend, verify_timeout_s: float,
                max_rounds: int = MAX_REPAIR_ROUNDS) -> GenerateResult:
    """A model writes the program, the checks judge it, the model repairs it with their details."""
    from deepdive.codegen import builtin

    params, spec, intent = request.params, request.spec, request.intent
    reference: Optional[str] = None
    filename = _default_filename(spec, intent)
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

    def __init__(self, checks: list[GenerateCheck], request: _Request) -> None:
        from deepdive.codegen import properties as props

        self.checks = checks
        self.ok = False
        self.verified = False
        self.message = checks[0].detail
        self.properties = props.not_checked(request.spec, checks[0].detail)


def _with_frame(request: _Request, run: _Run, name: str, backend: Backend, frame: Any, verify_timeout_s: float,
                max_rounds: int) -> GenerateResult:
    """The model writes the model part (and the task's parts) into the frame; the checks judge the whole."""
    from deepdive.codegen.frames import SpliceError
    from deepdive.codegen.frames.prompt import frame_repair_message, frame_system_prompt
    from deepdive.codegen.frames.reading import needs_reading, read_with_model

    params = request.params
    if needs_reading(request.spec):
        run.phase("reading the request with the model (the parser did not understand all of it)")
        request.spec = read_with_model(backend, request.spec, run.cancel)
        run.check_cancel()
    filename = _default_filename(request.spec, request.intent)
    system = frame_system_prompt(frame, request.spec)
    what = ", ".join(f"{n}()" for n in frame.write)
    ask = f"{user_message(request.spec, params.prompt)}\nWrite the model class and {what} in one ```python block."
    messages: list[dict] = [{"role": "user", "content": ask}]
    earlier: list[str] = []  # the answers placed so far: a repair may rewrite only some definitions
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
        answer = extract_code(raw)
        try:
            code = frame.splice(answer, earlier)
        except SpliceError as exc:
            if _defines_something(answer):
                earlier.append(answer)  # incomplete, but its definitions count with the next answer's
            check = GenerateCheck(name="frame", ok=False, detail=str(exc))
            run.emit(GeneratePartial(kind="check", check=check))
            outcome, code = _NoProgram([check], request), ""
            messages = messages + [{"role": "assistant", "content": raw},
                                   {"role": "user", "content": frame_repair_message([check], "", None)}]
            continue
        earlier.append(answer)
        if frame.filename and frame.filename != filename:
            code = code.replace(f"python {frame.filename} ", f"python {filename} ")  # the docstring's run lines
        run.emit(GeneratePartial(kind="reset"))
        run.emit(GeneratePartial(kind="text", text=code))  # the whole program: the model's part in its frame
        placed = GenerateCheck(name="frame", ok=True, detail=_frame_detail(frame, earlier))
        run.emit(GeneratePartial(kind="check", check=placed))
        if not params.verify:
            return request.result(code, name, filename, rounds=rounds, message=VERIFY_OFF)
        outcome = run.verify(code, request.intent, request.spec, allow_gpu=params.allow_gpu, timeout_s=verify_timeout_s)
        outcome.checks.insert(0, placed)
        if outcome.verified or outcome.ok:
            return request.result(code, name, filename, outcome=outcome, rounds=rounds)
        feedback = frame_repair_message(list(outcome.checks), getattr(outcome, "stderr_tail", "") or "",
                                        outcome.message, outcome.properties)
        messages = messages + [{"role": "assistant", "content": raw}, {"role": "user", "content": feedback}]
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
    from deepdive.codegen.frames import NO_READER_NOTE
    from deepdive.codegen.frames.splice import FRAME_OWNED, top_level_names

    names: list[str] = []
    for answer in answers:
        names += [n for n in top_level_names(answer) if n not in FRAME_OWNED and n not in names]
    text = f"the model wrote {', '.join(names)}"
    added = frame.added_build_model(answers[-1], answers[:-1])
    if added:
        text += f"; build_model() returning {added}() was added (the model wrote the class only)"
    borrowed = top_level_names(frame.borrowed(answers[-1], answers[:-1]) or "\n")
    if borrowed:
        text += f"; from the reference example ({frame.example_title.removeprefix('a reference example: ')}): {', '.join(borrowed)}"
    text += f"; the rest is {frame.base}"
    return text + (f"; {NO_READER_NOTE}" if frame.no_reader(answers[-1], answers[:-1]) else "")


def _answer(run: _Run, backend: Backend, system: str, messages: list[dict]) -> str:
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
