"""Placing a model's definitions into a frame program, by name.

A frame is a whole program that already meets the contract (imports, constants, data loading, the
training loop, evaluation, ``main`` with ``--smoke``). The model answers with top-level definitions
only: a model class and ``build_model()``, and when the task needs it ``example_batch()``,
``compute_loss()`` or ``load_data()``. :func:`splice` puts each answered definition where the
frame's definition of that name was (a new one goes just before the frame's ``build_model``), adds
the answer's imports and constants, and then drops the frame's definitions nothing reaches any more
(the builtin's old model class), so the program holds no dead model a reader or a check could take
for the real one. The frame's ``main`` and ``__main__`` guard are never replaced.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from typing import Iterable, Optional

__all__ = ["SpliceError", "splice", "parse_answer", "assigned_name", "top_level_names", "definition_source", "reachable",
           "FRAME_OWNED", "undefined_reads", "without_definitions"]

#: Names the frame keeps whatever the answer says: the entry point and its guard are the frame's.
FRAME_OWNED = frozenset({"main"})

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class SpliceError(ValueError):
    """The answer cannot be placed into the frame; the message says what to write instead (one line)."""


def _span(node: ast.stmt) -> tuple[int, int]:
    """The node's 1-based first and last line, decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first, node.end_lineno or node.lineno


def _text(lines: list[str], node: ast.stmt) -> str:
    first, last = _span(node)
    return "".join(lines[first - 1 : last])


def assigned_name(node: ast.stmt) -> Optional[str]:
    """The single plain name a top-level assignment binds (``NUM_CLASSES = 3``), else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id
    return None


def top_level_names(source: str) -> list[str]:
    """The names of ``source``'s top-level functions and classes, in order (a garbled import line
    skipped as :func:`splice` skips it; raises SyntaxError for other invalid Python)."""
    try:
        tree, _ = parse_answer(source)
    except SpliceError as exc:
        raise SyntaxError(str(exc)) from None
    return [n.name for n in tree.body if isinstance(n, _DEFS)]


def definition_source(source: str, name: str) -> Optional[str]:
    """The text of the top-level function or class ``name`` in ``source`` (decorators included), or None."""
    lines = source.splitlines(keepends=True)
    for node in ast.parse(source).body:
        if isinstance(node, _DEFS) and node.name == name:
            return _text(lines, node)
    return None


def _uses(node: ast.AST) -> set[str]:
    """Every plain name a node reads (calls, references, decorators, base classes, annotations)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def reachable(tree: ast.Module, roots: Iterable[str]) -> set[str]:
    """Top-level definitions reachable from ``roots`` and from every statement that is not a definition."""
    defs = {n.name: n for n in tree.body if isinstance(n, _DEFS)}
    todo = list(roots)
    for node in tree.body:
        if not isinstance(node, _DEFS):
            todo.extend(_uses(node))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        todo.extend(_uses(defs[name]))
    return seen


def parse_answer(answer: str) -> tuple[ast.Module, str]:
    """The answer parsed, and its text; a malformed top-level import line is left out (the frame has the
    imports it needs: small models garble them, e.g. ``from torch.nn.functional as F``)."""
    lines = answer.splitlines(keepends=True)
    for _ in range(8):
        text = "".join(lines)
        try:
            return ast.parse(text), text
        except SyntaxError as exc:
            n = exc.lineno or 0
            bad = lines[n - 1] if 0 < n <= len(lines) else ""
            if bad.startswith(("import ", "from ")):
                del lines[n - 1]
                continue
            shown = " ".join(bad.split())[:120]
            raise SpliceError(f"the answer is not valid Python: line {n}{f' `{shown}`' if shown else ''}: {exc.msg}; "
                              "answer with the definitions only, in one ```python block") from None
    raise SpliceError("the answer is not valid Python (its import lines are malformed); answer with the definitions "
                      "only, in one ```python block")


def splice(frame: str, answer: str, *, required: Iterable[str] = ("build_model",),
           roots: Iterable[str] = ("main", "build_model", "example_batch")) -> str:
    """The frame with the answer's definitions, imports and constants in place.

    Args:
        frame: the frame program (valid Python).
        answer: the model's code: top-level definitions; a ``main``, a ``__main__`` guard and other
            statements in it are left out (the frame has its own).
        required: names the answer must define.
        roots: definitions kept even when nothing in the program calls them (the contract's).

    Raises:
        SpliceError: the answer is not Python, or lacks a required definition.
    """
    tree, answer = parse_answer(answer)
    ans_lines = answer.splitlines(keepends=True)
    defs: dict[str, str] = {}
    consts: dict[str, ast.stmt] = {}
    imports: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, _DEFS) and node.name not in FRAME_OWNED:
            defs[node.name] = _text(ans_lines, node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        elif assigned_name(node) is not None:
            consts[assigned_name(node)] = node
    missing = [name for name in required if name not in defs]
    if missing:
        wanted = ", ".join(m + "()" for m in missing)
        have = (f"the answer defines {', '.join(defs)} but not {wanted}" if defs else
                f"the answer defines no function or class (it needs {wanted})")
        raise SpliceError(f"{have}: write {wanted} as top-level definitions")

    frame_tree = ast.parse(frame)
    lines = frame.splitlines(keepends=True)
    first_def = next((_span(n)[0] for n in frame_tree.body if isinstance(n, _DEFS)), len(lines) + 1)
    frame_consts = {assigned_name(n): n for n in frame_tree.body if assigned_name(n) and n.lineno < first_def}
    bound = {name for n in frame_tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for name in _bound(n)}
    last_import = max((_span(n)[1] for n in frame_tree.body if isinstance(n, (ast.Import, ast.ImportFrom))), default=0)

    # Lines of the frame that go, and what comes in their place or after them.
    drop: set[int] = set()
    after: dict[int, list[str]] = {}
    for node in frame_tree.body:
        name = node.name if isinstance(node, _DEFS) else assigned_name(node)
        first, last = _span(node)
        if (isinstance(node, _DEFS) and name in defs) or (name in frame_consts and name in consts):
            drop.update(range(first, last + 1))
        if isinstance(node, _DEFS) and name in defs and name not in FRAME_OWNED:
            after.setdefault(last, []).append(_block(defs[name]))
    # New definitions go just before build_model (or the first definition).
    new_defs = [_block(text) for name, text in defs.items()
                if not any(isinstance(n, _DEFS) and n.name == name for n in frame_tree.body)]
    anchor = next((_span(n)[0] for n in frame_tree.body if isinstance(n, _DEFS) and n.name == "build_model"), first_def)
    # The frame's imports win: an answer's import of a name the frame binds is left out (a 0.5B model writes
    # `from torch.nn.functional import F`).
    added = [n for n in imports if not (_bound(n) & bound) and not
             (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    if added:
        after.setdefault(last_import, []).extend(_ensure_newline(_text(ans_lines, n)) for n in added)
    # The answer's constants, together and in its order: where the first frame constant they replace was
    # (so a frame constant derived from one sees the new value), but never before a frame constant they name.
    if consts:
        replaced = [frame_consts[n].lineno for n in consts if n in frame_consts]
        names_used = {x.id for n in consts.values() for x in ast.walk(n) if isinstance(x, ast.Name)}
        needed = [_span(frame_consts[n])[1] for n in names_used if n in frame_consts and n not in consts]
        at = (min(replaced) - 1) if replaced else max([_span(n)[1] for n in frame_consts.values()] or [last_import])
        at = max([at] + needed)
        block = [_ensure_newline(_text(ans_lines, n)) for n in consts.values()]
        after.setdefault(at, []).extend(block)
    out: list[str] = list(after.get(0, []))
    for i, line in enumerate(lines, start=1):
        if i == anchor and new_defs:
            out.extend(new_defs)
        if i not in drop:
            out.append(line)
        out.extend(after.get(i, []))
    if anchor > len(lines) and new_defs:
        out.extend(new_defs)
    answer_imports = {ast.dump(n) for n in added}
    return _prune("".join(out), roots, answer_imports)


def _bound(node: ast.stmt) -> set[str]:
    """The names an import statement binds."""
    if isinstance(node, ast.Import):
        return {a.asname or a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {a.asname or a.name for a in node.names}
    return set()


def _ensure_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _block(text: str) -> str:
    """A definition followed by the two blank lines PEP 8 puts between top-level definitions."""
    return _ensure_newline(text) + "\n\n"


def _prune(program: str, roots: Iterable[str], answer_imports: frozenset[str] | set[str] = frozenset()) -> str:
    """``program`` without the top-level definitions nothing reaches (an old model class), then without
    the answer's imports that nothing left uses (``answer_imports``: their ``ast.dump``), tidied.

    A small model adds imports it never uses (``from torchvision import datasets`` above a model written in
    plain torch); one of a package that is not installed would stop the program at its first line.
    """
    try:
        tree = ast.parse(program)
    except SyntaxError as exc:
        raise SpliceError(f"the answer does not fit the frame (line {exc.lineno}: {exc.msg}); "
                          "answer with whole top-level definitions only") from None
    keep = reachable(tree, roots)
    lines = program.splitlines(keepends=True)
    drop: list[tuple[int, int]] = [_span(n) for n in tree.body if isinstance(n, _DEFS) and n.name not in keep]
    if answer_imports:
        kept = [n for n in tree.body if not (isinstance(n, _DEFS) and n.name not in keep)]
        used = {name for n in kept for name in _uses(n)}
        drop += [_span(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                 and ast.dump(n) in answer_imports and not (_bound(n) & used)]
    for first, last in sorted(drop, reverse=True):
        del lines[first - 1 : last]
    text = "".join(lines)
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text


#: Names every module has without binding them.
_MODULE_NAMES = frozenset(dir(builtins)) | {"__file__", "__name__", "__doc__", "__spec__", "__loader__", "__builtins__"}


def undefined_reads(program: str) -> dict[str, set[str]]:
    """For each top-level function and class of ``program``, the global names it reads that nothing binds at
    module level and that are not builtins (``num_nodes`` in a copy of ``example_batch(num_nodes)``'s body
    under another signature): a NameError the first time that code runs. Empty when the program binds
    names by ``from x import *`` (what it binds is unknown) or is not Python."""
    try:
        tree = ast.parse(program)
        top = symtable.symtable(program, "program.py", "exec")
    except SyntaxError:
        return {}
    if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree)):
        return {}
    bound = {sym.get_name() for sym in top.get_symbols() if sym.is_assigned() or sym.is_imported() or sym.is_namespace()}
    tables = list(top.get_children())
    while tables:  # `global x; x = ...` in a function binds a module name too
        table = tables.pop()
        tables.extend(table.get_children())
        bound |= {sym.get_name() for sym in table.get_symbols() if sym.is_declared_global() and sym.is_assigned()}
    out: dict[str, set[str]] = {}
    for child in top.get_children():
        missing: set[str] = set()
        todo = [child]
        while todo:
            table = todo.pop()
            todo.extend(table.get_children())
            missing |= {sym.get_name() for sym in table.get_symbols()
                        if sym.is_global() and sym.is_referenced() and sym.get_name() not in bound
                        and sym.get_name() not in _MODULE_NAMES}
        if missing:
            out[child.get_name()] = missing
    return out


def without_definitions(source: str, names: Iterable[str]) -> str:
    """``source`` (an answer, read as :func:`parse_answer` reads it) without its top-level functions and
    classes called ``names``."""
    tree, text = parse_answer(source)
    names = set(names)
    lines = text.splitlines(keepends=True)
    for node in sorted((n for n in tree.body if isinstance(n, _DEFS) and n.name in names), key=_span, reverse=True):
        first, last = _span(node)
        del lines[first - 1 : last]
    return "".join(lines)
