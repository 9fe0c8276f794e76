"""Cost of the telemetry reporter to the training loop: no sink, JSONL file, hub.

Two measurements per sink, one JSON line each:

* ``record_<sink>``: a tight loop that builds a typical sample dict and calls ``record()``, in µs
  per iteration; ``baseline`` is the same loop without the call, ``ratio`` = value / baseline,
  ``record_us`` = value - baseline. The tight loop records far faster than any training step, so
  the JSONL and hub sinks drop most samples here (the ``dropped`` field): this is the cost of
  ``record()`` plus the background thread's share of the GIL at its busiest.
  ``record_none_guarded`` is the engine's pattern, ``if reporter.enabled: reporter.record({...})``,
  against an empty loop: with no sink the sample is never built.
* ``step_overhead_<sink>``: 1 ms steps (a Python spin, which holds the GIL as a Python training
  step does between kernels) with one ``record()`` each, in percent over the same steps without a
  reporter: the median of 10 rounds, interleaved so that other load on the machine weighs on both
  alike. Every sample is delivered at this rate (the ``dropped`` field says so).

The hub is a websockets server in a separate process, as the daemon's hub will be, that reads and
discards. Usage: python bench/bench_reporter.py [--iterations 200000] [--repeats 5] [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deepdive.engine.reporter import Reporter

HUB = r"""
import asyncio, sys
from websockets.asyncio.server import serve

async def handler(ws):
    async for _ in ws:
        pass

async def main():
    async with serve(handler, "127.0.0.1", 0, max_size=1 << 20, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def emit(metric: str, value: float, unit: str, **extra) -> None:
    print(json.dumps({"bench": "reporter", "metric": metric, "value": round(value, 4), "unit": unit, **extra}),
          flush=True)


def bare_loop(n: int) -> float:
    start = time.perf_counter()
    for step in range(n):
        sample = {"step": step, "loss": 0.25, "lr": 1e-3, "step_time": 0.05, "samples_per_s": 1280.0}
    del sample
    return time.perf_counter() - start


def record_loop(reporter: Reporter, n: int) -> float:
    record = reporter.record
    start = time.perf_counter()
    for step in range(n):
        record({"step": step, "loss": 0.25, "lr": 1e-3, "step_time": 0.05, "samples_per_s": 1280.0})
    return time.perf_counter() - start


def guarded_loop(reporter: Reporter, n: int) -> float:
    """The engine's pattern: skip building the sample when the reporter is disabled."""
    start = time.perf_counter()
    for step in range(n):
        if reporter.enabled:
            reporter.record({"step": step, "loss": 0.25, "lr": 1e-3, "step_time": 0.05, "samples_per_s": 1280.0})
    return time.perf_counter() - start


def empty_loop(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - start


def spin_steps(reporter: Reporter | None, steps: int, step_s: float = 1e-3) -> float:
    start = time.perf_counter()
    for step in range(steps):
        end = time.perf_counter() + step_s
        while time.perf_counter() < end:
            pass
        if reporter is not None:
            reporter.record({"step": step, "loss": 0.25, "lr": 1e-3, "step_time": step_s, "samples_per_s": 1280.0})
    return time.perf_counter() - start


def median_us(fn, n: int, repeats: int) -> float:
    return statistics.median(fn(n) for _ in range(repeats)) / n * 1e6


def start_hub() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HUB], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"ws://127.0.0.1:{port}/ingest?token=bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000, help="1 ms steps for the step-overhead figures")
    args = parser.parse_args()
    n, repeats = args.iterations, args.repeats
    for name in ("DEEPDIVE_HUB", "DEEPDIVE_METRICS_OUT"):
        os.environ.pop(name, None)

    base = median_us(bare_loop, n, repeats)
    disabled = Reporter.from_env("bench", 0)
    value = median_us(lambda k: record_loop(disabled, k), n, repeats)
    emit("record_none", value, "us", baseline=round(base, 4), ratio=round(value / base, 3),
         record_us=round(value - base, 4), iterations=n)
    empty = median_us(empty_loop, n, repeats)
    value = median_us(lambda k: guarded_loop(disabled, k), n, repeats)
    emit("record_none_guarded", value, "us", baseline=round(empty, 4), ratio=round(value / empty, 3),
         record_us=round(value - empty, 4), iterations=n,
         note="`if reporter.enabled: reporter.record({...})` against an empty loop")

    hub, url = start_hub()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sinks = {
                "jsonl": dict(metrics_out=str(Path(tmp) / "bench.jsonl")),
                "hub": dict(hub_url=url),
            }
            for sink, options in sinks.items():
                reporter = Reporter("bench", 0, **options)
                value = median_us(lambda k: record_loop(reporter, k), n, repeats)
                reporter.close(timeout=10)
                emit(f"record_{sink}", value, "us", baseline=round(base, 4), ratio=round(value / base, 3),
                     record_us=round(value - base, 4), iterations=n * repeats, dropped=reporter.dropped)

            # Rounds of steps without a reporter and with each sink, interleaved so that a busy
            # machine weighs on all alike; the figure is the median over rounds.
            reporters = {sink: Reporter("bench", 0, **options) for sink, options in sinks.items()}
            rounds, per_round = 10, max(1, args.steps // 10)
            overheads: dict[str, list[float]] = {sink: [] for sink in sinks}
            plain_times = []
            for _ in range(rounds):
                plain = spin_steps(None, per_round)
                plain_times.append(plain)
                for sink, reporter in reporters.items():
                    overheads[sink].append((spin_steps(reporter, per_round) - plain) / plain * 100)
            for sink, reporter in reporters.items():
                reporter.close(timeout=10)
                value = statistics.median(overheads[sink])
                emit(f"step_overhead_{sink}", value, "%",
                     baseline=round(statistics.median(plain_times) / per_round * 1e3, 4), ratio=round(1 + value / 100, 4),
                     steps=rounds * per_round, step_ms=1.0, dropped=reporter.dropped,
                     messages=reporter.messages_sent if sink == "hub" else None)
    finally:
        hub.stdin.close()
        try:
            hub.wait(timeout=5)
        except subprocess.TimeoutExpired:
            hub.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
