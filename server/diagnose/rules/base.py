"""What a static rule is, what it finds, and how its fix is written.

A rule is a function ``check(ctx) -> Iterable[Finding]`` registered with :func:`rule` under a code
(``DD101``). It reads the file through :class:`Context` (the parsed tree and the questions most rules
ask: is this node inside the training step loop, does the script use CUDA, the deepdive engine, what
is ``torch`` called here). A finding's fix is a list of text edits in the file's own coordinates
(1-based lines, 0-based *character* columns, as :mod:`ast` positions converted by
:meth:`Context.span`); :func:`apply_edits` applies them and the tests re-parse the result.

Nothing here imports torch: the daemon runs these rules on every save.
"""

from __future__ import annotations

import ast
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Literal, Optional, TypeVar, Union

import attrs

Severity = Literal["warning", "information", "hint"]
Category = Literal["data_wait", "forward", "backward", "optimizer", "host_sync", "copies", "communication", "idle",
                   "memory", "precision"]
"""The step-time category a rule's cost shows up in (the measured breakdown's names), or what else it costs."""


@attrs.frozen
class Edit:
    """Replace the text from (line, col) to (end_line, end_col) with ``text``; lines 1-based, cols in characters."""

    line: int
    col: int
    end_line: int
    end_col: int
    text: str


@attrs.frozen
class Fix:
    """A mechanical fix: what the code action is called and the edits it makes."""

    title: str
    edits: tuple[Edit, ...]


@attrs.frozen
class Finding:
    """One rule's finding at a place in the file."""

    code: str
    line: int
    col: int
    end_line: int
    end_col: int
    message: str
    """One line that names the fix (``… : pass num_workers=4``)."""
    severity: Severity = "warning"
    fix: Optional[Fix] = None


@attrs.frozen
class Rule:
    """A registered rule: its code, a short name, what it finds, where it costs, and whether it fixes."""

    code: str
    name: str
    summary: str
    category: Category
    fixable: bool
    check: Callable[["Context"], Iterable[Finding]]
    cuda_only: bool = False
    """The rule speaks about GPU training only and fires only in scripts that use CUDA."""


RULES: dict[str, Rule] = {}
"""Every rule by code, filled as the rule modules are imported (``deepdive.diagnose.rules``)."""


def rule(code: str, name: str, summary: str, *, category: Category, fixable: bool,
         cuda_only: bool = False) -> Callable[[Callable[["Context"], Iterable[Finding]]],
                                              Callable[["Context"], Iterable[Finding]]]:
    """Register ``check`` as rule ``code``; a code registered twice is a programming error."""

    def register(check: Callable[["Context"], Iterable[Finding]]) -> Callable[["Context"], Iterable[Finding]]:
        if code in RULES:
            raise ValueError(f"rule {code} is registered twice ({RULES[code].check.__module__} and {check.__module__})")
        RULES[code] = Rule(code=code, name=name, summary=summary, category=category, fixable=fixable, check=check,
                           cuda_only=cuda_only)
        return check

    return register


Loop = Union[ast.For, ast.AsyncFor, ast.While]
_NodeT = TypeVar("_NodeT", bound=ast.AST)


class Context:
    """A parsed file and the facts about it that rules share (computed once, on first use)."""

    def __init__(self, source: str, path: str = "<string>") -> None:
        self.source = source
        self.path = path
        self.lines = source.splitlines(keepends=True)
        self.tree = ast.parse(source, filename=path)
        self._parents: Optional[dict[ast.AST, ast.AST]] = None
        self._step_loops: Optional[list[Loop]] = None
        self._by_type: Optional[dict[type, list[ast.AST]]] = None
        self._nodes: Optional[list[ast.AST]] = None
        self._calls_by_name: Optional[dict[str, list[ast.Call]]] = None
        self._imports: Optional[list[Union[ast.Import, ast.ImportFrom]]] = None
        self._imported_as: dict[str, set[str]] = {}
        self._epoch_loops: dict[int, bool] = {}
        self.shared: dict[str, Any] = {}
        """What rule modules compute once per file (``values``, evaluation functions), kept on the context so it
        is freed with it (a module-level cache keyed by the context would keep every analysed tree alive)."""

    # -- positions ---------------------------------------------------------------------------

    def char_col(self, line: int, byte_col: int) -> int:
        """``ast``'s UTF-8 byte column on a 1-based line as a character column."""
        if not 1 <= line <= len(self.lines):
            return byte_col
        return len(self.lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))

    def span(self, node: ast.AST) -> tuple[int, int, int, int]:
        """(line, col, end_line, end_col) of a node, columns in characters."""
        line = node.lineno  # type: ignore[attr-defined]
        end_line = getattr(node, "end_lineno", None) or line
        end_byte = getattr(node, "end_col_offset", None)
        end_col = self.char_col(end_line, end_byte) if end_byte is not None else len(self.lines[end_line - 1])
        return line, self.char_col(line, node.col_offset), end_line, end_col  # type: ignore[attr-defined]

    def text(self, node: ast.AST) -> str:
        """The node's source text (as :func:`ast.get_source_segment`, without splitting the whole file each call)."""
        if getattr(node, "end_lineno", None) is None or getattr(node, "end_col_offset", None) is None:
            return ""
        line, col, end_line, end_col = self.span(node)
        if not 1 <= line <= end_line <= len(self.lines):
            return ast.get_source_segment(self.source, node) or ""
        if line == end_line:
            return self.lines[line - 1][col:end_col]
        return self.lines[line - 1][col:] + "".join(self.lines[line:end_line - 1]) + self.lines[end_line - 1][:end_col]

    def finding(self, code: str, node: ast.AST, message: str, *, fix: Optional[Fix] = None,
                severity: Severity = "warning") -> Finding:
        line, col, end_line, end_col = self.span(node)
        return Finding(code=code, line=line, col=col, end_line=end_line, end_col=end_col, message=message,
                       severity=severity, fix=fix)

    def replace(self, node: ast.AST, text: str) -> Edit:
        """An edit replacing the node's text."""
        return Edit(*self.span(node), text=text)

    def insert_before_line(self, line: int, text: str) -> Edit:
        """An edit inserting whole line(s) ``text`` (ending in a newline) before 1-based ``line``."""
        return Edit(line, 0, line, 0, text)

    def indent_of(self, line: int) -> str:
        raw = self.lines[line - 1] if 1 <= line <= len(self.lines) else ""
        return raw[: len(raw) - len(raw.lstrip())]

    # -- structure ----------------------------------------------------------------------------

    @property
    def parents(self) -> dict[ast.AST, ast.AST]:
        if self._parents is None:
            self._index()
        return self._parents  # type: ignore[return-value]

    def _index(self) -> None:
        """One walk of the tree, in ``ast.walk`` order, filling the parent map, the node list and the nodes by type
        that every rule reads (a 2,000-line file is analysed on each save: one walk, not one per question)."""
        parents: dict[ast.AST, ast.AST] = {}
        nodes: list[ast.AST] = []
        by_type: dict[type, list[ast.AST]] = {}
        todo: deque[ast.AST] = deque([self.tree])
        while todo:
            node = todo.popleft()
            nodes.append(node)
            by_type.setdefault(type(node), []).append(node)
            for child in ast.iter_child_nodes(node):
                parents[child] = node
                todo.append(child)
        self._parents, self._nodes, self._by_type = parents, nodes, by_type

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        parent = self.parents.get(node)
        while parent is not None:
            yield parent
            parent = self.parents.get(parent)

    def enclosing_function(self, node: ast.AST) -> Optional[Union[ast.FunctionDef, ast.AsyncFunctionDef]]:
        for parent in self.ancestors(node):
            if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return parent
        return None

    def nodes_of(self, kind: type[_NodeT]) -> list[_NodeT]:
        """Every node of exactly the type ``kind`` in the file (``ast.Assign``), in ``ast.walk`` order. The tree is
        walked once and shared by every rule: a 2,000-line file is analysed on each save."""
        if self._by_type is None:
            self._index()
        return self._by_type.get(kind, [])  # type: ignore[union-attr,return-value]

    def calls_named(self, names: Iterable[str]) -> list[ast.Call]:
        """The calls whose function is written as one of the dotted ``names`` (``nn.Conv2d``), in source order;
        with :meth:`imported_as`: ``ctx.calls_named(ctx.imported_as("torch.nn.Conv2d"))``."""
        if self._calls_by_name is None:
            index: dict[str, list[ast.Call]] = {}
            for call in self.nodes_of(ast.Call):
                index.setdefault(dotted_name(call.func), []).append(call)
            self._calls_by_name = index
        found = [call for name in set(names) for call in self._calls_by_name.get(name, ())]
        return sorted(found, key=lambda call: (call.lineno, call.col_offset))

    def calls(self, root: Optional[ast.AST] = None) -> Iterator[ast.Call]:
        if root is None:
            yield from self.nodes_of(ast.Call)
            return
        for node in ast.walk(root):
            if isinstance(node, ast.Call):
                yield node

    @property
    def step_loops(self) -> list[Loop]:
        """The training step loops: loops whose body calls ``.backward(`` or an optimizer's ``.step(``
        (directly, or through ``run.backward``/``run.step``/``scaler.step``), or iterates ``run.batches(``.

        A loop nested in another step loop is listed too; :meth:`in_step_loop` asks about the innermost.
        """
        if self._step_loops is None:
            if self._nodes is None:
                self._index()
            loops: list[Loop] = []
            for node in self._nodes or ():
                if isinstance(node, (ast.For, ast.AsyncFor, ast.While)) and _is_step_loop(node):
                    loops.append(node)
            self._step_loops = loops
        return self._step_loops

    def step_loop_of(self, node: ast.AST) -> Optional[Loop]:
        """The innermost step loop whose body holds ``node`` (not its iterator or ``else``), or None."""
        child = node
        for parent in self.ancestors(node):
            if isinstance(parent, (ast.For, ast.AsyncFor, ast.While)) and parent in self.step_loops:
                if any(child is stmt for stmt in parent.body):
                    return parent
            child = parent
        return None

    def in_step_loop(self, node: ast.AST) -> bool:
        return self.step_loop_of(node) is not None

    def guarded_periodically(self, node: ast.AST) -> bool:
        """True when ``node`` sits under an ``if`` inside its step loop (``if step % 100 == 0:``, ``if i == last:``,
        ``if args.verbose:``): code that runs on some steps only is not a per-step cost."""
        loop = self.step_loop_of(node)
        if loop is None:
            return False
        for parent in self.ancestors(node):
            if parent is loop:
                return False
            if isinstance(parent, ast.If):
                return True
        return False

    def is_epoch_loop(self, loop: Loop) -> bool:
        """True for a step loop whose every ``.backward(``/``.step(`` sits in a loop nested in it (``for epoch in
        range(n): for x, y in loader: …``): its own body runs once per epoch, not once per step."""
        if id(loop) not in self._epoch_loops:
            self._epoch_loops[id(loop)] = self._is_epoch_loop(loop)
        return self._epoch_loops[id(loop)]

    def _is_epoch_loop(self, loop: Loop) -> bool:
        if isinstance(loop, (ast.For, ast.AsyncFor)) and isinstance(loop.iter, ast.Call) \
                and method_name(loop.iter) == "batches":
            return False
        found = False
        for stmt in loop.body:
            for node in ast.walk(stmt):
                if not (isinstance(node, ast.Call) and method_name(node) in _STEP_METHODS):
                    continue
                target = node.func.value if isinstance(node.func, ast.Attribute) else None
                if method_name(node) == "step" and isinstance(target, ast.Name) and "sched" in target.id.lower():
                    continue
                found = True
                nested = False
                for parent in self.ancestors(node):
                    if parent is loop:
                        break
                    if isinstance(parent, (ast.For, ast.AsyncFor, ast.While)):
                        nested = True
                        break
                if not nested:
                    return False
        return found

    def per_step(self, node: ast.AST) -> bool:
        """True when ``node`` runs once per training step: inside a step loop that is not an epoch loop
        (:meth:`is_epoch_loop`), and not under an ``if`` there (:meth:`guarded_periodically`). Code in an inner
        loop of the step loop (``for v in t: v.item()``) runs per step too, several times."""
        loop = self.step_loop_of(node)
        return loop is not None and not self.is_epoch_loop(loop) and not self.guarded_periodically(node)

    # -- what the script uses -----------------------------------------------------------------

    @property
    def uses_cuda(self) -> bool:
        """The script names CUDA (``"cuda"``, ``.cuda()``, ``torch.cuda``): GPU-only rules apply."""
        if any(isinstance(node.value, str) and node.value.startswith("cuda") for node in self.nodes_of(ast.Constant)):
            return True
        return any(node.attr == "cuda" for node in self.nodes_of(ast.Attribute))

    @property
    def uses_engine(self) -> bool:
        """The script imports ``deepdive.engine``."""
        for node in self.nodes_of(ast.ImportFrom):
            if (node.module or "").startswith("deepdive"):
                if node.module == "deepdive.engine" or any(a.name == "engine" for a in node.names):
                    return True
        return any(any(a.name.startswith("deepdive.engine") for a in node.names) for node in self.nodes_of(ast.Import))

    def imported_as(self, dotted: str) -> set[str]:
        """The names this file calls ``dotted`` by: ``torch.utils.data.DataLoader`` → {"DataLoader", "data.DataLoader",
        "torch.utils.data.DataLoader", …} as the imports make them reachable."""
        cached = self._imported_as.get(dotted)
        if cached is not None:
            return set(cached)
        if self._imports is None:
            self._imports = [*self.nodes_of(ast.Import), *self.nodes_of(ast.ImportFrom)]
        names = {dotted}
        for node in self._imports:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if dotted == alias.name or dotted.startswith(alias.name + "."):
                        local = alias.asname or alias.name
                        rest = dotted[len(alias.name):]
                        names.add(local + rest if alias.asname else dotted)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if dotted == full or dotted.startswith(full + "."):
                        names.add((alias.asname or alias.name) + dotted[len(full):])
        self._imported_as[dotted] = names
        return set(names)

    def is_call_to(self, call: ast.Call, dotted: str) -> bool:
        """``call`` calls ``dotted`` (``torch.utils.data.DataLoader``) under any name the imports give it."""
        return dotted_name(call.func) in self.imported_as(dotted)

    # -- where inserted code goes -------------------------------------------------------------

    def after_imports_line(self) -> int:
        """The 1-based line before which a statement that must follow the imports is inserted: the line after the
        last top-level import (or, with none, after the module docstring and ``from __future__`` imports)."""
        body = self.tree.body
        last: Optional[ast.stmt] = None
        for index, stmt in enumerate(body):
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                last = stmt
            elif index == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str) and last is None:
                last = stmt
        if last is None:
            return 1
        return (last.end_lineno or last.lineno) + 1

    def module_bound_as(self, module: str) -> Optional[str]:
        """The top-level name this file binds the module ``module`` (``torch``) to, or None when the module itself
        is not reachable by a plain name (``from torch import nn`` binds ``nn``, not ``torch``)."""
        for stmt in self.tree.body:
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname is not None and alias.name == module:
                        return alias.asname
                    if alias.asname is None and (alias.name == module or alias.name.startswith(module + ".")):
                        return module if "." not in module else None
        return None


def dotted_name(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def keyword(call: ast.Call, name: str) -> Optional[ast.keyword]:
    for kw in call.keywords:
        if kw.arg == name:
            return kw
    return None


def method_name(call: ast.Call) -> str:
    """``x.item()`` → "item"; '' when the call is not a method call."""
    return call.func.attr if isinstance(call.func, ast.Attribute) else ""


_STEP_METHODS = {"backward", "step"}


def _is_step_loop(loop: Loop) -> bool:
    if isinstance(loop, (ast.For, ast.AsyncFor)) and isinstance(loop.iter, ast.Call) and method_name(loop.iter) == "batches":
        return True
    for stmt in loop.body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call) and method_name(node) in _STEP_METHODS:
                target = node.func.value if isinstance(node.func, ast.Attribute) else None
                # scheduler.step() alone does not make a training loop; optimizers, scalers, run and loss do
                if method_name(node) == "step" and isinstance(target, ast.Name) and "sched" in target.id.lower():
                    continue
                return True
    return False


def apply_edits(source: str, edits: Iterable[Edit]) -> str:
    """The source with the edits made (non-overlapping; applied from the last to the first)."""
    lines = source.splitlines(keepends=True)
    starts = [0]
    for raw in lines:
        starts.append(starts[-1] + len(raw))

    def offset(line: int, col: int) -> int:
        if line > len(lines):
            return len(source)
        return starts[line - 1] + col

    out = source
    for edit in sorted(edits, key=lambda e: (e.line, e.col), reverse=True):
        out = out[: offset(edit.line, edit.col)] + edit.text + out[offset(edit.end_line, edit.end_col):]
    return out
