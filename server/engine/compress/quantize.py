"""Post-training quantization: int8 for CPU deployment, int8/int4 weight-only for GPUs.

One verb, :func:`quantize`, keeps the choice of library and recipe behind it:

- ``int8-dynamic``: ``torch.ao`` dynamic quantization of ``nn.Linear``, ``nn.LSTM`` and ``nn.GRU``
  (int8 weights, activations quantized per batch at run time). Why torch.ao and not torchao on
  CPU: on 2 cores, a 4x1024 MLP at batch 64 took 0.45 ms with torch.ao's dynamic int8, 1.3 ms with
  torchao's ``Int8DynamicActivationInt8WeightConfig`` and 3.4 ms in fp32. torch.ao warns that it is
  deprecated; those warnings are silenced here, and only here, so replacing it touches one function.
- ``int8-static``: static int8 through FX graph mode (``prepare_fx``/``convert_fx``), calibrated on
  the caller's batches. FX fuses conv-bn-relu itself, so BatchNorm folds into the convolutions.
  A model torch.fx cannot trace raises :class:`QuantizeError` naming the module that failed.
- ``int8``: automatic. Static when the model has convolutions and calibration batches are given
  (convolutions gain nothing from dynamic quantization), dynamic otherwise.
- ``int8-weight`` / ``int4-weight``: weight-only quantization of the linear layers through torchao,
  for large models on a CUDA GPU (memory-bound decoding is where weight-only pays). torchao is
  optional and imported only here. The copy is made on the GPU, so it needs room for a second model;
  int4 also casts the model to bfloat16 (the tinygemm kernel's activation dtype), so feed it bf16.

The int8 paths produce CPU models; their kernels dispatch on the process-wide
``torch.backends.quantized.engine``, which :func:`quantize` sets to :func:`backend_for` ``(target)``
and leaves set, because the quantized model needs it at inference. The caller's model is never
modified: every path works on a deep copy.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import warnings
from typing import Any, Iterable, Iterator, Optional

import attrs
import torch
from torch import nn

from deepdive.engine.compress.measure import model_size_bytes  # re-exported
# The quantization modes quantize() accepts (``none`` is the caller's business) and the CPU targets of the
# int8 paths: the lists the command line and the editor show, defined once.
from deepdive.vocabulary import COMPRESS_TARGETS as TARGETS
from deepdive.vocabulary import QUANTIZE_MODES as MODES

__all__ = ["MODES", "TARGETS", "QuantizeError", "QuantizeResult", "backend_for", "model_size_bytes", "quantize",
           "quantize_embeddings"]

_X86_ENGINES = ("x86", "fbgemm", "onednn")  # best first
_DYNAMIC_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.LSTM, nn.GRU)
_CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_INT4_GROUP_SIZE = 128
_INT4_MIN_CAPABILITY = (8, 0)  # torchao's tinygemm int4 kernel needs tensor cores of sm80+

# torch.ao's deprecation notices (one per call), the quantized-dtype notice it triggers, and the
# reduce_range notice its own default qconfigs raise once per observer.
_TORCH_AO_NOISE = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel"),
    (UserWarning, r"Please use quant_min and quant_max to specify the range for observers"),
)


class QuantizeError(ValueError):
    """The model cannot be quantized as asked; the message is one line and says what to change."""


class _NotTraceable(QuantizeError):
    """torch.fx could not trace the model (``int8`` then falls back to dynamic quantization)."""


@attrs.define
class QuantizeResult:
    """What :func:`quantize` made.

    Attributes:
        model (nn.Module): the quantized model, ready for inference (``model(*example_inputs)``).
        method (str): what was done, in a few words.
        engine (str): the quantized engine (``x86``, ``fbgemm``, ``onednn``, ``qnnpack``) or ``torchao``.
        notes (list[str]): what the caller should know (layers left in float, fallbacks taken).
    """

    model: nn.Module
    method: str
    engine: str
    notes: list[str] = attrs.Factory(list)


def backend_for(target: str) -> str:
    """The quantized engine for a CPU ``target``: ``x86`` or ``arm``.

    ``x86`` takes the best engine this torch build has (``x86``, else ``fbgemm``, else ``onednn``);
    ``arm`` takes ``qnnpack`` (XNNPACK is reached through qnnpack's path).

    Raises:
        QuantizeError: an unknown target, or no engine for it in this torch build.
    """
    supported = torch.backends.quantized.supported_engines
    if target == "x86":
        for engine in _X86_ENGINES:
            if engine in supported:
                return engine
        raise QuantizeError(f"this torch build has no x86 quantized engine (it has {', '.join(supported)}); "
                            "install a torch build with FBGEMM or oneDNN")
    if target == "arm":
        if "qnnpack" in supported:
            return "qnnpack"
        raise QuantizeError(f"this torch build has no qnnpack engine for arm (it has {', '.join(supported)}); "
                            "install a torch build with QNNPACK or use target 'x86'")
    raise QuantizeError(f"quantization target must be one of {', '.join(TARGETS)}, got {target!r}")


def quantize(model: nn.Module, mode: str = "int8", *, target: str = "x86",
             calibration: Optional[Iterable[Any]] = None, example_inputs: Optional[tuple] = None,
             device: str = "cpu") -> QuantizeResult:
    """Quantize a copy of ``model`` after training.

    Args:
        model (nn.Module): the trained float model; left unchanged.
        mode (str): one of :data:`MODES` (see the module docstring).
        target (str): the CPU the int8 model will run on, ``x86`` or ``arm``.
        calibration (Iterable): input batches for static int8, each a tensor or a tuple of the
            model's positional inputs; iterated once. A few hundred samples are enough.
        example_inputs (tuple): positional inputs for tracing (static int8); defaults to the first
            calibration batch.
        device (str): where the model runs now; weight-only modes need ``cuda``. The int8 paths
            always produce a CPU model (torch.ao's int8 kernels are CPU kernels).

    Raises:
        QuantizeError: an unknown mode or target, static int8 without calibration batches or on a
            model torch.fx cannot trace, dynamic int8 on a model with nothing it quantizes,
            weight-only modes without a CUDA GPU or without torchao.

    Example::

        result = quantize(model, "int8", calibration=[x[:64] for x in batches])
        logits = result.model(x)
    """
    if mode not in MODES:
        raise QuantizeError(f"quantization mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode in ("int8-weight", "int4-weight"):
        return _weight_only(model, bits=8 if mode == "int8-weight" else 4, device=device)

    engine = backend_for(target)
    notes: list[str] = []
    if not device.startswith("cpu"):
        notes.append(f"torch.ao int8 kernels run on the CPU: the quantized model is on the CPU, not {device}")
    if mode == "int8-dynamic":
        return _dynamic(model, engine, notes, example_inputs)
    if mode == "int8-static":
        return _static(model, engine, calibration, example_inputs, notes)

    # int8: static where it pays (convolutions) and can be calibrated, dynamic otherwise.
    has_conv = any(isinstance(m, _CONV_TYPES) for m in model.modules())
    if has_conv and calibration is not None:
        try:
            return _static(model, engine, calibration, example_inputs, notes)
        except _NotTraceable as exc:
            notes.append(f"static int8 was not possible ({exc}); quantized dynamically instead")
    elif has_conv:
        notes.append("convolutions stay fp32: pass calibration batches to quantize them (static int8)")
    return _dynamic(model, engine, notes, example_inputs)


# --------------------------------------------------------------------------------------------
# torch.ao int8 (CPU)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_ao(engine: str) -> Iterator[None]:
    """Select ``engine`` and silence torch.ao's deprecation notices for the duration."""
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        for category, message in _TORCH_AO_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def _float_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` on the CPU in eval mode (the caller's model keeps its mode and device)."""
    return copy.deepcopy(model).cpu().eval()


def _dynamic(model: nn.Module, engine: str, notes: list[str], example_inputs: Optional[tuple] = None) -> QuantizeResult:
    if not any(isinstance(m, _DYNAMIC_TYPES) for m in model.modules()):
        raise QuantizeError("dynamic int8 quantizes nn.Linear, nn.LSTM and nn.GRU and the model has none; "
                            "for convolutions use int8-static with calibration batches")
    with _torch_ao(engine):
        import torch.ao.nn.quantized as nnq
        import torch.ao.nn.quantized.dynamic as nnqd
        from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig, quantize_dynamic

        spec: dict[type[nn.Module], Any] = {cls: default_dynamic_qconfig for cls in _DYNAMIC_TYPES}
        embeddings = any(type(m) is nn.Embedding for m in model.modules())
        if embeddings:  # int8 rows with a scale each: a text model's largest tensor, 4x smaller
            spec[nn.Embedding] = float_qparams_weight_only_qconfig
        # quantize_dynamic swaps children only: a holder lets a bare nn.Linear/LSTM/GRU be swapped too.
        quantized = quantize_dynamic(nn.Sequential(_float_copy(model)), spec)[0]
        if embeddings and example_inputs is not None:
            try:  # quantized embeddings need contiguous indices: a model that slices its ids may not run
                with torch.inference_mode():
                    quantized(*example_inputs)
            except RuntimeError as exc:
                notes.append(f"embeddings kept in fp32: the int8 embedding failed on the example inputs "
                             f"({str(exc).splitlines()[0][:120]})")
                del spec[nn.Embedding]
                quantized = quantize_dynamic(nn.Sequential(_float_copy(model)), spec)[0]
    counts = {cls.__name__: sum(isinstance(m, cls) for m in quantized.modules())
              for cls in (nnqd.Linear, nnqd.LSTM, nnqd.GRU, nnq.Embedding)}
    done = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    notes.append(f"int8 weights, activations quantized per batch: {done}")
    return QuantizeResult(model=quantized, method=f"torch.ao dynamic int8 (Linear, LSTM, GRU, Embedding), engine {engine}",
                          engine=engine, notes=notes)


def quantize_embeddings(model: nn.Module, *, target: str = "x86", example_inputs: Optional[tuple] = None) -> QuantizeResult:
    """A copy of ``model`` whose ``nn.Embedding`` tables are int8 (a scale and offset per row), the
    rest in float: a text model's largest tensors shrink 4x while its small Linear layers keep the
    fp32 kernels, which at batch 1 can be faster than dynamic int8 (the pipeline measures both).

    Raises:
        QuantizeError: the model has no ``nn.Embedding``, or the int8 tables fail on ``example_inputs``.
    """
    if not any(type(m) is nn.Embedding for m in model.modules()):
        raise QuantizeError("the model has no nn.Embedding to quantize; use --quantize int8-dynamic")
    engine = backend_for(target)
    with _torch_ao(engine):
        import torch.ao.nn.quantized as nnq
        from torch.ao.quantization import float_qparams_weight_only_qconfig, quantize_dynamic

        quantized = quantize_dynamic(nn.Sequential(_float_copy(model)), {nn.Embedding: float_qparams_weight_only_qconfig})[0]
        if example_inputs is not None:
            try:
                with torch.inference_mode():
                    quantized(*example_inputs)
            except RuntimeError as exc:
                raise QuantizeError(f"the int8 embedding failed on the example inputs ({_one_line(exc)}); "
                                    "pass contiguous index tensors") from exc
    n = sum(isinstance(m, nnq.Embedding) for m in quantized.modules())
    return QuantizeResult(model=quantized, method=f"torch.ao int8 embedding tables ({n}), Linear layers fp32, engine {engine}",
                          engine=engine, notes=[f"int8 rows with a scale each in {n} Embedding table(s); the rest fp32"])


def _as_args(batch: Any, index: int) -> tuple:
    if isinstance(batch, torch.Tensor):
        return (batch.cpu(),)
    if isinstance(batch, (tuple, list)) and all(isinstance(x, torch.Tensor) for x in batch):
        return tuple(x.cpu() for x in batch)
    raise QuantizeError(f"calibration batch {index} is a {type(batch).__name__}; "
                        "each batch must be a tensor or a tuple of the model's positional input tensors")


def _static(model: nn.Module, engine: str, calibration: Optional[Iterable[Any]],
            example_inputs: Optional[tuple], notes: list[str]) -> QuantizeResult:
    batches = iter(calibration) if calibration is not None else iter(())
    first = next(batches, None)
    if first is None:
        raise QuantizeError("static int8 needs calibration batches (at least one); pass calibration, "
                            "or use int8-dynamic")
    first_args = _as_args(first, 0)
    if example_inputs is None:
        example_inputs = first_args
    example_inputs = tuple(x.cpu() if isinstance(x, torch.Tensor) else x for x in example_inputs)

    float_model = _float_copy(model)
    n_bn = sum(isinstance(m, _BN_TYPES) for m in float_model.modules())
    with _torch_ao(engine):
        import torch.ao.nn.quantized as nnq
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        try:
            prepared = prepare_fx(float_model, get_default_qconfig_mapping(engine), example_inputs)
        except Exception as exc:
            where = _failing_module(exc, float_model)
            if where is None and not isinstance(exc, torch.fx.proxy.TraceError):
                raise  # not a tracing failure: a bug to see whole
            raise _NotTraceable(f"torch.fx cannot trace {where or 'the model'}: {_one_line(exc)}; "
                                "try int8-dynamic") from exc
        n_batches = n_samples = 0
        with torch.no_grad():
            for index, args in enumerate(_chain_args(first_args, batches)):
                try:
                    prepared(*args)
                except Exception as exc:
                    raise QuantizeError(f"calibration batch {index} failed in the model: {_one_line(exc)}; "
                                        "each batch must be the model's positional inputs") from exc
                n_batches += 1
                n_samples += int(args[0].shape[0]) if args and args[0].dim() else 1
        quantized = convert_fx(prepared)

    # The fused ConvReLU/LinearReLU modules subclass these.
    n_conv = sum(isinstance(m, (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d)) for m in quantized.modules())
    n_linear = sum(isinstance(m, nnq.Linear) for m in quantized.modules())
    notes.append(f"calibrated on {n_batches} batch(es), {n_samples} sample(s)")
    notes.append(f"int8: {n_conv} conv and {n_linear} linear layer(s)"
                 + (f"; {n_bn} BatchNorm folded into the convolutions" if n_bn else ""))
    if n_conv + n_linear == 0:
        notes.append("no layer was quantized: the model has no Conv or Linear that FX's default mapping quantizes")
    return QuantizeResult(model=quantized, method=f"torch.ao static int8 (FX, conv-bn-relu fused), engine {engine}",
                          engine=engine, notes=notes)


def _chain_args(first: tuple, rest: Iterator[Any]) -> Iterator[tuple]:
    yield first
    for index, batch in enumerate(rest, start=1):
        yield _as_args(batch, index)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def _failing_module(exc: BaseException, model: nn.Module) -> Optional[str]:
    """The qualified name and class of the innermost module of ``model`` whose code was running
    when ``exc`` was raised (read from the traceback's frames); None when none was."""
    names = {id(m): name for name, m in model.named_modules()}
    found: Optional[tuple[str, nn.Module]] = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            found = (names[id(owner)], owner)
        tb = tb.tb_next
    if found is None:
        return None
    name, module = found
    return f"module '{name}' ({type(module).__name__})" if name else f"the model ({type(module).__name__})"


# --------------------------------------------------------------------------------------------
# torchao weight-only (CUDA)
# --------------------------------------------------------------------------------------------


def _import_torchao() -> Any:
    """``torchao.quantization``, imported quietly (it logs about optional kernels it cannot load)."""
    if "torchao.quantization" in sys.modules:
        return sys.modules["torchao.quantization"]
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        import torchao.quantization as torchao_quantization
    except ImportError as exc:
        raise QuantizeError(f"weight-only quantization needs torchao ({_one_line(exc)}); pip install torchao") from exc
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return torchao_quantization


def _weight_only(model: nn.Module, bits: int, device: str) -> QuantizeResult:
    mode = f"int{bits}-weight"
    if not device.startswith("cuda"):
        raise QuantizeError("weight-only int4/int8 needs a CUDA GPU (torchao); on CPU use --quantize int8")
    if not torch.cuda.is_available():
        raise QuantizeError(f"{mode} was asked for on {device} but torch sees no CUDA GPU; "
                            "check CUDA_VISIBLE_DEVICES and the torch build, or use --quantize int8")
    target = torch.device(device)
    if bits == 4:
        capability = torch.cuda.get_device_capability(target)
        if capability < _INT4_MIN_CAPABILITY:
            raise QuantizeError(f"int4-weight needs a GPU of compute capability 8.0 or newer (this one is "
                                f"{capability[0]}.{capability[1]}); use --quantize int8-weight")
    return _torchao_weight_only(model, bits, target)


def _torchao_weight_only(model: nn.Module, bits: int, target: torch.device) -> QuantizeResult:
    mode = f"int{bits}-weight"
    tq = _import_torchao()
    quantized = copy.deepcopy(model).eval()
    notes: list[str] = []
    if bits == 4:
        # tinygemm's int4 kernel takes bf16 activations and groups of 128 input features.
        quantized = quantized.to(target, dtype=torch.bfloat16)
        notes.append("the model runs in bfloat16 (torchao's int4 kernel takes bf16 activations)")
        config = tq.Int4WeightOnlyConfig(group_size=_INT4_GROUP_SIZE, int4_packing_format="tile_packed_to_4d")

        def eligible(m: nn.Module, _name: str) -> bool:
            return isinstance(m, nn.Linear) and m.in_features % _INT4_GROUP_SIZE == 0
    else:
        quantized = quantized.to(target)
        config = tq.Int8WeightOnlyConfig()

        def eligible(m: nn.Module, _name: str) -> bool:
            return isinstance(m, nn.Linear)

    linears = [(name, m) for name, m in quantized.named_modules() if isinstance(m, nn.Linear)]
    chosen = [name for name, m in linears if eligible(m, name)]
    if not chosen:
        why = f" with in_features a multiple of {_INT4_GROUP_SIZE}" if bits == 4 and linears else ""
        raise QuantizeError(f"{mode} quantizes nn.Linear weights and the model has no nn.Linear{why}; "
                            "use --quantize int8 for other layers")
    tq.quantize_(quantized, config, filter_fn=eligible)
    notes.append(f"int{bits} weights in {len(chosen)} of {len(linears)} Linear layer(s); activations stay float")
    if len(chosen) < len(linears):
        skipped = [name for name, m in linears if name not in chosen]
        notes.append(f"left in float (in_features not a multiple of {_INT4_GROUP_SIZE}): {', '.join(skipped[:5])}"
                     + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""))
    notes.append("torch.compile the model for torchao's fused kernels")
    return QuantizeResult(model=quantized, method=f"torchao int{bits} weight-only (Linear) on {target}",
                          engine="torchao", notes=notes)
