"""The kinds of job the daemon can start. Clients name a kind and options, never a command line.

Each kind turns validated options into a :class:`Launch` (argv, working directory, limits). Kinds
that run workspace code say so (``runs_user_code``) and are refused in an untrusted workspace; the
code they run must be a file inside the workspace (``Context.confine``; the command line, whose
user typed the path, lifts that).
Later capabilities (train, tune, compress, codegen verify) add their kinds here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import attrs

from deepdive.protocol import VOCABULARIES, JobKind


class JobRejected(ValueError):
    """A job that cannot start; the message says what to change."""


@attrs.define
class Context:
    python: str
    workspace: Optional[str]
    trusted: bool
    confine: bool = True
    """Scripts must be files inside the workspace (a client names them; the command line's user typed them)."""


@attrs.define
class Launch:
    argv: list[str]
    cwd: str
    title: str
    timeout_s: Optional[float]
    env: dict[str, str] = attrs.Factory(dict)
    grace_s: Optional[float] = None
    """Time between SIGTERM and SIGKILL when the job is stopped (None: the manager's default)."""


#: torchrun gives its workers this long to stop after SIGTERM, and the engine checkpoints on SIGTERM.
TRAIN_GRACE_S = 30.0


@attrs.frozen
class Kind:
    name: str
    title: str
    description: str
    runs_user_code: bool
    build: Callable[[dict[str, Any], Context], Launch]

    def describe(self) -> JobKind:
        return JobKind(
            kind=self.name, title=self.title, description=self.description, runs_user_code=self.runs_user_code
        )


def _number(options: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise JobRejected(f"option '{key}' must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _only(options: dict[str, Any], allowed: set[str], kind: str) -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        raise JobRejected(f"unknown option(s) for {kind}: {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def _home() -> str:
    # Our own modules run from the home folder with -P, so nothing in a workspace can shadow them.
    return os.path.expanduser("~")


def _deep_check(options: dict[str, Any], ctx: Context) -> Launch:
    _only(options, {"seconds", "size", "device"}, "doctor-deep")
    seconds = _number(options, "seconds", 2.0, 0.1, 120.0)
    size = int(_number(options, "size", 1024, 32, 16384))
    device = options.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise JobRejected(f"option 'device' must be auto, cpu or cuda, got {device!r}")
    argv = [ctx.python, "-P", "-m", "deepdive.deepcheck", "--seconds", f"{seconds:g}", "--size", str(size),
            "--device", device]
    return Launch(argv=argv, cwd=_home(), title="Deep environment check", timeout_s=max(120.0, 20 * seconds + 90))


def _script(options: dict[str, Any], ctx: Context) -> Launch:
    _only(options, {"path", "args"}, "script")
    base, script = _script_path(options, ctx)
    args = _string_list(options, "args")
    return Launch(
        argv=[ctx.python, str(script), *args], cwd=str(base), title=f"python {script.name}", timeout_s=None
    )


def _script_path(options: dict[str, Any], ctx: Context) -> tuple[Path, Path]:
    path = options.get("path")
    if not isinstance(path, str) or not path:
        raise JobRejected("option 'path' must name a Python file")
    base = Path(ctx.workspace) if ctx.workspace else Path.cwd()
    script = (base / path).resolve()
    _confined(script, "path", ctx)
    if not script.is_file():
        raise JobRejected(f"no such script: {script}")
    return base, script


def _confined(file: Path, key: str, ctx: Context) -> None:
    """Refuse code outside the workspace (symbolic links resolved): a client may not run /etc/passwd."""
    if not ctx.confine:
        return
    if not ctx.workspace:
        raise JobRejected(f"option '{key}' names {file}, but no workspace folder is open: open the folder that "
                          "holds it (jobs run only files of the workspace)")
    workspace = Path(ctx.workspace).resolve()
    if not file.is_relative_to(workspace):
        raise JobRejected(f"option '{key}' names {file}, which is outside the workspace {workspace}: "
                          "move or copy it into the workspace")


def _string_list(options: dict[str, Any], key: str) -> list[str]:
    value = options.get(key, [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise JobRejected(f"option '{key}' must be a list of strings")
    return value


def _train(options: dict[str, Any], ctx: Context) -> Launch:
    """torchrun (elastic) around a script that uses deepdive.engine."""
    _only(options, {"path", "args", "nproc", "nnodes", "rdzv_endpoint", "max_restarts", "metrics_out", "checkpoint_dir",
                    "fresh", "precision", "grad_compression"}, "train")
    base, script = _script_path(options, ctx)
    args = _string_list(options, "args")
    nproc = int(_number(options, "nproc", 1, 1, 1024))
    max_restarts = int(_number(options, "max_restarts", 0, 0, 1000))
    nnodes = options.get("nnodes", "1")
    if not isinstance(nnodes, str) or not all(part.isdigit() and int(part) > 0 for part in nnodes.split(":")) \
            or len(nnodes.split(":")) > 2:
        raise JobRejected(f"option 'nnodes' must be N or MIN:MAX, got {nnodes!r}")
    endpoint = options.get("rdzv_endpoint")
    argv = [ctx.python, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--max-restarts", str(max_restarts)]
    if nnodes in ("1", "1:1") and not endpoint:
        argv.append("--standalone")
    else:
        if not isinstance(endpoint, str) or ":" not in endpoint:
            raise JobRejected("several nodes need option 'rdzv_endpoint' as HOST:PORT (the same on every node)")
        argv += ["--nnodes", nnodes, "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint]
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))}
    metrics_out = options.get("metrics_out")
    if metrics_out is not None:
        if not isinstance(metrics_out, str):
            raise JobRejected("option 'metrics_out' must be a file path")
        env["DEEPDIVE_METRICS_OUT"] = metrics_out
    checkpoint_dir = options.get("checkpoint_dir")
    if checkpoint_dir is not None:  # dd.setup's default checkpoint_dir: preemption-safe, resumed on restart
        if not isinstance(checkpoint_dir, str) or not checkpoint_dir.strip():
            raise JobRejected("option 'checkpoint_dir' must be a folder path")
        env["DEEPDIVE_CHECKPOINT_DIR"] = str((base / checkpoint_dir).resolve())
    fresh = options.get("fresh", False)
    if not isinstance(fresh, bool):
        raise JobRejected("option 'fresh' must be true or false")
    if fresh:  # dd.setup ignores checkpoints saved before now; torchrun's restarts resume from the job's own
        env["DEEPDIVE_CHECKPOINT_FRESH_SINCE"] = repr(time.time())
    for key, variable, allowed in (("precision", "DEEPDIVE_PRECISION", VOCABULARIES["trainPrecisions"]),
                                   ("grad_compression", "DEEPDIVE_GRAD_COMPRESSION", VOCABULARIES["gradCompressions"])):
        value = options.get(key)
        if value is None:
            continue
        if value not in allowed:
            raise JobRejected(f"option '{key}' must be one of {', '.join(allowed)}, got {value!r}")
        if value != "auto":  # dd.setup uses it where the script leaves "auto"
            env[variable] = value
    return Launch(argv=[*argv, str(script), *args], cwd=str(base), title=f"train {script.name} ×{nproc}",
                  timeout_s=None, env=env, grace_s=TRAIN_GRACE_S)


def _tune(options: dict[str, Any], ctx: Context) -> Launch:
    """``python -m deepdive tune SCRIPT ...``: its progress events (trial i/N, best) reach the editor."""
    allowed = {"path", "args", "trials", "parallel", "storage", "study", "sampler", "pruner", "metric", "direction",
               "value", "patience", "timeout", "trial_timeout", "seed", "retry_failed", "pack", "apply"}
    _only(options, allowed, "tune")
    base, script = _script_path(options, ctx)
    args = _string_list(options, "args")
    argv = [ctx.python, "-P", "-m", "deepdive", "tune", str(script),
            "--trials", str(int(_number(options, "trials", 20, 1, 100000))),
            "--parallel", str(int(_number(options, "parallel", 1, 1, 1024)))]
    for key, choices in (("sampler", ("auto", "tpe", "gp", "cmaes", "random")), ("pruner", ("auto", "hyperband", "asha", "median", "none")),
                         ("direction", ("minimize", "maximize")), ("value", ("last", "best"))):
        value = options.get(key)
        if value is not None:
            if value not in choices:
                raise JobRejected(f"option '{key}' must be one of {', '.join(choices)}, got {value!r}")
            argv += [f"--{key}", value]
    for key in ("storage", "study", "metric"):
        value = options.get(key)
        if value is not None:
            if not isinstance(value, str) or not value or value.startswith("-"):
                raise JobRejected(f"option '{key}' must be a non-empty string")
            argv += [f"--{key}", value]
    for key in ("timeout", "trial_timeout"):
        if options.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", f"{_number(options, key, 0, 0.001, 1e9):g}"]
    if options.get("seed") is not None:
        argv += ["--seed", str(int(_number(options, "seed", 0, 0, 2**32 - 1)))]
    patience = _whole(options, "patience", 1, 100000)
    if patience is not None:
        argv += ["--patience", str(patience)]
    for key in ("retry_failed", "pack", "apply"):
        value = options.get(key, False)
        if not isinstance(value, bool):
            raise JobRejected(f"option '{key}' must be true or false")
        if value:
            argv.append(f"--{key.replace('_', '-')}")
    if args:
        argv += ["--", *args]
    return Launch(argv=argv, cwd=str(base), title=f"tune {script.name}", timeout_s=None)


COMPRESS_QUANTIZE = ("int8", "int8-dynamic", "int8-static", "int8-weight", "int4-weight")
COMPRESS_TARGETS = ("x86", "arm")
COMPRESS_IMPORTANCE = ("l1", "l2", "taylor", "bn")


def _whole(options: dict[str, Any], key: str, low: int, high: int) -> Optional[int]:
    """An optional whole number option: None when absent or null."""
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
            or value != int(value):
        raise JobRejected(f"option '{key}' must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def _workspace_file(options: dict[str, Any], key: str, ctx: Context, what: str,
                    suffixes: Optional[tuple[str, ...]] = None, runs: bool = False) -> Path:
    """An existing file named by option ``key``, relative to the workspace (or absolute).

    A file the job ``runs`` as code must be inside the workspace (see :func:`_confined`).
    """
    value = options.get(key)
    if not isinstance(value, str) or not value.strip():
        raise JobRejected(f"option '{key}' must name the {what}")
    base = Path(ctx.workspace) if ctx.workspace else Path.cwd()
    file = (base / value).resolve()
    if runs:
        _confined(file, key, ctx)
    if suffixes and file.suffix.lower() not in suffixes:
        raise JobRejected(f"option '{key}' must name the {what} ({', '.join(suffixes)}), got {value!r}")
    if not file.is_file():
        raise JobRejected(f"no such {what}: {file}")
    return file


def _choice(options: dict[str, Any], key: str, choices: tuple[str, ...]) -> Optional[str]:
    value = options.get(key)
    if value is not None and value not in choices:
        raise JobRejected(f"option '{key}' must be one of {', '.join(choices)}, got {value!r}")
    return value


def _compress(options: dict[str, Any], ctx: Context) -> Launch:
    """``python -m deepdive compress MODEL --eval EVAL.py ...``: prune, reduce depth, distil and/or quantize a model.

    Its ``compress.*`` telemetry events (step, phase, measured rows, the report) reach the dashboard
    through the hub; the job's result names the report.
    """
    allowed = {"model", "eval", "prune", "layers", "distill", "quantize", "target", "importance", "steps",
               "epochs", "distillEpochs", "out"}
    _only(options, allowed, "compress")
    model = _workspace_file(options, "model", ctx, "model file")
    script = _workspace_file(options, "eval", ctx, "evaluation script", (".py",), runs=True)
    base = Path(ctx.workspace) if ctx.workspace else Path.cwd()
    argv = [ctx.python, "-P", "-m", "deepdive", "compress", str(model), "--eval", str(script)]
    prune = options.get("prune")
    if prune is not None:
        if isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0 < prune < 1:
            raise JobRejected(
                f"option 'prune' must be the fraction removed, between 0 and 1 (exclusive), got {prune!r}")
        argv += ["--prune", f"{float(prune):g}"]
    layers = _whole(options, "layers", 1, 1000)
    if layers is not None:
        argv += ["--layers", str(layers)]
    distill = options.get("distill", False)
    if not isinstance(distill, bool):
        raise JobRejected(f"option 'distill' must be true or false, got {distill!r}")
    if distill:
        argv.append("--distill")
    quantize = _choice(options, "quantize", COMPRESS_QUANTIZE)
    if quantize is not None:
        argv += ["--quantize", quantize]
    if prune is None and layers is None and not distill and quantize is None:
        raise JobRejected("nothing to do: give option 'prune' (a fraction), 'layers' (blocks kept), 'distill' (true) "
                          "and/or 'quantize'")
    for key, choices in (("target", COMPRESS_TARGETS), ("importance", COMPRESS_IMPORTANCE)):
        value = _choice(options, key, choices)
        if value is not None:
            argv += [f"--{key}", value]
    for key, flag, low, high in (("steps", "--steps", 1, 100), ("epochs", "--epochs", 0, 1000),
                                 ("distillEpochs", "--distill-epochs", 1, 1000)):
        value = _whole(options, key, low, high)
        if value is not None:
            argv += [flag, str(value)]
    out = options.get("out")
    if out is not None:
        if not isinstance(out, str) or not out.strip():
            raise JobRejected(f"option 'out' must name a folder, got {out!r}")
        folder = (base / out).resolve()
        if folder.exists() and not folder.is_dir():
            raise JobRejected(f"option 'out' must name a folder, not a file: {folder}")
        argv += ["--out", str(folder)]
    return Launch(argv=argv, cwd=str(base), title=f"compress {model.name}", timeout_s=None)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "doctor-deep",
            "Deep environment check",
            "Imports torch in a subprocess and measures matmul throughput (GFLOP/s) on the CPU and each GPU.",
            False,
            _deep_check,
        ),
        Kind(
            "script",
            "Run a Python script",
            "Runs a Python file of the workspace with the daemon's interpreter, output streamed.",
            True,
            _script,
        ),
        Kind(
            "train",
            "Train with deepdive.engine",
            "Runs a training script under torchrun (elastic; N processes, optional multi-node rendezvous).",
            True,
            _train,
        ),
        Kind(
            "tune",
            "Hyperparameter search",
            "Bayesian search (Optuna) over a script's run.suggest() declarations, with pruning; the study is "
            "stored in .deepdive/tune.db and resumes by name.",
            True,
            _tune,
        ),
        Kind(
            "compress",
            "Compress a model",
            "Prunes, distils and/or quantizes a trained model with the workspace's evaluation script, measuring "
            "size, latency and accuracy after each step; writes the compressed model and a report beside it.",
            True,
            _compress,
        ),
    )
}


def build_launch(kind: str, options: dict[str, Any], ctx: Context) -> tuple[Kind, Launch]:
    spec = KINDS.get(kind)
    if spec is None:
        raise JobRejected(f"unknown job kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    if spec.runs_user_code and not ctx.trusted:
        raise JobRejected(f"{spec.title} runs workspace code: trust this workspace first (Manage Workspace Trust)")
    return spec, spec.build(options, ctx)
