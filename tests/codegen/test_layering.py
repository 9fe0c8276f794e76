"""Codegen is a library under the daemon: nothing it imports reaches the editor's protocol or the daemon.

The pipeline speaks its own types (deepdive.codegen.generation) and the daemon converts them to the
wire (deepdive.daemon.generate_wire). This is read statically from the source with ``ast``: every
import statement of every module (also those inside functions, which run later, and
``importlib.import_module("...")`` with a literal name), followed from module to module, so that an
import that reaches the protocol through another package (deepdive.models, deepdive.hostinfo) is
found too, and the message shows the chain.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path
from typing import Iterator, Optional

SERVER = Path(__file__).resolve().parents[2] / "server"
FORBIDDEN = ("deepdive.protocol", "deepdive.daemon")


def _module_names(root: Path) -> dict[str, Path]:
    """Every module of the ``deepdive`` package (its folder ``root``), by dotted name."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(("deepdive", *parts))] = path
    return names


def _imported(tree: ast.AST, name: str, is_package: bool) -> Iterator[str]:
    """The dotted names ``tree`` (the module ``name``) imports, and for ``from X import Y`` also X.Y."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value


def _graph(root: Path = SERVER) -> dict[str, set[str]]:
    """Module -> the deepdive modules that loading it loads (a module also loads its parent packages)."""
    modules = _module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        parts = name.split(".")
        edges = {".".join(parts[:i]) for i in range(1, len(parts))}  # its packages load first
        for target in _imported(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py"):
            parts = target.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def _chain(graph: dict[str, set[str]], start: str) -> Optional[list[str]]:
    """The shortest import chain from ``start`` to a forbidden module, or None."""
    before: dict[str, Optional[str]] = {start: None}
    todo = deque([start])
    while todo:
        here = todo.popleft()
        if here.startswith(FORBIDDEN):
            chain = [here]
            while before[chain[-1]] is not None:
                chain.append(before[chain[-1]])
            return chain[::-1]
        for nxt in sorted(graph.get(here, ())):
            if nxt not in before:
                before[nxt] = here
                todo.append(nxt)
    return None


def test_the_graph_follows_imports_inside_functions_relative_and_by_name(tmp_path: Path) -> None:
    files = {
        "__init__.py": "",
        "protocol.py": "",
        "lib/__init__.py": "from .rows import Row\n",
        "lib/rows.py": "def load():\n    from ..models import pick\n",
        "lib/clean.py": "import importlib\nimportlib.import_module('deepdive.lib.rows')\n",
        "lib/alone.py": "import json\n",
        "models/__init__.py": "",
        "models/pick.py": "from deepdive import protocol\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = _graph(tmp_path)
    assert _chain(graph, "deepdive.lib.clean") == ["deepdive.lib.clean", "deepdive.lib.rows", "deepdive.models.pick",
                                                   "deepdive.protocol"]
    assert _chain(graph, "deepdive.lib.alone") == ["deepdive.lib.alone", "deepdive.lib", "deepdive.lib.rows",
                                                   "deepdive.models.pick", "deepdive.protocol"]
    assert _chain(graph, "deepdive.models") is None


def test_no_codegen_module_reaches_the_protocol_or_the_daemon() -> None:
    graph = _graph()
    codegen = sorted(name for name in graph if name == "deepdive.codegen" or name.startswith("deepdive.codegen."))
    assert len(codegen) > 40  # every module was found, not a few
    chains = [" -> ".join(chain) for name in codegen if (chain := _chain(graph, name)) is not None]
    assert chains == [], "codegen must speak its own types (deepdive.codegen.generation):\n" + "\n".join(chains)
