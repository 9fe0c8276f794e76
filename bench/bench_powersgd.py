"""PowerSGD bytes on ResNet-18 and BERT-base gradients, measured against the analytic bound.

Two processes under ``torchrun --standalone --nproc_per_node=2`` (gloo) wrap each model in
``DistributedDataParallel`` (``gradient_as_bucket_view=True``, as the engine's ``wrap_ddp``) with the
project's hook, ``deepdive.engine.compression.GradCompression("powersgd", warmup_steps=0)``, and run
real training steps (forward, backward, SGD step) on random inputs. The bytes are the hook's own
counters (``CommStats``: the payload this rank passes to its collectives), read per step:

- step 0 is DDP's first iteration, which the hook never compresses: the plain allreduce of every
  gradient bucket, the dense figure (checked against ``4 x parameters``);
- then one step at each PowerSGD rank (1, 2, 4), switched with ``set_mode``.

The bound is computed from the parameter shapes for exactly what the hook does
(``GradCompression._powersgd``): a gradient of shape ``(n, ...)`` is treated as the matrix
``n x m`` with ``m = numel / n``, at rank ``r' = min(r, n, m)``; a 1-D tensor, or a matrix where
``r' (n + m) >= n m``, is sent dense (``4 n m`` bytes, in the first allreduce), a compressed one as
``P`` (``n x r'``, first allreduce) plus ``Q`` (``m x r'``, second): ``4 r' (n + m)`` bytes. DDP's
bucketing does not change the sum (a bucket with no compressible matrix is allreduced whole, which
is the same bytes). The textbook count, ``4 r (n + m)`` for every matrix-shaped gradient and vectors
dense, is printed alongside (``textbook_bound_bytes``): the hook's rule sends the few tiny matrices
where that would exceed the dense size (BERT's token-type embedding and a 2-class head, 2 x 768)
dense instead. What goes on the wire also depends on the backend's allreduce algorithm (a ring
moves ``2 (N-1)/N`` times the payload), the same factor for dense and compressed, so the
compression ratio holds on the wire as well. DDP's broadcast of BatchNorm buffers is not gradient
communication and is not counted.

ResNet-18 is built here (torchvision's layout, 11,689,512 parameters); BERT-base is
``transformers.BertForSequenceClassification(BertConfig())`` with random weights (BERT-base's
shapes plus a 2-class head; nothing is downloaded).

One JSON line per figure: ``{"bench": "powersgd", "metric", "value", "unit", ...}``; goals (at rank 2:
>= 100x fewer bytes, within 5 % of the bound) are printed, never asserted.
Usage: python bench/bench_powersgd.py [--models resnet18,bert-base] [--ranks 1,2,4] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch import error_line  # noqa: E402  (bench/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet18", "bert-base")
RUN_TIMEOUT_S = 420
GOAL_RANK, GOAL_RATIO, GOAL_DEVIATION = 2, 100.0, 0.05


def emit(metric: str, value: Any, unit: str, **extra: Any) -> None:
    line = {"bench": "powersgd", "metric": metric, "value": value, "unit": unit, **extra}
    print(json.dumps(line), flush=True)


# --------------------------------------------------------------------------------------------
# The bound: what the hook sends, from the parameter shapes
# --------------------------------------------------------------------------------------------


def powersgd_bound(shapes: Iterable[Sequence[int]], rank: int, element_size: int = 4) -> dict[str, int]:
    """Bytes one rank contributes per step under the project's PowerSGD hook, from gradient shapes.

    Follows ``GradCompression._powersgd``: ``(n, ...)`` is the matrix ``n x numel/n`` at rank
    ``min(rank, n, m)``; 1-D tensors and matrices where the factors would not be smaller are sent
    dense. Float32 payloads (the hook sends ``P``, ``Q`` and the dense tensors as float32).

    Args:
        shapes (Iterable[Sequence[int]]): the shapes of the gradients (the trainable parameters).
        rank (int): PowerSGD rank ``r`` (>= 1).
        element_size (int): bytes per element.

    Returns:
        dict[str, int]: ``bytes`` (the bound), ``dense_bytes`` (every gradient dense),
        ``textbook_bytes`` (``r (n + m)`` for every tensor with two or more dimensions, vectors
        dense), ``compressed`` (matrices sent as factors), ``dense_tensors`` (sent as they are)
        and ``dense_tensor_bytes`` (their bytes).

    Raises:
        ValueError: ``rank`` below 1.
    """
    if rank < 1:
        raise ValueError(f"PowerSGD rank must be >= 1, got {rank}")
    out = dict(bytes=0, dense_bytes=0, textbook_bytes=0, compressed=0, dense_tensors=0, dense_tensor_bytes=0)
    for shape in shapes:
        numel = 1
        for dim in shape:
            numel *= int(dim)
        n = int(shape[0]) if len(shape) else 1
        m = numel // max(1, n)
        r = min(rank, n, m)
        dense = numel * element_size
        out["dense_bytes"] += dense
        out["textbook_bytes"] += (n + m) * rank * element_size if len(shape) >= 2 else dense
        if len(shape) < 2 or r * (n + m) >= n * m:
            out["bytes"] += dense
            out["dense_tensors"] += 1
            out["dense_tensor_bytes"] += dense
        else:
            out["bytes"] += (n + m) * r * element_size
            out["compressed"] += 1
    return out


# --------------------------------------------------------------------------------------------
# The models
# --------------------------------------------------------------------------------------------


def resnet18(num_classes: int = 1000) -> Any:
    """ResNet-18 with torchvision's layout and parameter shapes (without torchvision)."""
    import torch.nn.functional as F
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            identity = x if self.downsample is None else self.downsample(x)
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + identity)

    def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))

    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        stage(64, 64, 1), stage(64, 128, 2), stage(128, 256, 2), stage(256, 512, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes),
    )


def build(name: str, batch: int, rank: int) -> tuple[Any, Any]:
    """The model and a function that returns this step's loss (random inputs, seeded by rank)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(100 + rank)
    if name == "resnet18":
        model = resnet18()
        images = torch.randn(batch, 3, 64, 64, generator=gen)
        labels = torch.randint(0, 1000, (batch,), generator=gen)
        return model, lambda net: F.cross_entropy(net(images), labels)
    if name == "bert-base":
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig()  # BERT-base: 12 layers, hidden 768, 12 heads, vocabulary 30522
        model = BertForSequenceClassification(config)
        ids = torch.randint(0, config.vocab_size, (batch, 32), generator=gen)
        labels = torch.randint(0, 2, (batch,), generator=gen)
        return model, lambda net: net(input_ids=ids, labels=labels).loss
    raise ValueError(f"unknown model {name!r}: use one of {', '.join(MODELS)}")


# --------------------------------------------------------------------------------------------
# The worker (runs under torchrun)
# --------------------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    import gc

    import torch
    import torch.distributed as dist

    from deepdive.engine.compression import GradCompression

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=300))
    rank, world = dist.get_rank(), dist.get_world_size()
    results: dict[str, Any] = {}
    for name in args.models.split(","):
        model, loss_of = build(name, args.batch, rank)
        shapes = [list(p.shape) for p in model.parameters() if p.requires_grad]
        ddp = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
        ranks = [int(r) for r in args.ranks.split(",")]
        comp = GradCompression("powersgd", rank=ranks[0], warmup_steps=0)
        comp.register(ddp)
        opt = torch.optim.SGD(ddp.parameters(), lr=1e-4)

        def step() -> dict[str, Any]:
            opt.zero_grad(set_to_none=True)
            loss = loss_of(ddp)
            comp.stats.begin_step()
            loss.backward()
            figures = comp.stats.end_step()
            opt.step()
            return {k: figures[k] for k in ("comm_bytes_uncompressed", "comm_bytes_sent", "comm_buckets",
                                            "comm_mode", "comm_warmup")}

        dense = step()  # DDP's first iteration: never compressed
        per_rank = {}
        for r in ranks:
            comp.set_mode("powersgd", rank=r)
            per_rank[r] = step()
        everyone: list[Any] = [None] * world
        dist.all_gather_object(everyone, {"dense": dense, "ranks": per_rank})
        results[name] = {"shapes": shapes, "params": sum(p.numel() for p in model.parameters()),
                         "per_process": everyone}
        del ddp, model, comp, opt
        gc.collect()
    if rank == 0:
        print(json.dumps({"result": {"world_size": world, "batch": args.batch, "models": results}}), flush=True)
    dist.barrier()
    dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def largest(per_process: list[dict[str, Any]], pick: Any) -> int:
    """The largest figure over the processes (they should all agree; the largest is what a link carries)."""
    return max(int(pick(row)) for row in per_process)


def report(name: str, result: dict[str, Any], ranks: list[int]) -> None:
    """The JSON lines of one model: dense bytes, then per rank the compression ratio and the bound."""
    shapes, procs = result["shapes"], result["per_process"]
    common = {"model": name, "params": result["params"], "processes": len(procs)}
    dense = largest(procs, lambda row: row["dense"]["comm_bytes_sent"])
    analytic_dense = powersgd_bound(shapes, 1)["dense_bytes"]
    emit(f"dense_bytes_per_step_{name}", dense, "B", baseline=analytic_dense, ratio=round(dense / analytic_dense, 6),
         note="DDP's first step, plain allreduce; baseline: 4 bytes x parameters", **common)
    for r in ranks:
        warm = [row["ranks"][str(r)]["comm_warmup"] for row in procs]
        if any(warm):
            emit("skipped", None, "", run=f"{name}_r{r}", reason="the hook did not compress this step (warm-up)")
            continue
        sent = largest(procs, lambda row: row["ranks"][str(r)]["comm_bytes_sent"])
        bound = powersgd_bound(shapes, r)
        goal = {"goal": f">= {GOAL_RATIO:.0f}x"} if r == GOAL_RANK else {}
        emit(f"compression_ratio_{name}_r{r}", round(dense / sent, 2), "x", bound=round(bound["dense_bytes"] /
             bound["bytes"], 2), dense_bytes=dense, sent_bytes=sent, **goal, **common)
        goal = {"goal": f"within {GOAL_DEVIATION:.0%} of the bound"} if r == GOAL_RANK else {}
        emit(f"bytes_vs_bound_{name}_r{r}", sent, "B", baseline=bound["bytes"], ratio=round(sent / bound["bytes"], 6),
             deviation_pct=round((sent / bound["bytes"] - 1) * 100, 4), textbook_bound_bytes=bound["textbook_bytes"],
             compressed_matrices=bound["compressed"], dense_tensors=bound["dense_tensors"],
             dense_tensor_bytes=bound["dense_tensor_bytes"], **goal, **common)


def run_models(args: argparse.Namespace) -> Optional[str]:
    """Runs the worker under torchrun and prints the figures; returns why it failed, or None."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(__file__),
           "--worker", "--models", args.models, "--ranks", args.ranks, "--batch", str(args.batch)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return f"the run took over {RUN_TIMEOUT_S} s; killed"
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"result":')]
    if proc.returncode != 0 or not lines:
        return f"exit {proc.returncode}: {error_line(proc.stderr)}"
    result = json.loads(lines[-1])["result"]
    ranks = [int(r) for r in args.ranks.split(",")]
    for name, figures in result["models"].items():
        report(name, figures, ranks)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--ranks", default="1,2,4", help="PowerSGD ranks, comma-separated")
    parser.add_argument("--batch", type=int, default=2, help="batch per process")
    parser.add_argument("--quick", action="store_true", help="ResNet-18 at rank 2 only (for the tests)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.models, args.ranks = "resnet18", str(GOAL_RANK)
    unknown = sorted(set(args.models.split(",")) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: use {', '.join(MODELS)}")
    try:
        if any(int(r) < 1 for r in args.ranks.split(",")):
            raise ValueError
    except ValueError:
        parser.error(f"--ranks takes integers >= 1, comma-separated, got {args.ranks!r}")
    if args.worker:
        worker(args)
        return 0
    why = run_models(args)
    if why is not None:
        emit("skipped", None, "", run=args.models, reason=why)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
