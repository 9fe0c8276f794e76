"""Performance diagnosis: the measured report and the speed-up of a fix.

Both are written by a job (``deepdive diagnose SCRIPT --json``, job kinds ``diagnose`` and
``diagnose-fix``) as JSON files, sent to the hub as the ``diagnose.report`` / ``diagnose.speedup``
events the dashboard's Diagnosis page reads, and read back by the daemon to promote its static
diagnostics. Keys are the attribute names (hub convention).
"""

from __future__ import annotations

from typing import Literal, Optional

import attrs

from deepdive.protocol.base import keys_as_named

BreakdownPart = Literal["data_wait", "forward", "backward", "optimizer", "host_sync", "copies", "communication",
                        "idle"]
BREAKDOWN_PARTS: tuple[str, ...] = ("data_wait", "forward", "backward", "optimizer", "host_sync", "copies",
                                    "communication", "idle")
"""The step-time breakdown's parts, in the order the page stacks them; they sum to the step time."""


@keys_as_named
@attrs.define(kw_only=True)
class StepBreakdown:
    """Milliseconds per step (median over the measured steps) spent in each part; ``idle`` is the rest of the step
    (Python between ops, waiting on nothing measured)."""

    data_wait: float
    forward: float
    backward: float
    optimizer: float
    host_sync: float
    copies: float
    communication: float
    idle: float


@keys_as_named
@attrs.define(kw_only=True)
class DiagnosisFinding:
    """A finding of the report: a static rule's (promoted when measured) or a measured hot line without a rule."""

    code: str
    """``DD110``, or ``DD900`` for a measured hot line no rule explains."""
    file: str
    """Absolute path."""
    line: int
    """1-based."""
    message: str
    part: Optional[BreakdownPart]
    """The breakdown part its measured time belongs to; null: not measured."""
    share: Optional[float]
    """Its measured share of the step time, 0..1; null: no evidence (a hint, not promoted)."""
    ms_per_step: Optional[float]
    evidence: Optional[str]
    """What was measured, in words (``aten::item ×640 per step``)."""
    promoted: bool
    """A static finding with measured evidence above the floor."""
    fixable: bool


@keys_as_named
@attrs.define(kw_only=True)
class Hotspot:
    """A line of the user's code and the time measured under it per step (self time of the ops it called)."""

    file: str
    line: int
    ms_per_step: float
    share: float
    part: BreakdownPart
    what: str
    """The ops, in a few words (``aten::addmm ×3``)."""


@keys_as_named
@attrs.define(kw_only=True)
class DiagnosisReport:
    script: str
    """Absolute path of the script measured."""
    args: list[str]
    device: str
    """``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    profiler: str
    """What measured it (``torch.profiler, CPU activities, stacks and shapes``)."""
    warmup: int
    steps: int
    """Steps measured (after ``warmup`` steps that were not)."""
    step_ms: float
    """Median step time."""
    step_ms_spread: list[float]
    """The fastest and slowest measured step."""
    breakdown: StepBreakdown
    findings: list[DiagnosisFinding]
    hotspots: list[Hotspot]
    engine: bool
    """The script uses deepdive.engine (its telemetry streamed to the hub during the run)."""
    wall_s: float
    """The whole diagnosis, start to report."""
    created: float
    """Seconds since the epoch."""
    note: Optional[str] = None
    """Something the reader must know (the script ended before the steps asked for, no optimizer step seen…)."""


@keys_as_named
@attrs.define(kw_only=True)
class SpeedupResult:
    """*Apply and measure*: the script and its fixed copy, timed in alternating pairs."""

    script: str
    code: str
    """The rule whose fix was applied."""
    line: int
    title: str
    """The fix's title."""
    pairs: int
    steps: int
    """Steps timed per run (after warm-up)."""
    baseline_ms: float
    """The script as it is: the median over its runs of each run's mean step time (its measured window over its
    steps, so a cost paid once an epoch counts)."""
    fixed_ms: float
    speedup: float
    """Median of the paired ratios baseline/fixed (>1: the fix is faster)."""
    ci_low: float
    ci_high: float
    confidence: float
    """The confidence level of [ci_low, ci_high] (distribution-free, from the paired ratios' order statistics)."""
    verdict: Literal["faster", "slower", "no measurable change"]
    wall_s: float
    created: float
