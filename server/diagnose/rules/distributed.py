"""Distributed rules: gradient accumulation that all-reduces every micro-batch, DDP searching for unused
parameters, and the single-process ``nn.DataParallel``."""

from __future__ import annotations

import ast
from typing import Iterable, Iterator, Optional

from deepdive.diagnose.rules.base import Context, Finding, Fix, Loop, dotted_name, keyword, method_name, rule
from deepdive.diagnose.rules.rewrite import remove_argument

_DDP = ("torch.nn.parallel.DistributedDataParallel", "torch.nn.parallel.distributed.DistributedDataParallel")
_DATA_PARALLEL = ("torch.nn.DataParallel", "torch.nn.parallel.DataParallel",
                  "torch.nn.parallel.data_parallel.DataParallel")


def calls_to(ctx: Context, dotted: Iterable[str]) -> Iterator[ast.Call]:
    """Calls of any of the ``dotted`` names, under any name the imports give them."""
    names: set[str] = set()
    for name in dotted:
        names |= ctx.imported_as(name)
    yield from ctx.calls_named(names)


def _has_modulo(node: ast.AST) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod) for n in ast.walk(node))


def _accumulation_if(ctx: Context, loop: Loop) -> Optional[ast.If]:
    """The ``if (i + 1) % accum == 0:`` inside ``loop`` under which the optimizer steps, if the loop accumulates."""
    for call in ctx.calls(loop):
        if method_name(call) != "step" or ctx.step_loop_of(call) is not loop:
            continue
        receiver = dotted_name(call.func.value)  # type: ignore[attr-defined]
        if "sched" in receiver.lower():
            continue
        for parent in ctx.ancestors(call):
            if parent is loop:
                break
            if isinstance(parent, ast.If) and _has_modulo(parent.test):
                return parent
    return None


def _first_backward(ctx: Context, loop: Loop, outside: ast.AST) -> Optional[ast.Call]:
    calls = [c for c in ctx.calls(loop) if method_name(c) == "backward" and ctx.step_loop_of(c) is loop
             and not any(a is outside for a in ctx.ancestors(c))]
    return min(calls, key=lambda c: (c.lineno, c.col_offset)) if calls else None


@rule("DD160", "ddp-accum-no-sync", "Gradient accumulation under DDP all-reduces every micro-batch (no no_sync())",
      category="communication", fixable=False)
def ddp_accumulation_without_no_sync(ctx: Context) -> Iterable[Finding]:
    """Gradient accumulation under DDP all-reduces every micro-batch (no ``no_sync()``).

    Why: DDP all-reduces the gradients during every ``backward()``; when the optimizer steps only every N
    micro-batches, N-1 of those all-reduces are unnecessary: the gradients need averaging across processes once,
    before the step. Inside ``model.no_sync()`` backward only accumulates locally, and the final backward reduces the
    sum. Shown on the step loop's ``backward()`` when the file wraps a model in ``DistributedDataParallel``, steps the
    optimizer under an ``if … % … :`` in the loop, and never calls ``no_sync``.

    Fix: skip the all-reduce on the non-final micro-batches:

    ```python
    # before
    loss.backward()
    if (i + 1) % accum == 0:
        optimizer.step(); optimizer.zero_grad()
    # after
    sync = (i + 1) % accum == 0
    with contextlib.nullcontext() if sync else model.no_sync():
        loss.backward()
    if sync:
        optimizer.step(); optimizer.zero_grad()
    ```
    """
    if not any(True for _ in calls_to(ctx, _DDP)):
        return
    if any(node.attr in ("no_sync", "require_backward_grad_sync") for node in ctx.nodes_of(ast.Attribute)):
        return
    for loop in ctx.step_loops:
        guard = _accumulation_if(ctx, loop)
        if guard is None:
            continue
        backward = _first_backward(ctx, loop, guard)
        yield ctx.finding("DD160", backward if backward is not None else guard,
                          "gradient accumulation under DDP all-reduces every micro-batch: wrap the non-final "
                          "micro-batches' backward in model.no_sync()")


@rule("DD161", "find-unused-parameters", "DistributedDataParallel(..., find_unused_parameters=True)",
      category="communication", fixable=True)
def find_unused_parameters(ctx: Context) -> Iterable[Finding]:
    """``DistributedDataParallel(..., find_unused_parameters=True)``.

    Why: with it DDP walks the autograd graph after every forward pass to find parameters that got no gradient, and it
    delays the bucketed all-reduce until that search is done: extra CPU time each step and less overlap of
    communication with backward. Only a model that really leaves parameters unused in some steps needs it (DDP then
    says so with an error naming them).

    Fix: remove the keyword (turn it on only if the model really leaves parameters unused):

    ```python
    # before
    model = DDP(model, device_ids=[rank], find_unused_parameters=True)
    # after
    model = DDP(model, device_ids=[rank])
    ```
    """
    for call in calls_to(ctx, _DDP):
        kw = keyword(call, "find_unused_parameters")
        if kw is not None and isinstance(kw.value, ast.Constant) and kw.value.value is True:
            yield ctx.finding("DD161", kw, "find_unused_parameters=True searches the graph every step: remove it "
                              "(turn it on only if the model really leaves parameters unused)",
                              fix=Fix("remove find_unused_parameters=True", (remove_argument(ctx, call, kw),)))


@rule("DD162", "data-parallel", "nn.DataParallel: one process driving every GPU", category="communication",
      fixable=False)
def data_parallel(ctx: Context) -> Iterable[Finding]:
    """``nn.DataParallel``: one process driving every GPU.

    Why: DataParallel replicates the model onto every GPU on every forward pass, scatters the batch and gathers the
    outputs on GPU 0 from a single Python process (one GIL): GPU 0 does extra work and the others wait. PyTorch
    recommends DistributedDataParallel (one process per GPU) even on one machine.

    Fix: one process per GPU with DDP, started by torchrun (or ``deepdive train``):

    ```python
    # before
    model = nn.DataParallel(model)
    # after (torchrun --nproc_per_node=4 train.py)
    dist.init_process_group("nccl"); torch.cuda.set_device(local_rank)
    model = DDP(model.to(local_rank), device_ids=[local_rank])
    ```
    """
    for call in calls_to(ctx, _DATA_PARALLEL):
        yield ctx.finding("DD162", call, "nn.DataParallel drives every GPU from one process: use "
                          "DistributedDataParallel (torchrun) or deepdive train")
