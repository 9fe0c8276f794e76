"""``python -m deepdive.diagnose.measure SCRIPT --steps N --warmup W --out REPORT.json [--timing-only] -- ARGS...``

The measured run of ``deepdive diagnose`` (a subprocess: it imports torch and runs the user's script).
Writes the report (or, with ``--timing-only``, the step times) to ``--out`` atomically; with a hub
(``DEEPDIVE_HUB``) also sends the report as a ``diagnose.report`` event (run ``diagnose-<stem>``).
Progress (steps measured) goes out as job events. Exit status: 0 with a report written (even one
with a note: the script ended early), 2 on bad input, 1 when the script failed before anything was
measured (its traceback on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional

from deepdive.procutil import die_with_parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepdive.diagnose.measure",
                                description="Run SCRIPT for WARMUP + STEPS optimizer steps under torch.profiler "
                                            "and write the diagnosis report. Arguments after '--' go to the script.")
    p.add_argument("script")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps measured (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="steps run before measuring (default 3)")
    p.add_argument("--out", required=True, help="the report (JSON), written atomically")
    p.add_argument("--disable", default="", help="rule codes left out, comma-separated (DD101,DD110)")
    p.add_argument("--timing-only", action="store_true",
                   help="no profiler: write only the step times ({step_ms, steps_ms, ...})")
    p.add_argument("--die-with-parent", action="store_true", help=argparse.SUPPRESS)
    return p




def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    script_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    args = _parser().parse_args(argv)
    if args.die_with_parent:
        die_with_parent()
    script = Path(args.script)
    if not script.is_file():
        print(f"measure: error: no such script: {script}", file=sys.stderr)
        return 2
    if args.steps < 1 or args.warmup < 0:
        print("measure: error: --steps must be at least 1 and --warmup at least 0", file=sys.stderr)
        return 2
    from deepdive.fsutil import atomic_write_text
    from deepdive.jobs import events

    if args.timing_only:
        from deepdive.diagnose.measure import time_steps

        try:
            timing = time_steps(str(script), script_args, steps=args.steps, warmup=args.warmup)
        except ValueError as exc:
            print(f"measure: error: {exc}", file=sys.stderr)
            return 1
        atomic_write_text(args.out, json.dumps(timing))
        return 0

    from deepdive.diagnose.measure import diagnose
    from deepdive.diagnose.report import send_report, write_report

    def on_step(measured: int, total: int) -> None:
        events.progress(measured / total, f"step {measured}/{total} measured")

    disabled = [code.strip() for code in args.disable.split(",") if code.strip()]
    report = diagnose(str(script), script_args, steps=args.steps, warmup=args.warmup, disabled=disabled,
                      on_step=on_step)
    write_report(report, args.out)
    send_report(report)
    return 1 if report.steps == 0 and report.note and " failed " in report.note else 0


if __name__ == "__main__":
    sys.exit(main())
