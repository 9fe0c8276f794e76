"""`deepdive deploy export SCRIPT [--model FILE]`: the model written in its deployable forms, each checked.

A thin adapter over :func:`deepdive.deploy.export.export`: a progress bar on stderr and job events
(:func:`deepdive.jobs.events.progress`, so the editor can run it as a job) while the forms are written,
then a table (form, file, size, max abs diff from eager, checked batch sizes, or why the form failed).
Exit 0 when every form asked for was exported, 1 when some failed (each one said); bad input is the
CLI's one-line error (exit 2). ``--json`` prints the folder's ``deploy.json`` (with ``folder``) instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deepdive.deploy.manifest import FORMS

EXPORT_FORMS = tuple(f for f in FORMS if f != "compiled")
"""The forms ``--forms all`` writes (``compiled`` is made from the eager file when served)."""


def _forms(text: str) -> tuple[str, ...]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return EXPORT_FORMS
    unknown = [n for n in names if n not in EXPORT_FORMS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: --forms is 'all' or a comma-separated list of "
                                         f"{', '.join(EXPORT_FORMS)}")
    return tuple(dict.fromkeys(names))


def add_parser(actions: Any) -> None:
    """Register ``deploy export`` on the ``deploy`` subparsers ``actions``."""
    p = actions.add_parser("export", help="write the model as torch.export (.pt2), TorchScript, ONNX and int8, each "
                                          "checked against the eager model",
                           description="Load the model (--model FILE: a whole module, TorchScript, a state_dict for "
                                       "build_model(), or a `deepdive compress` output; else SCRIPT's build_model(), "
                                       "untrained) and write each form into --out with deploy.json, which `deploy "
                                       "bench`, `serve` and `triton` read. Every form is loaded back and run on the "
                                       "example inputs at batch sizes 1, 3 and 8, and its largest absolute difference "
                                       "from the eager outputs is reported. A form that cannot be exported is reported "
                                       "with its reason and the others are still written (exit 1).")
    p.add_argument("script", help="the script: build_model() and example_inputs(batch_size) or example_batch()")
    p.add_argument("--model", default=None, metavar="FILE", help="the trained (or compressed) model file")
    p.add_argument("--out", default=None, metavar="DIR", help="the export folder (default: ./deploy/<name>)")
    p.add_argument("--forms", type=_forms, default=EXPORT_FORMS, metavar="F,F,...|all",
                   help=f"forms to write (default all: {','.join(EXPORT_FORMS)}); eager is always written")
    p.add_argument("--json", action="store_true", help="print deploy.json (and the folder) as JSON")


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return "?"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _table(folder: Path, data: dict[str, Any], asked: tuple[str, ...]) -> str:
    lines = [f"{'form':<12}{'file':<16}{'size':>10}{'max abs diff':>14}  {'checked batches':<16}note"]
    for form in ("eager", *[f for f in asked if f != "eager"]):
        entry = data["forms"].get(form)
        if entry is None:
            lines.append(f"{form:<12}failed: {data['failed'].get(form, 'not written')}")
            continue
        batches = ",".join(str(b) for b in entry.get("checked_batches", []))
        note = ""
        if form == "int8":
            agree = entry.get("top1_agreement")
            note = f"{entry.get('mode')}" + (f", top-1 agreement {100 * agree:.1f} %" if agree is not None else "")
        elif form == "onnx" and entry.get("opset"):
            note = f"opset {entry['opset']}"
        elif form == "torchscript":
            note = entry.get("method", "")
        lines.append(f"{form:<12}{entry['file']:<16}{_size(folder / entry['file']):>10}"
                     f"{entry.get('max_abs_diff', float('nan')):>14.3g}  {batches:<16}{note}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.cli import UsageError
    from deepdive.cli_paths import folder_problem
    from deepdive.jobs import events

    if args.out is not None:  # checked before the model is loaded
        problem = folder_problem(Path(args.out).resolve(), "--out", "the exported forms and deploy.json")
        if problem:
            raise UsageError(problem)
    console = Console(stderr=True, highlight=False)
    bar = Progress(TextColumn("[bold]deploy export"), BarColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn(), console=console, disable=args.json, transient=True)
    task = bar.add_task(f"loading {Path(args.script).name}", total=1.0)

    def progress(fraction: float, text: str) -> None:
        events.progress(fraction, text)
        bar.update(task, completed=fraction, description=text)

    with bar:
        events.progress(0.0, f"loading {Path(args.script).name}")
        from deepdive.deploy.export import export
        from deepdive.deploy.source import load_source

        source = load_source(args.script, args.model)
        folder = Path(args.out) if args.out is not None else Path("deploy") / source.name
        if args.out is None:
            problem = folder_problem(folder.resolve(), "--out", "the exported forms and deploy.json")
            if problem:
                raise UsageError(problem)
        manifest = export(source, folder, forms=args.forms, progress=progress)
    data = manifest.to_json()
    failed = [f for f in args.forms if f in manifest.failed or f not in manifest.forms]
    if args.json:
        print(json.dumps({"folder": str(folder.resolve()), **data}))
    else:
        if not source.trained:
            console.print(f"note: no --model given: {source.name} is exported with build_model()'s initial "
                          "(untrained) weights", markup=False)
        print(_table(folder, data, args.forms))
        said = f"; {len(failed)} form(s) failed: {', '.join(failed)}" if failed else ""
        print(f"\nwrote {folder}/deploy.json{said}")
    events.result({"folder": str(folder.resolve()), "forms": sorted(manifest.forms), "failed": manifest.failed})
    return 1 if failed else 0
