"""Rules about evaluation code: the forward passes of validation and test without ``torch.no_grad()``, and without
``model.eval()`` (DD130, DD131).

"Evaluation code" is a function named for it (``evaluate``, ``validate``, ``eval_epoch``, ``test``…) that calls
the model and trains nothing, or a loop over a loader named for it (``for x, y in val_loader:``) outside the
training step. Framework hooks (methods named ``validation_step``, ``on_…``) are left alone: the framework that
calls them sets both already.
"""

from __future__ import annotations

import ast
import os
import re
from typing import Iterator, Optional, Union

import attrs

from deepdive.diagnose.rules.base import Context, Edit, Finding, Fix, method_name, rule
from deepdive.diagnose.rules.rewrite import header_finding, torch_name
from deepdive.diagnose.rules.values import Values, values_of

Function = Union[ast.FunctionDef, ast.AsyncFunctionDef]

_EVAL_WORDS = {"eval", "evaluate", "evaluation", "valid", "validate", "validation", "val", "test", "testing"}
_HOOK = re.compile(r"(_step|_epoch_end|_epoch_start|_batch_end|_batch_start)$|^on_")
_NO_GRAD = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.inference_mode",
            "torch.autograd.grad_mode.no_grad", "torch.autograd.grad_mode.inference_mode"}


def words(name: str) -> set[str]:
    """The lower-case words of an identifier (``evalEpoch`` and ``eval_epoch`` → {"eval", "epoch"})."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return {word.lower() for word in re.split(r"[_\W]+", spaced) if word}


def _is_test_file(path: str) -> bool:
    base = os.path.basename(path)
    return base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py"


def _trains(ctx: Context, root: ast.AST) -> bool:
    """``root`` holds a training step (a step loop, a ``.backward()`` or an optimizer step)."""
    values = values_of(ctx)
    for call in ctx.calls(root):
        name = method_name(call)
        if name == "backward" or values.resolve(call.func) in {"torch.autograd.grad", "torch.autograd.backward"}:
            return True
        if name == "step" and isinstance(call.func, ast.Attribute):
            target = call.func.value
            if not (isinstance(target, ast.Name) and "sched" in target.id.lower()):
                return True
    return False


def evaluation_functions(ctx: Context) -> list[Function]:
    """Functions named for evaluation that call the model and train nothing (computed once per file)."""
    found = ctx.shared.get("evaluation_functions")
    if found is None:
        found = ctx.shared["evaluation_functions"] = list(_evaluation_functions(ctx))
    return found


def _evaluation_functions(ctx: Context) -> Iterator[Function]:
    values = values_of(ctx)
    test_file = _is_test_file(ctx.path)
    for node in values.of(ast.FunctionDef, ast.AsyncFunctionDef):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if _HOOK.search(node.name) and isinstance(ctx.parents.get(node), ast.ClassDef):
            continue  # validation_step(self, batch): the framework calling it sets no_grad and eval mode
        found = words(node.name) & _EVAL_WORDS
        if test_file:
            found -= {"test", "testing"}
        if not found or _trains(ctx, node) or not values.called_modules(node):
            continue
        yield node


def _is_no_grad(values: Values, expr: ast.AST) -> bool:
    """``torch.no_grad()``, ``torch.inference_mode()``, ``torch.set_grad_enabled(False)`` (or the bare decorator)."""
    if isinstance(expr, ast.Call):
        full = values.resolve(expr.func)
        if full in _NO_GRAD:
            return not (expr.args and isinstance(expr.args[0], ast.Constant) and expr.args[0].value is False)
        if full == "torch.set_grad_enabled":
            return bool(expr.args) and isinstance(expr.args[0], ast.Constant) and expr.args[0].value is False
        return False
    return values.resolve(expr) in _NO_GRAD


def under_no_grad(ctx: Context, node: ast.AST) -> bool:
    """``node`` runs with gradients off: in a ``with torch.no_grad():`` block or a function decorated so."""
    values = values_of(ctx)
    for parent in ctx.ancestors(node):
        if isinstance(parent, (ast.With, ast.AsyncWith)) and any(_is_no_grad(values, item.context_expr)
                                                                 for item in parent.items):
            return True
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                _is_no_grad(values, decorator) for decorator in parent.decorator_list):
            return True
    return False


def _grad_off_globally(ctx: Context) -> bool:
    values = values_of(ctx)
    return any(isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and _is_no_grad(values, stmt.value)
               and values.resolve(stmt.value.func) == "torch.set_grad_enabled" for stmt in ctx.tree.body)


def _call_sites(ctx: Context, function: Function) -> list[ast.Call]:
    sites = []
    for call in values_of(ctx).calls:
        func = call.func
        if (isinstance(func, ast.Name) and func.id == function.name) or (
                isinstance(func, ast.Attribute) and func.attr == function.name):
            sites.append(call)
    return sites


def _mode_before(ctx: Context, node: ast.AST) -> Optional[str]:
    """"eval" or "train": the mode the last ``.eval()``/``.train(...)`` call before ``node`` in its scope sets."""
    scope: ast.AST = ctx.enclosing_function(node) or ctx.tree
    last: Optional[tuple[int, str]] = None
    for call in ctx.calls(scope):
        name = method_name(call)
        if call.lineno >= node.lineno or name not in {"eval", "train"} or call.keywords and name == "eval":
            continue
        if name == "eval" and not call.args:
            mode = "eval"
        elif name == "train":
            argument = call.args[0] if call.args else next((kw.value for kw in call.keywords if kw.arg == "mode"),
                                                           None)
            if argument is not None and not isinstance(argument, ast.Constant):
                continue
            mode = "eval" if argument is not None and argument.value is False else "train"  # type: ignore[union-attr]
        else:
            continue
        if last is None or call.lineno >= last[0]:
            last = (call.lineno, mode)
    return last[1] if last else None


def _sets_eval(ctx: Context, root: ast.AST) -> bool:
    for call in ctx.calls(root):
        name = method_name(call)
        if name == "eval" and not call.args and not call.keywords:
            return True
        if name == "train" and call.args and isinstance(call.args[0], ast.Constant) and call.args[0].value is False:
            return True
    return False


def _model_texts(ctx: Context, root: ast.AST) -> list[str]:
    """The models ``root`` calls, as written (``model``, ``self.net``), each once."""
    texts: list[str] = []
    for call in values_of(ctx).called_modules(root):
        text = ctx.text(call.func)
        if text not in texts:
            texts.append(text)
    return texts


def _def_finding(ctx: Context, code: str, function: Function, message: str, fix: Optional[Fix]) -> Finding:
    """A finding on ``def name`` (not the whole body)."""
    line = function.lineno
    raw = ctx.lines[line - 1]
    col = ctx.char_col(line, function.col_offset)
    start = raw.find(function.name, col)
    end = start + len(function.name) if start >= 0 else len(raw.rstrip())
    return Finding(code=code, line=line, col=col, end_line=line, end_col=end, message=message, fix=fix)


def _string_lines(ctx: Context) -> set[int]:
    """Lines that continue a multi-line string: re-indenting them would change the string."""
    inside: set[int] = set()
    for node in values_of(ctx).of(ast.Constant, ast.JoinedStr):
        if isinstance(node, (ast.Constant, ast.JoinedStr)) and isinstance(getattr(node, "value", ""), (str, list)):
            end = node.end_lineno or node.lineno
            inside.update(range(node.lineno + 1, end + 1))
    return inside


def indent_lines(ctx: Context, first: int, last: int, unit: str) -> list[Edit]:
    """Edits indenting lines ``first``..``last`` one ``unit`` deeper (blank lines and string continuations kept)."""
    skip = _string_lines(ctx)
    return [Edit(line, 0, line, 0, unit) for line in range(first, last + 1)
            if line not in skip and ctx.lines[line - 1].strip()]


def _after_line(ctx: Context, line: int, text: str) -> Edit:
    """An edit inserting whole line(s) ``text`` after 1-based ``line``."""
    if line >= len(ctx.lines) and not ctx.lines[-1].endswith("\n"):
        return Edit(line + 1, 0, line + 1, 0, "\n" + text)
    return Edit(line + 1, 0, line + 1, 0, text)


def _unit(ctx: Context, outer_line: int, inner_line: int) -> str:
    outer, inner = ctx.indent_of(outer_line), ctx.indent_of(inner_line)
    return inner[len(outer):] if inner.startswith(outer) and len(inner) > len(outer) else "    "


def _body_start(function: Function) -> Optional[ast.stmt]:
    """The first statement after the docstring; None when the body is only a docstring or shares the def's line."""
    body = function.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        if len(body) == 1:
            return None
        first = body[1]
    return first if first.lineno > function.lineno else None


def evaluation_loops(ctx: Context) -> Iterator[Union[ast.For, ast.AsyncFor]]:
    """Loops over a loader named for evaluation (``val_loader``, ``loaders["test"]``) that call the model, outside
    the training step and outside evaluation functions (those are judged as functions)."""
    values = values_of(ctx)
    named = set(evaluation_functions(ctx))
    found: list[Union[ast.For, ast.AsyncFor]] = []
    for node in values.of(ast.For, ast.AsyncFor):
        if not isinstance(node, (ast.For, ast.AsyncFor)) or node in ctx.step_loops:
            continue
        names: set[str] = set()
        for inner in ast.walk(node.iter):
            if isinstance(inner, ast.Name):
                names |= words(inner.id)
            elif isinstance(inner, ast.Attribute):
                names |= words(inner.attr)
            elif isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                names |= words(inner.value)
        if not names & _EVAL_WORDS or not values.called_modules(node) or _trains(ctx, node):
            continue
        if ctx.per_step(node) or any(parent in named for parent in ctx.ancestors(node)):
            continue
        found.append(node)
    # a loop nested in another evaluation loop is part of it
    for node in found:
        if not any(parent in found for parent in ctx.ancestors(node)):
            yield node


@rule("DD130", "eval-without-no-grad", "Evaluation that records the autograd graph (no torch.no_grad())",
      category="memory", fixable=True)
def eval_without_no_grad(ctx: Context) -> Iterator[Finding]:
    """An evaluation function or loop that calls the model without ``torch.no_grad()`` / ``torch.inference_mode()``.

    Why: outside ``no_grad`` every forward records the autograd graph and keeps each layer's activations alive
    for a backward that never comes: evaluation does extra work and holds more memory (so batches must be
    smaller). The outputs are the same.

    Fix: decorate the function with ``@torch.no_grad()`` (or wrap the loop in ``with torch.no_grad():``).
    ``torch.inference_mode()`` is a little faster still, but its tensors can never enter autograd later; the
    quick fix uses ``no_grad`` so nothing else in the script can break.

    ```python
    # before
    def evaluate(model, loader):
        model.eval()
        return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    # after
    @torch.no_grad()
    def evaluate(model, loader):
        model.eval()
        return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    ```
    """
    if _grad_off_globally(ctx):
        return
    values = values_of(ctx)
    for function in evaluation_functions(ctx):
        calls = values.called_modules(function)
        if all(under_no_grad(ctx, call) for call in calls):
            continue
        sites = _call_sites(ctx, function)
        if sites and all(under_no_grad(ctx, site) for site in sites):
            continue
        torch, imports = torch_name(ctx)
        # right above the def: the innermost decorator, so it wraps the function itself (not a staticmethod)
        indent = ctx.indent_of(function.lineno)
        edits = (Edit(function.lineno, 0, function.lineno, 0, f"{indent}@{torch}.no_grad()\n"), *imports)
        yield _def_finding(ctx, "DD130", function, f"{function.name}() runs the model with autograd on: decorate it "
                           f"with @{torch}.no_grad() (or torch.inference_mode())",
                           Fix(title=f"Evaluate without autograd (@{torch}.no_grad())", edits=edits))
    for loop in evaluation_loops(ctx):
        if all(under_no_grad(ctx, call) for call in values.called_modules(loop)):
            continue
        if loop.lineno == loop.body[0].lineno:
            continue  # a one-line loop: too unusual to rewrite
        torch, imports = torch_name(ctx)
        indent = ctx.indent_of(loop.lineno)
        unit = _unit(ctx, loop.lineno, loop.body[0].lineno)
        last = loop.end_lineno or loop.lineno
        edits = [Edit(loop.lineno, 0, loop.lineno, 0, f"{indent}with {torch}.no_grad():\n{unit}"),
                 *indent_lines(ctx, loop.lineno + 1, last, unit), *imports]
        yield _with_fix(header_finding(ctx, "DD130", loop, "this evaluation loop runs the model with autograd on: "
                                       f"wrap it in `with {torch}.no_grad():`"),
                        Fix(title=f"Evaluate without autograd (with {torch}.no_grad())", edits=tuple(edits)))


@rule("DD131", "eval-without-eval-mode", "Evaluation with the model in training mode (no model.eval())",
      category="forward", fixable=True)
def eval_without_eval_mode(ctx: Context) -> Iterator[Finding]:
    """An evaluation function or loop that calls the model and never puts it in eval mode (``model.eval()``).

    Why: in training mode dropout drops activations and batch norm normalises with the batch's own statistics
    and updates its running averages: the evaluation both measures a different model and changes the one being
    trained. (The dropout masks cost time too.)

    Fix: call ``model.eval()`` before evaluating and ``model.train()`` before training again. The quick fix
    inserts ``model.eval()`` first in the function; when the script never calls ``model.train()`` it also
    restores training mode when the function returns (``try``/``finally``), so the next epoch trains as before.

    ```python
    # before
    @torch.no_grad()
    def evaluate(model, loader):
        return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    # after
    @torch.no_grad()
    def evaluate(model, loader):
        model.eval()
        return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    ```
    """
    values = values_of(ctx)
    # the script puts a model back in training mode itself: inserting model.eval() is enough
    trains_again = any(method_name(call) == "train" and not call.args and not call.keywords
                       and values.is_module(call.func.value) for call in values.calls)  # type: ignore[attr-defined]
    for function in evaluation_functions(ctx):
        if _sets_eval(ctx, function):
            continue
        sites = _call_sites(ctx, function)
        if sites and all(_mode_before(ctx, site) == "eval" for site in sites):
            continue
        models = _model_texts(ctx, function)
        start = _body_start(function)
        fix: Optional[Fix] = None
        if start is not None:
            indent = ctx.indent_of(start.lineno)
            modes = "".join(f"{indent}{model}.eval()\n" for model in models)
            if trains_again:
                edits: list[Edit] = [Edit(start.lineno, 0, start.lineno, 0, modes)]
            else:
                unit = _unit(ctx, function.lineno, start.lineno)
                last = function.end_lineno or start.lineno
                restore = "".join(f"{indent}{unit}{model}.train()\n" for model in models)
                edits = [Edit(start.lineno, 0, start.lineno, 0, f"{modes}{indent}try:\n{unit}"),
                         *indent_lines(ctx, start.lineno + 1, last, unit),
                         _after_line(ctx, last, f"{indent}finally:\n{restore}")]
            fix = Fix(title=f"Evaluate in eval mode ({models[0]}.eval())", edits=tuple(edits))
        yield _def_finding(ctx, "DD131", function, f"{function.name}() runs {models[0]} in training mode (dropout, "
                           f"batch-norm updates): call {models[0]}.eval() first", fix)
    for loop in evaluation_loops(ctx):
        if _sets_eval(ctx, loop) or _mode_before(ctx, loop) == "eval" or loop.lineno == loop.body[0].lineno:
            continue
        models = _model_texts(ctx, loop)
        indent = ctx.indent_of(loop.lineno)
        last = loop.end_lineno or loop.lineno
        edits = [Edit(loop.lineno, 0, loop.lineno, 0, "".join(f"{indent}{m}.eval()\n" for m in models)),
                 _after_line(ctx, last, "".join(f"{indent}{m}.train()\n" for m in models))]
        yield _with_fix(header_finding(ctx, "DD131", loop, f"this evaluation loop runs {models[0]} in training mode: "
                                       f"call {models[0]}.eval() before it (and .train() after)"),
                        Fix(title=f"Evaluate in eval mode ({models[0]}.eval() … .train())", edits=tuple(edits)))


def _with_fix(finding: Finding, fix: Fix) -> Finding:
    return attrs.evolve(finding, fix=fix)
