"""A training run for the sharded-checkpoint tests: the same global batches at any world size.

An MLP with an unevenly sharded layer (37 rows) trained by AdamW on 192 fixed samples, in order
(no shuffle, no dropout): with ``--batch-size 16`` on 2 processes and ``--batch-size 32`` on 1,
every step sees the same 32 samples, so the loss curve is the same whatever the world size. Each
rank appends ``step loss`` lines (the loss as a hex float) to ``--out``.rank<R>.

``--sigterm-at N``: rank 0 gets SIGTERM after step N unless the run resumed at or after N.
``--save-again-at N``: a blocking ``run.checkpoint()`` inside step N (the periodic save follows it).
``--crash-in-save-at N``: rank 1 is SIGKILLed inside the save of step N, after writing its shards.
``--dump-full-at N FILE``: after step N, the model's full state dict (gathered for the test only) to FILE.
"""

import argparse
import os
import signal

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
parser.add_argument("--strategy", default="fsdp")
parser.add_argument("--every", type=int, default=None)
parser.add_argument("--sync", action="store_true")
parser.add_argument("--sigterm-at", type=int, default=None)
parser.add_argument("--save-again-at", type=int, default=None)
parser.add_argument("--crash-in-save-at", type=int, default=None)
parser.add_argument("--dump-full-at", nargs=2, default=None, metavar=("STEP", "FILE"))
parser.add_argument("--metrics-out", default=None)
args = parser.parse_args()

run = dd.setup(precision="fp32", device="cpu", seed=0, checkpoint_dir=args.ckpt, checkpoint_every=args.every,
               async_checkpoint=not args.sync, keep_last=2, strategy=args.strategy, grad_compression="none",
               metrics_out=args.metrics_out)
if args.crash_in_save_at is not None and run.rank == 1:
    from deepdive.engine.ckpt import dcp

    write_data = dcp.StoreWriter.write_data

    def write_then_die(self, plan, planner):
        written = write_data(self, plan, planner)
        if self.step == args.crash_in_save_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return written

    dcp.StoreWriter.write_data = write_then_die

data = torch.Generator().manual_seed(3)
x = torch.randn(192, 16, generator=data)
y = (x[:, :4].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 37), nn.ReLU(), nn.Linear(37, 2))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=False)
model, optimizer, loader = run.prepare(model, optimizer, loader)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.8)
run.track(scheduler=scheduler)
started = run.resumed_step or 0
out = open(f"{args.out}.rank{run.rank}", "a")
for xb, yb in run.batches(loader, epochs=args.epochs):
    loss = F.cross_entropy(model(xb), yb)
    run.backward(loss)
    run.step(optimizer)
    scheduler.step()
    out.write(f"{run.step_count} {float(loss).hex()}\n")
    out.flush()
    if args.dump_full_at and run.step_count == int(args.dump_full_at[0]):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if run.rank == 0:
            torch.save(full, args.dump_full_at[1])
    if run.step_count == args.save_again_at:
        run.checkpoint(blocking=True)
    if run.step_count == args.sigterm_at and started < args.sigterm_at and run.rank == 0:
        os.kill(os.getpid(), signal.SIGTERM)  # the step in progress is the one that saves
run.finish()
print(f"done {run.step_count} steps (resumed after {started})")
