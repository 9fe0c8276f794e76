"""The model to deploy and its example inputs.

A deploy step is given a **script** and, optionally, a **model file**:

- the script defines ``build_model()`` and either ``example_inputs(batch_size) -> tuple of tensors``
  (the EVAL.py contract of ``deepdive compress``, e.g. ``server/examples/digits_cnn.py``) or
  ``example_batch()`` (the contract of generated programs: ``(inputs, targets)`` or the inputs alone);
- the model file is a whole module saved with ``torch.save(model, PATH)`` (what ``deepdive compress``
  writes), a TorchScript file, or a ``state_dict`` (plain or under ``"model"``/``"state_dict"``) that
  ``build_model()`` fits. Without one the script's ``build_model()`` is deployed as built (untrained:
  :attr:`Source.trained` is False and the CLI says so).

The script is the user's own code: it is imported only on the user's request (the CLI, or a job the
editor starts in a trusted workspace).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import attrs
import torch
from torch import nn

from deepdive.deploy.errors import DeployError


@attrs.define
class Source:
    name: str
    """The model's name in the server and the repository (the model file's stem, else the script's)."""
    model: nn.Module
    """In eval mode, on the CPU."""
    example: Callable[[int], tuple[torch.Tensor, ...]]
    """``example(batch_size)``: a batch of inputs, a tuple with one tensor per model input."""
    input_names: list[str]
    """``input__0``, ``input__1``… (Triton's naming for models without named inputs)."""
    script: str
    model_path: Optional[str] = None
    module: Optional[str] = None
    """The module name the script was imported under (:func:`script_module`): classes it defines pickle by it."""
    trained: bool = True
    """False when no model file was given and the weights are ``build_model()``'s initial ones."""

    def output_names(self, outputs: Any) -> list[str]:
        """``output__0``… one per tensor of the model's output (a tensor, or a tuple/list of tensors)."""
        count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
        return [f"output__{i}" for i in range(count)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def script_module(path: str) -> str:
    """The module name a script is imported under: ``deepdive_script_<stem>_<hash of its absolute path>``.

    A class the script defines is pickled (``torch.save`` of the whole module) by this name, and
    :func:`import_script` imports the script under it again in the process that loads the model (the
    server is another process), so the class is found there. The name is recorded in ``deploy.json``.
    """
    resolved = Path(path).resolve()
    stem = "".join(c if c.isalnum() else "_" for c in resolved.stem)
    return f"deepdive_script_{stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"


def import_script(path: str, name: Optional[str] = None, *, reuse: bool = False) -> ModuleType:
    """The script imported as the module ``name`` (default :func:`script_module`), kept in ``sys.modules``.

    Its ``__name__`` is not ``"__main__"``, so its ``main()`` does not run. ``reuse``: return the module
    already imported under that name (what a loader wants: the classes a loaded model refers to stay
    the same objects); otherwise the script runs afresh. Errors propagate (see :func:`load_script`).
    """
    name = name or script_module(path)
    if reuse and name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, str(Path(path).resolve()))
    if spec is None or spec.loader is None:
        raise DeployError(f"cannot import {path} as a Python module: give a .py file")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # before running it, as an import does (dataclasses, pickle look it up)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    return module


def load_script(path: str) -> dict[str, Any]:
    """The script's namespace, imported as the module :func:`script_module` names (its ``main()`` does not
    run); imported again only when the file changed since."""
    script = Path(path)
    if not script.is_file():
        raise DeployError(f"no such script: {path} (it defines build_model() and example_inputs(batch_size) "
                          "or example_batch())")
    try:
        # the same unchanged file is not run twice in one process: a model built from its first import
        # must still pickle (pickle wants the class it finds by name to be the model's own class)
        module = sys.modules.get(script_module(str(script)))
        if module is None or getattr(module, "__deepdive_mtime_ns__", None) != script.stat().st_mtime_ns:
            module = import_script(str(script))
            module.__deepdive_mtime_ns__ = script.stat().st_mtime_ns  # type: ignore[attr-defined]
        return vars(module)
    except SyntaxError as exc:
        raise DeployError(f"{path} does not parse: {exc.msg} (line {exc.lineno})") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: name the failure in one line
        raise DeployError(f"{path} failed on import: {type(exc).__name__}: {_first_line(exc)}"[:300]) from None


def _as_inputs(batch: Any, what: str) -> tuple[torch.Tensor, ...]:
    inputs = batch
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and what == "example_batch()":
        inputs = batch[0]  # (inputs, targets)
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return tuple(inputs)
    raise DeployError(f"{what} must give a tensor or a tuple of tensors (got {type(inputs).__name__}): "
                      "deploy serves models whose inputs are tensors")


def _example_fn(namespace: dict[str, Any], path: str) -> Callable[[int], tuple[torch.Tensor, ...]]:
    if callable(namespace.get("example_inputs")):
        fn = namespace["example_inputs"]

        def example(batch_size: int) -> tuple[torch.Tensor, ...]:
            return _as_inputs(fn(batch_size), "example_inputs(batch_size)")
        return example
    if callable(namespace.get("example_batch")):
        fn = namespace["example_batch"]

        def example(batch_size: int) -> tuple[torch.Tensor, ...]:
            base = _as_inputs(fn(), "example_batch()")
            # repeat (or cut) along the batch dimension to the size asked for
            return tuple(t.repeat(-(-batch_size // t.shape[0]), *([1] * (t.dim() - 1)))[:batch_size] for t in base)
        return example
    raise DeployError(f"{path} defines neither example_inputs(batch_size) nor example_batch(): add "
                      "`def example_inputs(batch_size): return (torch.randn(batch_size, ...),)`")


def _main_as(module: str) -> ModuleType:
    """A ``pickle`` module for ``torch.load`` whose unpickler reads classes of ``__main__`` from ``module``."""
    import pickle

    class Unpickler(pickle.Unpickler):
        def find_class(self, mod: str, name: str) -> Any:
            return super().find_class(module if mod == "__main__" else mod, name)

    alias = ModuleType("deepdive_pickle_main_as")
    alias.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith("__")})
    alias.Unpickler = Unpickler  # type: ignore[attr-defined]
    return alias


def _load_model(path: str, namespace: dict[str, Any]) -> nn.Module:
    file = Path(path)
    if not file.is_file():
        raise DeployError(f"no such model file: {path} (save one with torch.save(model, PATH))")
    try:
        return torch.jit.load(str(file), map_location="cpu").eval()
    except Exception:  # noqa: BLE001 - not TorchScript: try a pickled module or a state_dict below
        pass
    try:
        # a whole module is a pickle of the user's own classes: loaded only on the user's request
        try:
            obj = torch.load(file, map_location="cpu", weights_only=False)
        except AttributeError as exc:
            # saved by the script run as `python script.py` (classes named __main__.X): read them from the
            # script imported here, so the eager form pickles them by a name another process can import
            if "__main__" not in str(exc) or not namespace.get("__name__"):
                raise
            obj = torch.load(file, map_location="cpu", weights_only=False,
                             pickle_module=_main_as(namespace["__name__"]))
    except Exception as exc:  # noqa: BLE001 - not a torch file, truncated, a class that is gone
        raise DeployError(f"cannot load {path}: {type(exc).__name__}: {_first_line(exc)}"[:300]) from None
    if isinstance(obj, nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        state = obj.get("model") or obj.get("state_dict") or obj
        if not callable(namespace.get("build_model")):
            raise DeployError(f"{path} holds a state_dict, not a module: define build_model() in the script, or "
                              "save the whole module with torch.save(model, PATH)")
        model = namespace["build_model"]()
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise DeployError(f"{path} does not fit build_model(): {_first_line(exc)}"[:300]) from None
        return model.eval()
    raise DeployError(f"{path} holds a {type(obj).__name__}, not a model: save it with torch.save(model, PATH)")


def load_source(script: str, model_path: Optional[str] = None) -> Source:
    """The model (from ``model_path``, else the script's ``build_model()``) and its example inputs."""
    namespace = load_script(script)
    example = _example_fn(namespace, script)
    if model_path:
        model, trained = _load_model(model_path, namespace), True
        name = Path(model_path).stem
    else:
        if not callable(namespace.get("build_model")):
            raise DeployError(f"{script} defines no build_model(): add one, or give the trained model file")
        try:
            model, trained = namespace["build_model"]().eval(), False
        except Exception as exc:  # noqa: BLE001 - the user's code
            raise DeployError(f"build_model() failed: {type(exc).__name__}: {_first_line(exc)}"[:300]) from None
        name = Path(script).stem
    if not isinstance(model, nn.Module):
        raise DeployError(f"build_model() gave a {type(model).__name__}, not a torch.nn.Module: deploy serves torch models")
    try:
        sample = example(2)
    except DeployError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DeployError(f"the example inputs failed: {type(exc).__name__}: {_first_line(exc)}"[:300]) from None
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "model"
    return Source(name=name, model=model, example=example, input_names=[f"input__{i}" for i in range(len(sample))],
                  script=str(Path(script).resolve()), model_path=str(Path(model_path).resolve()) if model_path else None,
                  trained=trained, module=script_module(script))
