"""``deploy export``: the model written in each deployable form, each checked against the eager model.

:func:`export` writes into one folder the forms asked for and ``deploy.json``
(:mod:`deepdive.deploy.manifest`): ``eager`` (the whole module, ``torch.save``) always, and any of
``torchscript``, ``pt2`` (``torch.export``), ``onnx`` and ``int8``. Each form is loaded back the way a
server loads it (:func:`deepdive.deploy.runners.open_runner`) and run on example inputs at several
batch sizes; its largest absolute difference from the eager outputs is recorded. A form that cannot
be exported (an op the exporter lacks, data-dependent control flow) is recorded under ``failed`` with
its one-line reason, and the others are still written.

How each form is made (every one takes any batch size: the batch dimension is dynamic):

- ``eager``: ``torch.save`` of the whole module (``torch.jit.save`` when the model is already TorchScript,
  e.g. a ``deepdive compress`` output). A class defined in the script pickles by the module name the
  script was imported under (``source.module`` in ``deploy.json``), which the loader imports again;
- ``torchscript``: ``torch.jit.trace``, or ``torch.jit.script`` where tracing fails or gives other
  outputs than eager at batch sizes 1 and 5; then ``torch.jit.freeze``;
- ``pt2``: ``torch.export.export`` with a ``Dim`` for the batch, ``torch.export.save``; a model whose
  control flow or shapes depend on its input values fails here, said in one line (a model can skip such
  a step under ``torch.compiler.is_exporting()``, as ``polarity_bert.py`` skips trimming its padding);
- ``onnx``: ``torch.onnx.export`` (the ``torch.export``-based exporter) with a dynamic batch axis; the
  opset is recorded and the check runs through onnxruntime;
- ``int8``: :func:`deepdive.engine.compress.quantize.quantize` (``int8``: static with calibration on the
  example rows for models with convolutions, dynamic for Linear/LSTM/GRU otherwise; ``mode`` records
  which), pickled, or traced to TorchScript (``.ts``) where pickle cannot save it; a model already
  quantized (a ``deepdive compress --quantize`` output) is written as it is. Besides ``max_abs_diff`` its
  entry has ``top1_agreement`` with eager over the example rows for a classifier (int8 logits always
  differ by more than a float tolerance).

Every file is written atomically (:func:`save_atomic`): a re-export that fails half-way leaves the
previous file whole.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from deepdive.deploy.errors import DeployError
from deepdive.deploy.manifest import TO_DATATYPE, Manifest, TensorSpec, write
from deepdive.deploy.source import Source

CHECK_BATCHES = (1, 3, 8)
"""Batch sizes every form is checked at (a form must take any batch size: the batcher forms them)."""

TRACE_BATCH = 5
"""The batch size the graph exporters trace with: odd and unusual, so it does not coincide with another
dimension of the inputs (dynamo would otherwise tie the two together as one symbol)."""

TOLERANCE = 1e-3
"""The largest absolute difference from eager a float form is expected to stay within (``deploy bench``'s
default tolerance); ``int8`` is judged by its ``top1_agreement`` instead."""

EXAMPLES = "examples.npz"
EXAMPLE_ROWS = 64
"""``examples.npz``: this many example input rows (one array per input, keyed by input name)."""

Progress = Callable[[float, str], None]


def _savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
        np.savez(f, **arrays)


def spec_of(name: str, array: np.ndarray) -> TensorSpec:
    """The tensor's OIP spec with the batch dimension dynamic (-1)."""
    datatype = TO_DATATYPE.get(array.dtype.name)
    if datatype is None:
        raise DeployError(f"{name} has dtype {array.dtype.name}, which the inference protocol cannot carry: "
                          f"use one of {', '.join(sorted(TO_DATATYPE))}")
    return TensorSpec(name=name, datatype=datatype, shape=[-1, *array.shape[1:]])


def save_atomic(path: Path, save: Callable[[str], Any]) -> None:
    """``save(tmp_path)`` into a temporary file beside ``path``, fsynced, then renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def eager_outputs(source: Source, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    from deepdive.deploy.runners import TorchRunner

    return TorchRunner("eager", source.model).run([t.numpy() for t in inputs])


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """The largest absolute difference between the eager outputs ``a`` and a form's ``b`` (inf when ``b`` holds a
    NaN: ``max`` would pass over it); one DeployError line when their number or shapes differ."""
    if len(a) != len(b):
        raise DeployError(f"the form gives {len(b)} outputs where the eager model gives {len(a)}")
    worst = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            raise DeployError(f"the form's output has shape {list(y.shape)} where the eager model's has {list(x.shape)}")
        if x.size:
            diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
            worst = math.inf if np.isnan(diff).any() else max(worst, float(diff.max()))
    return worst


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' chatter kept off the terminal: ``torch.onnx`` prints its steps to stdout (which
    ``--json`` keeps for the result) and logs about optional ops; their warnings repeat per call."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript",
                                                    "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        # torch.export also prints the graph it failed on to stderr: the reason is kept from the exception
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _is_script(model: Any) -> bool:
    return isinstance(model, torch.jit.ScriptModule)


def _write_eager(source: Source, folder: Path) -> dict[str, Any]:
    if _is_script(source.model):  # torch.load hands a TorchScript archive to torch.jit.load
        save_atomic(folder / "model.pt", lambda tmp: torch.jit.save(source.model, tmp))
        return {"file": "model.pt", "max_abs_diff": 0.0, "format": "torchscript"}
    save_atomic(folder / "model.pt", lambda tmp: torch.save(source.model, tmp))
    return {"file": "model.pt", "max_abs_diff": 0.0, "format": "module"}


def _same_outputs(source: Source, module: Any, batches: tuple[int, ...] = (1, TRACE_BATCH)) -> Optional[str]:
    """None when ``module`` gives eager's outputs (within :data:`TOLERANCE`) at ``batches``, else why not."""
    from deepdive.deploy.runners import TorchRunner

    for b in batches:
        inputs = [t.numpy() for t in source.example(b)]
        try:
            diff = max_abs_diff(eager_outputs(source, source.example(b)), TorchRunner("check", module).run(inputs))
        except Exception as exc:  # noqa: BLE001 - a trace that baked in a shape fails at another batch size
            return f"at batch {b}: {type(exc).__name__}: {_first_line(exc)}"[:200]
        if diff > TOLERANCE:
            return f"at batch {b} its outputs differ from eager by {diff:.3g}"
    return None


def _write_torchscript(source: Source, folder: Path) -> dict[str, Any]:
    model = source.model
    if _is_script(model):
        scripted, method = model, "as given"
    else:
        try:
            with _quiet(), torch.no_grad():
                scripted = torch.jit.trace(model, source.example(TRACE_BATCH), check_trace=False)
            why = _same_outputs(source, scripted)
            method = "trace"
        except Exception as exc:  # noqa: BLE001 - untraceable: try scripting below
            why = f"{type(exc).__name__}: {_first_line(exc)}"[:200]
        if why is not None:
            try:
                with _quiet():
                    scripted = torch.jit.script(model)
            except Exception as exc:  # noqa: BLE001
                raise DeployError(f"tracing failed ({why}) and so did torch.jit.script ({type(exc).__name__}: "
                                  f"{_first_line(exc)})"[:300]) from None
            method = "script"
    try:
        frozen = torch.jit.freeze(scripted.eval())
    except Exception:  # noqa: BLE001 - a module frozen already (or holding what freeze cannot inline)
        frozen = scripted
    save_atomic(folder / "model.ts", lambda tmp: torch.jit.save(frozen, tmp))
    return {"file": "model.ts", "method": method, "frozen": frozen is not scripted}


def _to_file(path: str, save: Callable[[Any], Any]) -> None:
    """``save(file object)``: for savers that check a path's extension (the temporary name has its own)."""
    with open(path, "wb") as f:
        save(f)


def _batch_dims(example: tuple[torch.Tensor, ...]) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch", min=1)
    return tuple({0: batch} for _ in example)


def _not_script(source: Source, form: str) -> None:
    if _is_script(source.model):
        raise DeployError(f"{form} is made from a Python module and this model is TorchScript: export the model "
                          "from before it was scripted (e.g. its state_dict with build_model())")


def _write_pt2(source: Source, folder: Path) -> dict[str, Any]:
    _not_script(source, "pt2")
    example = source.example(TRACE_BATCH)
    with _quiet():
        program = torch.export.export(source.model, example, dynamic_shapes=_batch_dims(example))
    save_atomic(folder / "model.pt2", lambda tmp: _to_file(tmp, lambda f: torch.export.save(program, f)))
    return {"file": "model.pt2", "dynamic": ["batch"]}


def _write_onnx(source: Source, folder: Path) -> dict[str, Any]:
    _not_script(source, "onnx")
    example = source.example(TRACE_BATCH)
    with torch.inference_mode():
        names = source.output_names(source.model(*example))
    with _quiet():
        program = torch.onnx.export(source.model, example, None, input_names=source.input_names,
                                    output_names=names, dynamic_shapes=_batch_dims(example), dynamo=True,
                                    verbose=False)
    if program is None:
        raise DeployError("torch.onnx.export made no program: update torch (2.5 or later)")
    opset = next((int(o.version) for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    save_atomic(folder / "model.onnx", lambda tmp: program.save(tmp))
    return {"file": "model.onnx", "opset": opset, "exporter": "torch.export"}


def _is_quantized(model: Any) -> bool:
    """A model quantized already: torch.ao's quantized modules, or TorchScript calling quantized ops."""
    if _is_script(model):
        return "quantized::" in str(model.inlined_graph) if hasattr(model, "inlined_graph") else False
    return any(type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")) for m in model.modules())


def _write_int8(source: Source, folder: Path) -> dict[str, Any]:
    from deepdive.deploy.runners import quantized_engine
    from deepdive.engine.compress.quantize import QuantizeError, quantize

    model = source.model
    if _is_quantized(model):
        quantized, entry = model, {"mode": "as given", "method": "the model file is quantized already"}
    else:
        if _is_script(model):
            raise DeployError("int8 quantizes a Python module and this model is TorchScript: quantize it before "
                              "scripting (`deepdive compress MODEL --quantize int8`), or export it from its state_dict")
        rows = source.example(EXAMPLE_ROWS)
        calibration = [tuple(t[i:i + 16] for t in rows) for i in range(0, EXAMPLE_ROWS, 16)]
        target = "arm" if quantized_engine() == "qnnpack" else "x86"
        try:
            result = quantize(model, "int8", target=target, calibration=calibration, example_inputs=source.example(2))
        except QuantizeError as exc:
            raise DeployError(f"int8: {exc}") from None
        quantized = result.model
        entry = {"mode": "static" if "static" in result.method else "dynamic", "method": result.method,
                 "engine": result.engine, "notes": list(result.notes)}
    stale = {"model.int8.pt", "model.int8.ts"}
    if _is_script(quantized):
        save_atomic(folder / "model.int8.ts", lambda tmp: torch.jit.save(quantized, tmp))
        entry["file"] = "model.int8.ts"
    else:
        try:
            save_atomic(folder / "model.int8.pt", lambda tmp: torch.save(quantized, tmp))
            entry["file"] = "model.int8.pt"
        except Exception as exc:  # noqa: BLE001 - what pickle cannot save (an FX graph of int8 ops) is traced
            reason = _first_line(exc)
            try:
                with _quiet(), torch.no_grad():
                    traced = torch.jit.trace(quantized, source.example(TRACE_BATCH), check_trace=False)
            except Exception as trace_exc:  # noqa: BLE001
                raise DeployError(f"int8: pickle failed ({reason[:120]}) and so did tracing "
                                  f"({type(trace_exc).__name__}: {_first_line(trace_exc)})"[:300]) from None
            save_atomic(folder / "model.int8.ts", lambda tmp: torch.jit.save(traced, tmp))
            entry["file"] = "model.int8.ts"
            entry["notes"] = [*entry.get("notes", []), f"saved as TorchScript: pickle failed ({reason[:120]})"]
    for name in stale - {entry["file"]}:
        (folder / name).unlink(missing_ok=True)
    return entry


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_USER_CALL = re.compile(r'File "([^"]+)", line (\d+), in (\w+)\n\s*(.+)')


def failure_reason(exc: BaseException) -> str:
    """One line for ``failed``: the root cause's type and first line (an exporter's wrapper error names
    its cause), the user's line it points at when it says, and what to do for data-dependent shapes."""
    if isinstance(exc, DeployError):
        return _first_line(exc)[:300]
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = _ANSI.sub("", str(root))
    line = f"{type(root).__name__}: {_first_line(root) if text.strip() else ''}"
    line = _ANSI.sub("", line)
    if "data-dependent" in text or "DataDependent" in type(root).__name__:
        where = _USER_CALL.search(text)
        at = f" at {Path(where.group(1)).name}:{where.group(2)}" if where else ""
        line = (f"the model's control flow or shapes depend on its input values{at}, which torch.export cannot "
                f"capture ({type(root).__name__}); serve the torchscript or eager form")
    return line[:300]


def top1_agreement(reference: list[np.ndarray], got: list[np.ndarray]) -> Optional[float]:
    """The share of rows whose first output's argmax is eager's (a classifier's ``[batch, classes]``
    output with at least 2 classes), else None."""
    if not reference or reference[0].ndim != 2 or reference[0].shape[1] < 2 or got[0].shape != reference[0].shape:
        return None
    return float(np.mean(np.argmax(reference[0], 1) == np.argmax(got[0], 1)))


WRITERS: dict[str, Callable[[Source, Path], dict[str, Any]]] = {
    "eager": _write_eager, "torchscript": _write_torchscript, "pt2": _write_pt2, "onnx": _write_onnx,
    "int8": _write_int8}
"""Form -> ``writer(source, folder) -> manifest entry`` (``{"file": ...}`` plus form-specific facts)."""


def export(source: Source, folder: Path | str, forms: tuple[str, ...] = ("eager",),
           progress: Optional[Progress] = None) -> Manifest:
    """Write ``forms`` (``eager`` always) and ``deploy.json`` into ``folder``; each form checked against eager."""
    from deepdive.deploy.manifest import read
    from deepdive.deploy.runners import open_runner

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unknown = [f for f in forms if f not in WRITERS]
    if unknown:
        raise DeployError(f"cannot export {', '.join(unknown)}: the forms are {', '.join(WRITERS)}")
    wanted = ["eager"] + [f for f in forms if f != "eager"]
    sample = source.example(2)
    reference = eager_outputs(source, sample)
    manifest = Manifest(name=source.name,
                        inputs=[spec_of(n, t.numpy()) for n, t in zip(source.input_names, sample)],
                        outputs=[spec_of(n, a) for n, a in zip(source.output_names(reference), reference)],
                        source={"script": source.script, "model": source.model_path, "trained": source.trained,
                                "module": source.module})
    try:  # keep what an earlier export measured (e.g. deploy bench's choice) unless this one replaces it
        previous = read(folder)
        if previous.name == manifest.name:
            manifest.forms, manifest.choice = dict(previous.forms), previous.choice
    except DeployError:
        pass
    # example rows for whoever measures or warms the model later (deploy bench, serve's --target-p99)
    rows = source.example(EXAMPLE_ROWS)
    save_atomic(folder / EXAMPLES, lambda tmp: _savez(tmp, {n: t.numpy() for n, t in zip(source.input_names, rows)}))
    manifest.examples = EXAMPLES
    checks = {b: source.example(b) for b in CHECK_BATCHES}
    truth = {b: eager_outputs(source, x) for b, x in checks.items()}
    for index, form in enumerate(wanted):
        if progress:
            progress(index / len(wanted), f"exporting {form}")
        try:
            entry = WRITERS[form](source, folder)
            manifest.forms[form] = entry
            runner = open_runner(folder, manifest, form, threads=1)
            entry["max_abs_diff"] = max(max_abs_diff(truth[b], runner.run([t.numpy() for t in checks[b]]))
                                        for b in CHECK_BATCHES)
            entry["checked_batches"] = list(CHECK_BATCHES)
            if form == "int8":
                entry["top1_agreement"] = top1_agreement(eager_outputs(source, rows),
                                                         runner.run([t.numpy() for t in rows]))
            manifest.failed.pop(form, None)
        except Exception as exc:  # noqa: BLE001 - one form failing must not lose the others
            if form == "eager":  # nothing to serve without it: the whole export fails, in one line
                if isinstance(exc, DeployError):
                    raise
                raise DeployError(f"cannot save the model: {type(exc).__name__}: {_first_line(exc)}"[:300]) from None
            manifest.forms.pop(form, None)
            manifest.failed[form] = failure_reason(exc)
        write(folder, manifest)
    if progress:
        progress(1.0, "exported")
    return manifest
