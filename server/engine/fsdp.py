"""FSDP2 that shards transformer blocks: the wrap policy, the precision policy, sharding.

- :func:`plan_units` chooses the FSDP2 units. A *block class* is the class of a module held in an
  ``nn.ModuleList``/``nn.ModuleDict`` (anywhere in the tree), a class repeated inside an
  ``nn.Sequential``, a Hugging Face model's ``_no_split_modules`` entry, or a class named in
  ``fsdp=dict(blocks=...)``. Every outermost instance of a block class is a unit; so is any other
  module whose own parameters reach ``min_unit_params`` (a large embedding); the root comes last and
  takes the rest. A candidate that shares a parameter with a module outside it (tied weights) stays
  with its parent: FSDP2 refuses a parameter managed by two units.
- :func:`shard` applies the plan with ``fully_shard``: a ``MixedPrecisionPolicy`` from the run's
  precision plan (bf16 parameters with fp32 gradient reduction for a bf16 plan; the modules the run
  keeps in fp32 become units of their own that gather fp32), optional activation checkpointing per
  block and CPU offload. Parameters built on ``meta`` are allocated, initialised (or loaded from a
  state dict) one unit at a time, just before that unit is sharded
  (:mod:`deepdive.engine.materialize`): no rank ever holds the whole model.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import attrs
import torch
from torch import nn

from deepdive.engine.materialize import Filler, InitFn, Weights, has_meta, join_path, managed_modules, shared_seed
from deepdive.engine.precision import PrecisionPlan

if TYPE_CHECKING:
    from deepdive.engine.distributed import DistInfo

#: A module whose own parameters reach this count becomes an FSDP unit (e.g. BERT-base's 23 M-parameter embedding).
DEFAULT_MIN_UNIT_PARAMS = 1_000_000


# -- options ------------------------------------------------------------------------------------


def _blocks(value: Any) -> tuple[Union[type, str], ...]:
    items = (value,) if isinstance(value, (str, type)) else tuple(value)
    for item in items:
        if not (isinstance(item, str) or (isinstance(item, type) and issubclass(item, nn.Module))):
            raise ValueError(f"fsdp blocks must be module classes or class names, got {item!r}")
    return items


@attrs.frozen
class FsdpOptions:
    """How FSDP2 shards: ``dd.setup(fsdp=dict(...))`` with any of these keys.

    Attributes:
        activation_checkpointing (bool): recompute each block's activations in backward instead of
            keeping them (memory for about one more forward pass); blocks only. Parameter names do
            not change (``torch.distributed._composable.checkpoint``), so state dicts stay the same.
        cpu_offload (bool): keep sharded parameters, gradients and the optimizer step in host memory
            (``CPUOffloadPolicy``); a run on the CPU holds them there already.
        blocks (tuple): more block classes (classes or class names): one unit per instance.
        min_unit_params (int): a module outside the blocks whose own parameters reach this count is a unit.
        reshard_after_forward (bool): free a unit's gathered parameters after its forward (gathered
            again for backward); False keeps them until backward: less communication, more memory.
    """

    activation_checkpointing: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    cpu_offload: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    blocks: tuple[Union[type, str], ...] = attrs.field(default=(), converter=_blocks)
    min_unit_params: int = DEFAULT_MIN_UNIT_PARAMS
    reshard_after_forward: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.min_unit_params, int) or self.min_unit_params < 1:
            raise ValueError(f"fsdp min_unit_params must be a positive integer, got {self.min_unit_params!r}")

    @classmethod
    def from_dict(cls, options: Optional[Mapping[str, Any]]) -> "FsdpOptions":
        """The options of ``dd.setup(fsdp=...)``.

        Raises:
            ValueError: an unknown key or a value of the wrong type, in one line.
        """
        if options is None:
            return cls()
        if isinstance(options, FsdpOptions):
            return options
        names = [field.name for field in attrs.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"unknown fsdp options {unknown}: use {', '.join(names)}")
        try:
            return cls(**options)
        except TypeError as exc:
            raise ValueError(f"fsdp options: {exc.args[0]}") from None


# -- the wrap policy ----------------------------------------------------------------------------


def _has_forward(module: nn.Module) -> bool:
    return type(module).forward is not nn.Module.forward


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _within(path: str, unit: str) -> bool:
    return not unit or path == unit or path.startswith(unit + ".")


def require_forward(model: nn.Module) -> None:
    """Raise a one-line ValueError when ``model`` has no ``forward`` (an ``nn.ModuleList``, an ``nn.ModuleDict``)."""
    if not _has_forward(model):
        raise ValueError(f"run.prepare got a {type(model).__name__}, which has no forward(): pass the module whose "
                         "forward() runs it (the model that holds the list)")


def block_classes(model: nn.Module, options: FsdpOptions = FsdpOptions()) -> dict[type, str]:
    """The block classes of ``model``, each with where it was found."""
    named: dict[str, str] = {}
    for module in model.modules():
        no_split = getattr(module, "_no_split_modules", None)
        if no_split and not isinstance(no_split, str):
            named.update({name: "_no_split_modules" for name in no_split if isinstance(name, str)})
    named.update({b: "fsdp blocks" for b in options.blocks if isinstance(b, str)})
    found: dict[type, str] = {b: "fsdp blocks" for b in options.blocks if isinstance(b, type)}
    for module in model.modules():
        children = [c for c in module.children() if _has_forward(c) and any(True for _ in c.parameters())]
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            for child in children:
                found.setdefault(type(child), f"nn.{type(module).__name__}")
        elif isinstance(module, nn.Sequential):
            repeated = Counter(type(c) for c in children)
            found.update({cls: "nn.Sequential" for cls, n in repeated.items() if n > 1 and cls not in found})
        if type(module).__name__ in named:
            found.setdefault(type(module), named[type(module).__name__])
    found.pop(type(model), None)
    return found


@attrs.frozen
class Unit:
    """One FSDP2 unit: ``kind`` is ``block``, ``size`` (own parameters >= the threshold) or ``fp32``."""

    path: str
    module: nn.Module = attrs.field(eq=False, repr=False)
    kind: str
    parameters: int
    class_name: str  # fully_shard renames the class (FSDPLinear): the name the user wrote

    @property
    def label(self) -> str:
        return {"block": self.class_name, "size": f"{self.class_name} (size)",
                "fp32": f"{self.class_name} (fp32)"}[self.kind]


@attrs.frozen
class ShardPlan:
    """Which modules become FSDP2 units, children before their parents; the root is sharded last."""

    units: tuple[Unit, ...]
    root_parameters: int
    block_classes: dict[str, str]
    kept_with_parent: tuple[str, ...]
    min_unit_params: int

    def counts(self) -> dict[str, int]:
        return dict(Counter(unit.label for unit in self.units))

    def summary(self) -> str:
        """One line: which classes, how many units, then the root."""
        parts = [f"{n} x {label}" for label, n in self.counts().items()]
        text = (", ".join(parts) + ", then " if parts else "no block found: ") + \
            f"the root ({self.root_parameters:,} parameters of its own)"
        if self.kept_with_parent:
            text += f"; kept with their parent for tied weights: {', '.join(self.kept_with_parent)}"
        return text

    def describe(self) -> dict[str, Any]:
        return {"units": len(self.units) + 1, "by_class": self.counts(), "block_classes": self.block_classes,
                "root_parameters": self.root_parameters, "kept_with_parent": list(self.kept_with_parent),
                "min_unit_params": self.min_unit_params}


def _holders(model: nn.Module) -> dict[int, set[str]]:
    """Each parameter's id and the paths of the modules that hold it directly (several when tied)."""
    holders: dict[int, set[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for param in module.parameters(recurse=False):
            holders.setdefault(id(param), set()).add(path)
    return holders


def plan_units(model: nn.Module, options: FsdpOptions = FsdpOptions(),
               fp32_classes: Sequence[type[nn.Module]] = ()) -> ShardPlan:
    """The FSDP2 units of ``model`` (see the module's docstring); ``fp32_classes`` instances become units too.

    Raises:
        ValueError: ``model`` has no forward, is sharded already, or a unit would hold trainable
            parameters of two dtypes.
    """
    require_forward(model)
    _refuse_sharded(model)
    classes = block_classes(model, options)
    holders = _holders(model)
    fp32 = tuple(fp32_classes)
    units: list[Unit] = []
    kept: list[str] = []

    def consider(path: str, module: nn.Module, kind: str) -> None:
        inside = {id(p) for p in module.parameters()}
        if any(not _within(holder, path) for pid in inside for holder in holders[pid]):
            kept.append(path)
            return
        units.append(Unit(path, module, kind, sum(p.numel() for p in module.parameters()), type(module).__name__))

    def walk(path: str, module: nn.Module, in_block: bool) -> None:
        for name, child in module.named_children():
            child_path = join_path(path, name)
            if not _has_forward(child):
                walk(child_path, child, in_block)
                continue
            block = not in_block and type(child) in classes and any(True for _ in child.parameters())
            walk(child_path, child, in_block or block)
            if block:
                consider(child_path, child, "block")
            elif not in_block and _own_params(child) >= options.min_unit_params:
                consider(child_path, child, "size")
            elif fp32 and isinstance(child, fp32) and _own_params(child):
                consider(child_path, child, "fp32")

    walk("", model, False)
    unit_paths = {unit.path for unit in units}
    root_params = sum(_own_params(m) for _, m in managed_modules("", model, unit_paths))
    for path, module in [(u.path, u.module) for u in units] + [("", model)]:
        _check_one_dtype(path, module, unit_paths)
    return ShardPlan(tuple(units), root_params, {cls.__name__: where for cls, where in classes.items()},
                     tuple(kept), options.min_unit_params)


def _refuse_sharded(model: nn.Module) -> None:
    from torch.distributed.fsdp import FSDPModule

    done = next((path for path, m in model.named_modules() if isinstance(m, FSDPModule)), None)
    if done is not None:
        raise ValueError(f"{done or 'the model'} is sharded already (fully_shard was called on it): pass the model as "
                         "built; run.prepare shards it")


def _check_one_dtype(path: str, unit: nn.Module, unit_paths: set[str]) -> None:
    dtypes = sorted({str(p.dtype).replace("torch.", "") for _, m in managed_modules(path, unit, unit_paths)
                     for p in m.parameters(recurse=False) if p.requires_grad})
    if len(dtypes) > 1:
        raise ValueError(f"{path or 'the root module'} holds trainable parameters of dtypes {' and '.join(dtypes)}: "
                         "FSDP2 gathers one dtype per unit; cast the model to one dtype (e.g. model.float()) "
                         "before run.prepare and let the precision option choose the compute dtype")


# -- precision ----------------------------------------------------------------------------------


def mixed_precision(plan: PrecisionPlan) -> tuple[Any, str]:
    """FSDP2's ``MixedPrecisionPolicy`` for the run's precision plan, and what it does in words.

    bf16: parameters gathered in bf16, gradients reduced in fp32. fp16: none (parameters stay fp32
    and autocast casts per op, so the overflow guard can switch a module back to fp32; gradients stay
    fp32 for the loss scaler). fp32: none."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if plan.mode == "bf16":
        return (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32),
                "bf16 parameters, fp32 gradient reduction")
    if plan.mode == "fp16":
        return MixedPrecisionPolicy(), "none: fp32 parameters under fp16 autocast, for loss scaling and fp32 promotion"
    return MixedPrecisionPolicy(), "none (fp32)"


# -- sharding -----------------------------------------------------------------------------------


@attrs.frozen
class ShardReport:
    """What :func:`shard` did: the plan, the precision policy, the options, how meta tensors were filled."""

    plan: ShardPlan
    mixed_precision: str
    casts_parameters: bool
    activation_checkpointing: bool
    cpu_offload: bool
    materialised: Optional[str]

    def summary(self) -> str:
        text = f"FSDP2 units: {self.plan.summary()}; mixed precision: {self.mixed_precision}"
        if self.activation_checkpointing:
            text += "; activation checkpointing per block"
        if self.cpu_offload:
            text += "; CPU offload"
        if self.materialised:
            text += f"; from meta unit by unit: {self.materialised}"
        return text

    def describe(self) -> dict[str, Any]:
        return {**self.plan.describe(), "mixed_precision": self.mixed_precision,
                "activation_checkpointing": self.activation_checkpointing, "cpu_offload": self.cpu_offload,
                "materialised": self.materialised}


def fully_shard_unit(path: str, module: nn.Module, **kwargs: Any) -> None:
    """``fully_shard(module, **kwargs)``; what torch refuses comes back as one line naming ``path`` and a fix.

    Raises:
        RuntimeError: ``fully_shard`` refused the module.
    """
    from torch.distributed.fsdp import fully_shard

    try:
        fully_shard(module, **kwargs)
    except (ValueError, RuntimeError, AssertionError, NotImplementedError, TypeError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RuntimeError(f"FSDP2 could not shard {path or 'the root module'} ({type(module).__name__}): {detail}; "
                           "use strategy='ddp', or name the model's layer class in fsdp=dict(blocks=[...])") from None


def shard(model: nn.Module, info: "DistInfo", options: FsdpOptions, precision: PrecisionPlan, *,
          fp32_classes: Sequence[type[nn.Module]] = (), init: Optional[InitFn] = None,
          weights: Optional[Weights] = None) -> ShardReport:
    """Shard ``model`` in place with FSDP2 by :func:`plan_units`, the root last, on ``info.device``.

    Tensors on ``meta`` are allocated on the device, initialised (as
    :func:`deepdive.engine.materialize.materialize` says) or loaded from ``weights``, one unit at a
    time just before that unit is sharded.
    ``fp32_classes``: the classes the run keeps in fp32; with bf16 parameters they become units
    that gather fp32.

    Raises:
        ValueError: a model FSDP2 cannot shard as it is (see :func:`plan_units`), weights that are
            not this model's, a module on meta that nothing initialises.
        RuntimeError: ``fully_shard`` refused a unit, in one line with the fix.
    """
    from torch.distributed._composable import checkpoint
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy

    policy, policy_text = mixed_precision(precision)
    casts = policy.param_dtype is not None
    plan = plan_units(model, options, fp32_classes if casts else ())
    meta = has_meta(model)
    seed = shared_seed(info)
    filler = Filler(model, info.device, init, weights, seed) if meta or weights is not None else None
    mesh = init_device_mesh(info.device.type, (info.world_size,))
    offload = CPUOffloadPolicy(pin_memory=info.device.type == "cuda") if options.cpu_offload else OffloadPolicy()
    unit_paths = {unit.path for unit in plan.units}
    for unit in plan.units:
        if filler is not None:
            filler.fill(unit.path, unit.module, unit_paths)
        if options.activation_checkpointing and unit.kind == "block":
            checkpoint(unit.module)
        fully_shard_unit(unit.path, unit.module, mesh=mesh, reshard_after_forward=options.reshard_after_forward,
                         mp_policy=MixedPrecisionPolicy() if unit.kind == "fp32" else policy, offload_policy=offload)
    if filler is not None:
        filler.fill("", model, unit_paths)
    fully_shard_unit("", model, mesh=mesh, mp_policy=policy, offload_policy=offload)
    return ShardReport(plan, policy_text, casts, options.activation_checkpointing, options.cpu_offload,
                       filler.describe() if filler is not None else None)


def rebind_optimizer(optimizer: torch.optim.Optimizer, names: dict[int, str], model: nn.Module) -> None:
    """Point the optimizer's groups at the model's parameters where ``prepare`` replaced them (FSDP2, meta).

    ``names`` maps the id of each parameter the model had before to its name. Nothing changes when
    every parameter is still the same object (DDP on a model built normally).

    Raises:
        ValueError: the optimizer already stepped, or holds parameters the model does not have.
    """
    current = dict(model.named_parameters())
    if all(current.get(name) is not None and id(current[name]) == pid for pid, name in names.items()):
        return
    if optimizer.state:
        raise ValueError("the optimizer has already stepped: call run.prepare before training")
    for group in optimizer.param_groups:
        try:
            group["params"] = [current[names[id(p)]] for p in group["params"]]
        except KeyError:
            raise ValueError("the optimizer holds parameters that are not the model's: build it from "
                             "model.parameters() of the model given to run.prepare") from None
