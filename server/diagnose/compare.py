"""*Apply and measure*: a rule's fix applied to a copy of the script, both timed in alternating pairs.

The fixed copy is written beside the script (same folder, so its imports and relative paths behave the
same) under a hidden name, ``.{stem}.dd-fix-{code}.py``, atomically, and removed when the measurement
ends, however it ends. The script itself is never touched here (``deepdive diagnose --fix … --keep``
writes the fix into it afterwards).

Each run is a fresh subprocess, ``python -m deepdive.diagnose.measure --timing-only``: the script runs
its warm-up steps, then ``steps`` optimizer steps are timed (no profiler, no tracer) and their mean (the
measured window's time over its steps: the run's throughput, so that a cost paid once an epoch, such as
DataLoader workers started again, counts) is the run's figure. Runs go in pairs, baseline and fixed, the arm that goes first alternating from one
pair to the next, so a machine that slows down or warms up over time weighs on both arms alike. The
speed-up is the median of the per-pair ratios baseline/fixed, and its confidence interval the
distribution-free one from the ratios' order statistics (:mod:`deepdive.pairstats`); the verdict is
*faster* when the whole interval is above 1, *slower* when below, else *no measurable change*.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from deepdive.protocol.diagnose import SpeedupResult

#: What the measured runs must not inherit: they are timings, not jobs or runs of their own.
_ENV_DROPPED = ("DEEPDIVE_HUB", "DEEPDIVE_EVENTS_FD", "DEEPDIVE_METRICS_OUT")


class FixNotFound(ValueError):
    """No finding of that rule with a fix at that line: the message names what there is."""


class RunFailed(RuntimeError):
    """A timed run of the script or of its fixed copy failed: the message has its last error line."""


def fixed_copy_path(script: str | os.PathLike[str], code: str) -> Path:
    """``<folder>/.{stem}.dd-fix-{code}.py``: where the fixed copy lives while it is measured."""
    path = Path(script)
    return path.with_name(f".{path.stem}.dd-fix-{code.upper()}.py")


def find_fix(source: str, path: str, code: str, line: int):
    """The finding of rule ``code`` at ``line`` that has a fix; :class:`FixNotFound` otherwise."""
    from deepdive.diagnose.rules import RULES, analyze

    code = code.upper()
    if code not in RULES:
        raise FixNotFound(f"no rule {code} (rules: {', '.join(sorted(RULES))})")
    found = analyze(source, path)
    here = [f for f in found if f.code == code and f.line == line]
    if not here:
        same = [str(f.line) for f in found if f.code == code]
        listed = ", ".join(f"{f.code}@{f.line}" for f in found[:8])
        where = f"{code} is at line {', '.join(same)}" if same else f"its findings: {listed}" if found else \
            "it has no findings"
        raise FixNotFound(f"no {code} finding at line {line} of {Path(path).name} ({where})")
    fixable = [f for f in here if f.fix is not None]
    if not fixable:
        raise FixNotFound(f"{code} at line {line} has no mechanical fix: {here[0].message}")
    return fixable[0]


def _time_once(python: str, path: Path, args: Sequence[str], steps: int, warmup: int, out: Path,
               log: Path) -> float:
    argv = [python, "-P", "-m", "deepdive.diagnose.measure", str(path), "--timing-only", "--steps", str(steps),
            "--warmup", str(warmup), "--out", str(out), "--die-with-parent", "--", *args]
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROPPED}
    out.unlink(missing_ok=True)
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, env=env,
                                start_new_session=True)
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C, a cancelled job: the run's whole process group goes with us
            stop_group(proc)
            raise
    if code != 0 or not out.is_file():
        lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip().removeprefix("measure: error: ") if lines else f"exit status {code}"
        raise RunFailed(f"{path.name} failed (exit status {code}): {last}")
    return float(json.loads(out.read_text(encoding="utf-8"))["step_ms"])


def stop_group(proc: "subprocess.Popen[bytes]", grace_s: float = 3.0) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``), then SIGKILL after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def measure_fix(script: str | os.PathLike[str], code: str, line: int, *, pairs: int = 6, steps: int = 10,
                warmup: int = 3, args: Sequence[str] = (), confidence: float = 0.95,
                python: Optional[str] = None,
                on_run: Optional[Callable[[int, int, str], None]] = None) -> SpeedupResult:
    """Time ``script`` and its copy with rule ``code``'s fix at ``line`` applied, in ``pairs`` alternating pairs.

    ``on_run(done, total, arm)`` is called after each run (``arm``: ``baseline`` or ``fixed``).
    Raises :class:`FixNotFound` (no such fixable finding; also for too few pairs) or :class:`RunFailed`.
    """
    from deepdive.diagnose.rules import apply_edits
    from deepdive.fsutil import atomic_write_text
    from deepdive.pairstats import median_ci, min_pairs

    t0 = time.time()
    path = Path(script).resolve()
    if pairs < min_pairs(confidence):
        raise FixNotFound(f"--pairs must be at least {min_pairs(confidence)} for a {confidence:.0%} interval, "
                          f"got {pairs}")
    source = path.read_text(encoding="utf-8")
    finding = find_fix(source, str(path), code, line)
    assert finding.fix is not None
    fixed_source = apply_edits(source, finding.fix.edits)
    copy = fixed_copy_path(path, finding.code)
    python = python or sys.executable
    base_ms: list[float] = []
    fixed_ms: list[float] = []
    try:
        atomic_write_text(copy, fixed_source)
        with tempfile.TemporaryDirectory(prefix="deepdive-fix-") as tmp:
            out, log = Path(tmp) / "timing.json", Path(tmp) / "run.log"
            done = 0
            for i in range(pairs):
                order = (("baseline", path), ("fixed", copy)) if i % 2 == 0 else (("fixed", copy), ("baseline", path))
                for arm, file in order:
                    ms = _time_once(python, file, args, steps, warmup, out, log)
                    (base_ms if arm == "baseline" else fixed_ms).append(ms)
                    done += 1
                    if on_run is not None:
                        on_run(done, 2 * pairs, arm)
    finally:
        copy.unlink(missing_ok=True)
    ratios = [b / f for b, f in zip(base_ms, fixed_ms)]
    ci = median_ci(ratios, confidence)
    verdict = "faster" if ci.low > 1.0 else "slower" if ci.high < 1.0 else "no measurable change"
    return SpeedupResult(script=str(path), code=finding.code, line=line, title=finding.fix.title, pairs=pairs,
                         steps=steps, baseline_ms=statistics.median(base_ms), fixed_ms=statistics.median(fixed_ms),
                         speedup=ci.median, ci_low=ci.low, ci_high=ci.high, confidence=ci.coverage,
                         verdict=verdict,  # type: ignore[arg-type]
                         wall_s=time.time() - t0, created=time.time())
