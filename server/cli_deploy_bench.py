"""`deepdive deploy bench FOLDER`: measure the runtimes this machine offers and choose the fastest within tolerance.

A thin adapter over :func:`deepdive.deploy.choose.bench`: a progress bar on stderr and job events while
measuring, then a table (candidate, p50/p90 per batch size, max abs diff, eligible or why not) and the
choice's reason; the choice is saved into the folder's ``deploy.json``. ``--json`` prints the choice.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of batch sizes, e.g. 1,8,32") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes are positive integers, e.g. 1,8,32")
    return sizes


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_parser(actions: Any) -> None:
    """Register ``deploy bench`` on the ``deploy`` subparsers ``actions``."""
    from deepdive.deploy.defaults import BENCH_BUDGET_S as DEFAULT_BUDGET_S
    from deepdive.deploy.defaults import BENCH_INT8_AGREEMENT as DEFAULT_INT8_AGREEMENT
    from deepdive.deploy.defaults import BENCH_TOLERANCE as DEFAULT_TOLERANCE

    p = actions.add_parser("bench", help="measure the exported forms (and compiled, ONNX Runtime providers, bf16, int8) "
                                         "on this machine and choose the fastest within tolerance",
                           description="Run every candidate runtime of FOLDER (written by `deepdive deploy export`) on "
                                       "its example inputs at each batch size, in alternating rounds; compare each "
                                       "with the eager model; choose the one with the lowest geometric mean of p50 "
                                       "ratios to eager among those within tolerance, and save the choice (with every "
                                       "measurement and the reason) into FOLDER/deploy.json, where `deploy serve` "
                                       "reads it.")
    p.add_argument("folder", help="the export folder (with deploy.json)")
    p.add_argument("--batch-sizes", type=_sizes, default=[1, 8, 32], metavar="N,N,...",
                   help="batch sizes the server's batcher will form (default 1,8,32)")
    p.add_argument("--forms", type=_names, default=None, metavar="F,F,...",
                   help="candidates to measure (default: all this machine and folder offer): eager, compiled, "
                        "torchscript, pt2, onnx (each execution provider), int8, split, bf16, fp16 (GPU)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per candidate (default: torch's)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest absolute output difference from eager for a candidate to be chosen "
                        f"(default {DEFAULT_TOLERANCE:g})")
    p.add_argument("--int8-agreement", type=float, default=DEFAULT_INT8_AGREEMENT,
                   help=f"int8 of a classifier: least fraction of example rows whose top-1 class matches eager's "
                        f"(default {DEFAULT_INT8_AGREEMENT:g})")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                   help=f"seconds of timed runs in all, split over the batch sizes (default {DEFAULT_BUDGET_S:g})")
    p.add_argument("--no-save", action="store_true", help="measure and print, leave deploy.json as it is")
    p.add_argument("--json", action="store_true", help="print the choice as JSON")


def _table(choice: dict[str, Any]) -> str:
    sizes = choice["batch_sizes"]
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for row in choice["measured"]:
        rows.setdefault(row["label"], {})[row["batch"]] = row
    head = f"{'candidate':<32}" + "".join(f"{'b' + str(b) + ' p50/p90 ms':>22}" for b in sizes) + f"{'max diff':>11}  verdict"
    lines = [head]
    for label, by_size in rows.items():
        any_row = next(iter(by_size.values()))
        cells = "".join(f"{by_size[b]['p50_ms']:>11.3f}/{by_size[b]['p90_ms']:<10.3f}" for b in sizes)
        diff = max(r["max_abs_diff"] for r in by_size.values())
        verdict = ("chosen" if label == choice["label"] else "eligible") if any_row["eligible"] else any_row["why_not"]
        score = choice.get("scores", {}).get(label)
        lines.append(f"{label:<32}{cells}{diff:>11.2g}  {verdict}" + (f" ({score:.2f}x eager)" if score else ""))
    for skip in choice.get("skipped", []):
        lines.append(f"{skip['label']:<32}skipped: {skip['why']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.deploy.choose import bench
    from deepdive.jobs import events

    console = Console(stderr=True, highlight=False)
    bar = Progress(TextColumn("[bold]deploy bench"), BarColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn(), console=console, disable=args.json, transient=True)
    task = bar.add_task("reading deploy.json", total=1.0)

    def progress(fraction: float, text: str) -> None:
        events.progress(fraction, text)
        bar.update(task, completed=fraction, description=text)

    with bar:
        choice = bench(args.folder, batch_sizes=args.batch_sizes, forms=args.forms, threads=args.threads,
                       tolerance=args.tolerance, int8_agreement=args.int8_agreement, budget_s=args.budget_s,
                       progress=progress, save=not args.no_save)
    if args.json:
        print(json.dumps(choice))
    else:
        print(_table(choice))
        print(f"\n{choice['reason']}")
        print("not saved (--no-save)" if args.no_save else f"saved the choice ({choice['label']}, "
              f"{choice['threads']} threads) into {args.folder}/deploy.json")
    events.result({"form": choice["form"], "label": choice["label"], "reason": choice["reason"]})
    return 0
