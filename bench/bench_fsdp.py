"""FSDP2 against DDP on a BERT-base-shaped encoder: memory per rank and equal losses (2 processes, gloo).

The model: ``BertForSequenceClassification`` from a ``BertConfig`` with BERT-base's shape (12 layers,
hidden 768, 12 heads, intermediate 3072, vocabulary 30,522: 109 M parameters), random weights, no
dropout, built under ``run.init_empty()`` and materialised by ``run.prepare`` with the same per-module
seeds in both arms (identical starting weights). Each arm is one ``torchrun --standalone
--nproc-per-node=2`` launch (gloo, fp32, AdamW, the same batches per rank), ``strategy="ddp"`` then
``strategy="fsdp"``; figures per rank, the larger rank's reported:

- ``state_bytes_per_rank``: the most parameter + gradient + optimizer-state bytes one rank held:
  the distinct storages behind the parameters registered on the model (FSDP2's local shards, or a
  unit's gathered parameters while it computes), their gradients and the optimizer's state tensors,
  sampled before and after the forward of every layer and the embeddings, after every backward and
  after every step (a unit's gathered gradients inside backward are not sampled). Goal: FSDP <= 55 %
  of DDP's.
- ``peak_rss_growth_per_rank``: peak resident memory (``ru_maxrss``) above the resident memory once
  the model was built on meta: everything, activations and communication buffers included (run with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so freed blocks go back to the system).
- ``max_relative_loss_difference``: the largest ``|loss_fsdp - loss_ddp| / |loss_ddp|`` over the
  steps and both ranks. Goal: <= 1e-4.

Usage: python bench/bench_fsdp.py [--steps 20] [--batch 2] [--seq 32]. Benchmarks never assert.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()


def emit(metric: str, value: Any, unit: str, **extra: Any) -> None:
    line = {"bench": "fsdp", "metric": metric, "value": round(value, 6) if isinstance(value, float) else value,
            "unit": unit}
    line.update({k: (round(v, 6) if isinstance(v, float) else v) for k, v in extra.items()})
    print(json.dumps(line), flush=True)


# --------------------------------------------------------------------------------------------
# The worker (runs under torchrun)
# --------------------------------------------------------------------------------------------


def state_bytes(model: Any, optimizer: Any) -> int:
    """Bytes of the distinct storages behind the registered parameters, their gradients and the optimizer state."""
    import torch
    from torch.distributed.tensor import DTensor

    storages: dict[int, int] = {}

    def add(tensor: Any) -> None:
        if isinstance(tensor, torch.Tensor):
            local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
            storage = local.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()

    for module in model.modules():
        for param in module._parameters.values():
            if param is not None:
                add(param)
                add(param.grad)
    for state in optimizer.state.values():
        for value in state.values():
            add(value)
    return sum(storages.values())


def worker(args: argparse.Namespace) -> None:
    import resource

    import psutil
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.fsdp import FSDPModule
    from transformers import BertConfig, BertForSequenceClassification

    import deepdive.engine as dd

    run = dd.setup(precision="fp32", grad_compression="none", strategy=args.arm, seed=0)
    config = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2)
    with run.init_empty():
        model = BertForSequenceClassification(config)
    rss_before = psutil.Process().memory_info().rss
    model, optimizer = run.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    peak = [state_bytes(model, optimizer)]

    def sample(*_: Any) -> None:
        peak[0] = max(peak[0], state_bytes(model, optimizer))

    bert = model.module.bert if hasattr(model, "module") else model.bert
    for module in [bert.embeddings, *bert.encoder.layer]:
        module.register_forward_pre_hook(sample)
        module.register_forward_hook(sample)
    losses = []
    for step in range(args.steps):
        gen = torch.Generator().manual_seed(1000 * step + run.rank)
        ids = torch.randint(1, config.vocab_size, (args.batch, args.seq), generator=gen)
        labels = torch.randint(0, 2, (args.batch,), generator=gen)
        with run.autocast():
            loss = F.cross_entropy(model(input_ids=ids).logits, labels)
        run.backward(loss)
        sample()
        run.step(optimizer)
        sample()
        losses.append(loss.item())
    mine = {"losses": losses, "state_bytes": peak[0],
            "rss_growth": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before}
    ranks: list[Any] = [None] * run.world_size
    dist.all_gather_object(ranks, mine)
    if run.is_main:
        units = sum(isinstance(m, FSDPModule) for m in model.modules())
        Path(args.out).write_text(json.dumps({"ranks": ranks, "strategy": run.strategy, "units": units,
                                              "reason": run.strategy_reason,
                                              "parameters": sum(p.numel() for p in model.parameters())}))
    run.finish()


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def launch(arm: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(HERE),
           "--worker", "--arm", arm, "--out", str(out), "--steps", str(args.steps), "--batch", str(args.batch),
           "--seq", str(args.seq)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise RuntimeError(f"the {arm} arm failed (exit {done.returncode}): {tail[0]}")
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2, help="sequences per rank and step")
    parser.add_argument("--seq", type=int, default=32, help="tokens per sequence")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arm", choices=("ddp", "fsdp"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_fsdp_") as folder:
        try:
            ddp, fsdp = (launch(arm, Path(folder) / f"{arm}.json", args) for arm in ("ddp", "fsdp"))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(json.dumps({"bench": "fsdp", "skipped": str(exc)}), flush=True)
            return 1
    shape = {"model": "BERT-base shape (12 x 768, 12 heads, 3072)", "parameters": fsdp["parameters"],
             "steps": args.steps, "batch_per_rank": args.batch, "seq": args.seq, "world_size": 2, "backend": "gloo"}
    for metric, key in (("state_bytes_per_rank", "state_bytes"), ("peak_rss_growth_per_rank", "rss_growth")):
        value, baseline = max(r[key] for r in fsdp["ranks"]), max(r[key] for r in ddp["ranks"])
        emit(metric, value, "bytes", baseline=baseline, ratio=value / baseline, **shape)
    difference = max(abs(a - b) / abs(b) for f, d in zip(fsdp["ranks"], ddp["ranks"])
                     for a, b in zip(f["losses"], d["losses"]))
    emit("max_relative_loss_difference", difference, "ratio", **shape)
    emit("fsdp_units", fsdp["units"], "units", detail=fsdp["reason"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
