"""`deepdive deploy triton FOLDER --repo DIR`: a Triton model repository from an export folder.

A thin adapter over :mod:`deepdive.deploy.triton`: it writes ``DIR/<name>/config.pbtxt`` and the model
file, then loads the written model the way Triton's backend does and runs it at batch 1 and at
``--max-batch`` (``--no-check`` skips that). Progress goes to a bar on stderr and to job events.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def _sizes(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of batch sizes, e.g. 8,16,32") from None


def add_parser(actions: Any) -> None:
    """Register ``deploy triton`` on the ``deploy`` subparsers ``actions``."""
    from deepdive.deploy.defaults import TRITON_FORMS
    from deepdive.deploy.defaults import TRITON_KINDS as KINDS

    p = actions.add_parser("triton", help="write a Triton model repository (ONNX or TorchScript, config.pbtxt with "
                                          "dynamic batching) from an export folder",
                           description="Write REPO/<name>/config.pbtxt and REPO/<name>/1/model.onnx (or model.pt for "
                                       "TorchScript) from FOLDER (written by `deepdive deploy export`), then run the "
                                       "written model at batch 1 and --max-batch to check it matches its config. The "
                                       "repository runs on Triton Inference Server and on KServe's Triton runtime.")
    p.add_argument("folder", help="the export folder (with deploy.json)")
    p.add_argument("--repo", required=True, help="the model repository folder (created if missing)")
    p.add_argument("--form", choices=TRITON_FORMS, default=None,
                   help="the form to deploy (default: onnx if exported, else torchscript)")
    p.add_argument("--name", default=None, help="the model's name in the repository (default: deploy.json's)")
    p.add_argument("--max-batch", type=int, default=32, help="max_batch_size; 0 turns batching off (default 32)")
    p.add_argument("--preferred", type=_sizes, default=None, metavar="N,N,...",
                   help="preferred batch sizes of the dynamic batcher (default: those of 8,16,32 up to --max-batch; "
                        "sizes above --max-batch are refused; an empty string gives none)")
    p.add_argument("--max-queue-delay-us", type=int, default=2000,
                   help="how long the batcher may hold a request to form a bigger batch (default 2000)")
    p.add_argument("--max-queue-size", type=int, default=0,
                   help="requests waiting beyond this are rejected (default 0: Triton's unbounded queue)")
    p.add_argument("--instances", type=int, default=1, help="model instances (per GPU with --kind gpu; default 1)")
    p.add_argument("--kind", choices=KINDS, default="cpu", help="where the instances run (default cpu)")
    p.add_argument("--no-check", action="store_true", help="do not load and run the written model")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.cli_paths import folder_problem
    from deepdive.deploy.errors import DeployError
    from deepdive.deploy.triton import check_repository, plan_repository, write_plan
    from deepdive.jobs import events

    problem = folder_problem(Path(args.repo).resolve(), "--repo", "the Triton model repository")
    if problem:
        raise DeployError(problem)
    # every input checked before the progress bar starts: a mistake is one line, with nothing written
    plan = plan_repository(args.folder, args.repo, form=args.form, name=args.name, max_batch=args.max_batch,
                           preferred=args.preferred, max_queue_delay_us=args.max_queue_delay_us,
                           max_queue_size=args.max_queue_size, instances=args.instances, kind=args.kind)
    console = Console(stderr=True, highlight=False)
    bar = Progress(TextColumn("[bold]deploy triton"), BarColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn(), console=console, disable=args.json, transient=True)
    task = bar.add_task("writing", total=1.0)

    def progress(fraction: float, text: str) -> None:
        events.progress(fraction, text)
        bar.update(task, completed=fraction, description=text)

    with bar:
        repository = write_plan(plan, progress=progress)
        if not args.no_check:
            check_repository(repository, args.folder, progress=progress)
    config = repository.config
    summary = {"repo": str(Path(args.repo).resolve()), "name": config.name, "form": config.form,
               "platform": config.platform, "config": str(repository.config_path), "model": str(repository.model_path),
               "max_batch_size": config.max_batch_size, "preferred_batch_sizes": config.preferred_batch_sizes,
               "max_queue_delay_us": config.max_queue_delay_us, "instances": config.instances, "kind": config.kind,
               "checked": repository.checked}
    events.result(summary)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"wrote {repository.config_path} and {repository.model_path} ({config.platform})")
    if repository.checked:
        print(f"checked with {'onnxruntime' if config.form == 'onnx' else 'torch.jit.load'}: "
              + "; ".join(repository.checked))
    print(f"serve it: tritonserver --model-repository {summary['repo']}")
    return 0
