"""Layout rules: how convolutions and matmuls meet the GPU's kernels (cuDNN autotuning, channels-last memory
format, a conv bias that batch norm cancels, Linear sizes the tensor cores cannot tile)."""

from __future__ import annotations

import ast
from typing import Iterable, Iterator, Optional

from deepdive.diagnose.rules.base import Context, Finding, Fix, dotted_name, keyword, method_name, rule
from deepdive.diagnose.rules.rewrite import add_keyword, after_imports, has_double_star, literal_int, torch_name

_CONVS = ("Conv1d", "Conv2d", "Conv3d")
_BATCH_NORMS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm")


def _names_of(ctx: Context, classes: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for cls in classes:
        names |= ctx.imported_as(f"torch.nn.{cls}")
    return names


def layer_calls(ctx: Context, classes: Iterable[str]) -> Iterator[ast.Call]:
    """Calls constructing one of the ``torch.nn`` layer ``classes`` under any name the imports give them."""
    yield from ctx.calls_named(_names_of(ctx, classes))


def _is_literal(node: Optional[ast.AST], value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _assigned_attribute(ctx: Context, dotted_suffix: str) -> list[ast.Assign]:
    """Assignments to an attribute chain ending in ``dotted_suffix`` (``cudnn.benchmark``), in source order."""
    found = []
    for node in ctx.nodes_of(ast.Assign):
        names = [dotted_name(target) for target in node.targets]
        if any(name == dotted_suffix or name.endswith("." + dotted_suffix) for name in names):
            found.append(node)
    return sorted(found, key=lambda n: n.lineno)


def _deterministic(ctx: Context) -> bool:
    """The script asks for reproducible kernels (``cudnn.deterministic = True`` or
    ``torch.use_deterministic_algorithms(True)``): benchmark mode off is its choice, not an oversight."""
    for node in _assigned_attribute(ctx, "cudnn.deterministic"):
        if not _is_literal(node.value, False):
            return True
    for call in ctx.calls():
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if name == "use_deterministic_algorithms" and not (call.args and _is_literal(call.args[0], False)):
            return True
    return False


@rule("DD150", "cudnn-benchmark-off", "A conv net on the GPU without cudnn.benchmark = True", category="forward",
      fixable=True, cuda_only=True)
def cudnn_benchmark_off(ctx: Context) -> Iterable[Finding]:
    """A conv net on the GPU without ``torch.backends.cudnn.benchmark = True``.

    Why: with benchmark mode off, cuDNN picks a convolution algorithm by heuristics; with it on, it times the
    candidates once per input shape and keeps the fastest: a gain whenever the input shapes stay fixed (the usual
    training loop), a cost only when they change every step. Shown on the ``benchmark = False`` line, or, when the
    script never sets it, on the first ``nn.ConvNd(...)``. Not shown when the script asks for deterministic kernels.

    Fix: turn it on after the imports (or change False to True):

    ```python
    # before
    torch.backends.cudnn.benchmark = False
    # after
    torch.backends.cudnn.benchmark = True
    ```
    """
    convs = sorted(layer_calls(ctx, _CONVS), key=lambda c: (c.lineno, c.col_offset))
    if not convs or _deterministic(ctx):
        return
    assignments = _assigned_attribute(ctx, "cudnn.benchmark")
    message = "conv net with cudnn.benchmark off: set torch.backends.cudnn.benchmark = True (fixed input shapes)"
    if assignments:
        for node in assignments:
            if _is_literal(node.value, False):
                fix = Fix("set cudnn.benchmark = True", (ctx.replace(node.value, "True"),))
                yield ctx.finding("DD150", node, message, fix=fix)
        return
    fix = Fix("insert torch.backends.cudnn.benchmark = True after the imports",
              tuple(after_imports(ctx, "torch.backends.cudnn.benchmark = True")))
    yield ctx.finding("DD150", convs[0], message, fix=fix)


def _moves_to_device(call: ast.Call) -> bool:
    """``x.to(device)`` / ``x.to("cuda")`` / ``x.cuda()``: a move, not only a dtype or memory-format change."""
    if method_name(call) == "cuda":
        return True
    if method_name(call) != "to":
        return False
    return bool(call.args) or keyword(call, "device") is not None


def _model_move(ctx: Context, called: set[str]) -> Optional[tuple[ast.stmt, str]]:
    """The first statement outside the step loops that moves a module to the device, and the name the module is then
    called by: ``model.to(device)``, ``model = model.cuda()``, ``net = Net().to(device)``."""
    statements: list[ast.Expr | ast.Assign] = sorted([*ctx.nodes_of(ast.Expr), *ctx.nodes_of(ast.Assign)],
                                                     key=lambda n: (n.lineno, n.col_offset))
    for stmt in statements:
        if not isinstance(stmt, (ast.Expr, ast.Assign)) or not isinstance(stmt.value, ast.Call):
            continue
        call = stmt.value
        if not _moves_to_device(call) or ctx.in_step_loop(stmt):
            continue
        if isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1 or not dotted_name(stmt.targets[0]):
                continue
            name = dotted_name(stmt.targets[0])
        else:
            name = dotted_name(call.func.value)  # type: ignore[attr-defined]
        if name and name in called:
            return stmt, name
    return None


@rule("DD151", "channels-last", "A Conv2d model on the GPU in the default (NCHW) memory format", category="forward",
      fixable=True, cuda_only=True)
def channels_last(ctx: Context) -> Iterable[Finding]:
    """A Conv2d model on the GPU in the default (NCHW) memory format.

    Why: cuDNN's tensor-core convolutions work in NHWC; with NCHW weights and activations every convolution pays for
    layout transposes. ``channels_last`` makes the layout NHWC end to end (PyTorch's memory-format tutorial recommends
    it for convolution nets under AMP). Shown on the line that moves the model to the device when the file never
    mentions ``channels_last``.

    Fix: convert the model once, after moving it:

    ```python
    # before
    model = Net().to(device)
    # after
    model = Net().to(device)
    model = model.to(memory_format=torch.channels_last)
    ```
    """
    if not any(True for _ in layer_calls(ctx, ("Conv2d",))):
        return
    if any(node.attr == "channels_last" for node in ctx.nodes_of(ast.Attribute)) or \
            any(node.value == "channels_last" for node in ctx.nodes_of(ast.Constant)):
        return
    called = {dotted_name(call.func) for call in ctx.calls()}
    move = _model_move(ctx, called)
    if move is None:
        return
    stmt, name = move
    torch, imports = torch_name(ctx)
    end = stmt.end_lineno or stmt.lineno
    indent = ctx.indent_of(stmt.lineno)
    # Module.to converts in place; an assignment is only written where the statement assigns the name already (a new
    # assignment inside a function would make a global model local to it)
    prefix = f"{name} = " if isinstance(stmt, ast.Assign) else ""
    convert = f"{prefix}{name}.to(memory_format=torch.channels_last)"
    text = f"{prefix}{name}.to(memory_format={torch}.channels_last)"
    if end >= len(ctx.lines) and not ctx.source.endswith("\n"):
        insert = ctx.insert_before_line(end + 1, f"\n{indent}{text}")
    else:
        insert = ctx.insert_before_line(end + 1, f"{indent}{text}\n")
    fix = Fix(f"convert {name} to channels_last after moving it", (*imports, insert))
    yield ctx.finding("DD151", stmt, f"Conv2d model in NCHW layout: add `{convert}` after moving it to the device",
                      fix=fix)


def _bias_on(call: ast.Call) -> bool:
    """The conv keeps its bias: no ``bias=`` (default True), ``bias=True``, or a literal True 8th positional."""
    if has_double_star(call):
        return False
    kw = keyword(call, "bias")
    if kw is not None:
        return _is_literal(kw.value, True)
    if len(call.args) >= 8:
        return _is_literal(call.args[7], True)
    return True


def _bias_fix(ctx: Context, call: ast.Call) -> Fix:
    kw = keyword(call, "bias")
    if kw is not None:
        return Fix("set bias=False", (ctx.replace(kw.value, "False"),))
    if len(call.args) >= 8:
        return Fix("set bias=False", (ctx.replace(call.args[7], "False"),))
    return Fix("add bias=False", (add_keyword(ctx, call, "bias=False"),))


def _conv_bn_pairs(ctx: Context) -> Iterator[ast.Call]:
    """Conv constructor calls directly followed by a batch norm: neighbours in an ``nn.Sequential(...)`` or a list, or
    ``self.conv``/``self.bn`` attributes applied as ``bn(conv(x))`` (nested, or on consecutive lines)."""
    convs = set(_names_of(ctx, _CONVS))
    norms = set(_names_of(ctx, _BATCH_NORMS))
    seen: set[int] = set()
    conv_calls = ctx.calls_named(convs)
    if not conv_calls:
        return
    for conv in conv_calls:
        # the conv's neighbour in the argument list or list/tuple display that holds it
        parent = ctx.parents.get(conv)
        items: list[ast.expr] = parent.args if isinstance(parent, ast.Call) else \
            parent.elts if isinstance(parent, (ast.List, ast.Tuple)) else []
        index = next((i for i, item in enumerate(items) if item is conv), None)
        if index is None or index + 1 >= len(items):
            continue
        second = items[index + 1]
        if isinstance(second, ast.Call) and dotted_name(second.func) in norms and id(conv) not in seen:
            seen.add(id(conv))
            yield conv
    # self.conv / self.bn layers, by the class that assigns them
    classes: dict[int, tuple[ast.ClassDef, dict[str, ast.Call], dict[str, str]]] = {}
    for node in ctx.nodes_of(ast.Assign):
        if len(node.targets) != 1 or not isinstance(node.value, ast.Call):
            continue
        target, func = dotted_name(node.targets[0]), dotted_name(node.value.func)
        if not target.startswith("self.") or func not in convs | norms:
            continue
        cls = next((a for a in ctx.ancestors(node) if isinstance(a, ast.ClassDef)), None)
        if cls is None:
            continue
        _, layers, kinds = classes.setdefault(id(cls), (cls, {}, {}))
        layers[target] = node.value
        kinds[target] = "conv" if func in convs else "norm"
    for cls, layers, kinds in classes.values():
        if set(kinds.values()) != {"conv", "norm"}:
            continue
        for conv in _applied_conv_then_norm(cls, kinds):
            call = layers[conv]
            if id(call) not in seen:
                seen.add(id(call))
                yield call


def _applied_conv_then_norm(cls: ast.ClassDef, kinds: dict[str, str]) -> Iterator[str]:
    def kind(call: ast.AST) -> str:
        return kinds.get(dotted_name(call.func), "") if isinstance(call, ast.Call) else ""

    for node in ast.walk(cls):
        # bn(conv(x))
        if kind(node) == "norm" and node.args and kind(node.args[0]) == "conv":  # type: ignore[attr-defined]
            yield dotted_name(node.args[0].func)  # type: ignore[attr-defined]
        # y = conv(x) then z = bn(y) on the next statement
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for first, second in zip(body, body[1:]):
                if isinstance(first, ast.Assign) and isinstance(second, (ast.Assign, ast.Return, ast.Expr)) \
                        and kind(first.value) == "conv" and len(first.targets) == 1 \
                        and isinstance(first.targets[0], ast.Name) and second.value is not None \
                        and kind(second.value) == "norm" and second.value.args \
                        and isinstance(second.value.args[0], ast.Name) \
                        and second.value.args[0].id == first.targets[0].id:
                    yield dotted_name(first.value.func)  # type: ignore[attr-defined]


@rule("DD152", "conv-bias-before-bn", "A convolution with a bias directly followed by batch norm",
      category="forward", fixable=True)
def conv_bias_before_bn(ctx: Context) -> Iterable[Finding]:
    """A convolution with a bias directly followed by batch norm.

    Why: batch norm subtracts the per-channel mean, which cancels the conv's bias exactly: the bias is computed,
    stored, updated by the optimizer and synchronised under DDP for nothing (the profiler's "conv bias before batch
    norm" pattern).

    Fix: drop the bias:

    ```python
    # before
    nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
    # after
    nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
    ```
    """
    for call in _conv_bn_pairs(ctx):
        if _bias_on(call):
            yield ctx.finding("DD152", call, "conv bias followed by batch norm (which cancels it): pass bias=False",
                              fix=_bias_fix(ctx, call))


@rule("DD153", "matmul-dims-not-8", "nn.Linear sizes that are not multiples of 8", category="forward",
      fixable=False, cuda_only=True)
def matmul_dims_not_8(ctx: Context) -> Iterable[Finding]:
    """``nn.Linear`` sizes that are not multiples of 8.

    Why: fp16/bf16 tensor cores tile matrices in multiples of 8 (16 bytes); a Linear layer whose in or out size is not
    one pads internally or falls back to slower kernels (the profiler's "matmul dims not aligned" pattern). Shown for
    literal sizes of at least 64 (small heads such as 10 classes cost little).

    Fix: round the width up to a multiple of 8:

    ```python
    # before
    nn.Linear(784, 500)
    # after
    nn.Linear(784, 504)
    ```
    """
    for call in layer_calls(ctx, ("Linear",)):
        sizes = [literal_int(call.args[i]) if len(call.args) > i else None for i in (0, 1)]
        for index, name in enumerate(("in_features", "out_features")):
            kw = keyword(call, name)
            if kw is not None:
                sizes[index] = literal_int(kw.value)
        a, b = sizes
        if a is None or b is None or a < 64 or b < 64 or (a % 8 == 0 and b % 8 == 0):
            continue
        odd = ", ".join(str(v) for v in (a, b) if v % 8)
        yield ctx.finding("DD153", call, f"nn.Linear({a}, {b}): pad {odd} to a multiple of 8 for tensor cores")
