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
from typing import Callable, Iterable, Iterator, Literal, Optional, Union

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


class Context:
    """A parsed file and the facts about it that rules share (computed once, on first use)."""

    def __init__(self, source: str, path: str = "<string>") -> None:
        self.source = source
        self.path = path
        self.lines = source.splitlines(keepends=True)
        self.tree = ast.parse(source, filename=path)
        self._parents: Optional[dict[ast.AST, ast.AST]] = None
        self._step_loops: Optional[list[Loop]] = None

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
        """The node's source text."""
        return ast.get_source_segment(self.source, node) or ""

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
            self._parents = {child: parent for parent in ast.walk(self.tree) for child in ast.iter_child_nodes(parent)}
        return self._parents

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

    def calls(self, root: Optional[ast.AST] = None) -> Iterator[ast.Call]:
        for node in ast.walk(root if root is not None else self.tree):
            if isinstance(node, ast.Call):
                yield node

    @property
    def step_loops(self) -> list[Loop]:
        """The training step loops: loops whose body calls ``.backward(`` or an optimizer's ``.step(``
        (directly, or through ``run.backward``/``run.step``/``scaler.step``), or iterates ``run.batches(``.

        A loop nested in another step loop is listed too; :meth:`in_step_loop` asks about the innermost.
        """
        if self._step_loops is None:
            loops: list[Loop] = []
            for node in ast.walk(self.tree):
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

    # -- what the script uses -----------------------------------------------------------------

    @property
    def uses_cuda(self) -> bool:
        """The script names CUDA (``"cuda"``, ``.cuda()``, ``torch.cuda``): GPU-only rules apply."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("cuda"):
                return True
            if isinstance(node, ast.Attribute) and node.attr == "cuda":
                return True
        return False

    @property
    def uses_engine(self) -> bool:
        """The script imports ``deepdive.engine``."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deepdive"):
                if node.module == "deepdive.engine" or any(a.name == "engine" for a in node.names):
                    return True
            if isinstance(node, ast.Import) and any(a.name.startswith("deepdive.engine") for a in node.names):
                return True
        return False

    def imported_as(self, dotted: str) -> set[str]:
        """The names this file calls ``dotted`` by: ``torch.utils.data.DataLoader`` → {"DataLoader", "data.DataLoader",
        "torch.utils.data.DataLoader", …} as the imports make them reachable."""
        names = {dotted}
        for node in ast.walk(self.tree):
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
        return names

    def is_call_to(self, call: ast.Call, dotted: str) -> bool:
        """``call`` calls ``dotted`` (``torch.utils.data.DataLoader``) under any name the imports give it."""
        return dotted_name(call.func) in self.imported_as(dotted)


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
