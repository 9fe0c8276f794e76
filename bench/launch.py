"""What the benchmarks that start torchrun share (not a benchmark itself: `make bench` runs bench_*.py)."""

from __future__ import annotations


def error_line(stderr: str) -> str:
    """The worker's exception (torchrun ends its report with a line of '=' and the failing rank's details)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception"))]
    return (errors or lines or ["no output"])[-1]
