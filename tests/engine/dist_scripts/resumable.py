"""A training run that checkpoints, for the resume tests: every RNG in play, a tracked LR scheduler.

Dropout (torch RNG), a shuffled DataLoader (the global RNG or --generator), noise from numpy and
python's random: an exact resume must restore all of them. Each rank appends ``step loss`` lines
(the loss as a hex float: bitwise) to ``--out``.rank<R>. ``--sigterm-at N`` sends this process
SIGTERM after step N of a run that did not resume (a spot notice, on rank 0 only with --rank0-only).
"""

import argparse
import os
import random
import signal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepdive.engine as dd

parser = argparse.ArgumentParser()
parser.add_argument("--ckpt", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--sigterm-at", type=int, default=None)
parser.add_argument("--every", type=int, default=None)
parser.add_argument("--generator", action="store_true", help="the loader shuffles with its own seeded generator")
parser.add_argument("--workers", type=int, default=0)
parser.add_argument("--sync", action="store_true", help="blocking saves")
parser.add_argument("--strategy", default="auto", help="auto (DDP under torchrun), fsdp, none")
args = parser.parse_args()

run = dd.setup(precision="fp32", device="cpu", seed=0, checkpoint_dir=args.ckpt, checkpoint_every=args.every,
               async_checkpoint=not args.sync, keep_last=2, strategy=args.strategy,
               grad_compression="none")
random.seed(1)
np.random.seed(2)
data = torch.Generator().manual_seed(3)
x = torch.randn(200, 12, generator=data)
y = (x[:, :3].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                    generator=torch.Generator().manual_seed(4) if args.generator else None)
model, optimizer, loader = run.prepare(model, optimizer, loader)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.9)
run.track(scheduler=scheduler)
out = open(f"{args.out}.rank{run.rank}", "a")
for xb, yb in run.batches(loader, epochs=args.epochs):
    noise = torch.from_numpy(np.random.randn(*xb.shape).astype(np.float32)) * 0.01 * random.random()
    loss = F.cross_entropy(model(xb + noise), yb)
    run.backward(loss)
    run.step(optimizer)
    scheduler.step()
    run.log(loss=loss)
    out.write(f"{run.step_count} {float(loss).hex()}\n")
    out.flush()
    if args.sigterm_at is not None and run.step_count == args.sigterm_at and run.resumed_step is None \
            and run.rank == 0:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives now; the step in progress is the one that saves
summary = run.finish()
print(f"done {run.step_count} steps, start epoch {run.start_epoch}")
