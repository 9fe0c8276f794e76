"""Engine overhead: the deepdive.engine loop against a hand-written autocast (+ DDP) loop, same model.

One JSON line per measurement: {"bench": "engine", "metric": ..., "value": ms, "baseline": ms, "ratio": ...}.
The two loops alternate in rounds inside the same process(es), so machine noise hits both.
Usage: python bench/bench_engine.py [--steps 100] [--rounds 4]   (runs 1 process, then 2 under torchrun)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WIDTH, DEPTH, BATCH = 512, 4, 64


def worker(steps: int, rounds: int, precision: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import deepdive.engine as dd

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(BATCH * steps, WIDTH), torch.randint(0, 10, (BATCH * steps,)))

    def build() -> nn.Module:
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for _ in range(DEPTH):
            layers += [nn.Linear(WIDTH, WIDTH), nn.GELU()]
        return nn.Sequential(*layers, nn.Linear(WIDTH, 10))

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]

    def hand_written() -> float:
        model = build()
        if world > 1:
            model = nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(data, batch_size=BATCH)
        start = time.perf_counter()
        for x, y in loader:
            with torch.autocast("cpu", dtype=dtype, enabled=precision != "fp32"):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return (time.perf_counter() - start) / steps * 1e3

    run = dd.setup(precision=precision, grad_compression="none", strategy="ddp" if world > 1 else "none")

    def engine() -> float:
        model = build()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model, opt = run.prepare(model, opt)
        loader = DataLoader(data, batch_size=BATCH)
        start = time.perf_counter()
        for x, y in run.batches(loader):
            with run.autocast():
                loss = F.cross_entropy(model(x), y)
            run.backward(loss)
            run.step(opt)
            run.log(loss=loss)
        return (time.perf_counter() - start) / steps * 1e3

    hand_written(), engine()  # warm-up
    hand, eng = [], []
    for i in range(rounds):  # ABBA order: neither loop always runs first
        if i % 2 == 0:
            hand.append(hand_written())
            eng.append(engine())
        else:
            eng.append(engine())
            hand.append(hand_written())
    run.finish()
    if int(os.environ.get("RANK", "0")) == 0:
        h, e = statistics.median(hand), statistics.median(eng)
        print(json.dumps({"bench": "engine", "metric": f"step_time_engine_{precision}_{world}proc", "value": round(e, 3),
                          "unit": "ms", "baseline": round(h, 3), "ratio": round(e / h, 4),
                          "overhead_pct": round((e / h - 1) * 100, 2), "model": f"MLP {DEPTH}x{WIDTH}",
                          "batch": BATCH, "steps": steps, "rounds": rounds}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    args = parser.parse_args()
    if args.worker:
        worker(args.steps, args.rounds, args.precision)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = [__file__, "--worker", "--steps", str(args.steps), "--rounds", str(args.rounds)]
    for precision in ("fp32", "bf16"):
        subprocess.run([sys.executable, *common, "--precision", precision], check=True, env=env)
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *common,
                        "--precision", precision], check=True, env=env, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
