"""From a measured run to the report: the breakdown's medians, the hot lines, and the findings.

* **Breakdown**: each part's median over the measured steps. Medians of parts need not add up to the
  median step, so the parts other than ``idle`` are kept as measured and ``idle`` is the rest of the
  median step; if they add up to more than the step (a rare skewed run), they are scaled down
  proportionally to fill it exactly and ``idle`` is 0. Either way the parts sum to ``step_ms``.
* **Findings**: :func:`deepdive.diagnose.rules.analyze` on the script. A static finding is *promoted*
  when the time measured in its rule's part on its lines (its own lines, the ``for`` line of the loop it
  sits in; for a DataLoader rule, the ``for`` lines that iterate that loader) is at least
  :data:`PROMOTE_FLOOR` of the step; its share is that time over the steps' total. Otherwise it stays a
  hint (``promoted`` false, ``share`` null).
* **DD900**: a line of the user's code with at least :data:`UNEXPLAINED_SHARE` of the step in host
  syncs, data waits or copies that no rule's finding explains. Forward and backward time is what
  training is: never a DD900.
* **Hotspots**: the user's lines ranked by the op time measured under them per step.

Per-line figures are medians over the measured steps too, and shares are over the median step, so a step
in which the machine stalled (another process took the core) weighs no more than any other.
"""

from __future__ import annotations

import ast
import os
import statistics
from collections import defaultdict
from typing import Iterable, Optional

from deepdive.diagnose.measure.breakdown import Breakdown, LineTally
from deepdive.diagnose.report import PROMOTE_FLOOR, UNEXPLAINED_SHARE
from deepdive.protocol.diagnose import BREAKDOWN_PARTS, DiagnosisFinding, Hotspot, StepBreakdown

DD900_PARTS = ("host_sync", "data_wait", "copies")
HOTSPOTS = 10

PART_WORDS = {"data_wait": "waiting for data", "forward": "the forward pass", "backward": "the backward pass",
              "optimizer": "the optimizer", "host_sync": "host syncs", "copies": "host↔device copies",
              "communication": "communication", "idle": "idle"}


def median_per_step(tallies: Iterable[LineTally], steps: int) -> float:
    """The median over the measured steps of the tallies' summed time in each step (ns; a step without any: 0).

    Shares are this over the median step: medians, so that a step the machine stalled in (another process
    took the core) weighs no more than any other."""
    per_step = [0] * steps
    for tally in tallies:
        for index, ns in tally.per_step.items():
            if index < steps:
                per_step[index] += ns
    return float(statistics.median(per_step)) if steps else 0.0


def pct(share: float) -> str:
    """``0.312`` → ``31 %``; small shares keep a decimal."""
    value = 100 * share
    return f"{value:.1f} %" if value < 10 else f"{value:.0f} %"


def step_breakdown(parts_ns: list[dict[str, int]], step_ms: float) -> StepBreakdown:
    """The median of each part, made to sum to the median step (see the module docstring)."""
    if not parts_ns:
        return StepBreakdown(**{part: 0.0 for part in BREAKDOWN_PARTS})
    medians = {part: statistics.median(p.get(part, 0) for p in parts_ns) / 1e6
               for part in BREAKDOWN_PARTS if part != "idle"}
    busy = sum(medians.values())
    if busy > step_ms > 0:
        scale = step_ms / busy
        medians = {part: ms * scale for part, ms in medians.items()}
        idle = 0.0
    else:
        idle = step_ms - busy
    return StepBreakdown(**medians, idle=max(0.0, idle))


# -- where a finding's cost shows up ------------------------------------------------------------------


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}


def _node_at(tree: ast.AST, line: int, col: int) -> Optional[ast.AST]:
    best: Optional[ast.AST] = None
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) == line and getattr(node, "col_offset", None) is not None:
            if node.col_offset <= col and (best is None or node.col_offset >= best.col_offset):  # type: ignore
                best = node
    return best


def _loader_loops(tree: ast.AST, parents: dict[ast.AST, ast.AST], node: ast.AST) -> set[int]:
    """The ``for`` lines that iterate the DataLoader built at ``node`` (by the name it is bound to, or inline)."""
    call = node
    while call is not None and not isinstance(call, ast.Call):
        call = parents.get(call)
    if call is None:
        return set()
    names: set[str] = set()
    holder = parents.get(call)
    if isinstance(holder, (ast.For, ast.AsyncFor)) and holder.iter is call:
        return {holder.lineno}
    walk: Optional[ast.AST] = call
    while walk is not None and not isinstance(walk, (ast.For, ast.AsyncFor)) and walk not in (None,):
        if isinstance(walk, ast.Assign):
            for target in walk.targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            break
        if isinstance(walk, (ast.AnnAssign, ast.NamedExpr)) and isinstance(walk.target, ast.Name):
            names.add(walk.target.id)
            break
        walk = parents.get(walk)
    lines: set[int] = set()
    for loop in ast.walk(tree):
        if isinstance(loop, (ast.For, ast.AsyncFor)):
            used = {n.id for n in ast.walk(loop.iter) if isinstance(n, ast.Name)}
            if names & used or any(inner is call for inner in ast.walk(loop.iter)):
                lines.add(loop.lineno)
    return lines


def evidence_lines(tree: Optional[ast.AST], finding_line: int, finding_end: int, col: int, part: str) -> set[int]:
    """The lines whose measured time in ``part`` counts for a finding (see the module docstring)."""
    lines = set(range(finding_line, finding_end + 1))
    if tree is None:
        return lines
    parents = _parents(tree)
    node = _node_at(tree, finding_line, col)
    if node is None:
        return lines
    if part == "data_wait":
        loops = _loader_loops(tree, parents, node)
        if loops:
            return lines | loops
    walk = parents.get(node)
    while walk is not None:
        if isinstance(walk, (ast.For, ast.AsyncFor)):
            lines.add(walk.lineno)
            break
        walk = parents.get(walk)
    return lines


def _what(tallies: Iterable[LineTally], steps: int, top: int = 2) -> str:
    """The ops that took the time, in a few words: ``aten::item ×256, aten::_local_scalar_dense ×256``."""
    ns: dict[str, int] = defaultdict(int)
    calls: dict[str, int] = defaultdict(int)
    for tally in tallies:
        for op, t in tally.ops.items():
            ns[op] += t
            calls[op] += len(tally.calls.get(op, ()))
    ranked = sorted(ns, key=lambda op: -ns[op])[:top]
    return ", ".join(f"{op} ×{max(1, round(calls[op] / max(1, steps))):g}" for op in ranked)


# -- the findings ------------------------------------------------------------------------------------


def findings(script: str, source: str, bd: Optional[Breakdown], disabled: Iterable[str] = ()) -> list[DiagnosisFinding]:
    """The static findings with their measured evidence, then the DD900s (see the module docstring)."""
    from deepdive.diagnose.rules import RULES, analyze

    script = os.path.abspath(script)
    static = analyze(source, script, disabled)
    try:
        tree: Optional[ast.AST] = ast.parse(source)
    except SyntaxError:
        tree = None
    steps = len(bd.steps_ns) if bd is not None else 0
    step_ns = float(statistics.median(bd.steps_ns)) if bd is not None and bd.steps_ns else 0.0
    out: list[DiagnosisFinding] = []
    explained: set[tuple[int, str]] = set()
    for f in static:
        rule = RULES.get(f.code)
        category = rule.category if rule is not None else None
        part = category if category in BREAKDOWN_PARTS and category != "idle" else None
        ms: Optional[float] = None
        share: Optional[float] = None
        evidence: Optional[str] = None
        promoted = False
        if part is not None:
            lines = evidence_lines(tree, f.line, f.end_line, f.col, part)
            explained |= {(line, part) for line in lines}
            if bd is not None and step_ns > 0:
                tallies = [bd.lines[key] for key in ((script, line, part) for line in sorted(lines)) if key in bd.lines]
                ns = median_per_step(tallies, steps)
                if tallies:
                    ms = ns / 1e6
                    measured = ns / step_ns
                    where = ", ".join(str(line) for line in sorted({k[1] for k in bd.lines
                                                                    if k[0] == script and k[1] in lines
                                                                    and k[2] == part}))
                    evidence = f"{_what(tallies, steps)} per step on line {where}: {pct(measured)} of step time"
                    if measured >= PROMOTE_FLOOR:
                        promoted, share = True, measured
                    else:
                        evidence += f", under the {pct(PROMOTE_FLOOR)} floor"
        message = f.message
        if promoted and share is not None and part is not None:
            message = f"{f.message} (measured: {pct(share)} of step time, {PART_WORDS[part]})"
        out.append(DiagnosisFinding(code=f.code, file=script, line=f.line, message=message,
                                    part=part if ms is not None else None,  # type: ignore[arg-type]
                                    share=share, ms_per_step=ms, evidence=evidence, promoted=promoted,
                                    fixable=f.fix is not None))
    if bd is not None and step_ns > 0:
        for (file, line, part), tally in sorted(bd.lines.items(), key=lambda kv: -kv[1].ns):
            share_ = median_per_step([tally], steps) / step_ns
            if part not in DD900_PARTS or share_ < UNEXPLAINED_SHARE:
                continue
            if file == script and (line, part) in explained:
                continue
            what = _what([tally], steps)
            out.append(DiagnosisFinding(
                code="DD900", file=file, line=line,
                message=f"line {line}: {pct(share_)} of step time in {what} — {PART_WORDS[part]}, "
                        "and no rule says why: look at what this line does every step",
                part=part,  # type: ignore[arg-type]
                share=share_, ms_per_step=share_ * step_ns / 1e6, evidence=f"{what} per step", promoted=True,
                fixable=False))
    out.sort(key=lambda d: (not d.promoted, -(d.share or 0.0), d.file, d.line, d.code))
    return out


def hotspots(bd: Breakdown, limit: int = HOTSPOTS) -> list[Hotspot]:
    """The user's lines by op time per step; each with the part most of its time went to."""
    steps = len(bd.steps_ns)
    step_ns = float(statistics.median(bd.steps_ns)) if steps else 0.0
    if not steps or step_ns <= 0:
        return []
    by_line: dict[tuple[str, int], dict[str, LineTally]] = defaultdict(dict)
    for (file, line, part), tally in bd.lines.items():
        by_line[(file, line)][part] = tally
    medians = {key: median_per_step(parts.values(), steps) for key, parts in by_line.items()}
    ranked = sorted(by_line.items(), key=lambda kv: -medians[kv[0]])[:limit]
    out: list[Hotspot] = []
    for (file, line), parts in ranked:
        ns = medians[(file, line)]
        if ns <= 0:
            continue
        main = max(parts, key=lambda p: parts[p].ns)
        out.append(Hotspot(file=file, line=line, ms_per_step=ns / 1e6, share=ns / step_ns,
                           part=main,  # type: ignore[arg-type]
                           what=_what(parts.values(), steps)))
    return out
