"""`deepdive deploy split FOLDER --max-memory 0=10GiB,cpu=30GiB,disk`: place a model too large for one device.

A thin adapter over :func:`deepdive.deploy.split.split_folder`: accelerate plans where each layer of the
folder's eager model goes under the budgets (GPUs, then the CPU, then disk), the disk part is written
once, the placed model is checked against eager on the example inputs, and the plan is saved in
``deploy.json`` as the form ``split`` (serve it with ``deepdive deploy serve FOLDER --form split``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(actions: Any) -> None:
    """Register ``deploy split`` on the ``deploy`` subparsers ``actions``."""
    p = actions.add_parser("split", help="place a model larger than one device's memory across GPUs, the CPU and disk "
                                         "(accelerate's device map), saved as the form `split`",
                           description="Plan where each layer of FOLDER's eager model goes under the memory budgets "
                                       "(accelerate's infer_auto_device_map, by the measured bytes of each layer: GPUs "
                                       "in index order, then cpu, then disk), write the disk part once into "
                                       "FOLDER/split_offload/, check the placed model against eager on the example "
                                       "inputs, and save the plan into FOLDER/deploy.json as the form `split`.")
    p.add_argument("folder", help="the export folder (with deploy.json)")
    p.add_argument("--max-memory", required=True, metavar="BUDGETS",
                   help="device budgets, e.g. 0=10GiB,1=10GiB,cpu=30GiB,disk (GPU indices, cpu with a size; `disk` "
                        "alone allows offloading what does not fit to disk)")
    p.add_argument("--no-split", default=None, metavar="CLASS,CLASS",
                   help="module classes whose layers must stay on one device (blocks with a residual connection; "
                        "default: the model's _no_split_modules, if it declares them)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.deploy.split import parse_budgets, split_folder
    from deepdive.jobs import events

    budgets = parse_budgets(args.max_memory)
    no_split = [c.strip() for c in args.no_split.split(",") if c.strip()] if args.no_split is not None else None
    console = Console(stderr=True, highlight=False)
    bar = Progress(TextColumn("[bold]deploy split"), BarColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn(), console=console, disable=args.json, transient=True)
    task = bar.add_task("reading deploy.json", total=1.0)

    def progress(fraction: float, text: str) -> None:
        events.progress(fraction, text)
        bar.update(task, completed=fraction, description=text)

    with bar:
        entry = split_folder(args.folder, budgets, no_split=no_split, progress=progress)
    if args.json:
        print(json.dumps(entry))
    else:
        placed = ", ".join(f"{device}: {size / 1e6:.3g} MB" for device, size in entry["bytes"].items())
        print(f"placed {entry['total_bytes'] / 1e6:.3g} MB of weights by accelerate's device map: {placed}")
        print(f"max abs diff from eager {entry['max_abs_diff']:.2g} at batch sizes "
              f"{', '.join(str(b) for b in entry['checked_batches'])}")
        print(f"saved the plan as the form `split` in {args.folder}/deploy.json "
              f"(serve it with `deepdive deploy serve {args.folder} --form split`)")
    events.result({"bytes": entry["bytes"], "max_abs_diff": entry["max_abs_diff"]})
    return 0
