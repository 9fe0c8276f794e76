"""Terminal rendering of the doctor report and the deep-check figures (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from deepdive.protocol import DoctorReport


def print_report(report: DoctorReport, console: Console | None = None) -> None:
    console = console or Console()
    t = report.torch
    env = Table(title=f"Deepdive {report.deepdive_version} — environment", show_header=False, title_justify="left")
    env.add_column(style="bold")
    env.add_column()
    env.add_row("Python", f"{report.python.version} ({report.python.executable})")
    env.add_row("Platform", report.python.platform)
    host = report.host
    env.add_row("CPU", f"{host.cpu_model}, {host.physical_cores or '?'} cores / {host.logical_cores} threads"
                       f"{', native bf16' if host.cpu_bf16 else ''}")
    env.add_row("Memory", f"{host.memory_total_gib:.1f} GiB")
    if t.installed and t.version:
        cuda = "CUDA available" if t.cuda_available else "CUDA not available"
        env.add_row("torch", f"{t.version} ({cuda}{', CUDA ' + t.cuda_version if t.cuda_version else ''})")
    else:
        env.add_row("torch", f"not usable: {t.error}")
    if t.installed and t.error:
        env.add_row("", f"[yellow]{t.error}")
    if report.gpus.available:
        for dev in report.gpus.devices:
            env.add_row(f"GPU {dev.index}", f"{dev.name}, {dev.memory_total_mib / 1024:.1f} GiB, "
                                           f"compute {dev.compute_capability or '?'}")
        env.add_row("Driver", f"{report.gpus.driver_version} (NVML {report.gpus.nvml_version})")
    else:
        env.add_row("GPUs", f"none: {report.gpus.reason}")
    if report.state_dir:
        env.add_row("State", report.state_dir)
    console.print(env)

    pkgs = Table(title="Packages", title_justify="left")
    pkgs.add_column("package")
    pkgs.add_column("version")
    pkgs.add_column("used for")
    for p in report.packages:
        pkgs.add_row(p.name, p.version or "[dim]not installed", p.purpose)
    console.print(pkgs)


def print_deep(deep: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    result = deep.get("result") or {}
    if deep.get("state") != "succeeded":
        console.print(f"[red]deep check {deep.get('state')}: {deep.get('reason')}[/red] (job {deep.get('job')})")
        return
    table = Table(title=f"Matmul throughput (torch {result.get('torch')}, import {result.get('import_s')} s)",
                  title_justify="left")
    for col in ("device", "dtype", "size", "GFLOP/s"):
        table.add_column(col, justify="right" if col in ("size", "GFLOP/s") else "left")
    for row in result.get("matmul", []):
        table.add_row(row["device"], row["dtype"], str(row["size"]), f"{row['gflops']:.1f}")
    console.print(table)
