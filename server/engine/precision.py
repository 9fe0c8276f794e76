"""Dynamic mixed precision: which dtype, loss scaling, fp32 islands and adaptive promotion.

- :func:`resolve_precision` turns ``"auto"`` into bf16, fp16 or fp32 for the device at hand, with the
  reason: bf16 on GPUs of compute capability >= 8.0, fp16 with dynamic loss scaling on older GPUs,
  bf16 on CPUs with native bf16 (AVX512-BF16 / AMX), fp32 otherwise.
- :class:`LossScaler` is ``torch.amp.GradScaler`` plus counting (skipped steps, scale changes) and an
  optional DeepSpeed-style hysteresis: the scale backs off only after ``hysteresis`` consecutive
  overflows (every overflowing step is still skipped).
- :func:`keep_in_fp32` runs chosen module classes (normalisation layers by default) in fp32 under
  autocast; weights stay fp32 everywhere (autocast casts per op), so master weights are fp32.
- :class:`OverflowGuard` samples forward hooks every N steps (and right after an overflow): the first
  module whose inputs are finite but whose output is not is switched to fp32 for the rest of the run.
- :func:`check_backward` catches a plain ``loss.backward()`` that bypassed ``run.backward`` (and so the
  scaler) at the optimizer step it feeds: under fp16 loss scaling that step would divide unscaled
  gradients by the scale and miss overflows, silently; it is refused on the first step, in one line.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterable, Iterator, Optional

import attrs
import torch
from torch import nn

from deepdive.cpuinfo import cpu_has_native_bf16
from deepdive.vocabulary import TRAIN_PRECISIONS as PRECISIONS

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Module classes run in fp32 by default: normalisation statistics lose too much in 16 bits.
DEFAULT_FP32_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


@attrs.define
class PrecisionPlan:
    """The precision a run uses.

    Attributes:
        mode (str): ``fp32``, ``bf16`` or ``fp16``.
        device_type (str): ``cpu`` or ``cuda``.
        reason (str): why this mode, in one sentence.
        requested (str): what the user asked for.
    """

    mode: str
    device_type: str
    reason: str
    requested: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.mode]

    @property
    def autocast_enabled(self) -> bool:
        return self.mode != "fp32"

    @property
    def needs_loss_scaling(self) -> bool:
        return self.mode == "fp16"


def resolve_precision(requested: str, device: torch.device) -> PrecisionPlan:
    """Choose the precision for ``device``.

    Raises:
        ValueError: an unknown name, or bf16 asked for on a GPU without native bf16.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        cc = f"{major}.{minor}"
        if requested == "auto":
            if (major, minor) >= (8, 0):
                return PrecisionPlan("bf16", "cuda", f"GPU compute capability {cc} >= 8.0: bf16 autocast", requested)
            return PrecisionPlan(
                "fp16", "cuda", f"GPU compute capability {cc} < 8.0 has no fast bf16: fp16 with dynamic loss scaling",
                requested,
            )
        if requested == "bf16" and (major, minor) < (8, 0):
            raise ValueError(f"bf16 needs compute capability >= 8.0 (this GPU has {cc}): use precision='fp16'")
        return PrecisionPlan(requested, "cuda", f"asked for {requested}", requested)
    if device.type != "cpu":
        raise ValueError(f"unsupported device type {device.type!r}: use a CPU or a CUDA device")
    if requested == "auto":
        if cpu_has_native_bf16():
            return PrecisionPlan("bf16", "cpu", "CPU has native bf16 (AVX512-BF16/AMX): bf16 autocast", requested)
        return PrecisionPlan("fp32", "cpu", "CPU has no native bf16: fp32", requested)
    return PrecisionPlan(requested, "cpu", f"asked for {requested}", requested)


def autocast(plan: PrecisionPlan) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``plan`` (a no-op context for fp32)."""
    return torch.autocast(plan.device_type, dtype=plan.dtype, enabled=plan.autocast_enabled)


# --------------------------------------------------------------------------------------------
# fp32 islands
# --------------------------------------------------------------------------------------------

_FP32_MARK = "_deepdive_fp32"


def _to_fp32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_fp32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_fp32(v) for k, v in value.items()}
    return value


def run_in_fp32(module: nn.Module, device_type: str) -> bool:
    """Make ``module`` compute in fp32 under autocast (inputs cast up); False if it already does."""
    if getattr(module, _FP32_MARK, False):
        return False
    forward = module.forward

    @functools.wraps(forward)
    def fp32_forward(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, enabled=False):
            return forward(*_to_fp32(args), **_to_fp32(kwargs))

    module.forward = fp32_forward  # type: ignore[method-assign]
    setattr(module, _FP32_MARK, True)
    return True


def keep_in_fp32(model: nn.Module, classes: Iterable[type[nn.Module]], device_type: str) -> list[str]:
    """Run every submodule of the given classes in fp32; returns their names."""
    classes = tuple(classes)
    names = []
    for name, module in model.named_modules():
        if classes and isinstance(module, classes) and run_in_fp32(module, device_type):
            names.append(name or type(module).__name__)
    return names


# --------------------------------------------------------------------------------------------
# Loss scaling
# --------------------------------------------------------------------------------------------


class LossScaler:
    """Dynamic loss scaling on ``torch.amp.GradScaler``, with counters and optional hysteresis.

    Args:
        device_type (str): ``cpu`` or ``cuda``.
        enabled (bool): off for fp32 and bf16 (their range needs no scaling).
        init_scale (float): the first scale.
        growth_interval (int): overflow-free steps before the scale doubles.
        hysteresis (int): consecutive overflows needed before the scale backs off (1: torch's
            behaviour, back off at every overflow; DeepSpeed uses 2).
    """

    def __init__(self, device_type: str, enabled: bool, *, init_scale: float = 2.0**16,
                 growth_interval: int = 2000, hysteresis: int = 1):
        if hysteresis < 1:
            raise ValueError(f"hysteresis must be >= 1, got {hysteresis}")
        self.enabled = enabled
        self.scaler = torch.amp.GradScaler(device_type, init_scale=init_scale, growth_interval=growth_interval,
                                           enabled=enabled)
        self.hysteresis = hysteresis
        self.skipped_steps = 0
        self.scale_changes = 0
        self._consecutive_overflows = 0
        self.backwards = 0  # losses that went through scale_loss (run.backward), in all
        self._stepped_at: dict[int, int] = {}  # id(optimizer) -> ``backwards`` at its last step (check_backward)
        self._warned = False

    @property
    def scale(self) -> Optional[float]:
        return self.scaler.get_scale() if self.enabled else None

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        self.backwards += 1
        return self.scaler.scale(loss) if self.enabled else loss

    def scaled_since_step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Whether a loss went through :meth:`scale_loss` since ``optimizer`` last stepped (several
        optimizers may step on one backward)."""
        return self.backwards > self._stepped_at.get(id(optimizer), 0)

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        if self.enabled:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Optimizer step (skipped on overflow) and scale update; returns True if the step was skipped."""
        self._stepped_at[id(optimizer)] = self.backwards
        if not self.enabled:
            optimizer.step()
            return False
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        after = self.scaler.get_scale()
        overflow = after < before
        if overflow:
            self.skipped_steps += 1
            self._consecutive_overflows += 1
            if self._consecutive_overflows < self.hysteresis:
                self.scaler.update(before)  # hysteresis: keep the scale this time
                after = before
            else:
                self._consecutive_overflows = 0
        else:
            self._consecutive_overflows = 0
        if after != before:
            self.scale_changes += 1
        return overflow

    def warn_once(self, message: str) -> Optional[str]:
        """``message`` the first time it is asked for, None after (one warning per run, not one per step)."""
        if self._warned:
            return None
        self._warned = True
        return message

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict(), "skipped_steps": self.skipped_steps,
                "scale_changes": self.scale_changes, "consecutive_overflows": self._consecutive_overflows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scaler.load_state_dict(state["scaler"])
        self.skipped_steps = state["skipped_steps"]
        self.scale_changes = state["scale_changes"]
        self._consecutive_overflows = state["consecutive_overflows"]


# --------------------------------------------------------------------------------------------
# The backward guard
# --------------------------------------------------------------------------------------------

UNSCALED_BACKWARD = (
    "loss.backward() was called instead of run.backward(loss) under fp16 loss scaling: the gradients were not "
    "scaled, so this step would divide them by the loss scale ({scale:g}) and miss overflows; write "
    "run.backward(loss)"
)
UNMEASURED_BACKWARD = (
    "loss.backward() was called instead of run.backward(loss) in a DDP run: the engine closes each step's "
    "communication figures (and grad_compression='auto' decides from them) in run.backward; write "
    "run.backward(loss)"
)
PLAIN_BACKWARD = (
    "loss.backward() was called instead of run.backward(loss): the loss is not recorded for telemetry or the "
    "summary, and overflow sampling misses the step; write run.backward(loss)"
)
NO_GRADIENTS = "run.step(optimizer) found no gradients: call run.backward(loss) before run.step(optimizer)"


def check_backward(scaler: LossScaler, optimizer: torch.optim.Optimizer, *, measures_comm: bool) -> Optional[str]:
    """Whether the loss of this optimizer step went through ``run.backward`` (the scaler); call it first in the step.

    Costs one dictionary look-up when it did. When it did not (a plain ``loss.backward()``, or no
    backward at all), the step is refused where going on would be wrong in silence, and warned about
    once elsewhere.

    Args:
        scaler (LossScaler): the run's scaler; ``run.backward`` counts each loss in :meth:`LossScaler.scale_loss`.
        optimizer (torch.optim.Optimizer): the optimizer about to step.
        measures_comm (bool): the model is DDP-wrapped with the engine's communication hook, whose
            per-step figures ``run.backward`` opens and closes.

    Returns:
        str | None: a warning to show once (fp32/bf16 in one process), else None.

    Raises:
        RuntimeError: in one line, under fp16 loss scaling (unscaled gradients; or no gradients, where
            ``torch.amp.GradScaler`` would fail with an assertion) and under DDP (figures left open).
    """
    if scaler.scaled_since_step(optimizer):
        return None
    if not any(p.grad is not None for group in optimizer.param_groups for p in group["params"]):
        if scaler.enabled:
            raise RuntimeError(NO_GRADIENTS)
        return scaler.warn_once(NO_GRADIENTS)
    if scaler.enabled:
        raise RuntimeError(UNSCALED_BACKWARD.format(scale=scaler.scale))
    if measures_comm:
        raise RuntimeError(UNMEASURED_BACKWARD)
    return scaler.warn_once(PLAIN_BACKWARD)


# --------------------------------------------------------------------------------------------
# Adaptive promotion
# --------------------------------------------------------------------------------------------


def _finite(value: Any) -> Optional[torch.Tensor]:
    """A 0-d bool tensor: every floating tensor in ``value`` is finite (None: no floating tensor)."""
    flags = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.is_floating_point() and item.numel():
                flags.append(torch.isfinite(item).all())
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    if not flags:
        return None
    return torch.stack(flags).all() if len(flags) > 1 else flags[0]


@attrs.define
class Promotion:
    module: str
    module_type: str
    step: int


class OverflowGuard:
    """Finds the module whose low-precision output overflows and switches it to fp32.

    Forward hooks on every leaf module are attached only on sampled steps (every ``every`` steps
    and the step after an overflow), so the steady-state cost is nil. The finiteness flags of a
    sampled step are read with one synchronisation, after the forward pass.

    Args:
        model (nn.Module): the model (before DDP wrapping, or the wrapped one's ``.module``).
        device_type (str): autocast device type.
        every (int): sampling period in steps (0 disables sampling; overflows still trigger it).
        on_promote (callable): called with a :class:`Promotion` for each switch.
    """

    def __init__(self, model: nn.Module, device_type: str, every: int,
                 on_promote: Callable[[Promotion], None]):
        self.model = model
        self.device_type = device_type
        self.every = every
        self.on_promote = on_promote
        self.promotions: list[Promotion] = []
        self._handles: list[Any] = []
        self._flags: list[tuple[str, nn.Module, Optional[torch.Tensor], Optional[torch.Tensor]]] = []
        self._check_next = False

    def _leaves(self) -> Iterator[tuple[str, nn.Module]]:
        for name, module in self.model.named_modules():
            if not any(True for _ in module.children()) and not getattr(module, _FP32_MARK, False):
                yield name, module

    def before_forward(self, step: int) -> None:
        """Attach the hooks when this step is sampled.

        Hooks still attached from a forward pass that no ``run.backward`` followed (a plain
        ``loss.backward()``, an evaluation under ``run.autocast()``) are judged and removed first, so they
        never pile up."""
        if self._handles:
            self.after_forward(step)
        if not (self._check_next or (self.every and step % self.every == 0)):
            return
        self._check_next = False
        for name, module in self._leaves():
            self._handles.append(module.register_forward_hook(functools.partial(self._hook, name)))

    def _hook(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        self._flags.append((name, module, _finite(inputs), _finite(output)))

    def after_forward(self, step: int) -> Optional[Promotion]:
        """Detach the hooks and promote the first module that turned finite inputs into inf/nan."""
        if not self._handles:
            return None
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        flags, self._flags = self._flags, []
        if not flags:
            return None
        tensors = [t for _, _, i, o in flags for t in (i, o) if t is not None]
        values = iter(torch.stack(tensors).tolist() if tensors else [])  # one synchronisation
        packed = [(next(values) if i is not None else True, next(values) if o is not None else True)
                  for _, _, i, o in flags]
        for (name, module, _, _), (in_ok, out_ok) in zip(flags, packed):
            if in_ok and not out_ok:
                if run_in_fp32(module, self.device_type):
                    promotion = Promotion(module=name, module_type=type(module).__name__, step=step)
                    self.promotions.append(promotion)
                    self.on_promote(promotion)
                    return promotion
                return None
        return None

    def overflowed(self) -> None:
        """The loss scaler saw an overflow: sample the next step."""
        self._check_next = True
