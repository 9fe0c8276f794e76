"""`deepdive doctor [--deep]`: Python, torch, the GPUs and the optional packages; ``--deep`` measures
matmul throughput in a job, with a progress bar.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, Optional


def add_parser(sub: Any) -> None:
    """Register ``doctor`` on the top-level subparsers ``sub``."""
    p = sub.add_parser("doctor", help="report Python, torch, GPUs and optional packages")
    p.add_argument("--deep", action="store_true", help="also import torch in a job and measure matmul GFLOP/s")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--seconds", type=float, default=2.0, help="time per deep measurement (default 2)")
    p.add_argument("--size", type=int, default=1024, help="matrix side for the deep check (default 1024)")


def cmd_doctor(args: argparse.Namespace) -> int:
    from deepdive import doctor
    from deepdive.cli import UsageError
    from deepdive.protocol import to_wire

    if not 0.1 <= args.seconds <= 120:
        raise UsageError("--seconds must be from 0.1 to 120")
    if not 32 <= args.size <= 16384:
        raise UsageError("--size must be from 32 to 16384")
    from deepdive.jobs.store import cli_state_dir

    torch_info = asyncio.run(doctor.probe_torch())
    report = doctor.build_report(torch_info, state_dir=str(cli_state_dir()))
    deep: Optional[dict[str, Any]] = None
    if args.deep:
        deep = asyncio.run(_run_deep(args.seconds, args.size, quiet=args.json))
    if args.json:
        wire = to_wire(report)
        if deep is not None:
            wire["deep"] = deep
        print(json.dumps(wire, indent=2))
    else:
        from deepdive.report import print_report

        print_report(report)
        if deep is not None:
            from deepdive.report import print_deep

            print_deep(deep)
    if deep is not None and deep.get("state") != "succeeded":
        return 1
    return 0


async def _run_deep(seconds: float, size: int, quiet: bool) -> dict[str, Any]:
    """Run the deep check through the job manager, with a progress bar fed by its events."""
    from deepdive.protocol import JobStartParams

    from deepdive.cli_jobs import run_job

    job = await run_job(JobStartParams(kind="doctor-deep", options={"seconds": seconds, "size": size}),
                        "deep check", quiet)
    return {"job": job.id, "state": job.state, "reason": job.reason, "result": job.result}
