"""Structured pruning: channels, neurons and attention heads removed physically, not masked.

A masked model keeps its shapes, so it is neither smaller nor faster; here the weights of the
removed channels are cut out of every layer that reads or writes them, and the pruned model is an
ordinary ``nn.Module`` (``torch.save(model)`` works) that runs fewer multiply-adds.

Which layers must shrink together is what Torch-Pruning's ``DependencyGraph`` works out from a
traced forward pass: a Conv's output channels with the BatchNorm after it and the next Conv's
input channels, both sides of a residual add, the pieces of a concatenation, a Linear's neurons
with the next Linear's inputs. Each such group is ranked by one importance and the same fraction
``amount`` of it is removed (local pruning: every group loses ``amount`` of its own channels):

- ``l1`` / ``l2``: the group's L1 / L2 weight norm per channel (``GroupMagnitudeImportance``);
- ``taylor``: first-order Taylor, ``|w * dL/dw|`` (``GroupTaylorImportance``), on the gradient of
  the ``loss_fn`` given, recomputed before every step;
- ``bn``: the BatchNorm scale ``|gamma|`` (network slimming, ``BNScaleImportance``); groups without
  a BatchNorm are left alone.

The output layer (the last Linear or Conv the example forward runs) always keeps its outputs.

Attention. Torch-Pruning handles ``nn.MultiheadAttention`` as one opaque layer whose only
prunable dimension is ``embed_dim``, cut evenly inside every head; it cannot remove a head, because
the packed ``in_proj`` and ``F.multi_head_attention_forward`` require ``num_heads * head_dim ==
embed_dim``. With ``heads=True`` each ``nn.MultiheadAttention`` (also the ``self_attn`` of
``nn.TransformerEncoderLayer``/``DecoderLayer``) is therefore first replaced by a
:class:`HeadAttention` that computes the same function with separate ``q_proj``/``k_proj``/
``v_proj``/``out_proj`` Linears; Torch-Pruning's head pruning (``num_heads``, ``prune_num_heads``)
then removes whole heads from q, k, v and the matching input columns of ``out_proj`` together,
``head_dim`` kept. Attention modules with ``add_bias_kv`` or ``add_zero_attn`` are not converted.
With ``heads=False`` attention modules stay as they are. Either way the FFN neurons
(``linear1``/``linear2``) and the embedding width (the residual stream, with its LayerNorms,
embeddings and positional parameters) are pruned like any other coupled group; to keep that width,
put a layer that writes it (the input projection) in ``ignored_layers``.

Progressive pruning (``steps > 1``) reaches ``amount`` in equal steps of the original width, with
``fine_tune(model, step)`` after each (Torch-Pruning's ``iterative_steps``). Torch-Pruning counts an
iterative step's head ratio against the heads left, not the original heads, which would remove
too many; the per-step head ratios are set here so that step k leaves
``H - ceil(k / steps * amount * H)`` heads (never fewer than one).

Free ``nn.Parameter`` s coupled to a pruned width (positional tables) lose the same channels along
their last non-singleton dimension (Torch-Pruning's default): right for ``(1, L, E)`` positional
tables; other layouts are not checked. An ``nn.Embedding`` that is never called but whose table the
forward reads (``self.positions.weight[:n]``) is handed over the same way, along its embedding dim.
Not supported: weights shared between layers (tied input and output embeddings), which the traced
graph does not see as one.

MACs are those of ``tp.utils.count_ops_and_params``: module operations (Conv, Linear, norms);
the attention score products of ``scaled_dot_product_attention`` are not counted.

:class:`HeadAttention` lives in :mod:`deepdive.engine.compress.heads` (re-exported here); this module
holds :func:`prune` and its helpers, one concern: the dependency graph, the importance and the steps.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, Optional

import attrs
import torch
import torch_pruning as tp
from torch import nn

from deepdive.engine.compress.heads import HeadAttention, _split_attention
from deepdive.vocabulary import PRUNE_IMPORTANCES as IMPORTANCES

__all__ = ["IMPORTANCES", "HeadAttention", "PruneError", "PruneResult", "prune"]

_OUT_PRUNING_FNS = (tp.prune_linear_out_channels, tp.prune_conv_out_channels)


class PruneError(ValueError):
    """A pruning request that cannot be carried out; the message says what to change."""


@attrs.define
class PruneResult:
    """The pruned model and what pruning did to it.

    Attributes:
        model (nn.Module): the pruned model (a copy; the caller's model is unchanged).
        importance (str): the importance the channels were ranked by.
        amount (float): the fraction of each group's channels removed.
        params_before (int): parameters before pruning.
        params_after (int): parameters after pruning.
        macs_before (int): multiply-adds of one forward on ``example_inputs`` before pruning.
        macs_after (int): the same after pruning.
        steps (list[dict]): per step: ``step`` (1-based), ``params``, ``macs``.
        kept (dict[str, list[int]]): for every pruned Linear/Conv, its qualified name -> the indices
            (in the original model) of the output channels it kept.
        heads (dict[str, tuple[int, int]]): for every converted attention module, its qualified
            name -> (heads before, heads after).
    """

    model: nn.Module
    importance: str
    amount: float
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    steps: list[dict[str, int]]
    kept: dict[str, list[int]]
    heads: dict[str, tuple[int, int]]

    def report(self) -> dict[str, Any]:
        """The figures, without the model (JSON-ready)."""
        return {
            "importance": self.importance,
            "amount": self.amount,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "steps": list(self.steps),
            "heads": {name: list(pair) for name, pair in self.heads.items()},
        }


# ---------------------------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------------------------


def prune(model: nn.Module, example_inputs: Any, amount: float = 0.5, *,
          importance: str = "l2",
          steps: int = 1,
          fine_tune: Optional[Callable[[nn.Module, int], None]] = None,
          loss_fn: Optional[Callable[[nn.Module], torch.Tensor]] = None,
          ignored_layers: Optional[list[nn.Module]] = None,
          heads: bool = True,
          round_to: Optional[int] = None) -> PruneResult:
    """Remove ``amount`` of the channels, neurons and attention heads of ``model``, physically.

    Args:
        model (nn.Module): the model; it is deep-copied and left unchanged.
        example_inputs: what the model is called with: a tensor (``model(x)``), a tuple or list
            (``model(*inputs)``) or a dict (``model(**inputs)``); used to trace the coupling.
        amount (float): the fraction of each prunable group's channels removed, in (0, 1).
        importance (str): ``l1``, ``l2``, ``taylor`` (needs ``loss_fn``) or ``bn``.
        steps (int): reach ``amount`` in this many equal steps (progressive pruning).
        fine_tune (Callable): called as ``fine_tune(model, step)`` after each step (0-based step).
        loss_fn (Callable): ``loss_fn(model)`` returns a loss on a batch; its gradient ranks the
            channels for ``taylor``.
        ignored_layers (list[nn.Module]): modules of ``model`` whose outputs are kept, in addition
            to the output layer, which is always kept.
        heads (bool): remove whole heads of ``nn.MultiheadAttention`` (converted to
            :class:`HeadAttention`), at ratio ``amount``.
        round_to (int): keep channel counts multiples of this (e.g. 8 for tensor cores).

    Returns:
        PruneResult: the pruned copy, the parameter and MAC counts before and after, per step.

    Raises:
        PruneError: ``amount`` outside (0, 1), an unknown importance, ``steps`` < 1, ``taylor``
            without ``loss_fn``, ``bn`` on a model without BatchNorm, an ignored layer that is not
            part of ``model``, a model that does not run on ``example_inputs``, or nothing prunable.

    Example::

        result = prune(model, torch.randn(1, 3, 32, 32), 0.5, steps=3, fine_tune=train_one_epoch)
        torch.save(result.model, "pruned.pt")
    """
    _validate(amount, importance, steps, loss_fn, round_to)
    caller_names = {module: name for name, module in model.named_modules()}
    ignored_names = []
    for layer in ignored_layers or []:
        if layer not in caller_names:
            raise PruneError(f"ignored layer {type(layer).__name__} is not a submodule of the model; "
                             "pass modules of the model being pruned")
        ignored_names.append(caller_names[layer])

    model = copy.deepcopy(model)
    was_training = model.training
    model.eval()
    output_name, table_names = _inspect(model, example_inputs)
    if importance == "bn" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise PruneError("importance 'bn' ranks channels by BatchNorm scale but the model has no BatchNorm; "
                         "use 'l1' or 'l2'")
    converted = _split_attention(model, set(ignored_names)) if heads else {}
    modules = dict(model.named_modules())
    ignored = [modules[name] for name in ignored_names]
    if output_name is not None:
        ignored.append(modules[output_name])
    tables = {modules[name]: f"{name}.weight" for name in table_names}

    macs_before, params_before = _count(model, example_inputs)
    num_heads = {}
    for attn in converted.values():
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            num_heads[proj] = attn.num_heads
    with warnings.catch_warnings():
        # Free nn.Parameters (positional tables) are pruned along their last non-singleton dim,
        # the channel dim of the usual (1, L, E) layout; documented in the module docstring.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        pruner = tp.pruner.MetaPruner(
            model, example_inputs, _importance(importance),
            pruning_ratio=amount, iterative_steps=steps, ignored_layers=ignored, round_to=round_to,
            num_heads=num_heads, prune_num_heads=bool(num_heads), prune_head_dims=False,
            head_pruning_ratio=amount if num_heads else 0.0,
            unwrapped_parameters=[(table.weight, 1) for table in tables],
        )
    for table, weight_name in tables.items():
        # group.prune() finds a free parameter's owner by this name; Torch-Pruning records it only
        # for parameters outside its registered layer types, and an Embedding is one of those.
        pruner.DG._param_to_name[table.weight] = weight_name
    for attn in converted.values():
        ratios = _head_ratios(attn.num_heads, amount, steps)
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            pruner.head_pruning_ratio_dict[proj] = ratios

    names = {module: name for name, module in model.named_modules()}
    kept: dict[str, list[int]] = {}
    heads_before = {name: attn.num_heads for name, attn in converted.items()}
    per_step = []
    for step in range(steps):
        if importance == "taylor":
            _taylor_gradients(model, loss_fn, was_training)
        with torch.no_grad():
            for group in pruner.step(interactive=True):
                _record_kept(group, pruner.DG, names, kept)
                group.prune()
        model.zero_grad(set_to_none=True)
        _sync_heads(converted, kept)
        for table in tables:
            table.embedding_dim = table.weight.shape[1]
        macs, params = _count(model, example_inputs)
        per_step.append({"step": step + 1, "params": params, "macs": macs})
        if fine_tune is not None:
            model.train(was_training)
            fine_tune(model, step)
            model.eval()
    if per_step[-1]["params"] >= params_before:
        raise PruneError(f"nothing was pruned at amount {amount}: every prunable layer is too small or ignored; "
                         "raise amount or pass fewer ignored_layers")
    model.train(was_training)
    return PruneResult(
        model=model, importance=importance, amount=amount,
        params_before=params_before, params_after=per_step[-1]["params"],
        macs_before=macs_before, macs_after=per_step[-1]["macs"],
        steps=per_step, kept=kept,
        heads={name: (heads_before[name], attn.num_heads) for name, attn in converted.items()},
    )


def _validate(amount: float, importance: str, steps: int, loss_fn: Optional[Callable], round_to: Optional[int]) -> None:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 < amount < 1.0:
        raise PruneError(f"amount is the fraction of channels removed and must be between 0 and 1 (exclusive), "
                         f"got {amount!r}; e.g. 0.5 removes half")
    if importance not in IMPORTANCES:
        raise PruneError(f"importance must be one of {', '.join(IMPORTANCES)}, got {importance!r}")
    if not isinstance(steps, int) or steps < 1:
        raise PruneError(f"steps must be a positive integer, got {steps!r}")
    if importance == "taylor" and loss_fn is None:
        raise PruneError("importance 'taylor' needs loss_fn(model) -> loss on a batch; pass one or use 'l2'")
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise PruneError(f"round_to must be a positive integer or None, got {round_to!r}")


def _importance(name: str) -> tp.importance.Importance:
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.BNScaleImportance()


def _head_ratios(num_heads: int, amount: float, steps: int) -> list[float]:
    """Per-step head ratios (index 0 unused) that leave ``H - ceil(k/steps * amount * H)`` heads at step k.

    Torch-Pruning removes ``ceil(ratio * heads left)`` heads at a step; the ratio given is half a
    head under the wanted count, so that the ceiling lands on it exactly.
    """
    removed = [min(num_heads - 1, math.ceil(k / steps * amount * num_heads - 1e-9)) for k in range(steps + 1)]
    ratios = [0.0]
    for k in range(1, steps + 1):
        delta = removed[k] - removed[k - 1]
        left = num_heads - removed[k - 1]
        ratios.append((delta - 0.5) / left if delta > 0 else 0.0)
    return ratios


def _record_kept(group: Any, graph: tp.DependencyGraph, names: dict[nn.Module, str],
                 kept: dict[str, list[int]]) -> None:
    """Note, before ``group`` is pruned, which original output channels each Linear/Conv keeps."""
    for dep, idxs in group:
        module = dep.target.module
        if dep.handler not in _OUT_PRUNING_FNS or not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            continue
        name = names[module]
        current = kept.get(name, list(range(graph.get_out_channels(module))))
        removed = set(int(i) for i in idxs)
        kept[name] = [orig for i, orig in enumerate(current) if i not in removed]


def _sync_heads(converted: dict[str, HeadAttention], kept: dict[str, list[int]]) -> None:
    """Set ``head_ids`` from the original q rows that survived (whole heads go, order is kept)."""
    for name, attn in converted.items():
        rows = kept.get(f"{name}.q_proj")
        if rows is not None:
            attn.head_ids = sorted({row // attn.head_dim for row in rows})


def _taylor_gradients(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], was_training: bool) -> None:
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    loss = loss_fn(model)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
        raise PruneError("loss_fn(model) must return a scalar loss tensor computed by the model (with grad)")
    loss.backward()
    model.eval()


def _inspect(model: nn.Module, example_inputs: Any) -> tuple[Optional[str], list[str]]:
    """Run the example forward once and find the output layer and the embeddings read as tables.

    Returns the qualified name of the last Linear/Conv the forward runs (the output layer; None
    if there is none), and the names of the ``nn.Embedding`` s that are never called but whose
    ``weight`` the forward uses directly (``self.positions.weight[:length]``): Torch-Pruning does
    not see those as layers, so they are handed to it as free parameters (pruned along dim 1).
    """
    order: list[str] = []
    called: set[str] = set()

    def record(name: str, module: nn.Module) -> None:
        called.add(name)
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            order.append(name)

    hooks = [module.register_forward_hook(lambda m, _i, _o, name=name: record(name, m))
             for name, module in model.named_modules()]
    try:
        with torch.enable_grad():
            outputs = _forward(model, example_inputs)
    except Exception as exc:  # noqa: BLE001 - any failure means the inputs do not fit the model
        first_line = (str(exc).splitlines() or [""])[0]
        raise PruneError(f"the model does not run on example_inputs ({type(exc).__name__}: {first_line}); "
                         "pass inputs the model accepts") from exc
    finally:
        for hook in hooks:
            hook.remove()
    used = _leaf_tensors(outputs)
    tables = [name for name, module in model.named_modules()
              if isinstance(module, nn.Embedding) and name not in called and id(module.weight) in used]
    return (order[-1] if order else None), tables


def _leaf_tensors(outputs: Any) -> set[int]:
    """The ids of the leaf tensors (parameters) the autograd graph of ``outputs`` reaches."""
    stack = [t.grad_fn for t in _tensors(outputs) if t.grad_fn is not None]
    seen, leaves = set(), set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        variable = getattr(fn, "variable", None)
        if variable is not None:
            leaves.add(id(variable))
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return leaves


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _forward(model: nn.Module, example_inputs: Any) -> Any:
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def _count(model: nn.Module, example_inputs: Any) -> tuple[int, int]:
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    return int(macs), int(params)


__all__ = ["IMPORTANCES", "HeadAttention", "PruneError", "PruneResult", "prune"]
