"""Trains a digits MLP with plain DDP and GradCompression's hook; rank 0 prints a JSON line per run.

Run under torchrun, e.g.::

    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        tests/engine/dist_scripts/compression_train.py --mode powersgd --rank 2

With ``--mode none,fp16,...`` it trains once per mode in the same processes (one torchrun start).
Each JSON line starts with ``{"result":`` and carries the test accuracy, the communication figures
(means over the steps after PowerSGD's warm-up), the largest parameter difference between ranks
(0.0 when every rank holds the same model) and the topology summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from deepdive.engine.compression import GradCompression, decide_auto
from deepdive.engine.topology import describe_topology


def digits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled digits: a fixed 80/20 split, standardised on the training part."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    x_tr = torch.tensor(x_tr, dtype=torch.float32)
    x_te = torch.tensor(x_te, dtype=torch.float32)
    mean = x_tr.mean(0)
    std = x_tr.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x_tr - mean) / std, torch.tensor(y_tr), (x_te - mean) / std, torch.tensor(y_te)


def build_model(hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )


def train(args: argparse.Namespace, mode: str, data: tuple) -> dict:
    """One training run with a fresh model and hook; returns rank 0's view of it."""
    rank, world = dist.get_rank(), dist.get_world_size()
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(args.seed)
    model = build_model(args.hidden)
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_cap_mb)
    comp = GradCompression(mode, rank=args.rank, warmup_steps=args.warmup, topk_ratio=args.topk_ratio)
    comp.register(ddp)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
    switches = {int(s.split("@")[1]): s.split("@")[0] for s in args.switch}

    per_step: list[dict] = []
    decision = None
    step = 0
    t_start = time.perf_counter()
    for epoch in range(args.epochs):
        gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(x_tr), generator=gen)
        for b in range(len(order) // args.batch):
            if step in switches:
                comp.set_mode(switches[step])
            if args.auto and step == args.auto:
                rows = per_step[1:]  # the first step includes DDP's bucket rebuild
                mine = {
                    key: sum(r[key] for r in rows) / len(rows)
                    for key in ("step_time_s", "comm_time_s", "comm_exposed_s", "comm_bytes_uncompressed")
                }
                mine["backend"] = dist.get_backend()
                mine["link"] = describe_topology()["link"]
                everyone: list = [None] * world
                dist.all_gather_object(everyone, mine)
                chosen, reason = decide_auto(everyone)
                comp.set_mode(chosen)
                decision = {"mode": chosen, "reason": reason}
            idx = order[b * args.batch : (b + 1) * args.batch][rank::world]
            t0 = time.perf_counter()
            loss = F.cross_entropy(ddp(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            comp.stats.begin_step()
            loss.backward()
            figures = comp.stats.end_step()
            opt.step()
            figures["step_time_s"] = time.perf_counter() - t0
            per_step.append(figures)
            step += 1
    elapsed = time.perf_counter() - t_start

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    spread = float((hi - lo).max())
    with torch.no_grad():
        accuracy = float((model(x_te).argmax(1) == y_te).float().mean())
    measured = [f for f in per_step[1:] if not f["comm_warmup"]] or per_step

    def mean(key: str) -> float:
        return sum(f[key] for f in measured) / len(measured)

    return {
        "mode": comp.mode,
        "world_size": world,
        "accuracy": accuracy,
        "steps": step,
        "elapsed_s": elapsed,
        "params_spread": spread,
        "measured_steps": len(measured),
        "bytes_uncompressed": mean("comm_bytes_uncompressed"),
        "bytes_sent": mean("comm_bytes_sent"),
        "comm_time_s": mean("comm_time_s"),
        "comm_exposed_s": mean("comm_exposed_s"),
        "overlap": mean("comm_overlap"),
        "buckets": mean("comm_buckets"),
        "step_time_s": mean("step_time_s"),
        "modes_seen": sorted({f["comm_mode"] for f in per_step}),
        "warmup_steps_seen": sum(f["comm_warmup"] for f in per_step),
        "totals": comp.stats.totals(),
        "decision": decision,
        "topology": describe_topology()["summary"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="none", help="a mode, or several separated by commas (one run each)")
    parser.add_argument("--rank", type=int, default=2, help="PowerSGD rank")
    parser.add_argument("--warmup", type=int, default=5, help="PowerSGD warm-up steps")
    parser.add_argument("--topk-ratio", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64, help="global batch size")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--bucket-cap-mb", type=float, default=0.25)
    parser.add_argument("--switch", action="append", default=[], metavar="MODE@STEP",
                        help="switch the mode at a step (repeatable)")
    parser.add_argument("--auto", type=int, default=0, metavar="N",
                        help="measure N steps uncompressed, then apply decide_auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    data = digits(args.seed)
    for mode in args.mode.split(","):
        result = train(args, mode, data)
        if dist.get_rank() == 0:
            print(json.dumps({"result": result}), flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
