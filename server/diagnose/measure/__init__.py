"""The measured diagnosis: a few optimizer steps of the user's script under ``torch.profiler``.

Run as ``python -m deepdive.diagnose.measure SCRIPT --steps N --warmup W --out REPORT.json -- ARGS...``
(a job's subprocess: it imports torch and runs the user's code; the daemon never imports this).

* :mod:`~deepdive.diagnose.measure.runner` runs the script and stops it after the steps asked for;
* :mod:`~deepdive.diagnose.measure.lines` places time on the user's lines;
* :mod:`~deepdive.diagnose.measure.trace` reads the profile;
* :mod:`~deepdive.diagnose.measure.breakdown` splits each step into the breakdown's parts;
* :mod:`~deepdive.diagnose.measure.analysis` makes the report's breakdown, findings and hotspots.

``--timing-only`` is what *Apply and measure* (:mod:`deepdive.diagnose.compare`) runs for each arm:
no profiler, no tracer, only the step times.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from deepdive.diagnose.measure.runner import PROFILE_MEMORY_LIMIT, Capture, run_script
from deepdive.protocol.diagnose import DiagnosisReport

PROFILER = "torch.profiler ({activities}, shapes) with a line tracer on the script's own files"


def _ended_note(capture: Capture, steps: int, warmup: int) -> Optional[str]:
    """What the reader must know about how the run ended (None: it ran the steps asked for)."""
    if capture.ended == "steps" and capture.measured >= steps:
        return None
    if capture.ended == "memory":
        return (f"measuring stopped after {capture.measured} of the {steps} steps asked for: the profile had grown "
                f"past {PROFILE_MEMORY_LIMIT >> 20} MiB of events (ask for fewer steps)")
    how = {"returned": "ended", "error": f"failed ({capture.error})"}.get(
        capture.ended, f"exited ({capture.ended.replace('exit', 'status')})")
    if capture.steps_seen == 0:
        return (f"the script {how} without an optimizer step: nothing was measured (steps are counted by "
                "torch.optim optimizers' step(); a script that trains with something else cannot be measured)")
    if capture.measured == 0:
        return (f"the script {how} after {capture.steps_seen} optimizer step(s), before the {warmup} warm-up "
                f"step(s) and one measured step were done: nothing was measured; lower --warmup or let it run longer")
    return (f"the script {how} after {capture.steps_seen} optimizer step(s): {capture.measured} of the {steps} "
            f"steps asked for were measured (after {warmup} warm-up)")


def diagnose(script: str, args: list[str], *, steps: int, warmup: int, disabled: Iterable[str] = (),
             on_step: Optional[Callable[[int, int], None]] = None) -> DiagnosisReport:
    """Run ``script`` for ``warmup`` + ``steps`` optimizer steps under the profiler; the report."""
    from deepdive.diagnose.measure import analysis, trace
    from deepdive.diagnose.measure.breakdown import breakdown
    from deepdive.diagnose.measure.lines import Timeline
    from deepdive.diagnose.rules.base import Context

    t0 = time.time()
    script = os.path.abspath(script)
    source = Path(script).read_text(encoding="utf-8")
    capture = run_script(script, args, steps=steps, warmup=warmup, profile=True, on_step=on_step)
    notes: list[str] = []
    ended = _ended_note(capture, steps, warmup)
    if ended:
        notes.append(ended)
    bd = None
    if capture.raw_events is not None and capture.measured > 0:
        read = trace.read(capture.raw_events)
        capture.raw_events = None
        if read.unreadable:
            notes.append(f"{read.unreadable} profiler event(s) with an undecodable name were skipped")
        if len(read.markers) >= 2:
            main_tid = read.markers[0].tid
            trace.link_runtime(read.spans)
            places = capture.tracer.places if capture.tracer is not None else []
            timeline = Timeline(read.lines, places)
            main = [s for s in read.spans if (s.kind == "op" and s.tid == main_tid)
                    or (s.kind == "runtime" and s.tid == capture.native_tid)]
            others = [s for s in read.spans if s.kind == "op" and s.tid != main_tid]
            bd = breakdown(main, others, [m.start for m in read.markers], timeline.place_at, timeline.changes_between)
    steps_ms = [ns / 1e6 for ns in bd.steps_ns] if bd is not None else []
    step_ms = statistics.median(steps_ms) if steps_ms else 0.0
    try:
        engine = Context(source, script).uses_engine
    except (SyntaxError, ValueError):
        engine = False
    activities = "CPU and CUDA activities" if capture.device.startswith("cuda") else "CPU activities"
    return DiagnosisReport(
        script=script, args=list(args), device=capture.device, profiler=PROFILER.format(activities=activities),
        warmup=warmup, steps=len(steps_ms), step_ms=step_ms,
        step_ms_spread=[min(steps_ms), max(steps_ms)] if steps_ms else [0.0, 0.0],
        breakdown=analysis.step_breakdown(bd.parts_ns if bd is not None else [], step_ms),
        findings=analysis.findings(script, source, bd, disabled),
        hotspots=analysis.hotspots(bd) if bd is not None else [],
        engine=engine, wall_s=time.time() - t0, created=time.time(), note="; ".join(notes) or None)


def time_steps(script: str, args: list[str], *, steps: int, warmup: int) -> dict:
    """``--timing-only``: the script's step times, nothing else measured (no profiler, no tracer).

    Returns ``{"step_ms": mean, "median_ms": median, "steps_ms": [...], "steps_seen": n, "ended": how}``;
    raises ValueError when no step was timed. ``step_ms`` is the measured window's time over its steps (the
    run's throughput): a cost paid once an epoch (DataLoader workers started again, an evaluation) counts
    there, where the median step would hide it.
    """
    capture = run_script(script, args, steps=steps, warmup=warmup, profile=False)
    times = [(b - a) / 1e6 for a, b in zip(capture.boundaries, capture.boundaries[1:])]
    if not times:
        if capture.error:  # the script's own error first: it is what the reader has to fix
            raise ValueError(f"{capture.error} (after {capture.steps_seen} optimizer step(s), before a step was timed)")
        raise ValueError(_ended_note(capture, steps, warmup) or "no step was timed")
    return {"step_ms": statistics.fmean(times), "median_ms": statistics.median(times), "steps_ms": times, "steps_seen": capture.steps_seen,
            "ended": capture.ended, "error": capture.error}


__all__ = ["diagnose", "time_steps", "Capture", "run_script"]
