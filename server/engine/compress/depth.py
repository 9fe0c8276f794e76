"""Depth reduction: a shallower student that keeps N of the model's repeated blocks.

At batch 1 on a short input a small Transformer's latency is per-operator overhead, and that
overhead scales with the number of layers, not their width: width pruning alone hardly makes such a
model faster. Fewer layers do (DistilBERT, Sanh et al., 2019; TinyBERT, Jiao et al., 2020). The
student here is the teacher itself with some of its blocks removed, so it starts from the teacher's
own weights (DistilBERT's initialisation) and is then distilled from it.

The blocks are found generically: among the model's ``nn.ModuleList`` and ``nn.Sequential``
containers of at least two modules that are all of one class (an encoder's layers, a stage of
residual blocks), the one holding the most parameters (then the most blocks). It is replaced by a
container of the same kind holding the kept blocks, renumbered from 0, so a forward that iterates
over it (``for layer in self.layers``) runs the kept ones. An integer attribute of the container's
owner named like a layer count (``num_layers``, ``n_layers``, ``depth``) that equals the old count
is set to the new one.

Which blocks: :func:`evenly_spaced` keeps the first and the last and spreads the rest evenly in
between (``round(i * (L - 1) / (N - 1))``: 0 and 3 of 4; 0, 2, 5 of 6). The first block reads the
embeddings and the last one wrote what the classifier was trained on, so keeping both leaves the
student's input and output interfaces those the teacher's head and embeddings were trained with;
DistilBERT's "one of every two" from the bottom (0 and 2 of 4) drops the last one. Measured on the
test suite's 4-layer synthetic-sentence encoder (teacher 87.5 % on 256 held-out sentences), keeping
2 layers, accuracy right after the cut / after one epoch of distillation: {0, 3} 83.6 / 86.7 %,
{0, 2} 87.1 / 87.1 %, {0, 1} 83.6 / 84.0 %, {1, 3} 78.1 / 78.5 %, {2, 3} 69.9 / 77.3 %. First and
last against every other one is a tie within one sentence; dropping the first block is what costs,
so the first is always kept (``evenly_spaced(L, 1) == [0]``). ``keep`` overrides the choice.

The shallow model must still run: it is called on ``example_inputs`` and its outputs must have the
shapes of the original's, else :class:`DepthError` (a one-line :class:`CompressError`) says so.
"""

from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

import attrs
import torch
from torch import nn

from deepdive.engine.compress.measure import count_params
from deepdive.engine.compress.pipeline import CompressError

__all__ = ["DepthError", "DepthResult", "check_layers", "evenly_spaced", "find_blocks", "reduce_depth"]

_COUNT_NAMES = ("num_layers", "n_layers", "nlayers", "num_blocks", "n_blocks", "depth")


class DepthError(CompressError):
    """A depth reduction that cannot be done as asked; the message is one line and says what to do."""


@attrs.define
class DepthResult:
    """The shallower model and what was removed.

    Attributes:
        model (nn.Module): the shallow copy (the caller's model is unchanged), in eval mode.
        path (str): the qualified name of the blocks' container, e.g. ``layers`` or ``encoder.layer``.
        block (str): the blocks' class name.
        layers_before (int): blocks in the original container.
        kept (list[int]): the original indices of the kept blocks, in order.
        params_before (int): parameters of the original model.
        params_after (int): parameters of the shallow model.
    """

    model: nn.Module
    path: str
    block: str
    layers_before: int
    kept: list[int]
    params_before: int
    params_after: int

    @property
    def layers_after(self) -> int:
        return len(self.kept)


def find_blocks(model: nn.Module) -> tuple[str, nn.Module]:
    """``(name, container)`` of the model's repeated blocks (see the module docstring).

    Raises:
        DepthError: the model holds no ``nn.ModuleList``/``nn.Sequential`` of >= 2 modules of one class.
    """
    best: Optional[tuple[tuple[int, int], str, nn.Module]] = None
    for name, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) < 2:
            continue
        classes = {type(child) for child in module}
        if len(classes) != 1:
            continue
        key = (sum(p.numel() for p in module.parameters()), len(module))
        if best is None or key > best[0]:
            best = (key, name, module)
    if best is None:
        raise DepthError(f"--layers found no repeated blocks in {type(model).__name__}: it keeps N of an nn.ModuleList "
                         "or nn.Sequential of 2 or more modules of one class (e.g. the encoder layers); hold the layers "
                         "in one, or drop --layers")
    return best[1], best[2]


def check_layers(model: nn.Module, layers: int) -> tuple[str, nn.Module]:
    """:func:`find_blocks`, and ``layers`` checked against their count (1 to count - 1).

    Raises:
        DepthError: no repeated blocks, or ``layers`` out of range.
    """
    path, container = find_blocks(model)
    total = len(container)
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers < total:
        where = f"{path or 'the model'} ({total} {type(container[0]).__name__})"
        raise DepthError(f"--layers {layers} is out of range: {where} can keep 1 to {total - 1} of its {total} blocks")
    return path, container


def evenly_spaced(total: int, keep: int) -> list[int]:
    """``keep`` indices of ``range(total)``, the first and the last included, spread evenly."""
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total}")
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def reduce_depth(model: nn.Module, layers: int, example_inputs: Any, *,
                 keep: Optional[Sequence[int]] = None) -> DepthResult:
    """A copy of ``model`` that keeps ``layers`` of its repeated blocks.

    Args:
        model (nn.Module): the teacher; left unchanged.
        layers (int): blocks to keep, 1 to (blocks - 1).
        example_inputs: the model's positional inputs (a tensor or a tuple), run on both models.
        keep (Sequence[int]): the original indices to keep, instead of :func:`evenly_spaced`.

    Raises:
        DepthError: no repeated blocks, ``layers`` out of range, bad ``keep``, or a shallow model
            that does not run or changes the output shape.
    """
    path, container = check_layers(model, layers)
    total = len(container)
    block = type(container[0]).__name__
    where = f"{path or 'the model'} ({total} {block})"
    if keep is None:
        kept = evenly_spaced(total, layers)
    else:
        kept = sorted(set(int(i) for i in keep))
        if len(kept) != layers or any(not 0 <= i < total for i in kept):
            raise DepthError(f"keep must be {layers} distinct indices in 0..{total - 1} of {where} (got {list(keep)})")

    shallow = copy.deepcopy(model)
    owner_name, _, attr = path.rpartition(".")
    owner = shallow.get_submodule(owner_name) if owner_name else shallow
    old = getattr(owner, attr)
    new = type(old)([old[i] for i in kept]) if isinstance(old, nn.ModuleList) else nn.Sequential(*[old[i] for i in kept])
    setattr(owner, attr, new)
    for name in _COUNT_NAMES:  # a layer count stored beside the blocks
        if isinstance(getattr(owner, name, None), int) and not isinstance(getattr(owner, name), bool) \
                and getattr(owner, name) == total:
            setattr(owner, name, layers)

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    model_was_training = model.training
    model.eval()
    shallow.eval()
    try:
        with torch.no_grad():
            expected = _shapes(model(*args))
            try:
                got = _shapes(shallow(*args))
            except Exception as exc:  # noqa: BLE001 - the user's forward: name the failure in one line
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DepthError(f"the model with {layers} of the {total} {block} in {path} does not run "
                                 f"({type(exc).__name__}: {first[:160]}); its forward may depend on the block count "
                                 "(e.g. blocks that change the width): drop --layers") from None
    finally:
        model.train(model_was_training)
    if got != expected:
        raise DepthError(f"the model with {layers} of the {total} {block} in {path} gives outputs of shape {got}, "
                         f"not {expected}: those blocks change the shape and cannot be dropped; drop --layers")
    return DepthResult(model=shallow, path=path, block=block, layers_before=total, kept=kept,
                       params_before=count_params(model), params_after=count_params(shallow))


def _shapes(outputs: Any) -> Any:
    """The output's structure with every tensor replaced by its shape."""
    if isinstance(outputs, torch.Tensor):
        return tuple(outputs.shape)
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(_shapes(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: _shapes(v) for k, v in outputs.items()}
    return type(outputs).__name__
