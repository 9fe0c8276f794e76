"""`deepdive diagnose SCRIPT`: where a training script's step time goes, line by line, and what to change.

Three modes:

* default — the measured run: SCRIPT runs for ``--warmup`` + ``--steps`` optimizer steps under
  ``torch.profiler`` in a subprocess of its own process group (Ctrl-C stops the whole group), then the
  report is printed (``--json``: the report's JSON only) and written to ``--out`` (default
  ``<workspace or the script's folder>/.deepdive/diagnose/<stem>-<hash>.json``);
* ``--static`` — the rules only, no torch and no run: ``file:line:col: CODE message`` per finding, exit
  status 1 when there is a finding (as linters do), 0 when there is none;
* ``--fix CODE@LINE`` — *Apply and measure*: the rule's fix applied to a copy beside the script, both
  timed in ``--pairs`` alternating pairs; the speed-up with its confidence interval, written to
  ``<stem>-<hash>.speedup.json``; ``--keep`` then writes the fix into SCRIPT.

Bad input (no such file, not Python, an unknown rule, no such finding) is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

_FIX = re.compile(r"^(DD\d{3})@(\d+)$", re.IGNORECASE)
MAX_STEPS = 1000
"""The most steps (and warm-up steps) a run takes, as the job kinds' options allow."""
MAX_PAIRS = 100


def add_parser(sub: Any) -> None:
    """Register ``diagnose`` on the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "diagnose", help="measure where a training script's step time goes; findings at the line, fixes measured",
        description="Run SCRIPT for a few optimizer steps under torch.profiler and report the step-time breakdown "
                    "(data wait, forward, backward, optimizer, host syncs, host-device copies, communication, idle), "
                    "the lines that cost time, and the static rules' findings: promoted with their measured share of "
                    "the step when the run shows their cost (at least 2 %), hints otherwise. Arguments after '--' go "
                    "to the script. --static runs only the rules (exit status 1 when there are findings, as linters "
                    "do); --fix CODE@LINE measures a rule's fix against the script in alternating pairs.")
    p.add_argument("script", help="the training script")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps measured (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="steps run before measuring (default 3)")
    p.add_argument("--json", action="store_true", help="print the report (or the speed-up, or the static findings) "
                                                       "as JSON only")
    p.add_argument("--out", default=None, help="write the report here (default: .deepdive/diagnose/<stem>-<hash>.json in "
                                               "the workspace or the script's folder; with --fix, "
                                               "<stem>-<hash>.speedup.json)")
    p.add_argument("--static", action="store_true", help="only the static rules: no run, no torch; exit status 1 "
                                                         "when there are findings, 0 when there are none")
    p.add_argument("--disable", default="", metavar="CODES", help="rules to leave out, comma-separated: DD101,DD110")
    p.add_argument("--fix", default=None, metavar="CODE@LINE",
                   help="apply and measure: time the script and its copy with that finding's fix, in alternating pairs")
    p.add_argument("--pairs", type=int, default=6, help="with --fix: pairs of runs (default 6, the fewest for a 95 %% "
                                                        "interval)")
    p.add_argument("--keep", action="store_true", help="with --fix: write the fix into SCRIPT after the measurement")


def _check_script(path: str) -> Path:
    from deepdive.cli import UsageError

    script = Path(path)
    if not script.exists():
        raise UsageError(f"no such script: {path}")
    if not script.is_file():
        raise UsageError(f"{path} is a folder, not a script: name the training script (a .py file)")
    if script.suffix.lower() != ".py":
        raise UsageError(f"{path} is not a Python file (.py): name the training script")
    try:
        source = script.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    try:
        compile(source, str(script), "exec", dont_inherit=True, flags=0x400)  # PyCF_ONLY_AST: parse only
    except SyntaxError as exc:
        raise UsageError(f"{path} is not valid Python: line {exc.lineno}: {exc.msg}") from None
    return script.resolve()


def _codes(text: str) -> list[str]:
    from deepdive.cli import UsageError
    from deepdive.diagnose.rules import RULES

    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    unknown = [c for c in codes if c not in RULES]
    if unknown:
        raise UsageError(f"--disable: no rule {', '.join(unknown)} (rules: {', '.join(sorted(RULES))})")
    return codes


def cmd_diagnose(args: argparse.Namespace) -> int:
    from deepdive.cli import UsageError

    script = _check_script(args.script)
    disabled = _codes(args.disable)
    if not 1 <= args.steps <= MAX_STEPS:  # the profile of every measured step is kept in memory
        raise UsageError(f"--steps must be from 1 to {MAX_STEPS}, got {args.steps}")
    if not 0 <= args.warmup <= MAX_STEPS:
        raise UsageError(f"--warmup must be from 0 to {MAX_STEPS}, got {args.warmup}")
    if args.fix and args.pairs > MAX_PAIRS:
        raise UsageError(f"--pairs must be at most {MAX_PAIRS}, got {args.pairs}")
    if (args.keep or args.pairs != 6) and not args.fix:
        raise UsageError("--pairs and --keep go with --fix CODE@LINE")
    if args.static and args.fix:
        raise UsageError("--static and --fix do not go together: --static runs nothing")
    script_args = list(getattr(args, "script_args", []) or [])
    if args.static:
        return _static(script, disabled, args.json)
    if args.fix:
        return _fix(script, args, script_args)
    return _measured(script, args, disabled, script_args)


# -- the static rules ---------------------------------------------------------------------------------


def _static(script: Path, disabled: list[str], as_json: bool) -> int:
    from deepdive.diagnose.rules import RULES, analyze

    found = analyze(script.read_text(encoding="utf-8"), str(script), disabled)
    if as_json:
        print(json.dumps([{"file": str(script), "line": f.line, "col": f.col + 1, "code": f.code,
                           "message": f.message, "category": RULES[f.code].category if f.code in RULES else None,
                           "fix": f.fix.title if f.fix else None} for f in found]))
    else:
        for f in found:
            print(f"{script}:{f.line}:{f.col + 1}: {f.code} {f.message}")
    return 1 if found else 0


# -- the measured run ----------------------------------------------------------------------------------


def _default_out(script: Path, speedup: bool = False) -> Path:
    from deepdive.diagnose.report import report_path, speedup_path
    from deepdive.jobs.store import workspace_of

    workspace = workspace_of(script.parent)
    return (speedup_path if speedup else report_path)(str(script), workspace)


def _out_path(value: Optional[str], script: Path, speedup: bool = False) -> Path:
    from deepdive.cli import UsageError

    if value is None:
        return _default_out(script, speedup)
    out = Path(value).resolve()
    if out.is_dir():
        raise UsageError(f"--out must name a file, not a folder: {out}")
    return out


def _stop_on_sigterm() -> Any:
    """A cancelled job gets SIGTERM: raise KeyboardInterrupt in the main thread so the run's group is stopped."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _stderr_fd() -> Optional[int]:
    """Our stderr's descriptor: the script's own output goes there, so that stdout carries only the report."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _measured(script: Path, args: argparse.Namespace, disabled: list[str], script_args: list[str]) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.cli import UsageError
    from deepdive.diagnose.compare import stop_group
    from deepdive.diagnose.report import read_report, render
    from deepdive.jobs import events

    out = _out_path(args.out, script)
    out.parent.mkdir(parents=True, exist_ok=True)
    start_mtime = out.stat().st_mtime_ns if out.exists() else None
    console = Console(stderr=True, highlight=False)
    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-P", "-m", "deepdive.diagnose.measure", str(script), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--out", str(out), "--die-with-parent"]
    if disabled:
        argv += ["--disable", ",".join(disabled)]
    argv += ["--", *script_args]
    env = dict(os.environ, DEEPDIVE_EVENTS_FD=str(write_fd))
    progress = Progress(TextColumn("[bold]diagnose"), TextColumn(script.name), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True,
                        disable=args.json)
    task = progress.add_task("starting (imports, warm-up)", total=args.steps)

    def relay() -> None:  # the run's progress events: our bar, and the editor's when we are a job
        with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as stream:
            for raw in stream:
                try:
                    event = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                if event.get("type") == "progress" and event.get("fraction") is not None:
                    done = round(event["fraction"] * args.steps)
                    progress.update(task, completed=done, description="measuring")
                    events.progress(event["fraction"], event.get("message"))

    previous = _stop_on_sigterm()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=_stderr_fd(), env=env,
                                pass_fds=(write_fd,), start_new_session=True)
    finally:
        os.close(write_fd)
    reader = threading.Thread(target=relay, name="diagnose-progress", daemon=True)
    reader.start()
    try:
        with progress:
            code = proc.wait()
    except BaseException:
        stop_group(proc)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        reader.join(timeout=2.0)
    written = out.exists() and out.stat().st_mtime_ns != start_mtime
    if not written:
        if code == 2:
            raise UsageError("the measured run refused its arguments (exit status 2): see above")
        print(f"deepdive: error: the measured run of {script.name} failed (exit status {code}) before a report "
              "was written: see its output above", file=sys.stderr)
        return 1
    report = read_report(out)
    if args.json:
        from deepdive.protocol.wire import to_wire

        print(json.dumps(to_wire(report)))
    else:
        print(render(report, str(out)))
    events.result({"report": str(out), "step_ms": report.step_ms, "steps": report.steps,
                   "promoted": sum(1 for f in report.findings if f.promoted), "findings": len(report.findings)})
    return code


# -- apply and measure -------------------------------------------------------------------------------


def _fix(script: Path, args: argparse.Namespace, script_args: list[str]) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.cli import UsageError
    from deepdive.diagnose.compare import FixNotFound, RunFailed, find_fix, measure_fix
    from deepdive.diagnose.report import render_speedup, send_speedup, write_speedup
    from deepdive.jobs import events

    match = _FIX.match(args.fix.strip())
    if match is None:
        raise UsageError(f"--fix must be CODE@LINE, e.g. DD101@35, got {args.fix!r}")
    code, line = match.group(1).upper(), int(match.group(2))
    source = script.read_text(encoding="utf-8")
    try:
        find_fix(source, str(script), code, line)  # before anything runs: a wrong CODE@LINE is one line, exit 2
    except FixNotFound as exc:
        raise UsageError(str(exc)) from None
    out = _out_path(args.out, script, speedup=True)
    console = Console(stderr=True, highlight=False)
    progress = Progress(TextColumn("[bold]apply and measure"), TextColumn(f"{code}@{line}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                        transient=True, disable=args.json)
    task = progress.add_task("runs", total=2 * args.pairs)

    def on_run(done: int, total: int, arm: str) -> None:
        progress.update(task, completed=done, description=f"{arm} timed")
        events.progress(done / total, f"run {done}/{total} ({arm}) timed")

    previous = _stop_on_sigterm()
    try:
        with progress:
            result = measure_fix(script, code, line, pairs=args.pairs, steps=args.steps, warmup=args.warmup,
                                 args=script_args, on_run=on_run)
    except FixNotFound as exc:
        raise UsageError(str(exc)) from None
    except RunFailed as exc:
        print(f"deepdive: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_speedup(result, out)
    send_speedup(result)
    kept = _keep(script, source, code, line) if args.keep else None
    if args.json:
        from deepdive.protocol.wire import to_wire

        print(json.dumps(to_wire(result)))
    else:
        print(render_speedup(result))
        print(f"result: {out}")
    if kept:
        print(kept, file=sys.stderr if args.json else sys.stdout)
    events.result({"speedup": str(out), "verdict": result.verdict, "speedup_value": result.speedup,
                   "kept": bool(kept)})
    return 0


def _keep(script: Path, measured_source: str, code: str, line: int) -> str:
    """Write the fix into the script (atomically), unless it changed while it was measured."""
    from deepdive.cli import UsageError
    from deepdive.diagnose.compare import find_fix
    from deepdive.diagnose.rules import apply_edits
    from deepdive.fsutil import atomic_write_text

    now = script.read_text(encoding="utf-8")
    if now != measured_source:
        raise UsageError(f"{script.name} changed while it was measured: the fix was not written (run again)")
    finding = find_fix(now, str(script), code, line)
    assert finding.fix is not None
    atomic_write_text(script, apply_edits(now, finding.fix.edits))
    return f"kept: {finding.fix.title} written into {script}"
