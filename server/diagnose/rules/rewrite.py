"""The text edits fixes are made of: a keyword added to or removed from a call, a statement after the imports,
and the span of a loop's header line (where a whole-loop finding is shown, rather than squiggling the body).

Each function returns :class:`~deepdive.diagnose.rules.base.Edit` values in the file's own coordinates, so a fix
built from them parses again after :func:`~deepdive.diagnose.rules.base.apply_edits`.
"""

from __future__ import annotations

import ast
from typing import Optional, Union

from deepdive.diagnose.rules.base import Context, Edit, Finding, Fix, Loop

Argument = Union[ast.expr, ast.keyword]


def arguments_in_order(call: ast.Call) -> list[Argument]:
    """The call's positional and keyword arguments in source order."""
    items: list[Argument] = [*call.args, *call.keywords]
    return sorted(items, key=lambda a: (a.lineno, a.col_offset))


def has_double_star(call: ast.Call) -> bool:
    """``f(**options)``: the keywords are not all visible, so adding or judging one is unsafe."""
    return any(kw.arg is None for kw in call.keywords)


def add_keyword(ctx: Context, call: ast.Call, text: str) -> Edit:
    """An edit adding ``text`` (``bias=False``) as the call's last argument, after the last argument's own text (so a
    trailing comma or a comment before the closing parenthesis stays valid)."""
    items = arguments_in_order(call)
    if items:
        _, _, line, col = ctx.span(items[-1])
        return Edit(line, col, line, col, f", {text}")
    _, _, line, col = ctx.span(call)
    # no arguments: the call ends with "()" (possibly with blanks inside); insert right before the ")"
    return Edit(line, col - 1, line, col - 1, text)


def remove_argument(ctx: Context, call: ast.Call, argument: Argument) -> Edit:
    """An edit deleting one argument with the comma that joins it to its neighbour."""
    items = arguments_in_order(call)
    index = next(i for i, item in enumerate(items) if item is argument)
    line, col, end_line, end_col = ctx.span(argument)
    if index > 0:
        _, _, line, col = ctx.span(items[index - 1])
    elif index + 1 < len(items):
        end_line, end_col, _, _ = ctx.span(items[index + 1])
    return Edit(line, col, end_line, end_col, "")


def torch_name(ctx: Context) -> tuple[str, list[Edit]]:
    """How to write ``torch`` in inserted code, and the edit that imports it when the file binds no such name."""
    bound = ctx.module_bound_as("torch")
    if bound is not None:
        return bound, []
    line = ctx.after_imports_line()
    lead = "\n" if line > len(ctx.lines) and ctx.lines and not ctx.lines[-1].endswith(("\n", "\r")) else ""
    return "torch", [ctx.insert_before_line(line, lead + "import torch\n")]


def after_imports(ctx: Context, statement: str) -> list[Edit]:
    """Edits inserting ``statement`` (written with the name ``torch``) on its own line after the imports, importing
    torch first when the file does not bind it."""
    name, imports = torch_name(ctx)
    line = ctx.after_imports_line()
    text = statement.replace("torch.", f"{name}.", 1) if statement.startswith("torch.") else statement
    if imports:
        text = "import torch\n" + text
    # the last import is the file's last line and has no newline: start a line of our own
    lead = "\n" if line > len(ctx.lines) and ctx.lines and not ctx.lines[-1].endswith(("\n", "\r")) else ""
    return [ctx.insert_before_line(line, lead + text + "\n")]


def header_finding(ctx: Context, code: str, loop: Loop, message: str, *, fix: Optional[Fix] = None) -> Finding:
    """A finding on a loop's header (``for x, y in loader:``), not its whole body."""
    line, col, _, _ = ctx.span(loop)
    head = loop.test if isinstance(loop, ast.While) else loop.iter
    end = head.end_lineno or line
    raw = ctx.lines[end - 1].rstrip("\r\n") if 1 <= end <= len(ctx.lines) else ""
    return Finding(code=code, line=line, col=col, end_line=end, end_col=len(raw.rstrip()), message=message,
                   fix=fix)


def literal_int(node: Optional[ast.AST]) -> Optional[int]:
    """The value of an integer literal, None for anything else (``True`` is not an integer here)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None
