"""``deploy triton``: a Triton model repository from an export folder, so the model runs on Triton or KServe.

:func:`plan_repository` reads ``deploy.json`` and the model and checks every setting (nothing is written on
bad input); :func:`write_plan` (or :func:`write_repository`, both steps) then lays out, under ``REPO``::

    REPO/<name>/config.pbtxt        platform, max_batch_size, inputs/outputs, dynamic_batching, instance_group
    REPO/<name>/1/model.onnx        the ONNX form (platform onnxruntime_onnx), or
    REPO/<name>/1/model.pt          the TorchScript form (backend pytorch, platform pytorch_libtorch)

Names, Triton data types (``TYPE_FP32``…) and dims come from ``deploy.json``
(:mod:`deepdive.deploy.manifest`); the batch dimension is left out of ``dims`` when
``max_batch_size > 0``, as Triton wants. For ONNX the tensor names are the graph's own (Triton matches
the config against the model); TorchScript models have no names, so they follow Triton's convention
``input__0``… ``output__0``…, positionally. Every file is written atomically (temporary file, fsync,
rename), the model before the config, so a Triton polling the repository never sees a config without
its model.

:func:`check_repository` then loads the written model the way Triton's backend does (onnxruntime, or
``torch.jit.load``) and runs it at batch size 1 and at ``max_batch_size`` with inputs shaped from the
config, checking that the outputs have the config's names, types and dims: the repository is known to
be consistent before it is copied to a cluster.

The text format is written here (a few lines, no dependency); the tests parse it with Triton's own
``model_config_pb2`` shipped in ``tritonclient``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import attrs
import numpy as np

from deepdive.deploy.defaults import TRITON_FORMS, TRITON_KINDS
from deepdive.deploy.errors import DeployError
from deepdive.deploy.manifest import DATATYPES, Manifest, TensorSpec, read
from deepdive.fsutil import atomic_write_text


TRITON_TYPES = {name: f"TYPE_{name}" for name in DATATYPES}
"""Open Inference Protocol datatype -> Triton's model-config ``DataType`` (``FP32`` -> ``TYPE_FP32``)."""

MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
"""Triton's default model file name for each form (``default_model_filename`` left unset)."""

KINDS = TRITON_KINDS
DEFAULT_PREFERRED = (8, 16, 32)
VERSION = "1"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

Progress = Callable[[float, str], None]


@attrs.define
class TritonTensor:
    name: str
    data_type: str
    """Triton's ``TYPE_…`` name."""
    dims: list[int]
    """Without the batch dimension when the model batches (``max_batch_size > 0``); -1 for a variable one."""
    reshape: Optional[list[int]] = None
    """The model's own shape when it differs from ``dims``: a per-row scalar is ``dims: [1]``, ``reshape: []``."""


@attrs.define
class TritonConfig:
    """What ``config.pbtxt`` says, as data (written by :func:`render`, checked by :func:`check_repository`)."""

    name: str
    form: str
    max_batch_size: int
    inputs: list[TritonTensor]
    outputs: list[TritonTensor]
    preferred_batch_sizes: list[int] = attrs.field(factory=list)
    max_queue_delay_us: int = 0
    max_queue_size: int = 0
    """0: Triton's default (unbounded); else requests beyond it are rejected, as ``deploy serve``'s bounded queue."""
    instances: int = 1
    kind: str = "cpu"

    @property
    def platform(self) -> str:
        return "onnxruntime_onnx" if self.form == "onnx" else "pytorch_libtorch"

    @property
    def backend(self) -> str:
        return "onnxruntime" if self.form == "onnx" else "pytorch"

    @property
    def model_file(self) -> str:
        return MODEL_FILES[self.form]


@attrs.define
class Repository:
    """A written model: its config, the folder, and what :func:`check_repository` verified (if run)."""

    config: TritonConfig
    model_dir: Path
    config_path: Path
    model_path: Path
    checked: list[str] = attrs.field(factory=list)
    """One line per check made, e.g. ``"batch 32: output__0 [32, 10] TYPE_FP32"``."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor_block(field: str, tensors: Sequence[TritonTensor]) -> list[str]:
    lines = [f"{field} ["]
    for i, t in enumerate(tensors):
        lines += ["  {", f"    name: {_quote(t.name)}", f"    data_type: {t.data_type}",
                  f"    dims: [ {', '.join(str(d) for d in t.dims)} ]"]
        if t.reshape is not None:
            lines.append(f"    reshape: {{ shape: [ {', '.join(str(d) for d in t.reshape)} ] }}")
        lines.append("  }" + ("," if i < len(tensors) - 1 else ""))
    return lines + ["]"]


def render(config: TritonConfig) -> str:
    """``config.pbtxt``: Triton's model configuration in protobuf text format."""
    lines = [f"# written by `deepdive deploy triton` from deploy.json ({config.form} form)",
             f"name: {_quote(config.name)}", f"platform: {_quote(config.platform)}",
             f"backend: {_quote(config.backend)}", f"max_batch_size: {config.max_batch_size}"]
    lines += _tensor_block("input", config.inputs)
    lines += _tensor_block("output", config.outputs)
    if config.max_batch_size > 0:
        lines.append("dynamic_batching {")
        for size in config.preferred_batch_sizes:
            lines.append(f"  preferred_batch_size: {size}")
        lines.append(f"  max_queue_delay_microseconds: {config.max_queue_delay_us}")
        if config.max_queue_size > 0:
            lines += ["  default_queue_policy {", f"    max_queue_size: {config.max_queue_size}", "  }"]
        lines.append("}")
    lines += ["instance_group [", "  {", f"    count: {config.instances}",
              f"    kind: {'KIND_GPU' if config.kind == 'gpu' else 'KIND_CPU'}", "  }", "]"]
    return "\n".join(lines) + "\n"


def _copy_atomic(src: Path, dst: Path) -> None:
    """``src`` copied to ``dst`` through a temporary file beside it, fsynced, then renamed over it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_name(what: str, name: str) -> str:
    if not _NAME.match(name):
        raise DeployError(f"{what} {name!r} cannot name a Triton model or tensor: use letters, digits, '_', '.' or '-'"
                          + (" (--name NAME)" if what == "the model name" else " (export the model again)"))
    return name


def _datatype(spec: TensorSpec) -> str:
    if spec.datatype not in TRITON_TYPES:
        raise DeployError(f"{spec.name} has datatype {spec.datatype}, which Triton's config cannot name: "
                          f"the model's tensors must be one of {', '.join(TRITON_TYPES)}")
    return TRITON_TYPES[spec.datatype]


def _tensor(name: str, spec: TensorSpec, batching: bool) -> TritonTensor:
    dims = _dims(spec, batching)
    if not dims:  # Triton wants at least one dim: a per-row scalar is [1] reshaped to the model's []
        return TritonTensor(name, _datatype(spec), [1], reshape=[])
    return TritonTensor(name, _datatype(spec), dims)


def _dims(spec: TensorSpec, batching: bool) -> list[int]:
    if not batching:
        return list(spec.shape)
    if not spec.shape or spec.shape[0] != -1:
        raise DeployError(f"{spec.name} has shape {spec.shape} with no variable batch dimension first: use "
                          "--max-batch 0 (no batching), or export the model again")
    return list(spec.shape[1:])


_ONNX_TYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "FP64"}
"""``onnx.TensorProto`` element types -> OIP datatypes (the ones :data:`DATATYPES` has)."""


def _onnx_io(path: Path) -> tuple[list[tuple[str, str, list[Any]]], list[tuple[str, str, list[Any]]], list[str]]:
    """The ONNX graph's inputs and outputs (name, OIP datatype, dims: int or a symbol) and its external data files."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: one line
        raise DeployError(f"{path} is not a readable ONNX model ({type(exc).__name__}): export the model again") from None
    initializers = {t.name for t in model.graph.initializer}

    def describe(values: Any) -> list[tuple[str, str, list[Any]]]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            tensor = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
            out.append((v.name, _ONNX_TYPES.get(tensor.elem_type, f"onnx type {tensor.elem_type}"), dims))
        return out

    external = sorted({entry.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                       for entry in t.external_data if entry.key == "location"})
    return describe(model.graph.input), describe(model.graph.output), external


def _onnx_tensors(path: Path, specs: list[TensorSpec], graph: list[tuple[str, str, list[Any]]], what: str,
                  batching: bool) -> list[TritonTensor]:
    """The config's tensors for an ONNX model: the graph's names, checked against deploy.json's types and ranks."""
    if len(graph) != len(specs):
        raise DeployError(f"{path} has {len(graph)} {what}s where deploy.json lists {len(specs)}: export the model again")
    tensors = []
    for spec, (name, datatype, dims) in zip(specs, graph):
        if datatype != spec.datatype or len(dims) != len(spec.shape):
            raise DeployError(f"{path}'s {what} {name} is {datatype} of rank {len(dims)} where deploy.json says "
                              f"{spec.datatype} of rank {len(spec.shape)}: export the model again")
        if batching and isinstance(dims[0], int) and dims[0] > 0:
            raise DeployError(f"{path}'s {what} {name} has a fixed batch dimension of {dims[0]}: Triton's batcher needs "
                              "a dynamic one (export the model again, or --max-batch 0)")
        shape = list(spec.shape)
        for i, (mine, theirs) in enumerate(zip(spec.shape, dims)):
            if isinstance(theirs, int) and theirs > 0:  # the graph fixed it: Triton checks the config against it
                if mine not in (-1, theirs):
                    raise DeployError(f"{path}'s {what} {name} has dimension {i} = {theirs} where deploy.json says "
                                      f"{mine}: export the model again")
                shape[i] = theirs
        tensors.append(_tensor(_check_name(f"the {what}", name), TensorSpec(spec.name, spec.datatype, shape), batching))
    return tensors


def _parse_preferred(preferred: Sequence[int], max_batch: int) -> list[int]:
    sizes = sorted(set(int(s) for s in preferred))
    bad = [s for s in sizes if s < 1 or s > max_batch]
    if bad:
        raise DeployError(f"--preferred {','.join(map(str, bad))}: each preferred batch size must be between 1 and "
                          f"--max-batch {max_batch}")
    return sizes


def default_form(manifest: Manifest) -> str:
    """ONNX if the folder has it, else TorchScript (:class:`DeployError` when it has neither)."""
    for form in TRITON_FORMS:
        if form in manifest.forms:
            return form
    failed = "; ".join(f"{f}: {manifest.failed[f]}" for f in TRITON_FORMS if f in manifest.failed)
    raise DeployError("the export folder has neither an ONNX nor a TorchScript form, which Triton needs"
                      + (f" ({failed})" if failed else "") + ": export one with `deepdive deploy export SCRIPT "
                      "--model MODEL --out FOLDER --forms onnx,torchscript`")


@attrs.define
class Plan:
    """What :func:`write_repository` will write, every input already checked (nothing written yet)."""

    config: TritonConfig
    source: Path
    """The export folder's model file of the form."""
    external: list[str]
    """ONNX external data files beside ``source`` (relative names), copied beside the model."""
    model_dir: Path


def plan_repository(folder: Path | str, repo: Path | str, *, form: Optional[str] = None, name: Optional[str] = None,
                    max_batch: int = 32, preferred: Optional[Sequence[int]] = None, max_queue_delay_us: int = 2000,
                    max_queue_size: int = 0, instances: int = 1, kind: str = "cpu") -> Plan:
    """Read ``deploy.json`` and the model's own inputs and outputs; check every setting (DeployError on bad input).

    ``preferred`` None: those of :data:`DEFAULT_PREFERRED` up to ``max_batch``; sizes given above it are refused.
    """
    folder = Path(folder)
    manifest = read(folder)
    form = form or default_form(manifest)
    if form not in TRITON_FORMS:
        raise DeployError(f"--form {form}: Triton runs {' or '.join(TRITON_FORMS)}")
    if kind not in KINDS:
        raise DeployError(f"--kind {kind}: one of {', '.join(KINDS)}")
    if max_batch < 0:
        raise DeployError(f"--max-batch {max_batch}: 0 (no batching) or more")
    if instances < 1:
        raise DeployError(f"--instances {instances}: at least 1")
    if max_queue_delay_us < 0 or max_queue_size < 0:
        raise DeployError("--max-queue-delay-us and --max-queue-size are 0 or more")
    batching = max_batch > 0
    if preferred is None:
        preferred = [size for size in DEFAULT_PREFERRED if size <= max_batch]
    sizes = _parse_preferred(preferred, max_batch) if batching else []
    name = _check_name("the model name", name or manifest.name)
    source = manifest.form_path(folder, form)
    if not source.is_file():
        raise DeployError(f"{source} is missing: export the model again")
    if form == "onnx":
        graph_in, graph_out, external = _onnx_io(source)
        inputs = _onnx_tensors(source, manifest.inputs, graph_in, "input", batching)
        outputs = _onnx_tensors(source, manifest.outputs, graph_out, "output", batching)
        missing = [data for data in external if not (source.parent / data).is_file()]
        if missing:
            raise DeployError(f"{source} refers to external data {', '.join(missing)} that is missing: export the model again")
    else:
        external = []
        inputs = [_tensor(f"input__{i}", s, batching) for i, s in enumerate(manifest.inputs)]
        outputs = [_tensor(f"output__{i}", s, batching) for i, s in enumerate(manifest.outputs)]
    config = TritonConfig(name=name, form=form, max_batch_size=max_batch, inputs=inputs, outputs=outputs,
                          preferred_batch_sizes=sizes, max_queue_delay_us=max_queue_delay_us,
                          max_queue_size=max_queue_size if batching else 0, instances=instances, kind=kind)
    model_dir = Path(repo) / name
    if model_dir.exists() and not model_dir.is_dir():
        raise DeployError(f"{model_dir} is a file: --repo names the folder that holds one folder per model")
    return Plan(config=config, source=source, external=external, model_dir=model_dir)


def write_plan(plan: Plan, progress: Optional[Progress] = None) -> Repository:
    """Copy the model (and its external data) into ``<name>/1/``, then write ``config.pbtxt``, each atomically."""
    config, source = plan.config, plan.source
    version_dir = plan.model_dir / VERSION
    if progress:
        progress(0.1, f"copying {source.name} to {version_dir / config.model_file}")
    for data in plan.external:  # an ONNX model over 2 GB keeps its weights in files beside it, by relative name
        _copy_atomic(source.parent / data, version_dir / data)
    model_path = version_dir / config.model_file
    _copy_atomic(source, model_path)
    for other in MODEL_FILES.values():  # a model written earlier in the other form would confuse a reader
        if other != config.model_file:
            (version_dir / other).unlink(missing_ok=True)
    config_path = plan.model_dir / "config.pbtxt"
    atomic_write_text(config_path, render(config))
    if progress:
        progress(0.4, f"wrote {config_path}")
    return Repository(config=config, model_dir=plan.model_dir, config_path=config_path, model_path=model_path)


def write_repository(folder: Path | str, repo: Path | str, *, progress: Optional[Progress] = None,
                     **settings: Any) -> Repository:
    """Write ``repo/<name>/config.pbtxt`` and ``repo/<name>/1/<model file>`` from the export folder ``folder``.

    ``settings`` are :func:`plan_repository`'s: ``form``, ``name``, ``max_batch``, ``preferred``,
    ``max_queue_delay_us``, ``max_queue_size``, ``instances``, ``kind``.
    """
    return write_plan(plan_repository(folder, repo, **settings), progress)


def _inputs_for(config: TritonConfig, batch: int, examples: Optional[dict[str, np.ndarray]],
                manifest: Manifest) -> list[np.ndarray]:
    """One array per config input at ``batch`` rows: the export's example rows (repeated) where they fit, else zeros."""
    arrays = []
    for tensor, spec in zip(config.inputs, manifest.inputs):
        dtype = np.dtype(DATATYPES[spec.datatype])
        rows = examples.get(spec.name) if examples else None
        if config.max_batch_size > 0:
            if rows is not None and len(rows):
                arrays.append(np.ascontiguousarray(np.resize(rows, (batch, *rows.shape[1:])).astype(dtype)))
                continue
            own = tensor.reshape if tensor.reshape is not None else tensor.dims
            shape = [batch, *[d if d > 0 else 1 for d in own]]
        else:  # no batching: the config's dims are the whole shape
            shape = [d if d > 0 else (batch if i == 0 else 1) for i, d in enumerate(tensor.dims)]
            if rows is not None and len(rows) and list(rows.shape[1:]) == shape[1:]:
                arrays.append(np.ascontiguousarray(np.resize(rows, shape).astype(dtype)))
                continue
        arrays.append(np.zeros(shape, dtype=dtype))
    return arrays


def _run_model(config: TritonConfig, model_path: Path) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """The written model loaded as Triton's backend loads it: an onnxruntime session, or ``torch.jit.load``."""
    if config.form == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        names = [t.name for t in config.outputs]

        def run_onnx(arrays: list[np.ndarray]) -> list[np.ndarray]:
            return list(session.run(names, {t.name: a for t, a in zip(config.inputs, arrays)}))
        return run_onnx
    import torch

    module = torch.jit.load(str(model_path), map_location="cpu").eval()

    def run_torchscript(arrays: list[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            result = module(*[torch.from_numpy(a) for a in arrays])
        items = result if isinstance(result, (tuple, list)) else (result,)
        return [item.detach().cpu().numpy() for item in items]
    return run_torchscript


def check_repository(repository: Repository, folder: Path | str, progress: Optional[Progress] = None) -> list[str]:
    """Run the written model at batch 1 and ``max_batch_size``; its outputs must match the config (else DeployError)."""
    folder = Path(folder)
    config = repository.config
    manifest = read(folder)
    try:
        examples: Optional[dict[str, np.ndarray]] = manifest.example_rows(folder)
    except DeployError:
        examples = None  # an export without example rows: zeros of the declared shapes still test the config
    try:
        run = _run_model(config, repository.model_path)
    except Exception as exc:  # noqa: BLE001 - the backend's own loader refused the file
        raise DeployError(f"{repository.model_path} does not load ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"[:300]
                          + ": export the model again") from None
    batches = [1] if config.max_batch_size <= 1 else [1, config.max_batch_size]
    checked = []
    for index, batch in enumerate(batches):
        if progress:
            progress(0.4 + 0.6 * index / len(batches), f"running the {config.form} model at batch {batch}")
        try:
            outputs = run(_inputs_for(config, batch, examples, manifest))
        except Exception as exc:  # noqa: BLE001 - the model refused inputs shaped as the config declares
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DeployError(f"the {config.form} model fails on a batch of {batch} shaped as config.pbtxt declares "
                              f"({type(exc).__name__}: {first})"[:300] + ": export the model again") from None
        if len(outputs) != len(config.outputs):
            raise DeployError(f"the model gives {len(outputs)} outputs where config.pbtxt declares "
                              f"{len(config.outputs)}: export the model again")
        for tensor, array, spec in zip(config.outputs, outputs, manifest.outputs):
            own = tensor.reshape if tensor.reshape is not None else tensor.dims
            expected = [batch, *own] if config.max_batch_size > 0 else list(own)
            shape_ok = len(array.shape) == len(expected) and all(e in (-1, a) for e, a in zip(expected, array.shape))
            if not shape_ok or array.dtype != np.dtype(DATATYPES[spec.datatype]):
                raise DeployError(f"at batch {batch} the model's {tensor.name} is {array.dtype} {list(array.shape)} "
                                  f"where config.pbtxt declares {tensor.data_type} {expected}: export the model again")
            checked.append(f"batch {batch}: {tensor.name} {list(array.shape)} {tensor.data_type}")
    repository.checked = checked
    if progress:
        progress(1.0, "checked")
    return checked
