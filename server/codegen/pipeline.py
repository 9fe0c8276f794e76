"""The generation pipeline: prompt -> intent -> program (builtin or a model) -> verification -> repair.

:func:`generate` serves ``deepdive/generate``. It is synchronous: the daemon runs it in a worker
thread and hands ``on_partial`` a function that forwards each :class:`GeneratePartial` as a
``$/progress`` value. It never imports torch, tensorflow or transformers in the calling process:
parsing and composing are string work, model backends run in a subprocess or behind HTTP, and
verification runs the program in a sandboxed subprocess.

With a model backend the model gets a system prompt with the program contract (``build_model()``,
``example_batch()``, ``main()``, ``--smoke``), the properties the verifier will check, and the
builtin's program for the same intent as a reference. When verification fails, the failing checks
and the program's stderr tail go back to the model, at most :data:`MAX_REPAIR_ROUNDS` times. When
the prompt does not fit the model's context, the reference program is left out (then the older
repair rounds).
"""

from __future__ import annotations

import inspect
import re
import threading
import time
from typing import Any, Callable, Optional

from deepdive.codegen.backends import Backend, BackendError, Cancelled, PromptTooLong, make_backend
from deepdive.codegen.intent import Intent
from deepdive.protocol import GenerateCheck, GenerateParams, GeneratePartial, GenerateResult

__all__ = [
    "Cancelled",
    "BackendError",
    "MAX_REPAIR_ROUNDS",
    "generate",
    "extract_code",
    "CodeStream",
    "system_prompt",
    "repair_message",
]

MAX_REPAIR_ROUNDS = 2
VERIFY_TIMEOUT_S = 120.0

OnPartial = Optional[Callable[[GeneratePartial], None]]


# ------------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------------

_FRAMEWORK_NAMES = {"torch": "PyTorch", "tensorflow": "TensorFlow/Keras"}


def _expectation_lines(intent: Intent) -> list[str]:
    lines = []
    for name, expected in intent.expectations():
        if name == "output_units":
            lines.append(f"the model's output has {expected} units (one per class)")
        elif name == "layer_count":
            kind, count = expected  # type: ignore[misc]
            lines.append(f"the model has exactly {count} {kind} layer(s)")
        elif name == "autocast":
            lines.append(
                "training uses mixed precision (torch.autocast)"
                if intent.framework == "torch"
                else "training uses a mixed precision policy"
            )
        elif name == "framework":
            lines.append(f"the program uses {_FRAMEWORK_NAMES.get(str(expected), expected)} only")
    return lines


def system_prompt(intent: Intent, reference: Optional[str]) -> str:
    """The instructions a model backend gets: the contract, the checks, the reference program."""
    fw = _FRAMEWORK_NAMES.get(intent.framework, intent.framework)
    model_kind = "a torch.nn.Module" if intent.framework == "torch" else "a compiled keras.Model"
    parts = [
        f"You write complete, runnable {fw} training programs in Python for a developer's editor.",
        "",
        "Every program follows this contract; an automatic checker verifies it by running the program:",
        f"- `build_model()` returns the model ({model_kind}).",
        "- `example_batch()` returns `(inputs, targets)`: synthetic data of the right shapes and dtypes "
        "(a small batch, e.g. 4 examples), made from random numbers, no files and no downloads.",
        "- `main()` parses the command line with argparse and trains; with `--smoke` it runs one tiny "
        "training step on `example_batch()` data, writes nothing outside the working directory and exits 0.",
        "- the file ends with `if __name__ == \"__main__\":` calling `main()`.",
        "- import only the standard library and the packages the reference program imports.",
    ]
    checks = _expectation_lines(intent)
    if checks:
        parts.append("")
        parts.append("The checker also verifies that:")
        parts.extend(f"- {line}" for line in checks)
    if intent.use_engine:
        parts += [
            "",
            "The user asked for deepdive's engine: train through `import deepdive.engine as dd` the way the "
            "reference does (`run = dd.setup(...)`, `run.prepare(...)`, `run.batches(...)`, `run.autocast()`, "
            "`run.backward(loss)`, `run.step(opt)`, `run.log(...)`); do not invent other engine functions.",
        ]
    parts += [
        "",
        "Answer with the whole program in one ```python block. No explanation after the block.",
    ]
    if reference:
        parts += [
            "",
            "Reference: the program deepdive's offline generator writes for this request. It passes the "
            "checker. Follow its structure and improve it where the request asks for more:",
            "```python",
            reference.rstrip(),
            "```",
        ]
    return "\n".join(parts)


def _intent_summary(intent: Intent) -> str:
    fields = []
    for key, value in intent.to_json().items():
        if key == "prompt" or value in (None, [], False, ""):
            continue
        fields.append(f"{key}={value}")
    return ", ".join(fields)


def user_message(intent: Intent) -> str:
    return f"Request: {intent.prompt}\nUnderstood as: {_intent_summary(intent)}"


def repair_message(checks: list[GenerateCheck], stderr_tail: str, message: Optional[str]) -> str:
    """What goes back to the model after a failed verification."""
    failed = [c for c in checks if not c.ok]
    lines = ["The program failed verification."]
    if failed:
        lines.append("Failed checks:")
        lines.extend(f"- {c.name}: {c.detail}".rstrip(": ") for c in failed)
    elif message:
        lines.append(message)
    if stderr_tail and stderr_tail.strip():
        lines += ["Last lines the program wrote to stderr:", "```", stderr_tail.strip()[-3000:], "```"]
    lines.append("Fix it. Answer with the complete corrected program in one ```python block.")
    return "\n".join(lines)


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


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chunks(code: str, parts: int = 6) -> list[str]:
    lines = code.splitlines(keepends=True)
    size = max(1, -(-len(lines) // parts))
    return ["".join(lines[i : i + size]) for i in range(0, len(lines), size)]


def _default_filename(intent: Intent) -> str:
    return f"{intent.task.replace('-', '_')}_{intent.architecture.replace('-', '_')}.py"


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

    def verify(self, code: str, intent: Intent, *, allow_gpu: bool, timeout_s: float) -> Any:
        from deepdive.codegen.verify import verify

        self.phase("verifying")

        def on_check(check: GenerateCheck) -> None:
            if self.cancel.is_set():
                # An abandoned verification (see below) stays quiet, and raising here stops it
                # before its next sandboxed run.
                raise Cancelled("generation cancelled")
            self.emit(GeneratePartial(kind="check", check=check))

        kwargs: dict[str, Any] = {"timeout_s": timeout_s, "allow_gpu": allow_gpu, "on_check": on_check}
        if "cancel" in inspect.signature(verify).parameters:
            kwargs["cancel"] = self.cancel
            result = verify(code, intent, **kwargs)
            self.check_cancel()
            return result
        # A verifier without a cancel argument: wait for it in another thread and give up on a cancel;
        # the sandboxed run in progress then ends on its own (its time limit at most), and no other starts.
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = verify(code, intent, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                box["error"] = exc

        thread = threading.Thread(target=target, name="codegen-verify", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(timeout=0.05)
            self.check_cancel()
        if "error" in box:
            raise box["error"]
        return box["result"]


def generate(
    params: GenerateParams,
    *,
    on_partial: OnPartial = None,
    cancel: Optional[threading.Event] = None,
    backend: Optional[Backend] = None,
    verify_timeout_s: float = VERIFY_TIMEOUT_S,
) -> GenerateResult:
    """Write the program ``params.prompt`` asks for, verify it, repair it with the model if needed.

    Raises ValueError (a prompt that cannot be understood), BackendError (the model backend failed,
    one line) and :class:`Cancelled` (``cancel`` was set).
    """
    from deepdive.codegen import builtin
    from deepdive.codegen.parse import parse_intent

    start = time.perf_counter()
    run = _Run(on_partial, cancel)
    run.check_cancel()
    intent = parse_intent(params.prompt, params.framework)
    name = params.backend or "builtin"
    if name == "builtin" and backend is None:
        run.phase("generating")
        program = builtin.generate(intent)
        for piece in _chunks(program.code):
            run.check_cancel()
            run.emit(GeneratePartial(kind="text", text=piece))
        code, filename = program.code, program.filename
        if not params.verify:
            return _result(code, name, intent, start, filename, verified=False, message="not verified: verify is off")
        outcome = run.verify(code, intent, allow_gpu=params.allow_gpu, timeout_s=verify_timeout_s)
        return _result(
            code,
            name,
            intent,
            start,
            filename,
            verified=bool(outcome.ok),
            checks=list(outcome.checks),
            message=None if outcome.ok else _failure(outcome),
        )

    # A model backend.
    if backend is None:
        backend = make_backend(
            name,
            model_path=params.model_path,
            endpoint=params.endpoint,
            model=params.model,
            allow_remote=params.allow_remote,
        )
    try:
        program = builtin.generate(intent)
        reference: Optional[str] = program.code
        filename = program.filename
    except (ValueError, NotImplementedError, RuntimeError):
        reference, filename = None, _default_filename(intent)
    messages: list[dict] = [{"role": "user", "content": user_message(intent)}]
    system = system_prompt(intent, reference)
    code = ""
    checks: list[GenerateCheck] = []
    outcome: Any = None
    rounds = 0
    for attempt in range(MAX_REPAIR_ROUNDS + 1):
        if attempt:
            rounds = attempt
            run.phase("repairing")
            run.emit(GeneratePartial(kind="reset"))
        else:
            run.phase("generating")
        while True:
            try:
                raw = _answer(run, backend, system, messages)
                break
            except PromptTooLong:
                # A small context: drop the reference program first, then older repair rounds.
                if reference is not None:
                    reference = None
                    system = system_prompt(intent, None)
                elif len(messages) > 3:
                    messages = [messages[0], *messages[-2:]]
                else:
                    raise
        code = extract_code(raw)
        if not params.verify:
            return _result(code, name, intent, start, filename, verified=False, message="not verified: verify is off")
        if not code:
            checks = [GenerateCheck(name="program", ok=False, detail="the model's answer contains no program")]
            run.emit(GeneratePartial(kind="check", check=checks[0]))
            outcome = None
            feedback = repair_message(checks, "", None)
        else:
            outcome = run.verify(code, intent, allow_gpu=params.allow_gpu, timeout_s=verify_timeout_s)
            checks = list(outcome.checks)
            if outcome.ok:
                return _result(code, name, intent, start, filename, verified=True, checks=checks, rounds=rounds)
            feedback = repair_message(checks, getattr(outcome, "stderr_tail", "") or "", outcome.message)
        messages = messages + [{"role": "assistant", "content": raw}, {"role": "user", "content": feedback}]
    why = _failure(outcome) if outcome is not None else "the model's answer contains no program"
    return _result(
        code,
        name,
        intent,
        start,
        filename,
        verified=False,
        checks=checks,
        rounds=rounds,
        message=_one_line(f"not verified after {rounds} repair rounds: {why}"),
    )


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


def _failure(outcome: Any) -> str:
    failed = [c for c in outcome.checks if not c.ok]
    if failed:
        first = failed[0]
        return _one_line(f"{first.name}: {first.detail}" if first.detail else f"check {first.name} failed")
    return _one_line(outcome.message or "verification failed")


def _result(
    code: str,
    backend: str,
    intent: Intent,
    start: float,
    filename: Optional[str],
    *,
    verified: bool,
    checks: Optional[list[GenerateCheck]] = None,
    rounds: int = 0,
    message: Optional[str] = None,
) -> GenerateResult:
    return GenerateResult(
        code=code,
        backend=backend,
        framework=intent.framework,
        intent=intent.to_json(),
        verified=verified,
        checks=list(checks or []),
        rounds=rounds,
        seconds=round(time.perf_counter() - start, 3),
        filename=filename,
        message=message,
    )
