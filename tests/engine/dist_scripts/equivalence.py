"""Train a small MLP with plain SGD on a fixed data order; save the final parameters (rank 0).

Run with 1 process and batch B, or with N processes and batch B/N each: DDP must land on the same
parameters. Usage: equivalence.py OUT.pt GLOBAL_BATCH
"""

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepdive.engine as dd


def main() -> None:
    out, global_batch = sys.argv[1], int(sys.argv[2])
    run = dd.setup(precision="fp32", grad_compression="none", seed=0)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 16, generator=gen), torch.randint(0, 4, (256,), generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # no shuffling: the DistributedSampler's interleaved shards make up the same global batches
    loader = DataLoader(TensorDataset(x, y), batch_size=global_batch // run.world_size, shuffle=False)
    model, opt, loader = run.prepare(model, opt, loader)
    if run.world_size > 1:
        assert loader.sampler.__class__.__name__ == "DistributedSampler"
    for xb, yb in run.batches(loader, epochs=3):
        with run.autocast():
            loss = F.cross_entropy(model(xb), yb)
        run.backward(loss)
        run.step(opt)
    if run.is_main:
        raw = model.module if hasattr(model, "module") else model
        torch.save({k: v.detach().cpu() for k, v in raw.state_dict().items()}, out)
    run.finish()


if __name__ == "__main__":
    main()
