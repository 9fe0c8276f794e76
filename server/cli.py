"""The `deepdive` command line.

Every subcommand exits non-zero with a one-line reason on bad input (no traceback unless
``--debug``). Long work shows a progress bar.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import NoReturn, Optional

from deepdive import __version__
from deepdive.ckpt_cli import add_parser as add_ckpt_parser, cmd_ckpt
from deepdive.cli_compress import add_parser as add_compress_parser, cmd_compress
from deepdive.cli_dashboard import add_parser as add_dashboard_parser, cmd_dashboard
from deepdive.cli_diagnose import add_parser as add_diagnose_parser, cmd_diagnose
from deepdive.cli_deploy import add_parser as add_deploy_parser, cmd_deploy
from deepdive.cli_doctor import add_parser as add_doctor_parser, cmd_doctor
from deepdive.cli_model import add_parser as add_model_parser, cmd_model
from deepdive.cli_tune import add_parser as add_tune_parser, cmd_tune
from deepdive.vocabulary import CODEGEN_BACKENDS, FRAMEWORKS, GRAD_COMPRESSIONS, TRAIN_PRECISIONS


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

    add_doctor_parser(sub)
    add_dashboard_parser(sub)

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

    add_tune_parser(sub)
    add_compress_parser(sub)
    add_diagnose_parser(sub)
    add_deploy_parser(sub)
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
        if passthrough and args.command not in ("train", "tune", "diagnose"):
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


_COMMANDS = {"compress": cmd_compress, "deploy": cmd_deploy, "diagnose": cmd_diagnose, "tune": cmd_tune, "version": cmd_version, "serve": cmd_serve, "doctor": cmd_doctor, "train": cmd_train,
             "dashboard": cmd_dashboard, "generate": cmd_generate, "ckpt": cmd_ckpt, "model": cmd_model}
