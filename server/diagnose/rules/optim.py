"""Rules about the optimizer and the backward call: zeroing gradients, single-tensor optimizer kernels, and the
engine's fp16 loss scaling (DD120–DD122)."""

from __future__ import annotations

import ast
from typing import Iterator, Optional

from deepdive.diagnose.rules.base import Context, Finding, Fix, dotted_name, keyword, method_name, rule
from deepdive.diagnose.rules.rewrite import remove_argument
from deepdive.diagnose.rules.values import values_of

_OPTIMIZERS = {"SGD", "Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "RMSprop", "Rprop", "NAdam", "RAdam", "ASGD",
               "SparseAdam", "Adafactor"}


@rule("DD120", "zero-grad-not-none", "zero_grad(set_to_none=False) writes zeros into every gradient",
      category="optimizer", fixable=True)
def zero_grad_not_none(ctx: Context) -> Iterator[Finding]:
    """``optimizer.zero_grad(set_to_none=False)`` (or ``model.zero_grad(set_to_none=False)``).

    Why: it launches a kernel per parameter to fill the old gradients with zeros, and the next backward then
    adds into them (a read and a write) instead of writing them fresh. With the default (``set_to_none=True``)
    the gradients are dropped and the backward allocates and writes them once. Code that reads ``p.grad``
    between ``zero_grad()`` and ``backward()`` must accept ``None`` there.

    Fix: call ``zero_grad()`` with no argument.

    ```python
    # before
    optimizer.zero_grad(set_to_none=False)
    # after
    optimizer.zero_grad()
    ```
    """
    for call in values_of(ctx).calls:
        if method_name(call) != "zero_grad":
            continue
        flag = keyword(call, "set_to_none")
        value = flag.value if flag is not None else (call.args[0] if len(call.args) == 1 else None)
        if not (isinstance(value, ast.Constant) and value.value is False):
            continue
        if len(call.args) + len(call.keywords) != 1:
            continue
        fixed = f"{ctx.text(call.func)}()"
        yield ctx.finding("DD120", call, "zero_grad(set_to_none=False) writes zeros into every gradient each step: "
                          "call zero_grad() (set_to_none=True, the default)",
                          fix=Fix(title="Set gradients to None (zero_grad())", edits=(ctx.replace(call, fixed),)))


@rule("DD121", "single-tensor-optimizer", "Optimizer forced to its per-parameter loop (foreach=False)",
      category="optimizer", fixable=True, cuda_only=True)
def single_tensor_optimizer(ctx: Context) -> Iterator[Finding]:
    """A ``torch.optim`` optimizer built with ``foreach=False``.

    Why: ``foreach=False`` makes the optimizer update one parameter at a time, a handful of small kernels per
    parameter (the profiler's "single-tensor optimizer"). By default PyTorch uses the multi-tensor
    (``foreach``) implementation on CUDA, which updates all parameters of a group in a few launches; the results
    are the same up to floating-point rounding. On the CPU PyTorch's default is the per-parameter loop anyway, so
    the rule speaks only in scripts that use CUDA.

    Fix: drop ``foreach=False`` (or pass ``fused=True`` on CUDA for a single fused kernel).

    ```python
    # before
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, foreach=False)
    # after
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    ```
    """
    values = values_of(ctx)
    for call in values_of(ctx).calls:
        full = values.resolve(call.func)
        if not (full.startswith("torch.optim.") and full.rsplit(".", 1)[-1] in _OPTIMIZERS):
            continue
        flag = keyword(call, "foreach")
        if flag is None or not (isinstance(flag.value, ast.Constant) and flag.value.value is False):
            continue
        name = full.rsplit(".", 1)[-1]
        yield ctx.finding("DD121", call, f"{name}(foreach=False) updates one parameter at a time: drop foreach=False "
                          "(the default updates them together)",
                          fix=Fix(title="Use the multi-tensor optimizer (drop foreach=False)",
                                  edits=(remove_argument(ctx, call, flag),)))


def _engine_setup(ctx: Context) -> Optional[tuple[ast.Call, Optional[str]]]:
    """The ``deepdive.engine`` ``setup(...)`` call that asks for fp16, and the name its result is bound to."""
    values = values_of(ctx)
    for node in values.calls:
        if not (isinstance(node.func, (ast.Name, ast.Attribute)) and dotted_name(node.func).endswith("setup")) \
                or values.resolve(node.func) != "deepdive.engine.setup":
            continue
        precision = keyword(node, "precision")
        value = precision.value if precision is not None else (node.args[0] if node.args else None)
        if not (isinstance(value, ast.Constant) and value.value == "fp16"):
            continue
        parent = ctx.parents.get(node)
        if isinstance(parent, (ast.Assign, ast.AnnAssign)):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name):
                return node, targets[0].id
        return node, None
    return None


@rule("DD122", "plain-backward-fp16", "loss.backward() where the engine scales fp16 losses", category="backward",
      fixable=True)
def plain_backward_fp16(ctx: Context) -> Iterator[Finding]:
    """``loss.backward()`` in a script set up with ``deepdive.engine`` in fp16 (``dd.setup(precision="fp16")``).

    Why: fp16 gradients underflow to zero without loss scaling. The engine scales the loss in
    ``run.backward(loss)`` and unscales (and skips overflowed steps) in ``run.step(optimizer)``; a plain
    ``loss.backward()`` bypasses the scaling, so small gradients vanish and the engine's overflow check reads
    unscaled values.

    Fix: call the run's backward.

    ```python
    # before
    run = dd.setup(precision="fp16")
    ...
    loss.backward()
    # after
    run.backward(loss)
    ```
    """
    found = _engine_setup(ctx)  # a setup() that resolves to deepdive.engine.setup: the file imports the engine
    if found is None or found[1] is None:
        return
    run = found[1]
    values = values_of(ctx)
    for call in values_of(ctx).calls:
        if method_name(call) != "backward" or call.args or call.keywords:
            continue
        receiver = call.func.value  # type: ignore[attr-defined]
        if isinstance(receiver, ast.Name) and receiver.id == run:
            continue
        if values.resolve(receiver).startswith("torch") or (
                isinstance(receiver, ast.Call) and method_name(receiver) == "scale"):
            continue  # torch.autograd.backward(...), scaler.scale(loss).backward(): not the plain loss
        fixed = f"{run}.backward({ctx.text(receiver)})"
        yield ctx.finding("DD122", call, f"`{ctx.text(call)}` skips the engine's fp16 loss scaling: call "
                          f"{fixed}", fix=Fix(title=f"Scale the loss ({fixed})", edits=(ctx.replace(call, fixed),)))
