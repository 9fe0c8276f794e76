"""What the property checks know about one program, and the words they report it in."""

from __future__ import annotations

from typing import Any, Optional

import attrs

from deepdive.codegen.source_facts import SourceFacts
from deepdive.codegen.spec import same_layer

MET, FAILED, NOT_CHECKED = "met", "failed", "not_checked"
Judgement = tuple[str, str]
"""``(status, detail)``: what one check says."""


@attrs.define
class ProgramFacts:
    """What the checks know about one program: its framework, its source, and the probe's findings."""

    framework: str
    source: SourceFacts
    run: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return self.run.get("counts", {})

    def tensor(self, key: str) -> Optional[dict]:
        """The first tensor of ``inputs``, ``targets`` or ``outputs`` (for inputs: ``input_ids`` if named)."""
        found = self.run.get(key) or []
        if key == "inputs":
            named = [t for t in found if t["key"].split(".")[-1] in ("input_ids", "x", "inputs")]
            found = named or found
        return found[0] if found else None

    def shape(self, key: str) -> Optional[list]:
        t = self.tensor(key)
        return t["shape"] if t else None

    def layers(self, name: str) -> tuple[int, list[str]]:
        """How many modules of layer type ``name`` (or its aliases) the model has, and their paths."""
        exact = self.counts.get(name, 0)
        count = exact or sum(n for cls, n in self.counts.items() if same_layer(cls, name))
        paths = [p for p, cls in self.run.get("modules", []) if cls == name or not exact and same_layer(cls, name)]
        return count, paths

    def has(self, *names: str) -> list[str]:
        """The module class names of ``names`` the model has."""
        return [n for n in names if self.counts.get(n)]

    @property
    def graph(self) -> dict[str, Any]:
        return self.run.get("graph") or {}


def shape_text(shape: Optional[list]) -> str:
    """``(8, 1, 28, 28)``; ``?`` for an unknown shape or dimension."""
    if shape is None:
        return "?"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def where(found: list[str], limit: int = 4) -> str:
    """`` (features.3, head.1)``: where the modules are, the first few."""
    shown = ", ".join(found[:limit])
    return f" ({shown}{', ...' if len(found) > limit else ''})" if found else ""


def plural(n: int, word: str) -> str:
    many = word[:-1] + "ies" if word.endswith("property") else word + "s"
    return f"{n} {word if n == 1 else many}"


def same_spatial(f: ProgramFacts) -> tuple[bool, str]:
    """Whether the output has the input's height and width (either channel order)."""
    x, y = f.shape("inputs"), f.shape("outputs")
    if not x or not y or len(x) < 3 or len(y) < 3:
        return False, f"output {shape_text(y)} is not a map of the input {shape_text(x)}"
    if f.framework == "tensorflow":
        ok = x[1:-1] == y[1:-1] if len(x) == len(y) else x[1:3] == y[1:3]
    else:
        ok = x[-2:] == y[-2:]
    return ok, f"output {shape_text(y)} {'has' if ok else 'does not have'} the input {shape_text(x)}'s spatial size"
