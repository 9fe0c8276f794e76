"""Terminal rendering of the doctor report and the deep-check figures (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from deepdive.extras import module_not_found_in
from deepdive.protocol import DoctorReport
from deepdive.throughput import describe


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


def read_run_summary(metrics: "Path") -> dict[str, Any] | None:
    """The engine's last ``summary`` event in a metrics JSONL file (None when there is none)."""
    import json

    summary = None
    try:
        with open(metrics, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("type") == "event" and record.get("kind") == "summary":
                    summary = record
    except FileNotFoundError:
        return None
    return summary


def no_summary_line(metrics: str, cause: str | None) -> str:
    """Why a run left no summary, in one line. ``cause``: the last exception line of a traceback the script
    printed (None: it printed none). A script that caught its own import failure and exited 0 trained nothing:
    that is what to say, with the pip line when an extra brings the module, not "did it call run.finish()?"."""
    where = f"no run summary in {metrics}"
    if cause is None:
        return f"{where}: did the script call run.finish()?"
    missing = module_not_found_in(cause)
    if missing or cause.startswith("ImportError"):
        return f"{where}: the script failed to import: {missing or cause}"
    return f"{where}: the script did not call run.finish(); the last exception it printed: {cause}"


def print_train_summary(job: Any, summary: dict[str, Any] | None, metrics: str, console: Console | None = None,
                        cause: str | None = None) -> None:
    """The run's summary table; without a summary, why (see :func:`no_summary_line`)."""
    console = console or Console()
    if job.state != "succeeded":
        console.print(f"[red]training {job.state}: {job.reason}[/red] (job {job.id})")
    if not summary:
        console.print(Text(no_summary_line(metrics, cause), style="yellow"), soft_wrap=True)  # no markup: "[engine]"
        return
    table = Table(title=f"Run {summary.get('run')} — {summary.get('topology')}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()

    def fmt(value: Any, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
        if value is None:
            return "-"
        if isinstance(value, (int, float)):
            return f"{value * scale:,.{digits}f}{unit}"
        return str(value)

    table.add_row("steps", f"{summary.get('steps')} in {summary.get('epochs')} epoch(s), "
                           f"{summary.get('world_size')} process(es), {summary.get('strategy')}")
    table.add_row("precision", f"{summary.get('precision')} — {summary.get('precision_reason')}")
    table.add_row("step time", fmt(summary.get("mean_step_time_s"), " ms", 1e3))
    table.add_row("throughput", describe(summary.get("samples_per_s"), summary.get("samples_per_s_window_s")))
    table.add_row("final loss", fmt(summary.get("final_loss"), digits=4))
    table.add_row("loss scale", f"{fmt(summary.get('loss_scale'), digits=0)}; skipped steps "
                                f"{summary.get('skipped_steps')}")
    if summary.get("promoted_to_fp32"):
        table.add_row("promoted to fp32", ", ".join(summary["promoted_to_fp32"]))
    table.add_row("compression", f"{summary.get('compression')} — {summary.get('compression_reason')}")
    if summary.get("comm_bytes_uncompressed_per_step") is not None:
        before = summary["comm_bytes_uncompressed_per_step"]
        after = summary.get("comm_bytes_sent_per_step") or 0
        ratio = f" ({before / after:.1f}× fewer)" if after else ""
        table.add_row("bytes/step", f"{before / 1024:,.1f} KiB → {after / 1024:,.1f} KiB{ratio}")
        table.add_row("comm time/step", fmt(summary.get("comm_time_s_per_step"), " ms", 1e3))
    memory = summary.get("mem_peak_mib") or summary.get("mem_rss_mib")
    table.add_row("memory", fmt(memory, " MiB", digits=0))
    console.print(table)
    console.print(f"metrics: {metrics}")
