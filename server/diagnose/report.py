"""The diagnosis report and the speed-up of a fix: where they are written, how they read, where they go.

Both are protocol classes (:class:`~deepdive.protocol.diagnose.DiagnosisReport`,
:class:`~deepdive.protocol.diagnose.SpeedupResult`) written as JSON under their wire keys, atomically
(:mod:`deepdive.fsutil`), by default into ``<workspace or script folder>/.deepdive/diagnose/`` as
``<stem>-<hash>.json`` and ``<stem>-<hash>.speedup.json`` (:func:`report_name`); with a hub (``DEEPDIVE_HUB``) they are also sent as the
``diagnose.report`` / ``diagnose.speedup`` events of run ``diagnose-<stem>``.

How a report is read (the figures are the profiler's, on the machine that ran the script):

* ``step_ms``: the median measured step, from one optimizer step's end to the next's;
* ``breakdown``: each part's median per step; the parts sum to ``step_ms`` (``idle`` is the rest; see
  :mod:`deepdive.diagnose.measure.analysis` for how medians are made to add up);
* a finding is *promoted* when the time measured on its lines in its rule's part reaches
  ``PROMOTE_FLOOR`` (2 %) of the step; below, it stays a hint with no share;
* ``DD900``: a line with ``UNEXPLAINED_SHARE`` (10 %) or more of the step in host syncs, data waits or
  copies that no rule explains;
* hotspots: op time measured under each of the user's lines (Python time between ops is idle and
  belongs to no line).

Nothing here imports torch: the CLI and the daemon read reports.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from deepdive.protocol.diagnose import BREAKDOWN_PARTS, DiagnosisReport, SpeedupResult

PROMOTE_FLOOR = 0.02
"""The share of the step a static finding's lines must show in its part to be promoted (2 %)."""
UNEXPLAINED_SHARE = 0.10
"""The share of the step a line must show in host syncs, data waits or copies to be a DD900 (10 %)."""

PART_LABELS = {"data_wait": "data wait", "forward": "forward", "backward": "backward", "optimizer": "optimizer",
               "host_sync": "host syncs", "copies": "host↔device copies", "communication": "communication",
               "idle": "idle (Python, unmeasured)"}


def report_dir(script: str, workspace: Optional[str] = None) -> Path:
    """``<workspace or the script's folder>/.deepdive/diagnose``."""
    base = Path(workspace) if workspace else Path(script).resolve().parent
    return base / ".deepdive" / "diagnose"


def report_name(script: str) -> str:
    """``<stem>-<8 hex digits>``: the script's name and the first 8 hex digits of the SHA-1 of its absolute path
    (``os.path.abspath``, as Node's ``path.resolve``), so that two ``train.py`` of one workspace keep two reports.
    The extension computes the same name (``extension/src/diagnose/options.ts``)."""
    absolute = os.path.abspath(script)
    return f"{Path(absolute).stem}-{hashlib.sha1(absolute.encode('utf-8')).hexdigest()[:8]}"


def report_path(script: str, workspace: Optional[str] = None) -> Path:
    """Where the report of ``script`` goes by default: ``.deepdive/diagnose/<stem>-<hash>.json``."""
    return report_dir(script, workspace) / f"{report_name(script)}.json"


def speedup_path(script: str, workspace: Optional[str] = None) -> Path:
    """Where *Apply and measure* writes its result by default: ``.deepdive/diagnose/<stem>-<hash>.speedup.json``."""
    return report_dir(script, workspace) / f"{report_name(script)}.speedup.json"


def run_name(script: str) -> str:
    """The hub run the events of a script's diagnosis belong to: ``diagnose-<stem>``."""
    return f"diagnose-{Path(script).stem}"


def _write(obj: object, path: str | os.PathLike[str]) -> None:
    from deepdive.fsutil import atomic_write_text
    from deepdive.protocol.wire import to_wire

    atomic_write_text(path, json.dumps(to_wire(obj), indent=1) + "\n")


def write_report(report: DiagnosisReport, path: str | os.PathLike[str]) -> None:
    """Write the report as JSON (wire keys), atomically."""
    _write(report, path)


def write_speedup(result: SpeedupResult, path: str | os.PathLike[str]) -> None:
    """Write a speed-up result as JSON (wire keys), atomically."""
    _write(result, path)


def read_report(path: str | os.PathLike[str]) -> DiagnosisReport:
    """A report written by :func:`write_report`; ValueError with the reason when it is not one."""
    from deepdive.protocol.wire import InvalidPayload, from_wire

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return from_wire(data, DiagnosisReport, what="report")
    except (OSError, json.JSONDecodeError, InvalidPayload) as exc:
        raise ValueError(f"{path} is not a diagnosis report: {exc}") from None


def _send(kind: str, script: str, **fields: object) -> None:
    from deepdive.engine.reporter import Reporter

    reporter = Reporter.from_env(run_name(script), 0)
    try:
        if reporter.enabled:
            reporter.event(kind, **fields)
    finally:
        reporter.close()


def send_report(report: DiagnosisReport) -> None:
    """Send the report as a ``diagnose.report`` event to the hub (``DEEPDIVE_HUB``) and/or the telemetry file
    (``DEEPDIVE_METRICS_OUT``), the sinks the engine's reporter reads from the environment; neither: nothing."""
    from deepdive.protocol.wire import to_wire

    _send("diagnose.report", report.script, report=to_wire(report))


def send_speedup(result: SpeedupResult) -> None:
    """Send a speed-up result as a ``diagnose.speedup`` event, to the same sinks as :func:`send_report`."""
    from deepdive.protocol.wire import to_wire

    _send("diagnose.speedup", result.script, result=to_wire(result))


# -- reading it on a terminal -------------------------------------------------------------------------


def _where(file: str, line: int, script: str) -> str:
    return f"{Path(file).name if Path(file).parent == Path(script).parent else file}:{line}"


def render(report: DiagnosisReport, path: Optional[str] = None) -> str:
    """The report as text for a terminal: the breakdown table, promoted findings, hints, hotspots."""
    out: list[str] = []
    name = Path(report.script).name
    out.append(f"{name}: {report.steps} step(s) measured after {report.warmup} warm-up on {report.device}; "
               f"median step {report.step_ms:.2f} ms (fastest {report.step_ms_spread[0]:.2f}, slowest "
               f"{report.step_ms_spread[1]:.2f})")
    if report.note:
        out.append(f"note: {report.note}")
    if report.steps:
        out.append("")
        out.append(f"  {'part':<28}{'ms/step':>10}{'share':>9}")
        for part in BREAKDOWN_PARTS:
            ms = getattr(report.breakdown, part)
            share = ms / report.step_ms if report.step_ms > 0 else 0.0
            out.append(f"  {PART_LABELS[part]:<28}{ms:>10.3f}{100 * share:>8.1f}%")
        out.append(f"  {'step':<28}{report.step_ms:>10.3f}{100.0:>8.1f}%")
    promoted = [f for f in report.findings if f.promoted]
    hints = [f for f in report.findings if not f.promoted]
    if promoted:
        out.append("")
        out.append("measured findings:")
        for f in promoted:
            fix = " [fix available]" if f.fixable else ""
            out.append(f"  {_where(f.file, f.line, report.script)}: {f.code} {f.message}{fix}")
            if f.evidence:
                out.append(f"      {f.evidence}")
    if hints:
        out.append("")
        out.append("hints (no measured evidence in this run):")
        for f in hints:
            fix = " [fix available]" if f.fixable else ""
            out.append(f"  {_where(f.file, f.line, report.script)}: {f.code} {f.message}{fix}")
    if report.hotspots:
        out.append("")
        out.append("hot lines (op time under each line per step):")
        for h in report.hotspots:
            out.append(f"  {_where(h.file, h.line, report.script):<24}{h.ms_per_step:>9.3f} ms {100 * h.share:>5.1f}%  "
                       f"{PART_LABELS[h.part]}: {h.what}")
    if not report.findings and report.steps:
        out.append("")
        out.append("no findings: no rule fired and no line stands out")
    if path:
        out.append("")
        out.append(f"report: {path}")
    return "\n".join(out)


def render_speedup(result: SpeedupResult) -> str:
    """A speed-up result in a few lines."""
    return (f"{result.code} at {Path(result.script).name}:{result.line} ({result.title}): "
            f"{result.baseline_ms:.2f} ms → {result.fixed_ms:.2f} ms per step, speed-up ×{result.speedup:.2f} "
            f"[{result.ci_low:.2f}, {result.ci_high:.2f}] at {100 * result.confidence:.1f} % confidence over "
            f"{result.pairs} alternating pairs of {result.steps} steps: {result.verdict}")
