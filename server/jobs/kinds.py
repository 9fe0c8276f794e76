"""The kinds of job the daemon can start. Clients name a kind and options, never a command line.

Each kind's options are a class of the protocol (``deepdive.protocol.job_options``): they are checked
there (types, choices, ranges; one-line refusals), and the kind turns them into a :class:`Launch`
(argv, working directory, limits), checking what only it can (files, the workspace). Kinds
that run workspace code say so (``runs_user_code``) and are refused in an untrusted workspace; the
code they run must be a file inside the workspace (``Context.confine``; the command line, whose
user typed the path, lifts that).
A new kind: its options class in deepdive.protocol.job_options (``JOB_OPTIONS``), its builder here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import attrs

from deepdive.protocol import JobKind
from deepdive.protocol.job_options import (
    CompressOptions, DeepCheckOptions, DeployBenchOptions, DeployExportOptions, DeployServeOptions, DiagnoseFixOptions, DiagnoseOptions, InvalidOptions, ScriptOptions, TrainOptions,
    TuneOptions, parse_options,
)


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
    build: Callable[[Any, Context], Launch]
    """Options (the kind's class in deepdive.protocol.job_options, already checked) -> the launch."""

    def describe(self) -> JobKind:
        return JobKind(
            kind=self.name, title=self.title, description=self.description, runs_user_code=self.runs_user_code
        )


def _home() -> str:
    # Our own modules run from the home folder with -P, so nothing in a workspace can shadow them.
    return os.path.expanduser("~")


def _base(ctx: Context) -> Path:
    return Path(ctx.workspace) if ctx.workspace else Path.cwd()


def _deep_check(o: DeepCheckOptions, ctx: Context) -> Launch:
    argv = [ctx.python, "-P", "-m", "deepdive.deepcheck", "--seconds", f"{o.seconds:g}", "--size", str(o.size),
            "--device", o.device]
    return Launch(argv=argv, cwd=_home(), title="Deep environment check", timeout_s=max(120.0, 20 * o.seconds + 90))


def _script(o: ScriptOptions, ctx: Context) -> Launch:
    script = _script_path(o.path, ctx)
    return Launch(
        argv=[ctx.python, str(script), *o.args], cwd=str(_base(ctx)), title=f"python {script.name}", timeout_s=None
    )


def _script_path(path: str, ctx: Context) -> Path:
    script = (_base(ctx) / path).resolve()
    _confined(script, "path", ctx)
    if not script.is_file():
        raise JobRejected(f"no such script: {script}")
    return script


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


def _train(o: TrainOptions, ctx: Context) -> Launch:
    """torchrun (elastic) around a script that uses deepdive.engine."""
    base, script = _base(ctx), _script_path(o.path, ctx)
    parts = o.nnodes.split(":")
    if len(parts) > 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise JobRejected(f"option 'nnodes' must be N or MIN:MAX, got {o.nnodes!r}")
    argv = [ctx.python, "-m", "torch.distributed.run", "--nproc-per-node", str(o.nproc),
            "--max-restarts", str(o.max_restarts)]
    if o.nnodes in ("1", "1:1") and not o.rdzv_endpoint:
        argv.append("--standalone")
    else:
        if not o.rdzv_endpoint or ":" not in o.rdzv_endpoint:
            raise JobRejected("several nodes need option 'rdzv_endpoint' as HOST:PORT (the same on every node)")
        argv += ["--nnodes", o.nnodes, "--rdzv-backend", "c10d", "--rdzv-endpoint", o.rdzv_endpoint]
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // o.nproc)))}
    if o.metrics_out is not None:
        env["DEEPDIVE_METRICS_OUT"] = o.metrics_out
    if o.checkpoint_dir is not None:  # dd.setup's default checkpoint_dir: preemption-safe, resumed on restart
        env["DEEPDIVE_CHECKPOINT_DIR"] = str((base / o.checkpoint_dir).resolve())
    if o.fresh:  # dd.setup ignores checkpoints saved before now; torchrun's restarts resume from the job's own
        env["DEEPDIVE_CHECKPOINT_FRESH_SINCE"] = repr(time.time())
    for value, variable in ((o.precision, "DEEPDIVE_PRECISION"), (o.grad_compression, "DEEPDIVE_GRAD_COMPRESSION")):
        if value is not None and value != "auto":  # dd.setup uses it where the script leaves "auto"
            env[variable] = value
    return Launch(argv=[*argv, str(script), *o.args], cwd=str(base), title=f"train {script.name} ×{o.nproc}",
                  timeout_s=None, env=env, grace_s=TRAIN_GRACE_S)


def _tune(o: TuneOptions, ctx: Context) -> Launch:
    """``python -m deepdive tune SCRIPT ...``: its progress events (trial i/N, best) reach the editor."""
    script = _script_path(o.path, ctx)
    argv = [ctx.python, "-P", "-m", "deepdive", "tune", str(script), "--trials", str(o.trials),
            "--parallel", str(o.parallel)]
    for key in ("sampler", "pruner", "direction", "value", "storage", "study", "metric"):
        value = getattr(o, key)
        if value is None:
            continue
        if value.startswith("-"):  # the command line would read it as an option
            raise JobRejected(f"option '{key}' must not start with '-', got {value!r}")
        argv += [f"--{key}", value]
    for key in ("timeout", "trial_timeout"):
        if getattr(o, key) is not None:
            argv += [f"--{key.replace('_', '-')}", f"{getattr(o, key):g}"]
    for key in ("seed", "patience"):
        if getattr(o, key) is not None:
            argv += [f"--{key}", str(getattr(o, key))]
    if o.confirm:
        argv += ["--confirm", str(o.confirm), "--confirm-seeds", str(o.confirm_seeds)]
    argv += [f"--{key.replace('_', '-')}" for key in ("retry_failed", "pack", "apply") if getattr(o, key)]
    if o.args:
        argv += ["--", *o.args]
    return Launch(argv=argv, cwd=str(_base(ctx)), title=f"tune {script.name}", timeout_s=None)


def _workspace_file(value: str, key: str, ctx: Context, what: str, suffixes: Optional[tuple[str, ...]] = None,
                    runs: bool = False) -> Path:
    """The existing file option ``key`` names, relative to the workspace (or absolute).

    A file the job ``runs`` as code must be inside the workspace (see :func:`_confined`).
    """
    file = (_base(ctx) / value).resolve()
    if runs:
        _confined(file, key, ctx)
    if suffixes and file.suffix.lower() not in suffixes:
        raise JobRejected(f"option '{key}' must name the {what} ({', '.join(suffixes)}), got {value!r}")
    if not file.is_file():
        raise JobRejected(f"no such {what}: {file}")
    return file


def _compress(o: CompressOptions, ctx: Context) -> Launch:
    """``python -m deepdive compress MODEL --eval EVAL.py ...``: prune, reduce depth, distil and/or quantize a model.

    Its ``compress.*`` telemetry events (step, phase, measured rows, the report) reach the dashboard
    through the hub, and its job events (progress, each measured step) the editor; the job's result
    names the report.
    """
    model = _workspace_file(o.model, "model", ctx, "model file")
    script = _workspace_file(o.eval, "eval", ctx, "evaluation script", (".py",), runs=True)
    if o.prune is None and o.layers is None and not o.distill and o.quantize is None:
        raise JobRejected("nothing to do: give option 'prune' (a fraction), 'layers' (blocks kept), 'distill' (true) "
                          "and/or 'quantize'")
    argv = [ctx.python, "-P", "-m", "deepdive", "compress", str(model), "--eval", str(script)]
    if o.prune is not None:
        argv += ["--prune", f"{o.prune:g}"]
    if o.layers is not None:
        argv += ["--layers", str(o.layers)]
    if o.distill:
        argv.append("--distill")
    for flag, value in (("--quantize", o.quantize), ("--target", o.target), ("--importance", o.importance),
                        ("--steps", o.steps), ("--epochs", o.epochs), ("--distill-epochs", o.distill_epochs)):
        if value is not None:
            argv += [flag, str(value)]
    if o.out is not None:
        folder = (_base(ctx) / o.out).resolve()
        if folder.exists() and not folder.is_dir():
            raise JobRejected(f"option 'out' must name a folder, not a file: {folder}")
        argv += ["--out", str(folder)]
    return Launch(argv=argv, cwd=str(_base(ctx)), title=f"compress {model.name}", timeout_s=None)


def _diagnose_script(path: str, ctx: Context) -> Path:
    return _workspace_file(path, "path", ctx, "training script", (".py",), runs=True)


def _diagnose(o: DiagnoseOptions, ctx: Context) -> Launch:
    """``python -m deepdive diagnose SCRIPT --steps N --warmup W --json --out .deepdive/diagnose/<stem>-<hash>.json``.

    The measured run's progress (steps measured) reaches the editor as job events, its report the dashboard as
    a ``diagnose.report`` hub event; the job's result names the report file.
    """
    from deepdive.diagnose.report import report_path

    script = _diagnose_script(o.path, ctx)
    out = report_path(str(script), str(_base(ctx)))
    argv = [ctx.python, "-P", "-m", "deepdive", "diagnose", str(script), "--steps", str(o.steps), "--warmup",
            str(o.warmup), "--json", "--out", str(out)]
    if o.args:
        argv += ["--", *o.args]
    return Launch(argv=argv, cwd=str(_base(ctx)), title=f"diagnose {script.name}", timeout_s=None)


def _diagnose_fix(o: DiagnoseFixOptions, ctx: Context) -> Launch:
    """``python -m deepdive diagnose SCRIPT --fix CODE@LINE --pairs K ...``: *Apply and measure*.

    Writes ``.deepdive/diagnose/<stem>-<hash>.speedup.json`` and sends a ``diagnose.speedup`` hub event; the script
    itself is not changed (keeping the fix is the editor's, on the user's word).
    """
    from deepdive.diagnose.report import speedup_path

    script = _diagnose_script(o.path, ctx)
    code = o.code.strip().upper()
    if not (len(code) == 5 and code.startswith("DD") and code[2:].isdigit()):
        raise JobRejected(f"option 'code' must name a rule code such as DD101, got {o.code!r}")
    out = speedup_path(str(script), str(_base(ctx)))
    argv = [ctx.python, "-P", "-m", "deepdive", "diagnose", str(script), "--fix", f"{code}@{o.line}", "--pairs",
            str(o.pairs), "--steps", str(o.steps), "--warmup", str(o.warmup), "--json", "--out", str(out)]
    if o.args:
        argv += ["--", *o.args]
    return Launch(argv=argv, cwd=str(_base(ctx)), title=f"apply and measure {code} in {script.name}", timeout_s=None)


def _deploy_forms(forms: list[str], known: tuple[str, ...], key: str = "forms") -> list[str]:
    unknown = [f for f in forms if f not in known]
    if unknown:
        raise JobRejected(f"option '{key}' must list forms of {', '.join(known)}, got {', '.join(map(repr, unknown))}")
    return list(dict.fromkeys(forms))


def _export_folder(value: str, key: str, ctx: Context) -> Path:
    """An export folder of the workspace (with ``deploy.json``): bench and serve import the script it names."""
    from deepdive.deploy.manifest import MANIFEST

    folder = (_base(ctx) / value).resolve()
    if folder.name == MANIFEST:
        folder = folder.parent
    _confined(folder, key, ctx)
    if not (folder / MANIFEST).is_file():
        raise JobRejected(f"option '{key}': {folder} has no {MANIFEST}: export the model first (job kind deploy-export)")
    return folder


def _deploy_export(o: DeployExportOptions, ctx: Context) -> Launch:
    """``python -m deepdive deploy export SCRIPT [--model FILE] [--out DIR] [--forms ...]``.

    Progress (each form written and checked) reaches the editor as job events; the job's result names the
    export folder, which ``deploy-bench`` and ``deploy-serve`` take.
    """
    from deepdive.cli_deploy_export import EXPORT_FORMS

    script = _workspace_file(o.path, "path", ctx, "model's script", (".py",), runs=True)
    argv = [ctx.python, "-P", "-m", "deepdive", "deploy", "export", str(script)]
    if o.model is not None:
        argv += ["--model", str(_workspace_file(o.model, "model", ctx, "model file"))]
    if o.out is not None:
        folder = (_base(ctx) / o.out).resolve()
        if folder.exists() and not folder.is_dir():
            raise JobRejected(f"option 'out' must name a folder, not a file: {folder}")
        argv += ["--out", str(folder)]
    forms = _deploy_forms(o.forms, EXPORT_FORMS)
    if forms:
        argv += ["--forms", ",".join(forms)]
    return Launch(argv=argv, cwd=str(_base(ctx)), title=f"deploy export {script.name}", timeout_s=None)


def _deploy_bench(o: DeployBenchOptions, ctx: Context) -> Launch:
    """``python -m deepdive deploy bench FOLDER ...``: the candidate runtimes measured, the choice saved in deploy.json."""
    import re

    folder = _export_folder(o.folder, "folder", ctx)
    argv = [ctx.python, "-P", "-m", "deepdive", "deploy", "bench", str(folder)]
    if o.batch_sizes is not None:
        sizes = o.batch_sizes.replace(" ", "")
        if not re.fullmatch(r"[1-9]\d{0,5}(,[1-9]\d{0,5})*", sizes):
            raise JobRejected(f"option 'batch_sizes' must be batch sizes such as 1,8,32, got {o.batch_sizes!r}")
        argv += ["--batch-sizes", sizes]
    if o.forms:
        bad = [f for f in o.forms if not re.fullmatch(r"[a-z0-9_.:-]+", f)]
        if bad:
            raise JobRejected(f"option 'forms' must list candidate names such as onnx or int8, got {bad[0]!r}")
        argv += ["--forms", ",".join(dict.fromkeys(o.forms))]
    if o.tolerance is not None:
        argv += ["--tolerance", f"{o.tolerance:g}"]
    if o.budget_s is not None:
        argv += ["--budget-s", f"{o.budget_s:g}"]
    return Launch(argv=argv, cwd=str(_base(ctx)), title=f"deploy bench {folder.name}", timeout_s=None)


#: A server stopped lets its in-flight requests and queued batches finish (uvicorn's graceful shutdown).
SERVE_GRACE_S = 10.0


def _deploy_serve(o: DeployServeOptions, ctx: Context) -> Launch:
    """``python -m deepdive deploy serve FOLDER --port N ...`` on 127.0.0.1 until the job is cancelled.

    Its ``deploy.serve`` data event gives the URL; its batcher's figures reach the dashboard's Serving section
    as ``serve.stats`` hub events (:mod:`deepdive.deploy.reporting`). No token option: the server listens on
    this machine only, and a token in the job's options would be kept in the job history.
    """
    from deepdive.deploy.manifest import FORMS

    folder = _export_folder(o.folder, "folder", ctx)
    argv = [ctx.python, "-P", "-m", "deepdive", "deploy", "serve", str(folder), "--host", "127.0.0.1",
            "--port", str(o.port), "--instances", str(o.instances)]
    if o.form is not None:
        argv += ["--form", _deploy_forms([o.form], FORMS, "form")[0]]
    for flag, value in (("--max-batch", o.max_batch), ("--max-queue-delay-us", o.max_queue_delay_us),
                        ("--max-queue", o.max_queue), ("--clients", o.clients)):
        if value is not None:
            argv += [flag, str(value)]
    for flag, number in (("--timeout-ms", o.timeout_ms), ("--target-p99", o.target_p99)):
        if number is not None:
            argv += [flag, f"{number:g}"]
    if o.no_batching:
        if o.target_p99 is not None:
            raise JobRejected("option 'target_p99' chooses the batching settings: drop 'no_batching' (or 'target_p99')")
        argv.append("--no-batching")
    if o.clients is not None and o.target_p99 is None:
        raise JobRejected("option 'clients' is the load 'target_p99' plans for: give 'target_p99' too (or drop 'clients')")
    return Launch(argv=argv, cwd=str(_base(ctx)), title=f"deploy serve {folder.name}", timeout_s=None,
                  grace_s=SERVE_GRACE_S)


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
        Kind(
            "diagnose",
            "Diagnose performance",
            "Runs a training script for a few optimizer steps under torch.profiler: the step-time breakdown, the "
            "lines that cost time, and the static findings promoted with their measured share of the step.",
            True,
            _diagnose,
        ),
        Kind(
            "diagnose-fix",
            "Apply and measure a fix",
            "Applies one rule's fix to a copy of the script and times both in alternating pairs: the speed-up with a "
            "confidence interval. The script itself is left as it is.",
            True,
            _diagnose_fix,
        ),
        Kind(
            "deploy-export",
            "Export a model",
            "Writes a script's model (and its trained file) as torch.export, TorchScript, ONNX and int8, each loaded "
            "back and compared with the eager model on the example inputs; deploy.json describes the folder.",
            True,
            _deploy_export,
        ),
        Kind(
            "deploy-bench",
            "Choose the runtime",
            "Measures the exported forms (and torch.compile, ONNX Runtime providers, int8) on this machine at the "
            "batch sizes the server forms and saves the fastest within tolerance, with the reason, in deploy.json.",
            True,
            _deploy_bench,
        ),
        Kind(
            "deploy-serve",
            "Serve a model",
            "Serves an exported model on 127.0.0.1 over the Open Inference Protocol v2 with dynamic batching until "
            "cancelled; its batcher's figures appear in the dashboard's Serving section.",
            True,
            _deploy_serve,
        ),
    )
}


def build_launch(kind: str, options: dict[str, Any], ctx: Context) -> tuple[Kind, Launch]:
    """The launch of a job of ``kind``: its options checked against the protocol's class for the kind."""
    spec = KINDS.get(kind)
    if spec is None:
        raise JobRejected(f"unknown job kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    if spec.runs_user_code and not ctx.trusted:
        raise JobRejected(f"{spec.title} runs workspace code: trust this workspace first (Manage Workspace Trust)")
    try:
        typed = parse_options(kind, options)
    except InvalidOptions as exc:
        raise JobRejected(str(exc)) from None
    return spec, spec.build(typed, ctx)
