"""A warm trial worker: torch imported once, then trial after trial executed in this process.

Started by the tune coordinator as ``python -P -m deepdive.tune.worker FD`` where FD is its end of
a socket pair (``multiprocessing.connection`` framing). Messages, coordinator -> worker::

    ("run", {"number", "script", "args", "cwd", "metric", "seed", "log", "presampled"})   run one trial
    ("stop",)                                                                            exit

worker -> coordinator::

    ("ready", pid)
    ("suggest", number, param_dict)  -> answered ("value", v) or ("error", message)
    ("used", number, param_dict)     a presampled value was used (no answer: the worker goes on)
    ("report", number, step, value)  -> answered ("prune", bool) or ("stop", reason): patience ran out
    ("done", number, outcome_dict)

``presampled`` maps a parameter's name to ``{"value", "declared"}``: the sampler's value for it,
drawn when the trial was created (Optuna's relative sampling), and the declaration it was drawn
for (:func:`declared`). A ``run.suggest`` whose declaration is exactly that takes the value
without a round trip and only tells the coordinator, which records it while the trial trains;
any other declaration (a new parameter, a changed range) asks the coordinator as before.

Each trial runs the script with :func:`runpy.run_path` under ``__main__`` with fresh module globals,
``sys.argv`` set to the script and its arguments, the trial bound in-process
(:func:`deepdive.engine.hparams.bind_trial`: ``run.suggest`` asks the coordinator, ``run.log``
reports to it), and the random seeds of ``random``, NumPy and torch reset. File descriptors 1 and 2
point at the trial's log file, so the last lines of its output explain a failure. A trial that
kills the process (a segfault, the OOM killer, ``os._exit``) is seen by the coordinator, which
starts a fresh worker for the next trial.
"""

from __future__ import annotations

import atexit
import gc
import os
import random
import runpy
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from deepdive.procutil import die_with_parent

TAIL_LINES = 8


def _seed(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass
    import torch

    torch.manual_seed(seed)


def tail(path: str, lines: int = TAIL_LINES) -> list[str]:
    """The last non-empty lines of a log file (at most 64 KiB read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in data.splitlines() if line.strip()][-lines:]


def _where(exc: BaseException, script: str) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if os.path.abspath(f.filename) == script] or frames
    if not mine:
        return ""
    frame = mine[-1]
    return f" ({os.path.basename(frame.filename)}:{frame.lineno})"


def declared(param: dict[str, Any]) -> dict[str, Any]:
    """A ``run.suggest`` declaration in the canonical form both sides compare (Optuna's distribution terms)."""
    kind = param["kind"]
    if kind == "categorical":
        return {"kind": kind, "choices": list(param["choices"])}
    if kind == "int":
        return {"kind": kind, "low": int(param["low"]), "high": int(param["high"]), "log": bool(param["log"]),
                "step": int(param["step"]) if param.get("step") else 1}
    return {"kind": kind, "low": float(param["low"]), "high": float(param["high"]), "log": bool(param["log"]),
            "step": float(param["step"]) if param.get("step") else None}


def run_trial(conn: Connection, job: dict[str, Any]) -> dict[str, Any]:
    """Run one trial in this process; the outcome dict goes back to the coordinator."""
    from deepdive.engine.hparams import Param, TrialBinding, TrialPruned, TrialStopped, bind_trial

    import attrs

    number = job["number"]
    script = os.path.abspath(job["script"])
    presampled: dict[str, Any] = dict(job.get("presampled") or {})

    def suggest(param: Param) -> Any:
        fields = attrs.asdict(param)
        ready = presampled.pop(param.name, None)
        if ready is not None and declared(fields) == ready["declared"]:
            conn.send(("used", number, fields))  # recorded by the coordinator while this trial trains
            return ready["value"]
        conn.send(("suggest", number, fields))
        kind, value = conn.recv()
        if kind == "error":
            raise ValueError(value)
        return value

    def report(step: int, value: float) -> bool:
        conn.send(("report", number, step, value))
        kind, answer = conn.recv()
        if kind == "stop":  # raised through run.log and the script, caught below: a complete trial
            raise TrialStopped(answer)
        return bool(answer)

    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.chdir(job["cwd"])
    saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else None
    sys.argv = [script, *job["args"]]
    script_dir = os.path.dirname(script)
    if sys.path:
        sys.path[0] = script_dir
    else:
        sys.path.insert(0, script_dir)
    _seed(int(job.get("seed") or 0))
    threads = job.get("threads")
    if threads:
        import torch

        if torch.get_num_threads() != threads:  # a kept worker serving a study with another --parallel
            torch.set_num_threads(threads)
    binding = TrialBinding(suggest=suggest, metric=job["metric"], report=report,
                           direction=job.get("direction") or "minimize", seed=int(job.get("seed") or 0))
    bind_trial(binding)
    # exit handlers the script registers (the engine's Run closes its reporter that way) run at the
    # end of the trial, as they would at the end of a process, instead of piling up in the worker
    registered: list[tuple[Any, tuple, dict]] = []
    real_register = atexit.register

    def register(func: Any, *args: Any, **kwargs: Any) -> Any:
        registered.append((func, args, kwargs))
        return func

    atexit.register = register  # type: ignore[assignment]
    outcome: dict[str, Any] = {"state": "complete", "value": None, "reason": None}
    started = time.perf_counter()
    try:
        runpy.run_path(script, run_name="__main__")
    except TrialPruned as exc:
        outcome.update(state="pruned", reason=str(exc))
    except TrialStopped as exc:
        outcome.update(reason=str(exc))
    except SystemExit as exc:
        code = exc.code
        if code not in (None, 0):
            outcome.update(state="fail", reason=f"the script exited with status {code}" if isinstance(code, int)
                           else f"the script exited: {code}")
    except BaseException as exc:  # noqa: BLE001 - any failure of the user's script is the trial's
        traceback.print_exc()
        message = str(exc).strip().splitlines()
        first = message[0] if message else ""
        outcome.update(state="fail", reason=f"{type(exc).__name__}: {first}{_where(exc, script)}"[:400])
        outcome["oom"] = "OutOfMemoryError" in type(exc).__name__ or "out of memory" in first.lower()
    finally:
        atexit.register = real_register  # type: ignore[assignment]
        for func, args, kwargs in reversed(registered):
            try:
                func(*args, **kwargs)
            except Exception:  # noqa: BLE001 - a failing exit handler does not end the worker
                traceback.print_exc()
        bind_trial(None)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.argv = saved_argv
        if saved_path0 is not None:
            sys.path[0] = saved_path0
    outcome["script_s"] = time.perf_counter() - started
    outcome["train_s"] = binding.step_seconds
    outcome["params"] = binding.params
    if outcome["state"] == "complete":
        if not binding.params:
            outcome.update(state="fail", reason="the script declared no hyperparameter: call run.suggest(...) "
                                                "(define-by-run search space)")
        elif binding.last is None:
            outcome.update(state="fail", reason=f"the script never reported {job['metric']!r}: call "
                                                f"run.log({job['metric']}=...)")
        else:
            outcome["value"] = binding.best if job.get("value") == "best" and binding.best is not None else binding.last
    gc.collect()  # the trial's cycles (CUDA tensors among them) before the allocator's cache is emptied;
    outcome.update(_gpu_memory())  # cheap: everything older is frozen (see main)
    return outcome


def _gpu_memory() -> dict[str, Any]:
    """What the trial held on its GPU, for ``--pack`` (``peak_mem_mib`` None when it used no CUDA). Then the allocator's
    cache is emptied and its peak reset, so that the next trial in this worker is measured on its own.

    - ``peak_mem_mib``: the peak of torch's caching allocator (``max_memory_reserved``), the part of the
      trial's memory that grows with the model and the batch;
    - ``context_mib``: what this process holds outside the allocator (the CUDA context, the kernels
      loaded into it, cuBLAS/cuDNN memory): NVML's usage of this pid minus what the allocator holds at
      the same moment (before the cache is emptied). Each worker process pays it once and keeps it
      while idle, so the pool counts it per process, not per trial. Measured per process rather than
      as device memory before/after CUDA starts, which other workers packed on the same GPU change
      at the same time. None (with ``context_note`` saying why) where NVML does not list this pid;
    - ``device_total_mib``: the GPU's memory as CUDA reports it to this process (a MIG instance's own).
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {"peak_mem_mib": None}
    from deepdive.tune.gpus import process_gpu_mib

    mib = 2**20
    peak = torch.cuda.max_memory_reserved() / mib  # what the caching allocator held: what packing must fit
    held = torch.cuda.memory_reserved() / mib
    process, why = process_gpu_mib(os.getpid())
    _free, total = torch.cuda.mem_get_info()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return {"peak_mem_mib": peak, "context_mib": max(0.0, process - held) if process is not None else None,
            "context_note": why, "device_total_mib": total / mib}


def installed_imports(script: str) -> list[str]:
    """The modules ``script`` imports anywhere (``import x.y``, ``from x.y import z``; not relative imports)
    that are installed packages: found without the script's own folder on the path, so the script's
    sibling modules (the user's code) are left to the trial."""
    import ast
    import importlib.util

    try:
        with open(script, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return []  # the trial reports it
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    found = []
    for name in dict.fromkeys(names):
        try:
            if importlib.util.find_spec(name.split(".")[0]) is not None:
                found.append(name)
        except (ImportError, ValueError):
            continue
    return found


def preload(script: str) -> None:
    """Import what ``script`` imports from installed packages, once per worker (a warm worker's point):
    e.g. ``torch.optim``, ``sklearn.datasets``, ``transformers``; the first trial then starts without them.
    A module that fails to import here is left for the trial, which reports the error in its own log."""
    import importlib

    for name in installed_imports(script):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the trial imports it again and fails with its traceback
            continue


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    conn = Connection(int(args[0]))
    once = "--once" in args
    die_with_parent()
    import torch  # noqa: F401 - the point of a warm worker: paid once

    import deepdive.engine.run  # noqa: F401

    if "--preload" in args:
        preload(args[args.index("--preload") + 1])
    # what is loaded now lives as long as the worker: out of the collector's way, so that the
    # collection after each trial walks only what trials made (a full walk here costs ~0.2 s)
    gc.collect()
    gc.freeze()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return 0
        if message[0] == "stop":
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # nothing left to tear down: skip the interpreter's (and torch's) ~1 s exit
        if message[0] == "run":
            outcome = run_trial(conn, message[1])
            conn.send(("done", message[1]["number"], outcome))
            if once:
                return 0
            gc.freeze()  # what outlived the trial (modules it imported, caches) leaves the collector's walk


if __name__ == "__main__":
    sys.exit(main())
