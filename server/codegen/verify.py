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
``properties``  the module imported in the sandbox: build_model(), example_batch(), one forward pass;
                then each of :meth:`Intent.expectations` (output units, layer count, autocast, framework).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import threading
import time
from typing import Callable, Optional

import attrs

from deepdive.codegen.intent import Intent
from deepdive.codegen.sandbox import DEFAULT_MEMORY_MB, SandboxResult, run_sandboxed
from deepdive.protocol import GenerateCheck

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
    checks: list[GenerateCheck] = attrs.Factory(list)
    seconds: float = 0.0
    message: Optional[str] = None
    """Why verification failed, in one line (None when it passed)."""
    stderr_tail: str = ""


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _framework_of(tree: ast.Module) -> str:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    if names & {"tensorflow", "keras"} and "torch" not in names:
        return "tensorflow"
    return "torch" if "torch" in names else ("tensorflow" if names & {"tensorflow", "keras"} else "none")


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

_HARNESS = r'''
import importlib.util, json, sys, traceback
framework = sys.argv[1]
result = {}
try:
    spec = importlib.util.spec_from_file_location("program", "program.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["program"] = mod
    spec.loader.exec_module(mod)
    model = mod.build_model()
    batch = mod.example_batch()
    inputs = batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 2 else batch
    counts = {}
    if framework == "tensorflow":
        def walk(layer, seen):
            if id(layer) in seen:
                return
            seen.add(id(layer))
            name = type(layer).__name__
            counts[name] = counts.get(name, 0) + 1
            for child in getattr(layer, "layers", None) or []:
                walk(child, seen)
            inner = getattr(layer, "layer", None) or getattr(layer, "forward_layer", None)
            if inner is not None and not isinstance(inner, (list, tuple)):
                walk(inner, seen)
        walk(model, set())
        if isinstance(inputs, dict):
            out = model(inputs, training=False)
        elif isinstance(inputs, (tuple, list)):
            out = model(list(inputs), training=False)
        else:
            out = model(inputs, training=False)
        if isinstance(out, dict):
            out = next(iter(out.values()))
        if isinstance(out, (tuple, list)):
            out = out[0]
        result["output_shape"] = [int(d) if d is not None else None for d in out.shape]
    else:
        import torch
        for module in model.modules():
            name = type(module).__name__
            counts[name] = counts.get(name, 0) + (int(getattr(module, "num_layers", 1)) if name in ("LSTM", "GRU", "RNN") else 1)
        model.eval()
        with torch.no_grad():
            if isinstance(inputs, dict):
                out = model(**inputs)
            elif isinstance(inputs, (tuple, list)):
                out = model(*inputs)
            else:
                out = model(inputs)
        if hasattr(out, "logits"):
            out = out.logits
        if isinstance(out, dict):
            out = out.get("logits", next(iter(out.values())))
        if isinstance(out, (tuple, list)):
            out = out[0]
        result["output_shape"] = list(out.shape)
    result["layer_counts"] = counts
except BaseException as exc:
    result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    traceback.print_exc()
print("@@RESULT@@" + json.dumps(result))
'''

_AUTOCAST = re.compile(r"torch\.autocast\s*\(|torch\.(cuda|cpu|amp)\.autocast\s*\(|\brun\.autocast\s*\(|"
                       r"mixed_precision\.set_global_policy|set_global_policy\(\s*['\"]mixed_|mixed_(float|bfloat)16")
_DD_PRECISION = re.compile(r"dd\.setup\([^)]*precision\s*=\s*(?!['\"]fp32['\"])")


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


def verify(source: str, intent: Optional[Intent], *, timeout_s: float = 120, memory_mb: Optional[int] = None,
           allow_gpu: bool = False, on_check: Optional[Callable[[GenerateCheck], None]] = None,
           python: str = sys.executable, cancel: Optional[threading.Event] = None) -> VerifyResult:
    """Run the checks on ``source``; ``intent`` (may be None) adds the property checks it expects.

    Args:
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

    def done(message: Optional[str]) -> VerifyResult:
        return VerifyResult(ok=message is None and all(c.ok for c in checks), checks=checks,
                            seconds=round(time.monotonic() - started, 3), message=message, stderr_tail=stderr_tail)

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
    framework = _framework_of(tree)
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
                        memory_mb=memory_mb, allow_gpu=allow_gpu, python=python, cancel=cancel, read_only=input_files)
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
    res = run_sandboxed(["harness.py", framework if framework != "none" else "torch"],
                        files={"program.py": source, "harness.py": _HARNESS}, timeout_s=timeout_s,
                        memory_mb=memory_mb, allow_gpu=allow_gpu, python=python, cancel=cancel, read_only=input_files)
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
    results, failures = [], []
    for name, expected in (intent.expectations() if intent is not None else []):
        ok, got = _check(name, expected, data, source, framework)
        (results if ok else failures).append(got)
    detail = "; ".join(failures or results) or f"forward pass: output shape {tuple(data['output_shape'])}"
    if failures:
        msg = "property check failed: " + "; ".join(failures)
        record("properties", False, msg, t0)
        return done(msg)
    record("properties", True, detail, t0)
    return done(None)


def _check(name: str, expected: object, data: dict, source: str, framework: str) -> tuple[bool, str]:
    if name == "framework":
        ok = framework == expected
        return ok, f"framework {framework}" + ("" if ok else f" (expected {expected})")
    if name == "output_units":
        shape = data.get("output_shape") or []
        got = shape[-1] if shape else None
        ok = got == expected
        return ok, f"output units {got}" + ("" if ok else f" (expected {expected}: the number of classes)")
    if name == "layer_count":
        type_name, count = expected  # type: ignore[misc]
        got = data.get("layer_counts", {}).get(type_name, 0)
        ok = got == count
        return ok, f"{got} {type_name} layer(s)" + ("" if ok else f" (expected {count})")
    if name == "autocast":
        ok = bool(_AUTOCAST.search(source) or _DD_PRECISION.search(source))
        return ok, "mixed precision (autocast)" if ok else "no autocast or mixed-precision policy (mixed precision was asked for)"
    return True, f"{name}: not checked"
