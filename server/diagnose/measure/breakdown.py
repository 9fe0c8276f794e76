"""Where each step's time went: the breakdown parts, and the user's lines that spent it.

The main thread's spans (ops and ``record_function`` regions) are nested into a tree. Each instant of
a step on the main thread belongs to the innermost span covering it, and that span's *part* is the
highest-priority part found on its chain of ancestors (itself included), in this order:

``data_wait``
    inside a DataLoader's ``__next__`` (``enumerate(DataLoader)#…__next__``): everything the loop
    waits for its batch, the collate and the Dataset's own Python included; and inside its ``__iter__``
    (:data:`ITER_SPAN`, recorded by the runner), where a loader without persistent workers starts its
    worker processes again at every epoch.
``optimizer``
    inside ``Optimizer.step#…`` / ``Optimizer.zero_grad#…``.
``communication``
    collectives: ``c10d::…``, ``record_param_comms``, ``gloo:…``, ``nccl:…``.
``host_sync``
    the host waiting on the device or reading a tensor's value: ``aten::item``,
    ``aten::_local_scalar_dense``, CUDA synchronize calls, and device→host copies that synchronize
    (``.cpu()``, ``.numpy()``, ``.tolist()`` of a GPU tensor).
``copies``
    host↔device copies (``aten::to``/``_to_copy``/``copy_`` that issued a CUDA memcpy; pinning).
``backward``
    the autograd engine's work (``autograd::engine::evaluate_function: …``).
``forward``
    every other op on the main thread.

What no span covers is ``idle`` (Python between ops, the interpreter's own time). When the backward
pass or a collective runs on another thread (CUDA, DDP) while the main thread waits in
``backward()``, the main thread's uncovered time under those spans counts as ``backward`` /
``communication``, not idle. Because each instant is counted once, a step's parts never sum past
its length; ``idle`` is the rest.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

from deepdive.diagnose.measure.trace import Span

PRIORITY: tuple[str, ...] = ("data_wait", "optimizer", "communication", "host_sync", "copies", "backward", "forward")
"""The parts a span can give its time to, strongest first (see the module docstring)."""

_RANK = {part: i for i, part in enumerate(PRIORITY)}
_COMM_PREFIXES = ("c10d::", "record_param_comms", "gloo:", "nccl:", "ProcessGroup", "c10d_functional::")
_SYNC_OPS = {"aten::item", "aten::_local_scalar_dense"}
_COPY_OPS = {"aten::to", "aten::_to_copy", "aten::copy_", "aten::pin_memory", "aten::_pin_memory"}
_SKIP = ("ProfilerStep#",)
_ANCHORED = ("data_wait", "optimizer")
ITER_SPAN = "DataLoader.__iter__"
"""The span the runner records around ``iter(loader)``: starting (or restarting) the loader's workers."""


def own_part(span: Span) -> Optional[str]:
    """The part a span claims by its own name and what it issued (None: it claims none)."""
    name = span.name
    if (name.startswith("enumerate(DataLoader)#") and name.endswith("__next__")) or name == ITER_SPAN:
        return "data_wait"
    if name.startswith(("Optimizer.step#", "Optimizer.zero_grad#")):
        return "optimizer"
    if name.startswith(_COMM_PREFIXES):
        return "communication"
    if name in _SYNC_OPS or span.sync or (span.kind == "runtime" and "Synchronize" in name):
        return "host_sync"
    if span.memcpy or (name in ("aten::pin_memory", "aten::_pin_memory")):
        return "copies"
    if name.startswith("autograd::engine::evaluate_function"):
        return "backward"
    return None


def _stronger(a: Optional[str], b: Optional[str]) -> Optional[str]:
    if a is None:
        return b
    if b is None:
        return a
    return a if _RANK[a] <= _RANK[b] else b


def nest(spans: list[Span]) -> list[Span]:
    """The roots of the spans' containment tree (children filled in); a span that overlaps its would-be
    parent only partly is cut at the parent's end."""
    roots: list[Span] = []
    stack: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        s.children = []
        while stack and stack[-1].end <= s.start:
            stack.pop()
        if stack:
            parent = stack[-1]
            if s.end > parent.end:
                s.end = parent.end
            parent.children.append(s)
        else:
            roots.append(s)
        stack.append(s)
    return roots


@dataclass(slots=True)
class Segment:
    """A stretch of the main thread's time given to one part, spent in one op, under one line (or none)."""

    start: int
    end: int
    part: str
    op: str
    place: Optional[tuple[str, int]]
    op_start: int = 0
    """The start of the op's span (counts its calls)."""
    anchor: Optional[int] = None
    """For time inside a DataLoader's ``__next__`` or an optimizer step: when that region began. Its time is
    the line's that started it (the ``for`` over the loader, the ``optimizer.step()`` call), even where the
    user's own code runs inside it (a Dataset's ``__getitem__``)."""


def segments(roots: list[Span]) -> list[Segment]:
    """The main thread's covered time as non-overlapping segments, each with its part and innermost op."""
    out: list[Segment] = []

    def visit(span: Span, inherited: Optional[str], anchor: Optional[int]) -> None:
        part = _stronger(own_part(span), inherited)
        if anchor is None and part in _ANCHORED:
            anchor = span.start
        cursor = span.start
        for child in span.children:
            if child.start > cursor:
                out.append(Segment(cursor, child.start, part or "forward", span.name, None, span.start, anchor))
            visit(child, part, anchor)
            cursor = max(cursor, child.end)
        if span.end > cursor:
            out.append(Segment(cursor, span.end, part or "forward", span.name, None, span.start, anchor))

    for root in roots:
        visit(root, None, None)
    return out


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def gap_segments(covered: list[Segment], others: list[Span], window: tuple[int, int]) -> list[Segment]:
    """Backward or communication work on other threads, counted where the main thread has no span of its own."""
    claims: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for s in others:
        part = own_part(s)
        if part in ("backward", "communication"):
            claims[part].append((max(s.start, window[0]), min(s.end, window[1])))
    if not claims:
        return []
    busy = _merge([(c.start, c.end) for c in covered])
    out: list[Segment] = []
    taken: list[tuple[int, int]] = list(busy)
    for part in ("communication", "backward"):
        for a, b in _merge([iv for iv in claims.get(part, []) if iv[1] > iv[0]]):
            for free_a, free_b in _subtract((a, b), _merge(taken)):
                out.append(Segment(free_a, free_b, part, f"{part} (other threads)", None, free_a))
                taken.append((free_a, free_b))
    return out


def _subtract(interval: tuple[int, int], busy: list[tuple[int, int]]) -> list[tuple[int, int]]:
    a, b = interval
    free: list[tuple[int, int]] = []
    cursor = a
    for x, y in busy:
        if y <= cursor or x >= b:
            continue
        if x > cursor:
            free.append((cursor, x))
        cursor = max(cursor, y)
    if cursor < b:
        free.append((cursor, b))
    return free


@dataclass
class LineTally:
    """The time one line spent in one part over all measured steps, and in which ops."""

    ns: int = 0
    ops: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Op name → nanoseconds."""
    calls: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    """Op name → the starts of its distinct spans (to count calls; a call cut by a line change counts once)."""
    per_step: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    """Measured step index → nanoseconds in that step (steps without any are absent)."""


@dataclass
class Breakdown:
    """Per measured step: each part's nanoseconds (``idle`` included) and the step's length."""

    steps_ns: list[int]
    parts_ns: list[dict[str, int]]
    lines: dict[tuple[str, int, str], LineTally]
    """(file, line, part) → its tally over all steps."""


def split_by_lines(seg: Segment, place_at: Callable[[int], Optional[tuple[str, int]]],
                   changes: Callable[[int, int], list[int]]) -> list[Segment]:
    """The segment cut wherever the user's current line changes inside it (an anchored one is not cut: it
    belongs to the line where its region began)."""
    if seg.anchor is not None:
        return [Segment(seg.start, seg.end, seg.part, seg.op, place_at(seg.anchor), seg.op_start, seg.anchor)]
    # Each piece takes the line current at its middle, not at its start: the two clocks agree to within a
    # microsecond or so, and an op begins well under that after the line event of the line that calls it.
    out: list[Segment] = []
    cursor = seg.start
    for t in changes(seg.start, seg.end) + [seg.end]:
        if t > cursor:
            out.append(Segment(cursor, t, seg.part, seg.op, place_at((cursor + t) // 2), seg.op_start))
            cursor = t
    return out


def breakdown(main: list[Span], others: list[Span], boundaries: list[int],
              place_at: Callable[[int], Optional[tuple[str, int]]],
              changes: Callable[[int, int], list[int]]) -> Breakdown:
    """The breakdown of the steps between consecutive ``boundaries`` (times on the same clock as the spans).

    ``main``: the training thread's spans; ``others``: spans of other threads (autograd's device threads,
    communication); ``place_at(t)``: the user's line at ``t``; ``changes(a, b)``: the times in (a, b) at which
    it changes.
    """
    main = [s for s in main if not s.name.startswith(_SKIP)]
    covered = segments(nest(main))
    covered.sort(key=lambda s: s.start)
    steps_ns: list[int] = []
    parts_ns: list[dict[str, int]] = []
    lines: dict[tuple[str, int, str], LineTally] = defaultdict(LineTally)
    ends = [s.end for s in covered]  # non-overlapping and sorted by start, so sorted by end too
    for index, (a, b) in enumerate(zip(boundaries, boundaries[1:])):
        parts = {part: 0 for part in PRIORITY}
        inside: list[Segment] = []
        for s in covered[bisect.bisect_right(ends, a):]:
            if s.start >= b:
                break
            inside.append(Segment(max(s.start, a), min(s.end, b), s.part, s.op, None, s.op_start, s.anchor))
        inside += gap_segments(inside, [s for s in others if s.end > a and s.start < b], (a, b))
        for seg in inside:
            for piece in split_by_lines(seg, place_at, changes):
                length = piece.end - piece.start
                if length <= 0:
                    continue
                parts[piece.part] += length
                if piece.place is not None:
                    tally = lines[(piece.place[0], piece.place[1], piece.part)]
                    tally.ns += length
                    tally.per_step[index] += length
                    tally.ops[piece.op] += length
                    tally.calls[piece.op].add(piece.op_start)
        used = sum(parts.values())
        parts["idle"] = max(0, (b - a) - used)
        steps_ns.append(b - a)
        parts_ns.append(parts)
    return Breakdown(steps_ns=steps_ns, parts_ns=parts_ns, lines=dict(lines))
