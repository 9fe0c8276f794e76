"""Apply a study's best parameters to the script: rewrite only the ``default=`` of its ``suggest`` calls.

The calls are located in the syntax tree (``run.suggest("lr", ..., default=3e-3)``, or any
``<expr>.suggest`` / bare ``suggest`` call whose first argument is the parameter's name as a string
literal). Only the source range of each default literal changes; every other byte of the file stays
as it was (comments, spacing, line ends). A float is written to 4 significant digits
(``default=0.05234``, not the sampler's 17; :mod:`deepdive.tune.rounding`) when the declaration's
literal range, step and choices show the rounded value is still one the script accepts; otherwise
(a bound within rounding distance, a fine step grid, a declaration it cannot read) it is written exactly. Edits carry zero-based lines and UTF-16 columns, as LSP
wants them, so the editor can apply them to an unsaved document too.
"""

from __future__ import annotations

import ast
import math
import os
import re
from pathlib import Path
from typing import Any

from deepdive.fsutil import atomic_write_bytes
from deepdive.protocol import TextEditData
from deepdive.tune.rounding import SIG_DIGITS, round_sig

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def format_value(value: Any) -> str:
    """Python source for a parameter value (floats exactly, by ``repr``)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"float({str(value)!r})"
        return repr(value)
    raise ValueError(f"cannot write a {type(value).__name__} as a default: {value!r}")


def _literal(node: ast.AST) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _declared(call: ast.Call) -> tuple[bool, dict[str, Any]]:
    """The call's literal ``low``, ``high``, ``step`` and ``choices`` (False: one of them is not a literal)."""
    given: dict[str, ast.AST] = dict(zip(("low", "high"), call.args[1:3]))
    given.update({kw.arg: kw.value for kw in call.keywords if kw.arg in ("low", "high", "step", "choices")})
    out: dict[str, Any] = {}
    for key, node in given.items():
        ok, value = _literal(node)
        if not ok:
            return False, {}
        out[key] = value
    return True, out


def _accepts(declared: dict[str, Any], value: float) -> bool:
    """Whether the declaration takes ``value`` as its default (in the range, on the step's grid, a choice)."""
    if "choices" in declared:
        return value in list(declared["choices"] or [])
    low, high, step = declared.get("low"), declared.get("high"), declared.get("step")
    if not all(isinstance(v, (int, float)) for v in (low, high)):
        return False
    if not low <= value <= high:
        return False
    if step:
        k = round((value - low) / step)
        return math.isclose(value, low + k * step, rel_tol=1e-9, abs_tol=abs(step) * 1e-9)
    return True


def written_value(call: ast.Call, value: Any) -> Any:
    """The value to write as ``call``'s default: a float to the fewest digits (4 or more) the declaration accepts."""
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    readable, declared = _declared(call)
    if not readable:
        return value
    for digits in range(SIG_DIGITS, 18):
        rounded = round_sig(value, digits)
        if _accepts(declared, rounded):
            return rounded
    return value


def _suggest_calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        named = (isinstance(func, ast.Attribute) and func.attr == "suggest") or (
            isinstance(func, ast.Name) and func.id == "suggest")
        if not named or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            calls.append((first.value, node))
    return sorted(calls, key=lambda item: (item[1].lineno, item[1].col_offset))


def find_suggest_names(source: str) -> list[str]:
    """The parameter names of the script's ``suggest("name", ...)`` calls, in source order."""
    tree = ast.parse(source)
    names: list[str] = []
    for name, _ in _suggest_calls(tree):
        if name not in names:
            names.append(name)
    return names


def apply_best(source: str, params: dict[str, Any]) -> tuple[str, list[TextEditData], list[str], list[str], list[str]]:
    """Set the ``default=`` of each ``suggest("name", ...)`` call to ``params[name]``.

    Args:
        source: the script's text.
        params: parameter name -> value (e.g. a study's best parameters).

    Returns:
        ``(new_source, edits, changed, unchanged, missing)``: the rewritten text; the edits (zero-based
        lines, UTF-16 columns, in source order, non-overlapping) that turn ``source`` into it;
        parameters whose default was rewritten; those whose default already had the value; those
        with no ``suggest`` call that has a literal ``default=`` in the script.

    Raises:
        SyntaxError: the script does not parse.
        ValueError: a value that cannot be written as a Python literal.
    """
    tree = ast.parse(source)
    lines = _LINE_BREAK.split(source)
    starts = [0]
    for match in _LINE_BREAK.finditer(source):
        starts.append(match.end())

    def char_col(line: int, byte_col: int) -> int:
        return len(lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))

    spans: list[tuple[int, int, int, int, int, int, str]] = []  # offsets, (line, utf16 col) x2, text
    changed: list[str] = []
    unchanged: list[str] = []
    found: set[str] = set()
    for name, call in _suggest_calls(tree):
        if name not in params:
            continue
        default = next((kw.value for kw in call.keywords if kw.arg == "default"), None)
        if default is None:
            continue
        found.add(name)
        ok, current = _literal(default)
        new_value = written_value(call, params[name])
        if ok and type(current) is type(new_value) and current == new_value:
            if name not in unchanged:
                unchanged.append(name)
            continue
        text = format_value(new_value)
        l0, c0 = default.lineno, char_col(default.lineno, default.col_offset)
        l1, c1 = default.end_lineno or l0, char_col(default.end_lineno or l0, default.end_col_offset or 0)
        spans.append((starts[l0 - 1] + c0, starts[l1 - 1] + c1, l0, c0, l1, c1, text))
        if name not in changed:
            changed.append(name)
    unchanged = [n for n in unchanged if n not in changed]
    spans.sort()
    pieces: list[str] = []
    edits: list[TextEditData] = []
    cursor = 0
    for start, end, l0, c0, l1, c1, text in spans:
        pieces.append(source[cursor:start])
        pieces.append(text)
        cursor = end
        edits.append(TextEditData(start_line=l0 - 1, start_character=_utf16(lines[l0 - 1][:c0]),
                                  end_line=l1 - 1, end_character=_utf16(lines[l1 - 1][:c1]), new_text=text))
    pieces.append(source[cursor:])
    missing = [name for name in params if name not in found]
    return "".join(pieces), edits, changed, unchanged, missing


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` (temp file in the same folder, fsync, rename; mode kept)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def apply_to_file(path: str | os.PathLike[str], params: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the script at ``path`` in place (atomically, only when something changes)."""
    raw = Path(path).read_bytes()
    source = raw.decode("utf-8")
    new_source, edits, changed, unchanged, missing = apply_best(source, params)
    if new_source != source:
        write_atomic(path, new_source)
    return {"path": str(path), "changed": changed, "unchanged": unchanged, "missing": missing, "edits": len(edits)}
