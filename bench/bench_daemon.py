"""Daemon responsiveness: spawn->initialize time and memory, doctor round trips idle and under load.

Prints one JSON object per measurement line. Usage: python bench/bench_daemon.py [--spawns 10] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from deepdive.lspclient import DaemonClient
from deepdive.protocol import DOCTOR, JOBS_CANCEL, JOBS_START, DoctorParams, JobIdParams, JobStartParams

CHATTY = "import itertools\nfor i in itertools.count():\n    print('training step', i, 'loss', 1.0 / (i + 1))\n"


def emit(metric: str, value: float, unit: str, **extra) -> None:
    print(json.dumps({"bench": "daemon", "metric": metric, "value": round(value, 3), "unit": unit, **extra}),
          flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def spawn_times(n: int, workspace: Path) -> None:
    times, rss = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        client = DaemonClient()
        await client.start_daemon()
        await client.initialize_daemon(str(workspace))
        times.append((time.perf_counter() - t0) * 1e3)
        await client.request(DOCTOR, DoctorParams())  # warm: probes done, steady-state memory
        rss.append(psutil.Process(client.process.pid).memory_info().rss / 2**20)
        await client.close()
    emit("spawn_to_initialize_median", statistics.median(times), "ms", runs=n)
    emit("daemon_rss_median", statistics.median(rss), "MiB", runs=n)


async def doctor_latency(client: DaemonClient, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await client.request(DOCTOR, DoctorParams())
        out.append((time.perf_counter() - t0) * 1e3)
    return out


async def latencies(calls: int, workspace: Path) -> None:
    (workspace / "chatty.py").write_text(CHATTY)
    async with DaemonClient.spawn(str(workspace)) as client:
        await client.request(DOCTOR, DoctorParams())
        idle = await doctor_latency(client, calls)
        job = await client.request(JOBS_START, JobStartParams(kind="script", options={"path": "chatty.py"}))
        await asyncio.sleep(0.5)
        busy = await doctor_latency(client, calls)
        lines = sum(len(e.lines or []) for e in client.notifications["deepdive/jobs/event"] if e.job_id == job.id)
        await client.request(JOBS_CANCEL, JobIdParams(id=job.id))
    for name, values in (("idle", idle), ("job_streaming", busy)):
        emit(f"doctor_rtt_p50_{name}", percentile(values, 50), "ms", calls=calls)
        emit(f"doctor_rtt_p99_{name}", percentile(values, 99), "ms", calls=calls)
    emit("doctor_rtt_p50_streaming_vs_idle", percentile(busy, 50), "ms",
         baseline=round(percentile(idle, 50), 3), ratio=round(percentile(busy, 50) / percentile(idle, 50), 2))
    emit("job_lines_streamed_during_measurement", lines, "lines")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawns", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await spawn_times(args.spawns, Path(tmp))
        await latencies(args.calls, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
