"""API-use rules: legacy ``Variable``, a loss summed with its graph, DataLoader workers restarted every epoch, and
a model moved to the device on every step."""

from __future__ import annotations

import ast
from typing import Iterable, Iterator, Optional

from deepdive.diagnose.rules.base import Context, Finding, Fix, Loop, dotted_name, keyword, method_name, rule
from deepdive.diagnose.rules.distributed import calls_to
from deepdive.diagnose.rules.rewrite import add_keyword, has_double_star, literal_int

_VARIABLE = ("torch.autograd.Variable", "torch.autograd.variable.Variable")
_DATALOADER = ("torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader")
_DETACHING = {"item", "detach", "cpu", "tolist", "numpy"}
_NOT_ITERATING = {"len", "print", "isinstance", "id", "type", "repr", "str"}


@rule("DD170", "autograd-variable", "torch.autograd.Variable(x): a no-op wrapper since PyTorch 0.4",
      category="forward", fixable=True)
def autograd_variable(ctx: Context) -> Iterable[Finding]:
    """``torch.autograd.Variable(x)``: a no-op wrapper since PyTorch 0.4.

    Why: tensors carry autograd state themselves; ``Variable(x)`` only builds a second tensor object over the same
    storage on every call (and every step, when it wraps the batch), and the API is deprecated.

    Fix: use the tensor (``Variable(x, requires_grad=True)`` becomes ``x.detach().requires_grad_(True)``):

    ```python
    # before
    inputs, labels = Variable(inputs), Variable(labels)
    # after
    inputs, labels = inputs, labels
    ```
    """
    for call in calls_to(ctx, _VARIABLE):
        fix: Optional[Fix] = None
        if len(call.args) == 1 and not isinstance(call.args[0], ast.Starred):
            value = ctx.text(call.args[0])
            if not isinstance(call.args[0], (ast.Name, ast.Attribute, ast.Subscript, ast.Call)):
                value = f"({value})"
            others = [kw for kw in call.keywords if kw.arg != "requires_grad"]
            grad = keyword(call, "requires_grad")
            if not others:
                text = value if grad is None else f"{value}.detach().requires_grad_({ctx.text(grad.value)})"
                fix = Fix("use the tensor itself", (ctx.replace(call, text),))
        yield ctx.finding("DD170", call, "torch.autograd.Variable is a deprecated no-op: use the tensor itself",
                          fix=fix)


def _backward_names(loop: Loop) -> set[str]:
    """Names whose value ``backward()`` is called on in ``loop``: ``loss.backward()``, ``(loss / k).backward()``,
    ``scaler.scale(loss).backward()``, ``run.backward(loss)``, ``torch.autograd.backward(loss)``."""
    names: set[str] = set()
    for node in ast.walk(loop):
        if not isinstance(node, ast.Call) or method_name(node) != "backward":
            continue
        roots: list[ast.AST] = [node.func.value]  # type: ignore[attr-defined]
        roots += node.args[:1]
        for root in roots:
            callee_parts: set[int] = set()
            for sub in ast.walk(root):
                if isinstance(sub, ast.Call):
                    callee_parts |= {id(n) for n in ast.walk(sub.func)}
            for sub in ast.walk(root):
                if isinstance(sub, ast.Name) and id(sub) not in callee_parts:
                    names.add(sub.id)
    return names


def _detached_again(loop: Loop, name: str) -> bool:
    """``loss = loss.item()`` (or ``.detach()``, ``float(loss)``…) somewhere in the loop: the name stops holding a
    graph."""
    for node in ast.walk(loop):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets) \
                and isinstance(node.value, ast.Call):
            call = node.value
            if method_name(call) in _DETACHING or dotted_name(call.func) in ("float", "int"):
                return True
    return False


def _graph_names_in(value: ast.expr, graph: set[str]) -> Iterator[ast.Name]:
    """Names of graph-holding tensors used as values in ``value`` (not under a call: ``loss.item()`` is a float)."""
    if isinstance(value, ast.Name):
        if value.id in graph:
            yield value
        return
    if isinstance(value, ast.BinOp):
        yield from _graph_names_in(value.left, graph)
        yield from _graph_names_in(value.right, graph)
    elif isinstance(value, ast.UnaryOp):
        yield from _graph_names_in(value.operand, graph)


def _backwarded_anywhere(ctx: Context, target: ast.expr) -> bool:
    name = dotted_name(target)
    if not name:
        return False
    for node in ctx.calls():
        if method_name(node) == "backward":
            receiver = node.func.value  # type: ignore[attr-defined]
            if any(dotted_name(n) == name for n in ast.walk(receiver)) or \
                    any(dotted_name(n) == name for arg in node.args for n in ast.walk(arg)):
                return True
    return False


@rule("DD174", "loss-accumulated-with-graph", "A running total of the loss keeps every step's autograd graph",
      category="memory", fixable=True)
def loss_accumulated_with_graph(ctx: Context) -> Iterable[Finding]:
    """A running total of the loss keeps every step's autograd graph.

    Why: ``total += loss`` adds the tensor that requires grad, so ``total`` references each step's graph (its saved
    activations) until the total is dropped: memory grows every step and the extra autograd bookkeeping costs time.
    Shown in the step loop for a name that the loop calls ``backward()`` on, unless the total itself is backpropagated
    (a deliberate sum of losses).

    Fix: accumulate the detached value (on the device: no host sync):

    ```python
    # before
    total_loss += loss
    # after
    total_loss += loss.detach()
    ```
    """
    graphs: dict[int, set[str]] = {}
    for node in sorted(ctx.nodes_of(ast.AugAssign), key=lambda n: (n.lineno, n.col_offset)):
        if not isinstance(node.op, ast.Add):
            continue
        loop = ctx.step_loop_of(node)
        if loop is None or not ctx.per_step(node):
            continue
        if id(loop) not in graphs:
            graphs[id(loop)] = {name for name in _backward_names(loop) if not _detached_again(loop, name)}
        graph = graphs[id(loop)]
        if not graph or dotted_name(node.target) in graph:
            continue
        names = list(_graph_names_in(node.value, graph))
        if not names or _backwarded_anywhere(ctx, node.target):
            continue
        edits = tuple(ctx.replace(n, f"{n.id}.detach()") for n in names)
        yield ctx.finding("DD174", node, f"`{ctx.text(node)}` keeps every step's autograd graph alive: "
                          f"accumulate {names[0].id}.detach()", fix=Fix(f"accumulate {names[0].id}.detach()", edits))


def _loader_bindings(ctx: Context) -> Iterator[tuple[ast.Call, str, ast.Assign]]:
    """``name = DataLoader(...)`` assignments."""
    loaders = _loader_names(ctx)
    for node in ctx.nodes_of(ast.Assign):
        if len(node.targets) == 1 and isinstance(node.value, ast.Call):
            name = dotted_name(node.targets[0])
            if name and dotted_name(node.value.func) in loaders:
                yield node.value, name, node


def _loader_names(ctx: Context) -> set[str]:
    names: set[str] = set()
    for dotted in _DATALOADER:
        names |= ctx.imported_as(dotted)
    return names


def _workers_on(call: ast.Call) -> bool:
    kw = keyword(call, "num_workers")
    if kw is None:
        return False
    value = literal_int(kw.value)
    if value is not None:
        return value > 0
    return not isinstance(kw.value, ast.Constant)


def _loops_over(ctx: Context, name: str, binding: ast.Assign) -> bool:
    """The loader ``name`` is iterated (or handed to a function) inside a loop that it was not built in: once per
    epoch."""
    enclosing = {id(a) for a in ctx.ancestors(binding) if isinstance(a, (ast.For, ast.AsyncFor, ast.While))}
    loops: list[ast.AST] = [*ctx.nodes_of(ast.For), *ctx.nodes_of(ast.AsyncFor), *ctx.nodes_of(ast.While)]
    for loop in loops:
        if id(loop) in enclosing:
            continue
        for stmt in loop.body:
            for node in ast.walk(stmt):
                if isinstance(node, (ast.For, ast.AsyncFor)) and _mentions(node.iter, name):
                    return True
                if isinstance(node, ast.Call) and dotted_name(node.func) not in _NOT_ITERATING \
                        and any(_mentions(arg, name) for arg in node.args):
                    return True
    return False


def _mentions(node: ast.AST, name: str) -> bool:
    if dotted_name(node) == name:
        return True
    if isinstance(node, ast.Call):
        return any(dotted_name(arg) == name for arg in node.args)
    return False


@rule("DD176", "no-persistent-workers", "DataLoader workers are started again every epoch", category="data_wait",
      fixable=True)
def no_persistent_workers(ctx: Context) -> Iterable[Finding]:
    """DataLoader workers are started again every epoch.

    Why: without ``persistent_workers=True`` each ``for batch in loader`` forks ``num_workers`` new processes that
    re-import the script's modules and rebuild the dataset's state before the first batch arrives: a stall at the
    start of every epoch. Shown on a ``DataLoader(..., num_workers=N)`` (N > 0 or a variable) that a loop iterates
    again and again (an epoch loop around the batch loop, or around a function the loader is passed to).

    Fix: keep the workers alive between epochs:

    ```python
    # before
    loader = DataLoader(ds, batch_size=64, num_workers=4)
    # after
    loader = DataLoader(ds, batch_size=64, num_workers=4, persistent_workers=True)
    ```
    """
    for call, name, binding in _loader_bindings(ctx):
        if has_double_star(call) or keyword(call, "persistent_workers") is not None or not _workers_on(call):
            continue
        if _loops_over(ctx, name, binding):
            yield ctx.finding("DD176", call, "DataLoader workers restart every epoch: pass persistent_workers=True",
                              fix=Fix("add persistent_workers=True", (add_keyword(ctx, call,
                                                                                  "persistent_workers=True"),)))


def _moves(call: ast.Call) -> bool:
    return method_name(call) == "cuda" or (method_name(call) == "to" and (bool(call.args) or bool(call.keywords)))


@rule("DD180", "model-moved-in-loop", "The model is moved to the device on every step", category="copies",
      fixable=False)
def model_moved_in_loop(ctx: Context) -> Iterable[Finding]:
    """The model is moved to the device on every step.

    Why: ``model.to(device)`` walks every parameter and buffer on each call; inside the step loop that is per-step
    Python work (and a full copy whenever something moved them back). Shown for ``X.to(...)``/``X.cuda()`` in the step
    loop where ``X`` is also called in the loop (``out = X(inputs)``): a module, not a batch tensor.

    Fix: move it once, before the loop:

    ```python
    # before
    for x, y in loader:
        model.to(device)
        loss = criterion(model(x.to(device)), y.to(device))
    # after
    model.to(device)
    for x, y in loader:
        loss = criterion(model(x.to(device)), y.to(device))
    ```
    """
    called: dict[int, set[str]] = {}
    for call in ctx.calls():
        if not _moves(call):
            continue
        loop = ctx.step_loop_of(call)
        if loop is None or not ctx.per_step(call):
            continue
        if id(loop) not in called:
            called[id(loop)] = {dotted_name(c.func) for c in ctx.calls(loop) if ctx.step_loop_of(c) is loop}
        name = dotted_name(call.func.value)  # type: ignore[attr-defined]
        if name and name in called[id(loop)]:
            yield ctx.finding("DD180", call, f"{name} is moved to the device every step: move the model once "
                              "before the loop")
