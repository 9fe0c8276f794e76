"""`deepdive compress MODEL --eval EVAL.py`: prune, shrink, distil and quantize a trained model, measuring
and reporting each step (its progress also as job events for the editor).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from deepdive.vocabulary import COMPRESS_TARGETS, PRUNE_IMPORTANCES, QUANTIZE_MODES


def add_parser(sub: Any) -> None:
    """Register ``compress`` on the top-level subparsers ``sub``."""
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


def cmd_compress(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deepdive.cli import UsageError

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
