"""Rules about the host waiting for the device on every step: ``.item()``, ``.cpu()``, printing or converting a
tensor, explicit synchronisation, and emptying the allocator's cache (DD110–DD115).

All of them fire only on code that runs once per step (:meth:`Values.per_step`: in the step loop, or in a
``train_step()`` function the loop calls): under an ``if`` in the loop (``if step % 100 == 0:``) or once per
epoch, the cost is paid rarely and is not worth a warning.
"""

from __future__ import annotations

import ast
from typing import Iterator

from deepdive.diagnose.rules.base import Context, Edit, Finding, Fix, method_name, rule
from deepdive.diagnose.rules.values import Values, values_of

_TO_HOST = {"cpu", "numpy", "tolist"}
_CONVERSIONS = {"float", "int", "bool"}


def _in_inner_loop(ctx: Context, node: ast.AST) -> bool:
    """``node`` sits in a loop nested in its step loop (``for v in t: v.item()``)."""
    loop = ctx.step_loop_of(node)
    for parent in ctx.ancestors(node):
        if parent is loop or isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return False
        if isinstance(parent, (ast.For, ast.AsyncFor, ast.While, ast.comprehension)):
            return True
        if isinstance(parent, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return True
    return False


@rule("DD110", "item-in-loop", ".item() on every step (a host sync)", category="host_sync", fixable=False)
def item_in_loop(ctx: Context) -> Iterator[Finding]:
    """``tensor.item()`` on every training step.

    Why: ``.item()`` copies one number to the host, so the host waits until the device has finished every
    kernel queued so far; the device then idles while the host queues the next step, on every step. One per
    element (``for v in t: v.item()``) pays that once per element, on any device.

    Fix: keep running sums on the device and read them every N steps, or convert a whole tensor at once.

    ```python
    # before
    for x, y in loader:
        loss = criterion(model(x), y)
        ...
        total += loss.item()
    # after
    for step, (x, y) in enumerate(loader):
        loss = criterion(model(x), y)
        ...
        total += loss.detach()
        if step % 100 == 0:
            print(f"loss {total.item() / (step + 1):.4f}")
    ```
    """
    for call in values_of(ctx).calls:
        if method_name(call) != "item" or call.args or call.keywords or not values_of(ctx).per_step(call):
            continue
        if _in_inner_loop(ctx, call):
            message = ("`.item()` per element in a loop: one host sync each; convert the whole tensor once "
                       "(`.tolist()`), and only every N steps")
        else:
            message = ("`.item()` every step waits for the device (host sync): accumulate on the device "
                       "(`total += loss.detach()`) and call .item() every N steps")
        yield ctx.finding("DD110", call, message)


@rule("DD111", "cpu-numpy-in-loop", ".cpu()/.numpy()/.tolist() on every step", category="host_sync",
      fixable=False)
def cpu_numpy_in_loop(ctx: Context) -> Iterator[Finding]:
    """``.cpu()``, ``.numpy()`` or ``.tolist()`` of a tensor on every training step.

    Why: each copies device memory to the host and so waits for all queued work (a host sync); the copy itself
    costs a device→host transfer. In the step loop this stalls every step.

    Fix: keep metrics on the device (``correct += (pred == y).sum()``) and copy them every N steps or once
    per epoch.

    ```python
    # before
    preds.extend(logits.argmax(1).cpu().tolist())
    # after
    correct += (logits.argmax(1) == y).sum()   # on the device; read correct.item() after the epoch
    ```
    """
    values = values_of(ctx)
    for call in values_of(ctx).calls:
        name = method_name(call)
        if name not in _TO_HOST or call.args or call.keywords:
            continue
        receiver = call.func.value  # type: ignore[attr-defined]
        if values.is_module(receiver):
            continue
        parent = ctx.parents.get(call)
        outer = ctx.parents.get(parent) if isinstance(parent, ast.Attribute) else None
        if isinstance(outer, ast.Call) and outer.func is parent and method_name(outer) in _TO_HOST | {"item"}:
            continue  # x.cpu().numpy(): reported once, on the outermost call (or as DD110 for .item())
        if not values_of(ctx).per_step(call):
            continue
        yield ctx.finding("DD111", call, f"`.{name}()` every step copies to the host and waits for the device: "
                          "keep the values on the device and copy every N steps")


def _tensor_argument(values: Values, node: ast.AST) -> bool:
    """A print argument that formats a tensor: the tensor itself or an f-string field holding one. Arguments that
    already copy to the host (``.item()``, ``.cpu()``) are other rules' findings."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call) and method_name(inner) in _TO_HOST | {"item"}:
            return False
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) and values.is_tensor(part.value) for part in node.values)
    return values.is_tensor(node)


@rule("DD112", "print-tensor-in-loop", "print() of a tensor on every step", category="host_sync", fixable=False)
def print_tensor_in_loop(ctx: Context) -> Iterator[Finding]:
    """``print(loss)`` (or an f-string holding a tensor) on every training step.

    Why: printing a tensor reads its values on the host, which waits for the device (a host sync), and
    formats it every step; the terminal output itself is slow too.

    Fix: print every N steps, or accumulate on the device and print once per epoch.

    ```python
    # before
    print(f"loss {loss}")
    # after
    if step % 100 == 0:
        print(f"loss {loss.item():.4f}")
    ```
    """
    values = values_of(ctx)
    for call in values_of(ctx).calls:
        if not (isinstance(call.func, ast.Name) and call.func.id == "print"):
            continue
        if not any(_tensor_argument(values, argument) for argument in call.args):
            continue
        if values_of(ctx).per_step(call):
            yield ctx.finding("DD112", call, "print() of a tensor every step waits for the device (host sync): "
                              "print every N steps (`if step % 100 == 0:`)")


def _truth_tested(values: Values, test: ast.AST) -> bool:
    """A condition that asks a tensor for a Python bool (``loss > best``, ``torch.isnan(loss).any()``)."""
    if isinstance(test, ast.BoolOp):
        return any(_truth_tested(values, part) for part in test.values)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _truth_tested(values, test.operand)
    return values.is_tensor(test)


@rule("DD113", "float-of-tensor-in-loop", "float()/int()/bool() or an `if` on a tensor every step",
      category="host_sync", fixable=False)
def float_of_tensor_in_loop(ctx: Context) -> Iterator[Finding]:
    """``float(loss)``, ``int(correct)``, ``bool(t)`` or ``if loss > best:`` on a tensor every step.

    Why: turning a tensor into a Python number or truth value reads it on the host: the host waits for the
    device (a host sync), exactly like ``.item()``, which these call behind the scenes.

    Fix: keep the comparison on the device (``torch.where``, ``torch.minimum``), or do it every N steps.

    ```python
    # before
    running += float(loss)
    # after
    running += loss.detach()        # read running.item() every N steps
    ```
    """
    values = values_of(ctx)
    for node in values.of(ast.Call, ast.If, ast.While, ast.Assert, ast.IfExp):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CONVERSIONS \
                and len(node.args) == 1 and not node.keywords and values.is_tensor(node.args[0]):
            if values_of(ctx).per_step(node):
                yield ctx.finding("DD113", node, f"{node.func.id}() of a tensor every step waits for the device "
                                  "(host sync): keep it on the device and convert every N steps")
        elif isinstance(node, (ast.If, ast.While, ast.Assert, ast.IfExp)):
            if isinstance(node, ast.While) and node in ctx.step_loops:
                continue
            if _truth_tested(values, node.test) and values_of(ctx).per_step(node):
                yield ctx.finding("DD113", node.test, "a tensor used as a condition every step waits for the device "
                                  "(host sync): compare on the device (torch.where) or check every N steps")


def _statement_of(ctx: Context, call: ast.Call) -> ast.Expr | None:
    parent = ctx.parents.get(call)
    return parent if isinstance(parent, ast.Expr) and parent.value is call else None


def _block_of(ctx: Context, stmt: ast.stmt) -> list[ast.stmt]:
    parent = ctx.parents.get(stmt)
    for field in ("body", "orelse", "finalbody", "handlers"):
        block = getattr(parent, field, None)
        if isinstance(block, list) and any(s is stmt for s in block):
            return block
    return [stmt]


def remove_statement(ctx: Context, stmt: ast.stmt) -> Edit:
    """An edit removing ``stmt``: its whole line(s) when it has them to itself, ``pass`` when it is its block's only
    statement or shares its line (``a; b``)."""
    line, col, end_line, end_col = ctx.span(stmt)
    alone_in_block = len(_block_of(ctx, stmt)) == 1
    before = ctx.lines[line - 1][:col]
    after = ctx.lines[end_line - 1][end_col:].strip()
    if alone_in_block or before.strip() or (after and not after.startswith("#")):
        return Edit(line, col, end_line, end_col, "pass")
    return Edit(line, 0, end_line + 1, 0, "")


def _per_step_statements(ctx: Context, targets: set[str]) -> Iterator[tuple[ast.Call, ast.Expr]]:
    values = values_of(ctx)
    for call in values_of(ctx).calls:
        if values.resolve(call.func) not in targets:
            continue
        stmt = _statement_of(ctx, call)
        if stmt is not None and values_of(ctx).per_step(call):
            yield call, stmt


@rule("DD114", "synchronize-in-loop", "torch.cuda.synchronize() on every step", category="host_sync", fixable=True)
def synchronize_in_loop(ctx: Context) -> Iterator[Finding]:
    """``torch.cuda.synchronize()`` on every training step.

    Why: it blocks the host until the device has finished everything queued, so the host cannot queue the
    next step ahead and the device idles in between. Kernels on one stream already run in order; training needs
    no explicit synchronisation.

    Fix: remove the call. To time steps, synchronise and read the clock every N steps (or record CUDA events),
    and divide by N.

    ```python
    # before
    optimizer.step()
    torch.cuda.synchronize()
    # after
    optimizer.step()
    ```
    """
    for call, stmt in _per_step_statements(ctx, {"torch.cuda.synchronize", "torch.accelerator.synchronize"}):
        yield ctx.finding("DD114", call, "torch.cuda.synchronize() every step stalls the host until the device is "
                          "idle: remove it (kernels on one stream already run in order)",
                          fix=Fix(title="Remove the per-step synchronize()", edits=(remove_statement(ctx, stmt),)))


@rule("DD115", "empty-cache-in-loop", "torch.cuda.empty_cache() on every step", category="idle", fixable=True)
def empty_cache_in_loop(ctx: Context) -> Iterator[Finding]:
    """``torch.cuda.empty_cache()`` on every training step.

    Why: it hands the caching allocator's free blocks back to the driver, so the next step allocates them again
    with slow ``cudaMalloc`` calls (which synchronise); it frees no memory your tensors use and does not
    prevent out-of-memory errors.

    Fix: remove the call.

    ```python
    # before
    optimizer.step()
    torch.cuda.empty_cache()
    # after
    optimizer.step()
    ```
    """
    for call, stmt in _per_step_statements(ctx, {"torch.cuda.empty_cache"}):
        yield ctx.finding("DD115", call, "torch.cuda.empty_cache() every step makes the allocator get its memory "
                          "again next step: remove it",
                          fix=Fix(title="Remove the per-step empty_cache()", edits=(remove_statement(ctx, stmt),)))
