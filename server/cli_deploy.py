"""`deepdive deploy export|bench|serve|split|triton`: a trained or compressed model exported, measured, served.

Each action is a thin adapter in its own module (``cli_deploy_<action>.py``: ``add_parser(actions)`` and
``run(args) -> int``) over :mod:`deepdive.deploy`; this module only groups them. A :class:`DeployError`
becomes the CLI's one-line error (exit 2).
"""

from __future__ import annotations

import argparse
from typing import Any

ACTIONS = ("export", "bench", "serve", "split", "triton")


def _module(action: str) -> Any:
    import importlib

    return importlib.import_module(f"deepdive.cli_deploy_{action}")


def add_parser(sub: Any) -> None:
    """Register ``deploy`` and its actions on the top-level subparsers ``sub``."""
    p = sub.add_parser("deploy", help="export a trained model (torch.export, TorchScript, ONNX), measure its runtimes, "
                                      "serve it with dynamic batching (Open Inference Protocol v2), write a Triton repository",
                       description="Deploy a model: SCRIPT defines build_model() and example_inputs(batch_size) or "
                                   "example_batch(); --model is the trained (or compressed) model file. `export` writes "
                                   "the forms and deploy.json into a folder that `bench`, `serve` and `triton` read.")
    actions = p.add_subparsers(dest="deploy_command", metavar="ACTION", parser_class=type(p))
    actions.required = True
    for action in ACTIONS:
        _module(action).add_parser(actions)


def cmd_deploy(args: argparse.Namespace) -> int:
    from deepdive.cli import UsageError
    from deepdive.deploy.errors import DeployError

    try:
        return _module(args.deploy_command).run(args)
    except DeployError as exc:
        raise UsageError(str(exc)) from None
