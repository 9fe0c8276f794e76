"""Engine overhead: the deepdive.engine loop against the hand-written autocast (+ DDP) loop, in pairs.

The baseline is the strongest loop a user would write instead: ``torch.autocast`` around the
forward, ``loss.backward()``, ``opt.step()``, ``opt.zero_grad(set_to_none=True)``, and under
torchrun a plain ``DistributedDataParallel`` (C++ allreduce, ``gradient_as_bucket_view=True``, as
the engine's). The engine arm is the loop the README shows: ``run.batches``, ``run.autocast``,
``run.backward``, ``run.step``, ``run.log(loss=loss)``, with everything the engine adds per step
(step timing, the throughput window, communication figures through its instrumented DDP hook,
the overflow guard's sampled steps). Both arms read the same pre-made batches (no DataLoader, whose
cost would be common to both and would only dilute the ratio).

Both models are built and prepared once and warmed up (DDP's bucket rebuild, AdamW's state), then
timed in alternating pairs inside the same process(es): pair *i* runs ``--steps`` steps of one arm
and then of the other, the whole loop timed (the engine's per-step bookkeeping, which runs as its
``run.batches`` generator resumes, included), the hand-written arm first in even pairs and the engine
first in odd ones, so neither always runs first and machine noise hits both. Under torchrun every
arm starts at a barrier. Each pair gives one ratio, engine / hand-written, on two clocks: wall time
(the slowest rank's: what a user waits for) and CPU time (``time.process_time``, all ranks summed:
the work done, which other processes on a shared machine do not stretch). Reported is the median
of the ratios with its distribution-free confidence interval from order statistics
(bench/pairstats.py says why that one), for 1 process and for 2 under torchrun (gloo).

Two JSON lines per configuration, ``step_time_engine_*`` (wall) and ``cpu_time_engine_*``:
{"bench": "engine", "metric", "value" (median engine ms/step), "unit", "baseline" (median
hand-written ms/step), "ratio" (median of the per-pair ratios), "ci_low", "ci_high" (of the ratio),
"pairs", ...}. The goal (overhead <= 2 %) is never asserted.

Usage: python bench/bench_engine.py [--pairs 30] [--steps 7] [--precisions fp32,bf16] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch import error_line  # noqa: E402  (bench/ is not a package)
from pairstats import median_ci, min_pairs  # noqa: E402

WIDTH, DEPTH, BATCH = 512, 4, 64
CONFIDENCE = 0.95
RUN_TIMEOUT_S = 300


def emit(metric: str, value: Any, unit: str, **extra: Any) -> None:
    line = {"bench": "engine", "metric": metric, "value": value, "unit": unit, **extra}
    print(json.dumps(line), flush=True)


# --------------------------------------------------------------------------------------------
# The worker (one process, or each rank under torchrun)
# --------------------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn

    import deepdive.engine as dd

    world = int(os.environ.get("WORLD_SIZE", "1"))
    precision = args.precision
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    low_precision = precision != "fp32"
    # The engine sets up the process group under torchrun; the hand-written arm shares it.
    run = dd.setup(precision=precision, grad_compression="none", strategy="ddp", device="cpu")
    rank = run.rank

    def build() -> nn.Module:
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for _ in range(DEPTH):
            layers += [nn.Linear(WIDTH, WIDTH), nn.GELU()]
        return nn.Sequential(*layers, nn.Linear(WIDTH, 10))

    gen = torch.Generator().manual_seed(1000 + rank)
    batches = [(torch.randn(BATCH, WIDTH, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen))
               for _ in range(args.steps)]

    hand = build()
    if world > 1:
        hand = nn.parallel.DistributedDataParallel(hand, gradient_as_bucket_view=True)
    hand_opt = torch.optim.AdamW(hand.parameters(), lr=1e-3)
    engine_model = build()
    engine_model, engine_opt = run.prepare(engine_model, torch.optim.AdamW(engine_model.parameters(), lr=1e-3))

    def hand_written() -> None:
        for x, y in batches:
            with torch.autocast("cpu", dtype=dtype, enabled=low_precision):
                loss = F.cross_entropy(hand(x), y)
            loss.backward()
            hand_opt.step()
            hand_opt.zero_grad(set_to_none=True)

    def engine() -> None:
        for x, y in run.batches(batches):
            with run.autocast():
                loss = F.cross_entropy(engine_model(x), y)
            run.backward(loss)
            run.step(engine_opt)
            run.log(loss=loss)

    def timed(arm: Callable[[], None]) -> tuple[float, float]:
        """Wall and CPU time of one arm. CPU time (``time.process_time``: every thread of this process,
        gloo's included) is the work done, which other processes on a shared machine do not stretch;
        wall time is what a user waits for."""
        if world > 1:
            dist.barrier()
        wall, cpu = time.perf_counter(), time.process_time()
        arm()
        return time.perf_counter() - wall, time.process_time() - cpu

    timed(hand_written), timed(engine)  # warm-up: DDP's bucket rebuild, AdamW's state, caches
    hand_s, engine_s = [], []
    for i in range(args.pairs):
        if i % 2 == 0:
            hand_s.append(timed(hand_written))
            engine_s.append(timed(engine))
        else:
            engine_s.append(timed(engine))
            hand_s.append(timed(hand_written))
    if world > 1:
        everyone: list[Any] = [None] * world
        dist.all_gather_object(everyone, (hand_s, engine_s))
        hand_s, engine_s = (job_times([per_rank[arm] for per_rank in everyone]) for arm in (0, 1))
    run.finish()
    if rank == 0:
        report(args, precision, world, hand_s, engine_s)


def job_times(per_rank: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Per pair: the job's wall time (a DDP step lasts as long as its slowest rank's) and its CPU time (the sum)."""
    return [(max(times[i][0] for times in per_rank), sum(times[i][1] for times in per_rank))
            for i in range(len(per_rank[0]))]


def report(args: argparse.Namespace, precision: str, world: int, hand: list[tuple[float, float]],
           engine: list[tuple[float, float]]) -> None:
    """Two JSON lines, wall time then CPU time: median ms/step of each arm, the median per-pair ratio, its interval."""
    for clock, name in ((0, "step_time"), (1, "cpu_time")):
        hand_s, engine_s = [h[clock] for h in hand], [e[clock] for e in engine]
        ratios = median_ci([e / h for e, h in zip(engine_s, hand_s)], CONFIDENCE)
        per_step = 1e3 / args.steps
        engine_ms, hand_ms = statistics.median(engine_s) * per_step, statistics.median(hand_s) * per_step
        emit(f"{name}_engine_{precision}_{world}proc", round(engine_ms, 3), "ms",
             baseline=round(hand_ms, 3), ratio=round(ratios.median, 4), ci_low=round(ratios.low, 4),
             ci_high=round(ratios.high, 4), pairs=ratios.n, confidence=round(ratios.coverage, 4),
             ci_method=f"order statistics of the median (distribution-free): ratios {ratios.k} and "
                       f"{ratios.n + 1 - ratios.k} of {ratios.n}, sorted",
             overhead_pct=round((ratios.median - 1) * 100, 2),
             overhead_ci_pct=[round((ratios.low - 1) * 100, 2), round((ratios.high - 1) * 100, 2)],
             goal="overhead <= 2 %", clock="wall, slowest rank" if clock == 0 else "CPU, all ranks summed",
             processes=world, precision=precision, model=f"MLP {DEPTH}x{WIDTH}", batch=BATCH,
             steps_per_arm=args.steps,
             baseline_loop="torch.autocast + loss.backward + AdamW" + (" + DDP (gloo)" if world > 1 else ""))


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def run_config(args: argparse.Namespace, precision: str, processes: int) -> Optional[str]:
    """Runs one configuration (its worker prints the JSON lines); returns why it failed, or None."""
    common = [__file__, "--worker", "--precision", precision, "--pairs", str(args.pairs), "--steps", str(args.steps)]
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([*launcher, *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"took over {RUN_TIMEOUT_S} s; killed"
    sys.stdout.write(proc.stdout)
    sys.stdout.flush()
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {error_line(proc.stderr)}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30, help="alternating pairs per configuration (>= 6)")
    parser.add_argument("--steps", type=int, default=7, help="steps per arm and pair, all timed")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--quick", action="store_true", help="6 pairs of 2 steps, fp32 only (for the tests)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.steps, args.precisions = min_pairs(CONFIDENCE), 2, "fp32"
    if args.pairs < min_pairs(CONFIDENCE):
        parser.error(f"--pairs must be at least {min_pairs(CONFIDENCE)} for a {CONFIDENCE:.0%} interval")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.worker:
        worker(args)
        return 0
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = sorted(set(precisions) - {"fp32", "bf16"})
    if unknown or not precisions:
        parser.error(f"--precisions takes fp32 and/or bf16, got {args.precisions!r}")
    failed = 0
    for precision in precisions:
        for processes in (1, 2):
            why = run_config(args, precision, processes)
            if why is not None:
                failed += 1
                emit("skipped", None, "", run=f"{precision}_{processes}proc", reason=why)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
