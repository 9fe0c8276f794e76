"""The daemon's telemetry cost: its CPU share while it samples the machine at 1 Hz and 10 Hz.

Starts a real daemon over stdio for each interval (DEEPDIVE_SAMPLE_INTERVAL), lets it sample for
``--seconds`` with one /stream subscriber attached, and reads the daemon's own CPU time (psutil).
One JSON line per measurement. Usage: python bench/bench_telemetry.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile

import psutil
from websockets.asyncio.client import connect

from deepdive.lspclient import DaemonClient
from deepdive.protocol import HUB


async def measure(interval: float, seconds: float) -> dict:
    env = {**os.environ, "DEEPDIVE_SAMPLE_INTERVAL": str(interval)}
    with tempfile.TemporaryDirectory() as ws:
        async with DaemonClient.spawn(ws, env=env) as client:
            hub = await client.request(HUB)
            proc = psutil.Process(client.process.pid)
            machine = 0
            async with connect(hub.stream_url, max_size=2**24) as stream:
                await asyncio.sleep(2.0)  # start-up and the first samples
                before = proc.cpu_times()
                start = asyncio.get_running_loop().time()

                async def read() -> None:
                    nonlocal machine
                    async for raw in stream:
                        machine += json.loads(raw).get("type") == "machine"

                reader = asyncio.ensure_future(read())
                await asyncio.sleep(seconds)
                after = proc.cpu_times()
                elapsed = asyncio.get_running_loop().time() - start
                reader.cancel()
            cpu = (after.user - before.user + after.system - before.system) / elapsed * 100
    return {"bench": "telemetry", "metric": f"daemon_cpu_share_{interval:g}s", "value": round(cpu, 2),
            "unit": "% of one core", "interval_s": interval, "seconds": seconds, "machine_samples_seen": machine}


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    for interval in (1.0, 0.1):
        print(json.dumps(await measure(interval, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
