"""One generation while it runs: its request as read (:class:`Request`), where its partial results and
cancel go (:class:`Run`), and how every answer is put together (:meth:`Request.result`).

Shared by the builtin's path (:mod:`deepdive.codegen.pipeline`) and a model's rounds
(:mod:`deepdive.codegen.rounds`).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Optional

from deepdive.codegen.backends import Cancelled
from deepdive.codegen.generation import GenerateCheck, GenerateParams, GeneratePartial, GenerateResult, PropertyCheck
from deepdive.codegen.instructions import framework_of_request
from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import Spec

__all__ = ["VERIFY_OFF", "OnPartial", "Run", "Request", "one_line", "default_filename"]

VERIFY_OFF = "verification is off: the program was not run and no stated property was checked"

OnPartial = Optional[Callable[[GeneratePartial], None]]


def one_line(text: str, limit: int = 600) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def default_filename(spec: Spec, intent: Optional[Intent]) -> str:
    """A file name for a model's program: from the builtin's intent, else from the stated task and family."""
    if intent is not None:
        return f"{intent.task.replace('-', '_')}_{intent.architecture.replace('-', '_')}.py"
    words = [str(spec.get(name)) for name in ("task", "family") if spec.get(name)]
    return "_".join(re.sub(r"[^a-z0-9]+", "_", w.lower()).strip("_") for w in words) + ".py" if words else "generated.py"


class Run:
    """Where one generation's partial results go, and the cancel event it checks between steps."""

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


class Request:
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
            message=None if verified else one_line(message or (outcome.message if outcome is not None else "") or ""),
            properties=properties,
            understood_as=self.spec.to_json(),
            not_understood=list(self.spec.unknown) + list(self.spec.unplaced_numbers),
            gaps=list(self.gaps),
        )
