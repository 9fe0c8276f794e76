"""What `deepdive generate` prints after a generation: what was understood, each stated property, the verdict.

The program goes to stdout (or the ``-o`` file); this report goes to stderr, so ``deepdive generate
"..." > train.py`` keeps a clean program. "verified" is printed only for a verified result: every
check passed and every property the prompt states was checked and met.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from rich.markup import escape

from deepdive.codegen.generation import GenerateResult

__all__ = ["understood_line", "property_lines", "print_report"]

_MARKS = {"met": "[green]✓[/]", "failed": "[red]✗[/]", "not_checked": "[yellow]-[/] not checked:"}


def understood_line(result: GenerateResult) -> Optional[str]:
    """``Understood as: task image-classification · outputs 10 · no_layer Dropout``, or None when nothing was."""
    stated = (result.understood_as or {}).get("stated") or []
    if not stated:
        return None
    labels = [p.label for p in result.properties] if len(result.properties) == len(stated) else [
        f"{s['name']} {s['value']}" for s in stated]
    return "Understood as: " + " · ".join(labels)


def property_lines(result: GenerateResult) -> list[str]:
    """One line per stated property, ✓ met, ✗ failed, or "- not checked:", with what was seen (rich markup)."""
    return [f"  {_MARKS[p.status]} {escape(p.label)}" + (f" — {escape(p.detail)}" if p.detail else "")
            for p in result.properties]


def _what(result: GenerateResult) -> str:
    stated = {s["name"]: s["value"] for s in (result.understood_as or {}).get("stated", [])}
    task = stated.get("task") or result.intent.get("task")
    family = stated.get("family") or result.intent.get("architecture")
    return " · ".join(str(w) for w in (task, family, result.framework) if w)


def print_report(console: Any, result: GenerateResult, *, no_verify: bool, out: Optional[Path]) -> None:
    """The report after the program: understood, not understood, each property, the verdict."""
    line = understood_line(result)
    if line:
        console.print(escape(line))
    if result.not_understood:
        console.print("Not understood: " + escape(", ".join(repr(w) for w in result.not_understood)))
    if result.code and result.properties:
        console.print("Stated properties:")
        for text in property_lines(result):
            console.print(text)
    where = f" -> {out}" if out is not None and result.code else ""
    what = f" ({escape(_what(result))}, {result.seconds:.1f} s)"
    if not result.code:
        console.print(f"[yellow]no program[/]: {escape(result.message or 'nothing was generated')}")
    elif result.verified:
        met = len(result.properties)
        props = f", {met}/{met} stated properties met" if met else ", no property stated"
        console.print(f"[green]verified[/]: {len(result.checks)}/{len(result.checks)} checks passed{props}{what}{where}")
    elif no_verify:
        console.print(f"verification skipped (--no-verify): the program was not run{what}{where}")
    else:
        console.print(f"[yellow]{escape(result.message or 'verification did not pass')}[/]{what}{where}")
