"""What a generated program's source says about itself: framework, calls, losses, precision, distribution.

Read from the AST in the caller's process (no import of the program, no torch), so it also works for
what a run on this machine cannot show: a ``torch.autocast`` that only takes effect on a GPU, a
``DistributedDataParallel`` that only wraps under ``torchrun``. Names are resolved through the
program's imports (``import torch.nn.functional as F`` makes ``F.dropout`` read
``torch.nn.functional.dropout``), so an alias does not hide a call.
"""

from __future__ import annotations

import ast
from typing import Any, Optional

import attrs

__all__ = ["Call", "SourceFacts", "read_source", "framework_of"]


@attrs.define(frozen=True)
class Call:
    """One call in the source: its resolved dotted name, line and literal keyword arguments."""

    name: str
    line: int
    kwargs: dict[str, Any] = attrs.Factory(dict)
    args: tuple[Any, ...] = ()

    @property
    def last(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@attrs.define
class SourceFacts:
    """The facts :func:`read_source` finds.

    Attributes:
        framework: ``torch``, ``tensorflow`` or ``none`` (from the imports).
        calls: every call whose callee is a name or attribute chain, resolved through the imports.
        classes: classes the program defines, with the dotted names of their bases.
        tree: the parsed program, for checks that follow its data flow (a policy's loss from rewards).
    """

    framework: str
    calls: list[Call] = attrs.Factory(list)
    classes: dict[str, list[str]] = attrs.Factory(dict)
    tree: Optional[ast.Module] = attrs.field(default=None, repr=False, eq=False)

    def find(self, *names: str) -> list[Call]:
        """Calls of any of ``names`` (exact resolved names)."""
        return [c for c in self.calls if c.name in names]

    def find_last(self, *lasts: str) -> list[Call]:
        """Calls whose last name part is one of ``lasts`` (``run.autocast``, ``x.autocast``)."""
        return [c for c in self.calls if c.last in lasts]


def framework_of(tree: ast.Module) -> str:
    """``torch``, ``tensorflow`` or ``none``: which framework the program imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    if names & {"tensorflow", "keras"} and "torch" not in names:
        return "tensorflow"
    return "torch" if "torch" in names else ("tensorflow" if names & {"tensorflow", "keras"} else "none")


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted module path, from every import in the file (also inside functions)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    names.setdefault(top, top)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    # tf.keras is keras; keep one spelling for the checks.
    return {k: v.replace("tensorflow.keras", "keras").replace("tensorflow.python.keras", "keras")
            for k, v in names.items()}


def _dotted(node: ast.AST) -> Optional[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call):  # keras.layers.Dense(...)(x): the inner call counts on its own
        return None
    return None


def _resolve(dotted: str, aliases: dict[str, str]) -> str:
    head, _, rest = dotted.partition(".")
    base = aliases.get(head)
    if base is None:
        return dotted
    full = f"{base}.{rest}" if rest else base
    if full.startswith("tf.keras.") or full.startswith("tensorflow.keras."):
        full = "keras." + full.split("keras.", 1)[1]
    return full


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _Expr(ast.unparse(node))


@attrs.define(frozen=True)
class _Expr:
    """A keyword argument that is not a literal (a variable, a call): its source text."""

    text: str


def read_source(tree: ast.Module) -> SourceFacts:
    """The facts of a parsed program."""
    aliases = _aliases(tree)
    calls: list[Call] = []
    classes: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            dotted = _dotted(node.func)
            if dotted is None:
                continue
            kwargs = {k.arg: _literal(k.value) for k in node.keywords if k.arg}
            args = tuple(_literal(a) for a in node.args[:3])
            calls.append(Call(_resolve(dotted, aliases), node.lineno, kwargs, args))
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = [_resolve(d, aliases) for d in (_dotted(b) for b in node.bases) if d]
    calls.sort(key=lambda c: c.line)
    return SourceFacts(framework=framework_of(tree), calls=calls, classes=classes, tree=tree)


def is_expr(value: Any) -> bool:
    """True when a keyword value was not a literal."""
    return isinstance(value, _Expr)
