"""The `deepdive` command line.

Every subcommand exits non-zero with a one-line reason on bad input (no traceback unless
``--debug``). Long work shows a progress bar.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, NoReturn, Optional

from deepdive import __version__
from deepdive.ckpt_cli import add_parser as add_ckpt_parser, cmd_ckpt
from deepdive.cli_model import add_parser as add_model_parser, cmd_model
from deepdive.vocabulary import (
    CODEGEN_BACKENDS, COMPRESS_TARGETS, FRAMEWORKS, GRAD_COMPRESSIONS, PRUNE_IMPORTANCES, QUANTIZE_MODES, TRAIN_PRECISIONS,
    TUNE_DIRECTIONS, TUNE_PRUNERS, TUNE_SAMPLERS, TUNE_VALUES,
)


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepdive", description="Deepdive: the PyTorch/TensorFlow developer's workbench.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("version", help="print the version")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("serve", help="run the language-server daemon on stdin/stdout (the editor starts it)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    p = sub.add_parser("doctor", help="report Python, torch, GPUs and optional packages")
    p.add_argument("--deep", action="store_true", help="also import torch in a job and measure matmul GFLOP/s")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--seconds", type=float, default=2.0, help="time per deep measurement (default 2)")
    p.add_argument("--size", type=int, default=1024, help="matrix side for the deep check (default 1024)")
    p = sub.add_parser("dashboard", help="serve the live dashboard and the telemetry hub to a browser",
                       description="Run the telemetry hub and the machine sampler in the foreground and print the "
                                   "dashboard's URL (with its token). `deepdive train` in another terminal streams to it.")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--interval", type=float, default=1.0, help="machine sampling period in seconds (0.1 to 60)")
    p.add_argument("--prometheus", action="store_true", help="also serve /metrics in Prometheus' text format")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")

    p = sub.add_parser("train", help="run a training script under torchrun, with a progress bar and its figures",
                       description="Run SCRIPT (which uses deepdive.engine) under torchrun. Arguments after "
                                   "'--' go to the script.")
    p.add_argument("script", help="the training script")
    p.add_argument("--nproc", type=int, default=1, help="processes per node (default 1)")
    p.add_argument("--nnodes", default="1", help="N or MIN:MAX nodes (elastic); more than 1 needs --rdzv-endpoint")
    p.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of the rendezvous, the same on every node")
    p.add_argument("--max-restarts", type=int, default=0, help="restarts of the worker group on failure (a script "
                   "preempted with SIGTERM checkpoints and exits 75; the restart resumes it)")
    p.add_argument("--checkpoint-dir", default=None, help="the engine checkpoints here (dd.setup's default "
                   "checkpoint_dir: every epoch and on SIGTERM) and a rerun or restart resumes from it")
    p.add_argument("--fresh", action="store_true", help="start from step 0: ignore the checkpoints saved in the "
                   "checkpoint folder before this job (kept until retention deletes them); restarts of this job "
                   "still resume from what it saves")
    p.add_argument("--metrics-out", default=None, help="telemetry JSONL file (default: in the run's state folder)")
    p.add_argument("--precision", choices=TRAIN_PRECISIONS, default=None,
                   help="mixed precision where the script's dd.setup() leaves precision='auto'")
    p.add_argument("--grad-compression", choices=GRAD_COMPRESSIONS, default=None,
                   help="DDP gradient compression where the script's dd.setup() leaves grad_compression='auto'")
    p.add_argument("--timeout", type=float, default=None, help="wall-clock limit in seconds")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON")

    p = sub.add_parser("generate", help="write a training program from a sentence and check that it runs",
                       description="Write a complete PyTorch or TensorFlow/Keras program from PROMPT (English or "
                                   "Chinese), then verify it: it parses, its imports resolve, `--smoke` runs in a "
                                   "sandbox, and each property the prompt states (task, input shape, outputs, "
                                   "architecture, layers present or absent, precision, distribution, framework, "
                                   "loss) is checked: met, failed or not checked. 'verified' means every one was "
                                   "checked and met. The builtin answers only what it can build as asked; a local "
                                   "model (`deepdive model`) gets every request.")
    p.add_argument("prompt", help='e.g. "a 3-layer CNN for MNIST with dropout, trained with mixed precision"')
    p.add_argument("--framework", choices=FRAMEWORKS, default=None,
                   help="overrides the prompt (default: what it says, else torch)")
    p.add_argument("--backend", choices=CODEGEN_BACKENDS, default=None,
                   help="auto (default): the default model of `deepdive model`, else builtin "
                        "(offline); or a local model, or a local server")
    p.add_argument("--model-path", default=None, help="transformers: a local HF model directory; llamacpp: a GGUF file")
    p.add_argument("--endpoint", default=None, help="openai-compatible: the server's URL (default http://127.0.0.1:11434)")
    p.add_argument("--model", default=None, help="openai-compatible: the model name on the server (Ollama's, vLLM's...); "
                   "a registered local model is chosen with `deepdive model default` and the auto backend")
    p.add_argument("--allow-remote", action="store_true", help="allow an endpoint that is not on this machine")
    p.add_argument("-o", "--output", default=None, help="write the program here (default: print it)")
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    p.add_argument("--no-verify", action="store_true", help="skip verification (the program is not run)")
    p.add_argument("--gpu", action="store_true", help="let the --smoke run use the GPU")
    p.add_argument("--json", action="store_true", help="print the result (code, checks, intent) as JSON")

    p = sub.add_parser("tune", help="Bayesian hyperparameter search (Optuna) over the script's run.suggest() calls",
                       description="Run SCRIPT once per trial with the values Optuna suggests for its run.suggest(...) "
                                   "declarations; run.log(<metric>=...) reports intermediate values (pruning) and the "
                                   "last one (or with --value best, the best one) is the trial's value. The study is stored (default "
                                   ".deepdive/tune.db) and a rerun continues it. Arguments after '--' go to the script.")
    p.add_argument("script", help="the training script (it declares its hyperparameters with run.suggest)")
    p.add_argument("--trials", type=int, default=None, help="finished trials the study should hold (required unless --apply alone)")
    p.add_argument("--parallel", type=int, default=1, help="trials at once (default 1; one GPU each when there are GPUs)")
    p.add_argument("--pack", action="store_true", help="with GPUs: several trials per GPU, packed by measured peak memory")
    p.add_argument("--storage", default=None, help="sqlite:///..., postgresql://..., mysql://... or journal:PATH "
                                                     "(default: sqlite in .deepdive/tune.db)")
    p.add_argument("--study", default=None, help="study name (default: the script's name without .py)")
    p.add_argument("--sampler", default="auto", choices=TUNE_SAMPLERS,
                   help="auto = multivariate TPE (constant liar when parallel)")
    p.add_argument("--pruner", default="auto", choices=TUNE_PRUNERS,
                   help="auto = Hyperband, its first rung after a quarter of a trial's reports; hyperband = Optuna's "
                        "schedule (after the second report); asha = successive halving (one bracket, prunes more)")
    p.add_argument("--metric", default=None, help="the metric the script logs (default: the study's, else read from the script: "
                        "setup(keep_best=...)'s, else its first evaluation metric such as val_loss or accuracy, "
                        "not the training loss; the run says where it came from)")
    p.add_argument("--direction", default=None, choices=TUNE_DIRECTIONS,
                   help="default: maximize for accuracy-like names, else minimize")
    p.add_argument("--value", default=None, choices=TUNE_VALUES,
                   help="a trial's value: its last report of the metric (default) or its best one (the epoch "
                        "early stopping would keep); a study keeps its choice")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="early stopping: end a trial, complete and valued at its best report, after N reports "
                        "without a new best (implies --value best)")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials this many seconds after the first worker is ready")
    p.add_argument("--trial-timeout", type=float, default=None, help="kill (fail) a trial after this many seconds")
    p.add_argument("--seed", type=int, default=None, help="seed the sampler (and every trial's RNGs) for reproducible studies")
    p.add_argument("--retry-failed", action="store_true", help="run the failed trials' parameters once more")
    p.add_argument("--apply", action="store_true", help="write the best parameters into the script's suggest() defaults")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("compress", help="prune, distil and quantize a trained model; measure and report each step",
                       description="Load MODEL (a whole module saved with torch.save(model, PATH), or a state_dict with "
                                   "build_model() in EVAL.py), run the chosen steps in order (prune -> layers -> "
                                   "distill -> quantize), evaluate and time each, and write the compressed model and a report "
                                   "(JSON and Markdown) beside MODEL. EVAL.py defines evaluate(model) -> float, "
                                   "example_inputs(batch_size) and train_loader().")
    p.add_argument("model", help="the trained model file")
    p.add_argument("--eval", required=True, dest="eval_script", help="the evaluation script (see above)")
    p.add_argument("--prune", type=float, default=None, metavar="AMOUNT",
                   help="fraction of channels/neurons/heads removed from each prunable layer, e.g. 0.5")
    p.add_argument("--layers", type=int, default=None, metavar="N",
                   help="depth reduction: keep N of the model's repeated blocks (e.g. encoder layers), distilled from "
                        "the model before the cut with --distill")
    p.add_argument("--distill", action="store_true", help="recover accuracy by distillation from the original model "
                                                          "(from the pruned one after --layers)")
    p.add_argument("--quantize", default=None, choices=QUANTIZE_MODES,
                   help="int8 = dynamic for Linear/LSTM/GRU, static with calibration for CNNs; *-weight: GPU (torchao)")
    p.add_argument("--target", default="x86", choices=COMPRESS_TARGETS, help="the CPU the model will run on")
    p.add_argument("--importance", default="l2", choices=PRUNE_IMPORTANCES, help="pruning criterion")
    p.add_argument("--steps", type=int, default=1, help="progressive pruning: reach AMOUNT in this many steps")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs after each pruning step")
    p.add_argument("--distill-epochs", type=int, default=3, help="epochs of the distillation step")
    p.add_argument("--out", default=None, help="folder for the compressed model and the report (default: MODEL's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_ckpt_parser(sub)
    add_model_parser(sub)
    for command in sub.choices.values():  # `deepdive train X --debug` works as well as `deepdive --debug train X`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # our output's reader went away (`deepdive … | head`): stop quietly, as SIGPIPE would
        from deepdive.cli_jobs import silence_closed_output

        silence_closed_output()
        return 141


def _main(argv: Optional[list[str]]) -> int:
    parser = build_parser()
    args_list = sys.argv[1:] if argv is None else argv
    # everything after the first "--" belongs to the training script, untouched
    passthrough: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, passthrough = args_list[:cut], args_list[cut + 1:]
    debug = "--debug" in args_list
    try:
        args = parser.parse_args(args_list)
        if passthrough and args.command not in ("train", "tune"):
            raise UsageError(f"'--' and what follows is only for 'deepdive train': {' '.join(passthrough)}")
        args.script_args = passthrough
        if args.command is None:
            parser.print_help()
            return 2
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"deepdive: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepdive: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # nobody reads our output any more: main() ends quietly
    except ModuleNotFoundError as exc:  # a feature used without its extra: name the pip line that adds it
        if debug:
            raise
        from deepdive.extras import describe_missing

        print(f"deepdive: error: {describe_missing(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
        print(f"deepdive: error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({"version": __version__, "python": sys.version.split()[0]}))
    else:
        print(f"deepdive {__version__} (Python {sys.version.split()[0]})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from deepdive.daemon.server import serve

    return serve(args.log_level)


def cmd_doctor(args: argparse.Namespace) -> int:
    from deepdive import doctor
    from deepdive.protocol import to_wire

    if not 0.1 <= args.seconds <= 120:
        raise UsageError("--seconds must be from 0.1 to 120")
    if not 32 <= args.size <= 16384:
        raise UsageError("--size must be from 32 to 16384")
    from deepdive.jobs.store import cli_state_dir

    torch_info = asyncio.run(doctor.probe_torch())
    report = doctor.build_report(torch_info, state_dir=str(cli_state_dir()))
    deep: Optional[dict[str, Any]] = None
    if args.deep:
        deep = asyncio.run(_run_deep(args.seconds, args.size, quiet=args.json))
    if args.json:
        wire = to_wire(report)
        if deep is not None:
            wire["deep"] = deep
        print(json.dumps(wire, indent=2))
    else:
        from deepdive.report import print_report

        print_report(report)
        if deep is not None:
            from deepdive.report import print_deep

            print_deep(deep)
    if deep is not None and deep.get("state") != "succeeded":
        return 1
    return 0


async def _run_deep(seconds: float, size: int, quiet: bool) -> dict[str, Any]:
    """Run the deep check through the job manager, with a progress bar fed by its events."""
    from deepdive.protocol import JobStartParams

    from deepdive.cli_jobs import run_job

    job = await run_job(JobStartParams(kind="doctor-deep", options={"seconds": seconds, "size": size}),
                        "deep check", quiet)
    return {"job": job.id, "state": job.state, "reason": job.reason, "result": job.result}


def cmd_train(args: argparse.Namespace) -> int:
    import os
    import time
    from pathlib import Path

    from deepdive.jobs.kinds import JobRejected
    from deepdive.jobs.store import cli_state_dir
    from deepdive.protocol import JobStartParams

    script_args = args.script_args
    if args.nproc < 1:
        raise UsageError("--nproc must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    script = Path(args.script)
    if not script.is_file():
        raise UsageError(f"no such script: {args.script}")
    from deepdive.cli_jobs import run_job
    from deepdive.cli_paths import folder_problem
    from deepdive.cli_train import TrainOutput, report_run, script_problem

    problem = script_problem(script) or (args.checkpoint_dir and folder_problem(
        Path(args.checkpoint_dir).resolve(), "--checkpoint-dir", "the checkpoints"))
    if problem:  # before torchrun starts, not 50 lines into its failure
        raise UsageError(problem)
    runs, name = cli_state_dir() / "runs", f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    metrics = args.metrics_out or str(runs / f"{name}.jsonl")
    Path(metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics).unlink(missing_ok=True)
    options = {"path": str(script.resolve()), "args": script_args, "nproc": args.nproc, "nnodes": args.nnodes,
               "max_restarts": args.max_restarts, "metrics_out": metrics}
    if args.checkpoint_dir:
        options["checkpoint_dir"] = str(Path(args.checkpoint_dir).resolve())
    if args.fresh:
        options["fresh"] = True
    if args.rdzv_endpoint:
        options["rdzv_endpoint"] = args.rdzv_endpoint
    if args.precision:
        options["precision"] = args.precision
    if args.grad_compression:
        options["grad_compression"] = args.grad_compression
    output = TrainOutput(runs / f"{name}.log", runs / f"{name}.torchrun", debug=getattr(args, "debug", False))
    try:
        job = asyncio.run(run_job(JobStartParams(kind="train", options=options, timeout_s=args.timeout),
                                  f"train ×{args.nproc}", quiet=args.json, workspace=str(Path.cwd()),
                                  metrics=metrics, echo=output.admit, job_env=output.job_env()))
    except JobRejected as exc:
        raise UsageError(str(exc)) from None
    finally:
        output.close()
    return report_run(job, metrics, output, as_json=args.json)


def cmd_dashboard(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be from 0 to 65535")
    if not 0.1 <= args.interval <= 60:
        raise UsageError("--interval must be from 0.1 to 60 seconds")
    try:
        asyncio.run(_dashboard(args))
    except KeyboardInterrupt:
        pass
    return 0


async def _dashboard(args: argparse.Namespace) -> None:
    import os
    import signal

    from deepdive.daemon.telemetry import TelemetryService
    from deepdive.jobs.store import cli_state_dir
    from deepdive.telemetry import discovery

    directory = cli_state_dir()
    live = discovery.live(directory)
    if live is not None:  # the editor's daemon (or another dashboard) already serves this store: one dashboard
        url = live.get("dashboardUrl") or live.get("url")
        print(f"dashboard: {url}", flush=True)
        print(f"(served by the {live.get('owner') or 'process'} with pid {live.get('pid')}, for {directory}; "
              f"its hub takes this folder's runs: {live.get('ingestUrl')})", flush=True)
        if not args.no_browser and url and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                            or sys.platform in ("darwin", "win32")):
            import webbrowser

            webbrowser.open(url)
        return
    service = TelemetryService(directory, lambda: [], port=args.port, prometheus=args.prometheus,
                               interval=args.interval)
    try:
        await service.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    discovery.write(directory, service.info(), dashboard_url=service.dashboard_url(), owner="deepdive dashboard")
    print(f"dashboard: {service.dashboard_url()}", flush=True)
    print(f"hub:       {service.hub.ingest_url}   (deepdive train here streams to it; "
          f"elsewhere set DEEPDIVE_HUB to this)", flush=True)
    if service.hub.static_dir is None:
        print("note: the dashboard page is not built here (make build); the hub and /stream work", flush=True)
    if not args.no_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                or sys.platform in ("darwin", "win32")):
        import webbrowser

        webbrowser.open(service.dashboard_url())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        discovery.remove(directory)
        await service.stop()


def cmd_generate(args: argparse.Namespace) -> int:
    import threading
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape

    from deepdive.codegen import pipeline
    from deepdive.codegen.backends import worker_client
    from deepdive.codegen.generation import GenerateParams, GeneratePartial

    if not args.prompt.strip():
        raise UsageError('the prompt is empty: describe the program, e.g. "a CNN classifier for MNIST"')
    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and not args.force:
        raise UsageError(f"{out} exists: pass --force to overwrite it, or choose another --output")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"no such folder: {out.parent}")
    params = GenerateParams(prompt=args.prompt, framework=args.framework, backend=args.backend,
                            model_path=args.model_path, endpoint=args.endpoint, model=args.model,
                            allow_remote=args.allow_remote, verify=not args.no_verify, allow_gpu=args.gpu)
    console = Console(stderr=True, highlight=False)
    cancel = threading.Event()
    status = console.status("generating", spinner="dots") if not args.json else None

    def on_partial(p: GeneratePartial) -> None:
        if p.kind == "phase" and status is not None:
            status.update(p.text or "")
        elif p.kind == "check" and p.check is not None and not args.json:
            mark = "[green]✓[/]" if p.check.ok else "[red]✗[/]"
            took = f" [dim]{p.check.seconds:.1f} s[/]" if p.check.seconds is not None else ""
            # A failed check says why; the frame check says what the model wrote and what the frame added.
            said = (not p.check.ok or p.check.name == "frame") and p.check.detail
            console.print(f"  {mark} {p.check.name}{took}" + (f": {escape(p.check.detail)}" if said else ""))

    try:
        if status is not None:
            status.start()
        try:
            result = pipeline.generate(params, on_partial=on_partial, cancel=cancel)
        finally:
            if status is not None:
                status.stop()
    except KeyboardInterrupt:
        cancel.set()
        raise
    except pipeline.Cancelled:
        raise KeyboardInterrupt from None
    except ValueError as exc:  # an unintelligible prompt, a backend that cannot work (one line each)
        raise UsageError(str(exc)) from None
    finally:
        worker_client.shutdown_shared()
    if not result.code and not (result.understood_as or {}).get("stated") and not result.intent:
        raise UsageError(result.message or "could not tell what to build")  # nothing of the prompt was understood
    if out is not None and result.code:
        from deepdive.fsutil import atomic_write_text

        atomic_write_text(out, result.code)
    if args.json:
        from deepdive.daemon.generate_wire import result_to_wire
        from deepdive.protocol import to_wire

        print(json.dumps(to_wire(result_to_wire(result))))
    elif out is None and result.code:
        sys.stdout.write(result.code if result.code.endswith("\n") else result.code + "\n")
    if not args.json:
        from deepdive.cli_generate import print_report

        print_report(console, result, no_verify=args.no_verify, out=out)
    return 0 if result.verified or (args.no_verify and result.code) else 1


def cmd_tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.tune.report import study_line
    from deepdive.tune.rounding import format_sig
    from deepdive.tune.study import StudyConfig, TuneError, load_result, run_study

    if args.trials is None and not args.apply:
        raise UsageError("give --trials N (how many trials the study should hold), or --apply to write the best "
                         "parameters of an existing study into the script")
    if args.trials is not None and args.trials < 1:
        raise UsageError("--trials must be at least 1")
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if args.patience is not None and args.patience < 1:
        raise UsageError("--patience must be at least 1 (reports without a new best)")
    for name in ("timeout", "trial_timeout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    if not Path(args.script).is_file():
        raise UsageError(f"no such script: {args.script}")
    console = Console(stderr=True, highlight=False)
    import signal

    def on_term(signum: int, frame: Any) -> None:  # a cancelled job: running trials end as failed, reason given
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        if args.trials is None:
            result = load_result(args.script, args.storage, args.study)
        else:
            progress = Progress(TextColumn("[bold]tune"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                disable=args.json, transient=True)
            task = progress.add_task("starting workers", total=args.trials)

            def on_event(kind: str, fields: dict[str, Any]) -> None:
                if kind == "progress":
                    best = fields.get("best")
                    progress.update(task, completed=min(fields["done"], fields["total"]),
                                    description=f"best {format_sig(best)}" if isinstance(best, (int, float)) else "")
                elif kind == "tune.study" and not args.json:  # what is optimised, and where that came from
                    progress.console.print(study_line(fields), markup=False, soft_wrap=True)
                elif kind == "tune.trial" and fields["state"] in ("pruned", "fail") and not args.json:
                    progress.console.print(f"  trial {fields['number']} {fields['state']}: {fields['reason']}",
                                           markup=False)

            config = StudyConfig(args.script, n_trials=args.trials, script_args=list(args.script_args),
                                 parallel=args.parallel, storage=args.storage, study_name=args.study,
                                 sampler=args.sampler, pruner=args.pruner, metric=args.metric,
                                 direction=args.direction, value=args.value, patience=args.patience,
                                 timeout=args.timeout, seed=args.seed,
                                 retry_failed=args.retry_failed, pack=args.pack, trial_timeout=args.trial_timeout,
                                 on_event=on_event)
            with progress:
                result = run_study(config)
    except TuneError as exc:
        raise UsageError(str(exc)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    applied = None
    if args.apply:
        from deepdive.tune.apply import apply_to_file

        if not result.best_params:
            raise UsageError(f"study {result.study!r} has no complete trial yet: nothing to apply")
        try:
            applied = apply_to_file(args.script, result.best_params)
        except SyntaxError as exc:
            raise UsageError(f"{args.script} does not parse: {exc.msg} (line {exc.lineno})") from None
    if args.json:
        out = result.to_json()
        if applied is not None:
            out["applied"] = applied
        print(json.dumps(out, default=str))
    else:
        from deepdive.tune.report import print_result

        print_result(result, console=Console(highlight=False))
        if applied is not None:
            what = ", ".join(applied["changed"]) or "nothing (the defaults already are the best)"
            print(f"applied to {args.script}: {what}"
                  + (f"; not in the script: {', '.join(applied['missing'])}" if applied["missing"] else ""))
    from deepdive.jobs import events

    events.result({"study": result.study, "bestValue": result.best_value, "bestParams": result.best_params,
                   "nComplete": result.n_complete, "nPruned": result.n_pruned, "nFail": result.n_fail})
    return 0 if result.n_complete or args.trials is None else 1


def cmd_compress(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.out is not None:  # checked before loading or measuring anything, not when the results are written
        from deepdive.cli_paths import folder_problem

        problem = folder_problem(Path(args.out).resolve(), "--out", "the compressed model and its report")
        if problem:
            raise UsageError(problem)
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from deepdive.engine.compress import CompressConfig, CompressError, compress
    from deepdive.engine.compress.pipeline import markdown
    from deepdive.engine.reporter import Reporter
    from deepdive.jobs import events

    console = Console(stderr=True, highlight=False)
    steps = [name for name, on in (("prune", args.prune is not None), ("layers", args.layers is not None),
                                   ("distill", args.distill), ("quantize", bool(args.quantize))) if on]
    reporter = Reporter.from_env(f"compress-{Path(args.model).stem}", 0)
    progress = Progress(SpinnerColumn(), TextColumn("[bold]compress"), TextColumn("{task.description}"),
                        TimeElapsedColumn(), console=console, disable=args.json, transient=True)
    task = progress.add_task("loading", total=None)
    planned, measured = len(steps) + 1, 0  # the report's rows: the original, then each step

    def emit(kind: str, fields: dict[str, Any]) -> None:
        nonlocal measured
        if reporter.enabled:
            reporter.event(kind, **fields)
        # the job's progress for the editor, as job events (never read back from the table printed below)
        if kind == "compress.progress":
            events.progress(measured / planned, f"{measured}/{planned} measured · {fields['step']}: {fields['phase']}")
        elif kind == "compress.step":
            measured += 1
            events.progress(measured / planned, f"{measured}/{planned} measured · {fields['step']} measured")
        if kind == "compress.progress":
            progress.update(task, description=f"{fields['step']}: {fields['phase']}")
        elif kind == "compress.step" and not args.json:
            b1 = fields["latency_ms"]["b1"]["p50"]
            progress.console.print(f"  {fields['step']:<9}{fields['params']:>11,} params {fields['size_mb']:8.3f} MB  "
                                   f"b1 p50 {b1:7.3f} ms  accuracy {100 * fields['accuracy']:.2f} %", markup=False)

    config = CompressConfig(args.model, args.eval_script, prune=args.prune, layers=args.layers, distill=args.distill,
                            quantize=args.quantize, target=args.target, importance=args.importance, steps=args.steps,
                            fine_tune_epochs=args.epochs, distill_epochs=args.distill_epochs, out=args.out)
    try:
        with progress:
            report = compress(config, emit)
    except CompressError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # a step's own one-line error (prune/distill/quantize)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{' -> '.join(steps)}: {first}") from None
    finally:
        reporter.close()
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(markdown(report))
        print(f"wrote {report['outputs']['model']}, {report['outputs']['json']} and {report['outputs']['markdown']}")
    events.result({"report": report["outputs"]["json"], "summary": report["summary"]})
    return 0


_COMMANDS = {"compress": cmd_compress, "tune": cmd_tune, "version": cmd_version, "serve": cmd_serve, "doctor": cmd_doctor, "train": cmd_train,
             "dashboard": cmd_dashboard, "generate": cmd_generate, "ckpt": cmd_ckpt, "model": cmd_model}
