"""Telemetry hub: ingest throughput and sample-to-subscriber latency with 1 and 10 subscribers.

Three processes, as in the product: the hub (``deepdive.telemetry.hub.Hub`` in its own asyncio
loop, default settings), one process holding the subscribers' websocket connections, and the
producer (this process), which speaks the reporter's ``/ingest`` protocol directly so that the
reporter's own batching (a message every 0.2 s) does not hide the hub's latency.

Per subscriber count (1, 10), one JSON line each:

* ``ingest_samples_per_s``: the producer sends ``--messages`` messages of ``--samples`` samples
  (15 fields each, the engine's keys, about 250 KB per message like the reporter's) as fast as the
  hub takes them; samples / (time from the first send until every subscriber has received, or been
  told it dropped, the last message). ``subscriber_dropped`` says how many a subscriber lost to its
  bounded queue.
* ``latency_p50_ms`` and ``latency_p99_ms``: at a steady ``--rate`` messages per second of
  ``--latency-samples`` samples each, the time from a sample's ``t`` (set just before the send)
  to its arrival at each subscriber (the first sample of each message), over all subscribers.
  Messages are encoded beforehand and their ``t`` filled in just before the send, so the
  producer's own JSON encoding is not counted. The default load (10,000 samples/s) is far above
  a real job's (a few hundred samples/s for 8 ranks); ``--latency-samples`` raises it.

Goals of issue 4: >= 100,000 samples/s and p99 <= 50 ms. Nothing is asserted.
Usage: python bench/bench_hub.py [--messages 400] [--samples 800] [--rate 50] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

HUB = r"""
import asyncio, json, sys
from deepdive.telemetry.hub import Hub

async def main():
    hub = Hub()
    await hub.start()
    print(json.dumps({"ingest": hub.ingest_url, "stream": hub.stream_url}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        print(json.dumps(hub.stats()), flush=True)
    await hub.stop()

asyncio.run(main())
"""


def emit(metric: str, value: float, unit: str, **extra) -> None:
    print(json.dumps({"bench": "hub", "metric": metric, "value": round(value, 3), "unit": unit, **extra}),
          flush=True)


def connect(url: str):
    from websockets.asyncio.client import connect as ws_connect

    return ws_connect(url, proxy=None, max_size=None, compression=None, open_timeout=10, close_timeout=1)


# ---------------------------------------------------------------------------------------------
# the subscribers' process
# ---------------------------------------------------------------------------------------------

def _head(text: str) -> dict:
    """The fields before ``samples`` of a hub message, without parsing the samples."""
    cut = text.find(',"samples":')
    return json.loads(text[:cut] + "}") if cut > 0 else json.loads(text)


def _first_sample_t(text: str) -> float | None:
    start = text.find(',"samples":[{')
    if start < 0:
        return None
    start += len(',"samples":[')
    return json.loads(text[start:text.index("}", start) + 1])["t"]


async def _subscriber(url: str, results: asyncio.Queue, ready: asyncio.Event, index: int, count: list) -> None:
    async with connect(url) as ws:
        await ws.recv()  # the snapshot
        count[0] += 1
        if count[0] == count[1]:
            ready.set()
        phase = {"messages": 0, "dropped": 0, "latencies": [], "last": 0.0}
        async for text in ws:
            now = time.time()
            dropped = int(text[text.rfind('"dropped":') + 10:-1])
            head = _head(text)
            phase["dropped"] += dropped
            if head.get("run") == "end":
                await results.put((index, phase))
                phase = {"messages": 0, "dropped": 0, "latencies": [], "last": 0.0}
                continue
            phase["messages"] += 1
            phase["last"] = now
            if head.get("run") == "latency":
                t = _first_sample_t(text)
                if t is not None:
                    phase["latencies"].append(now - t)


async def subscribers_main(url: str, n: int) -> None:
    results: asyncio.Queue = asyncio.Queue()
    ready = asyncio.Event()
    count = [0, n]
    tasks = [asyncio.ensure_future(_subscriber(url, results, ready, i, count)) for i in range(n)]
    await asyncio.wait_for(ready.wait(), 30)
    print("ready", flush=True)
    while True:  # one line per phase: every subscriber's figures
        phase = [await results.get() for _ in range(n)]
        print(json.dumps([p for _, p in sorted(phase, key=lambda item: item[0])]), flush=True)
        if any(task.done() for task in tasks):
            return


# ---------------------------------------------------------------------------------------------
# the producer (this process)
# ---------------------------------------------------------------------------------------------

_T_PLACEHOLDER = 1111111111.0625
_T_TEXT = repr(_T_PLACEHOLDER)


def _sample(step: int, t: float, run: str) -> dict:
    return {"step": step, "epoch": 0, "step_time_s": 0.0513, "data_wait_s": 0.0012, "samples_per_s": 1247.3,
            "loss": 0.2531, "lr": 0.001, "loss_scale": 65536.0, "skipped_steps": 0, "precision": "bf16",
            "comm_bytes_sent": 12345678, "comm_time_s": 0.0121, "mem_allocated_mib": 1024.5,
            "t": t, "run": run, "rank": 0}


def _message(run: str, seq: int, samples: list[dict]) -> str:
    return json.dumps({"type": "samples", "v": 1, "run": run, "rank": 0, "seq": seq, "dropped": 0,
                       "dropped_events": 0, "events": [], "samples": samples}, separators=(",", ":"))


async def _phase_result(proc) -> list[dict]:
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line:
        raise RuntimeError("the subscribers' process ended early: " + (await proc.stderr.read()).decode()[-2000:])
    return json.loads(line)


async def run_bench(args) -> None:
    env = dict(os.environ)
    hub = await asyncio.create_subprocess_exec(sys.executable, "-c", HUB, stdin=asyncio.subprocess.PIPE,
                                               stdout=asyncio.subprocess.PIPE, env=env)
    try:
        urls = json.loads(await asyncio.wait_for(hub.stdout.readline(), 30))
        seqs: dict[str, int] = {}

        def message(run: str, samples: list[dict]) -> str:
            seqs[run] = seqs.get(run, -1) + 1
            return _message(run, seqs[run], samples)

        for n in (1, 10):
            subs = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--subscribers-of", urls["stream"], str(n),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
            try:
                assert (await asyncio.wait_for(subs.stdout.readline(), 30)).strip() == b"ready"
                async with connect(urls["ingest"]) as producer:
                    # Throughput: pre-built messages, sent as fast as the hub reads them.
                    texts = [message("throughput", [_sample(i * args.samples + j, time.time(), "throughput")
                                                    for j in range(args.samples)])
                             for i in range(args.messages)]
                    start = time.time()
                    for text in texts:
                        await producer.send(text)
                    await producer.send(message("end", []))
                    phase = await _phase_result(subs)
                    last = max(p["last"] for p in phase)
                    total = args.messages * args.samples
                    dropped = [p["dropped"] for p in phase]
                    emit(f"ingest_samples_per_s_{n}_subscribers", total / (last - start), "samples/s",
                         subscribers=n, samples=total, bytes_per_message=len(texts[0]),
                         subscriber_dropped_max=max(dropped), subscriber_dropped_min=min(dropped))

                    # Latency: a steady rate; t set just before each send.
                    interval = 1.0 / args.rate
                    steps = int(args.seconds * args.rate)
                    # Built beforehand with a placeholder time, set by one replace just before the send.
                    texts = [message("latency", [_sample(i * args.latency_samples + j, _T_PLACEHOLDER, "latency")
                                                 for j in range(args.latency_samples)]) for i in range(steps)]
                    next_send = time.perf_counter()
                    for text in texts:
                        await producer.send(text.replace(_T_TEXT, repr(time.time())))
                        next_send += interval
                        await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
                    await producer.send(message("end", []))
                    phase = await _phase_result(subs)
                    latencies = sorted(x * 1000 for p in phase for x in p["latencies"])
                    load = args.rate * args.latency_samples
                    if latencies:
                        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
                        emit(f"latency_p50_ms_{n}_subscribers", statistics.median(latencies), "ms",
                             subscribers=n, load_samples_per_s=load, messages=len(latencies))
                        emit(f"latency_p99_ms_{n}_subscribers", p99, "ms", subscribers=n, load_samples_per_s=load,
                             messages=len(latencies), subscriber_dropped_max=max(p["dropped"] for p in phase))
            finally:
                subs.kill()
                await subs.wait()
        hub.stdin.write(b"stats\n")
        await hub.stdin.drain()
        stats = json.loads(await asyncio.wait_for(hub.stdout.readline(), 10))
        emit("hub_dropped_total", stats["dropped_total"], "entries", ingested_samples=stats["ingested_samples"],
             duplicate_messages=stats["duplicate_messages"], seq_gaps=stats["seq_gaps"])
    finally:
        hub.stdin.close()
        try:
            await asyncio.wait_for(hub.wait(), 10)
        except asyncio.TimeoutError:
            hub.kill()
            await hub.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400, help="messages in the throughput phase")
    parser.add_argument("--samples", type=int, default=800, help="samples per message in the throughput phase")
    parser.add_argument("--rate", type=float, default=50, help="messages per second in the latency phase")
    parser.add_argument("--latency-samples", type=int, default=200, help="samples per message in the latency phase")
    parser.add_argument("--seconds", type=float, default=3, help="length of the latency phase")
    parser.add_argument("--subscribers-of", nargs=2, metavar=("STREAM_URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribers_of:
        asyncio.run(subscribers_main(args.subscribers_of[0], int(args.subscribers_of[1])))
        return
    asyncio.run(run_bench(args))


if __name__ == "__main__":
    main()
