"""Check a generated program by running it: parse, imports, contract, smoke run, properties.

Nothing here imports torch or tensorflow: the program runs in sandboxed subprocesses
(:mod:`deepdive.codegen.sandbox`) of the target interpreter, so the daemon can call :func:`verify`
in a worker thread. Checks, in order (verification stops at the first failing one):

``parse``       the source is valid Python (ast).
``imports``     every module-level import resolves in the target interpreter (importlib.util.find_spec,
                in a subprocess with the sandbox's environment); a missing one is named with its pip command.
``contract``    module-level ``build_model``, ``example_batch`` and ``main``, a ``--smoke`` option and a
                ``__main__`` guard.
``smoke``       ``python program.py --smoke`` in the sandbox: time, memory and process limits, exit status 0;
                its detail says which protections held (:meth:`SandboxResult.describe`).
``properties``  the module imported in the sandbox (:mod:`deepdive.codegen.probe`): build_model(),
                example_batch(), one forward pass, and the facts they show (modules, shapes, losses, the
                forward pass's data flow); then each property the request states (its
                :class:`~deepdive.codegen.spec.Spec`) is judged met, failed or not checked
                (:mod:`deepdive.codegen.properties`). This check fails when a property failed.

The result is verified only when every check passed, every stated property was checked and met, and
nothing of the prompt was left not understood (:func:`deepdive.codegen.properties.verdict`). What the
request states is checked, never what a template made of it: the Intent only names input files the
program may read.
"""

from __future__ import annotations

import ast
import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import attrs

from deepdive.codegen import properties as props
from deepdive.codegen.generation import GenerateCheck, PropertyCheck
from deepdive.codegen.intent import Intent
from deepdive.codegen.sandbox import DEFAULT_MEMORY_MB, SandboxResult, run_sandboxed
from deepdive.codegen.source_facts import framework_of, read_source
from deepdive.codegen.spec import Spec

__all__ = ["VerifyResult", "verify", "PIP_NAMES"]

# Import name -> pip package, where they differ.
PIP_NAMES = {
    "sklearn": "scikit-learn", "PIL": "pillow", "cv2": "opencv-python", "yaml": "pyyaml", "skimage": "scikit-image",
    "tensorflow": "tensorflow", "keras": "keras", "deepdive": "deepdive", "google": "protobuf", "attr": "attrs",
    "bs4": "beautifulsoup4", "dateutil": "python-dateutil",
}


@attrs.define
class VerifyResult:
    ok: bool
    """Every check passed (no stated property failed); properties may still be not checked."""
    checks: list[GenerateCheck] = attrs.Factory(list)
    seconds: float = 0.0
    message: Optional[str] = None
    """Why the program is not verified, in one line: a failed check's message, or
    :func:`~deepdive.codegen.properties.verdict`'s (None when verified)."""
    stderr_tail: str = ""
    properties: list[PropertyCheck] = attrs.Factory(list)
    """Each stated property: met, failed or not checked."""
    facts: dict = attrs.Factory(dict)
    """What the probe saw (modules, shapes, losses), for the record."""

    @property
    def verified(self) -> bool:
        """Every check passed and every stated property was checked and met, nothing left not understood."""
        return self.ok and self.message is None


PROBE = Path(__file__).with_name("probe.py")


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _top_level_imports(tree: ast.Module) -> list[str]:
    """Module-level imports (also under ``if``), not those guarded by ``try``: package names, in order."""
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level and node.module != "__future__":
                found.append(node.module)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
                        and node.test.left.id == "__name__"):
                    visit(node.body)
                    visit(node.orelse)
    visit(tree.body)
    # Top-level packages only: find_spec of "a.b" would import "a" (seconds for torch).
    seen: list[str] = []
    for name in found:
        top = name.split(".")[0]
        if top not in seen:
            seen.append(top)
    return seen


_FIND_SPECS = r"""
import importlib.util, json, sys
missing = []
for name in json.loads(sys.argv[1]):
    try:
        ok = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        ok = False
    if not ok:
        missing.append(name)
print("@@RESULT@@" + json.dumps(missing))
"""

def _result_json(res: SandboxResult) -> Optional[dict]:
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("@@RESULT@@"):
            try:
                return json.loads(line[len("@@RESULT@@"):])
            except ValueError:
                return None
    return None


CANCELLED = "cancelled"
_PROCESS_LIMIT = ("hit the sandbox's limit of {} processes and threads "
                  "(raise it with DEEPDIVE_SANDBOX_MAX_PROCESSES if the program needs more)")


def verify(source: str, intent: Optional[Intent] = None, *, spec: Optional[Spec] = None, timeout_s: float = 120,
           memory_mb: Optional[int] = None, allow_gpu: bool = False,
           on_check: Optional[Callable[[GenerateCheck], None]] = None, python: str = sys.executable,
           cancel: Optional[threading.Event] = None) -> VerifyResult:
    """Run the checks on ``source`` and judge each property ``spec`` states.

    Args:
        intent: the builtin's reading of the request, or None; only its input files (a local model
            folder, a CSV) are used: the program may read them.
        spec: what the request states; None: no property is stated (the checks alone decide).
        timeout_s: wall-clock limit of the smoke run (the property run gets the same).
        memory_mb: address-space limit of the sandboxed runs; default per framework
            (:data:`deepdive.codegen.sandbox.DEFAULT_MEMORY_MB`), none when ``allow_gpu`` (CUDA maps
            more address space than any useful limit).
        allow_gpu: let the program see the GPUs (CUDA_VISIBLE_DEVICES is emptied otherwise).
        on_check: called with each check as it finishes.
        python: the interpreter that will run the program.
        cancel: when set, the running sandboxed process is killed and no further check starts
            (the result's message is then ``"cancelled"``).
    """
    started = time.monotonic()
    checks: list[GenerateCheck] = []
    stderr_tail = ""

    def record(name: str, ok: bool, detail: str, t0: float) -> bool:
        check = GenerateCheck(name=name, ok=ok, detail=detail, seconds=round(time.monotonic() - t0, 3))
        checks.append(check)
        if on_check is not None:
            on_check(check)
        return ok

    judged: Optional[list[PropertyCheck]] = None  # set once the properties were judged
    facts: dict = {}

    def done(message: Optional[str]) -> VerifyResult:
        ok = message is None and all(c.ok for c in checks)
        properties = judged if judged is not None else props.not_checked(spec, _stopped(checks, message))
        if message is None:
            message = props.verdict(checks, properties, spec)
        return VerifyResult(ok=ok, checks=checks, seconds=round(time.monotonic() - started, 3), message=message,
                            stderr_tail=stderr_tail, properties=properties, facts=facts)

    # -- parse --
    t0 = time.monotonic()
    try:
        tree = ast.parse(source)
        compile(tree, "program.py", "exec")  # also the errors ast.parse lets through (misplaced global, ...)
    except SyntaxError as exc:
        msg = f"syntax error at line {exc.lineno}: {exc.msg}"
        record("parse", False, msg, t0)
        return done(msg)
    record("parse", True, f"{len(source.splitlines())} lines", t0)
    framework = framework_of(tree)
    if memory_mb is None and not allow_gpu:
        memory_mb = DEFAULT_MEMORY_MB.get(framework, DEFAULT_MEMORY_MB["torch"])

    # -- imports --
    t0 = time.monotonic()
    modules = _top_level_imports(tree)
    res = run_sandboxed(["-c", _FIND_SPECS, json.dumps(modules)], files={}, timeout_s=min(60.0, timeout_s),
                        memory_mb=None, allow_gpu=allow_gpu, python=python, cancel=cancel)
    if res.cancelled:
        return done(CANCELLED)
    missing = _result_json(res)
    if missing is None:
        stderr_tail = _tail(res.stderr)
        msg = f"could not check imports with {python}: {_last_line(res.stderr) or 'no output'}"
        record("imports", False, msg, t0)
        return done(msg)
    if missing:
        first = missing[0]
        top = first.split(".")[0]
        pip = PIP_NAMES.get(top, top.replace("_", "-"))
        hint = ("install Deepdive into that interpreter (pip install -e . in the repository)" if top == "deepdive"
                else f"pip install {pip}")
        msg = f"module {first!r} is not installed for {python}: {hint}"
        if len(missing) > 1:
            msg += f" (also missing: {', '.join(missing[1:])})"
        record("imports", False, msg, t0)
        return done(msg)
    record("imports", True, f"{len(modules)} modules: {', '.join(modules[:12])}", t0)

    # -- contract --
    t0 = time.monotonic()
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    problems = [f"no {name}()" for name in ("build_model", "example_batch", "main") if name not in defined]
    if "--smoke" not in source:
        problems.append("no --smoke option")
    if not any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body):
        problems.append('no `if __name__ == "__main__":` guard')
    if problems:
        msg = "the program does not follow the contract: " + ", ".join(problems)
        record("contract", False, msg, t0)
        return done(msg)
    record("contract", True, "build_model(), example_batch(), main(), --smoke", t0)

    # -- smoke --
    t0 = time.monotonic()
    input_files = [p for p in (intent.model_path, intent.csv_path) if p] if intent is not None else []
    res = run_sandboxed(["program.py", "--smoke"], files={"program.py": source}, timeout_s=timeout_s,
                        memory_mb=memory_mb, allow_gpu=allow_gpu, python=python, cancel=cancel, read_only=input_files,
                        template=framework)
    if res.cancelled:
        return done(CANCELLED)
    stderr_tail = _tail(res.stderr)
    if res.process_limit_hit:
        msg = f"smoke run {_PROCESS_LIMIT.format(res.max_processes)}"
    elif res.timed_out:
        msg = f"smoke run exceeded the {timeout_s:g} s time limit"
    elif res.out_of_memory:
        msg = f"smoke run ran out of memory (limit {memory_mb} MiB)"
    elif res.returncode != 0:
        msg = f"smoke run failed (exit {res.returncode}): {_last_line(res.stderr) or _last_line(res.stdout) or 'no output'}"
    else:
        msg = None
    if msg:
        record("smoke", False, msg, t0)
        return done(msg)
    record("smoke", True, f"exit 0 in {res.seconds:.1f} s ({res.describe()}): {_last_line(res.stdout)[:120]}", t0)

    # -- properties --
    t0 = time.monotonic()
    res = run_sandboxed(["probe.py", framework if framework != "none" else "torch", json.dumps(props.wants(spec))],
                        files={"program.py": source, "probe.py": PROBE.read_text(encoding="utf-8")},
                        timeout_s=timeout_s, memory_mb=memory_mb, allow_gpu=allow_gpu, python=python, cancel=cancel,
                        read_only=input_files, template=framework)
    if res.cancelled:
        return done(CANCELLED)
    data = _result_json(res)
    if res.process_limit_hit:
        msg = f"property check {_PROCESS_LIMIT.format(res.max_processes)}"
    elif res.timed_out:
        msg = f"property check exceeded the {timeout_s:g} s time limit"
    elif res.out_of_memory:
        msg = f"property check ran out of memory (limit {memory_mb} MiB)"
    elif data is None:
        msg = f"property check crashed (exit {res.returncode}): {_last_line(res.stderr) or 'no output'}"
    elif "error" in data:
        msg = f"build_model()/example_batch()/forward failed: {data['error']}"
    else:
        msg = None
    if msg:
        stderr_tail = _tail(res.stderr)
        record("properties", False, msg, t0)
        return done(msg)
    facts.update(data)
    judged = props.judge(spec, props.ProgramFacts(framework, read_source(tree), data))
    failed = [p for p in judged if p.status == props.FAILED]
    if failed:
        record("properties", False, "; ".join(props.line(p) for p in failed), t0)
    else:
        record("properties", True, _properties_detail(judged, data), t0)
    return done(None)


def _stopped(checks: list[GenerateCheck], message: Optional[str]) -> str:
    """Why the properties were not judged: the check that stopped verification."""
    if message == CANCELLED:
        return "verification was cancelled"
    failed = next((c for c in checks if not c.ok), None)
    return f"verification stopped at the {failed.name} check" if failed else "verification stopped"


def _properties_detail(judged: list[PropertyCheck], data: dict) -> str:
    """``3 stated properties met, 1 not checked; output (8, 10)``."""
    outputs = data.get("outputs") or []
    shape = f"output ({', '.join(str(d) for d in outputs[0]['shape'])})" if outputs else "no tensor output"
    if not judged:
        return f"forward pass: {shape}; no stated property to check"
    met = sum(p.status == props.MET for p in judged)
    unchecked = len(judged) - met
    return f"{met} of {len(judged)} stated properties met" + (f", {unchecked} not checked" if unchecked else "") + f"; {shape}"
