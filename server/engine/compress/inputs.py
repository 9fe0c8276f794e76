"""What ``deepdive compress`` is given: the options, the evaluation script and the model file.

:class:`CompressConfig` holds the options and :func:`_check` refuses bad ones; :func:`load_eval` imports
the user's evaluation script (the EVAL.py contract, see :mod:`deepdive.engine.compress.pipeline`) and
:func:`load_model` the model, a pickled module or a ``state_dict`` with ``build_model()``. Every
failure is a :class:`CompressError` of one line that says what to do.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any, Callable, Optional

import attrs
import torch
from torch import nn

from deepdive.vocabulary import COMPRESS_TARGETS, QUANTIZE_MODES


class CompressError(ValueError):
    """Bad input to ``deepdive compress`` (one line that says what to do)."""


@attrs.define
class CompressConfig:
    model: str
    eval_script: str
    prune: Optional[float] = None
    layers: Optional[int] = None
    """Depth reduction: keep this many of the model's repeated blocks (e.g. encoder layers)."""
    distill: bool = False
    quantize: Optional[str] = None
    target: str = "x86"
    importance: str = "l2"
    steps: int = 1
    """Progressive pruning: ``prune`` reached in this many steps, fine-tuned after each."""
    fine_tune_epochs: int = 1
    """Epochs of fine-tuning after each pruning step."""
    distill_epochs: int = 3
    temperature: float = 4.0
    out: Optional[str] = None
    """Folder for the compressed model and the report (default: MODEL's folder)."""
    latency_budget_s: float = 1.0
    """Seconds of timed runs per latency figure (at least 20 runs)."""
    seed: int = 0
    device: str = "cpu"


Emit = Callable[[str, dict[str, Any]], None]


def load_eval(path: str) -> dict[str, Any]:
    """The evaluation script's namespace, with its contract checked (one-line errors)."""
    script = Path(path)
    if not script.is_file():
        raise CompressError(f"no such evaluation script: {path} (it defines evaluate(model) -> float, "
                            "example_inputs(batch_size) and train_loader())")
    try:
        namespace = runpy.run_path(str(script), run_name="deepdive_eval")
    except SyntaxError as exc:
        raise CompressError(f"{path} does not parse: {exc.msg} (line {exc.lineno})") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: name the failure, in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompressError(f"{path} failed on import: {type(exc).__name__}: {first}"[:300]) from None
    for name, signature in (("evaluate", "evaluate(model) -> float"),
                            ("example_inputs", "example_inputs(batch_size) -> tuple of input tensors")):
        if not callable(namespace.get(name)):
            raise CompressError(f"{path} defines no {name}(): add `def {signature}`")
    return namespace


def load_model(path: str, namespace: dict[str, Any]) -> nn.Module:
    """A whole pickled module, or a state_dict (plain or under "model"/"state_dict") with ``build_model()``."""
    file = Path(path)
    if not file.is_file():
        raise CompressError(f"no such model file: {path} (save one with torch.save(model, PATH), e.g. "
                            "digits.py --save PATH)")
    try:
        # a whole module is a pickle of the user's own classes: loaded only on the user's request
        obj = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - not a torch file, truncated, a class that is gone
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompressError(f"cannot load {path}: {type(exc).__name__}: {first}"[:300]) from None
    if isinstance(obj, nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        state = obj.get("model") or obj.get("state_dict") or obj
        if not callable(namespace.get("build_model")):
            raise CompressError(f"{path} holds a state_dict, not a module: define build_model() in the evaluation "
                                "script, or save the whole module with torch.save(model, PATH)")
        model = namespace["build_model"]()
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise CompressError(f"{path} does not fit build_model(): {str(exc).splitlines()[0]}"[:300]) from None
        return model.eval()
    raise CompressError(f"{path} holds a {type(obj).__name__}, not a model: save it with torch.save(model, PATH)")


def _check(config: CompressConfig) -> None:
    if config.prune is None and config.layers is None and not config.distill and not config.quantize:
        raise CompressError("nothing to do: give --prune AMOUNT, --layers N, --distill and/or --quantize int8")
    if config.layers is not None and (isinstance(config.layers, bool) or not isinstance(config.layers, int)
                                      or config.layers < 1):
        raise CompressError(f"--layers is the number of repeated blocks kept, at least 1 (got {config.layers})")
    if config.prune is not None and not 0.0 < config.prune < 1.0:
        raise CompressError(f"--prune is the fraction of channels removed, between 0 and 1 (got {config.prune})")
    if config.quantize and config.quantize not in QUANTIZE_MODES:
        raise CompressError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)} (got {config.quantize!r})")
    if config.target not in COMPRESS_TARGETS:
        raise CompressError(f"--target must be x86 or arm (got {config.target!r})")
    if config.steps < 1 or config.fine_tune_epochs < 0 or config.distill_epochs < 1:
        raise CompressError("--steps and --distill-epochs must be at least 1, --epochs at least 0")


def _batches(namespace: dict[str, Any], what: str) -> list[Any]:
    if not callable(namespace.get("train_loader")):
        raise CompressError(f"{what} needs training data: define train_loader() returning (inputs, labels) batches "
                            "in the evaluation script")
    return namespace["train_loader"]()

