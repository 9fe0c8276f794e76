"""The deepdive engine in fp16 with a plain loss.backward(): the loss is never scaled.

corpus: not-runnable (the engine refuses this step at run time: "loss.backward() was called instead of
run.backward(loss) under fp16 loss scaling"; the static rule says so before the run)
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepdive.engine as dd


def main() -> None:
    run = dd.setup(precision="fp16", seed=0)
    data = TensorDataset(torch.randn(512, 32), torch.randint(0, 4, (512,)))
    loader = DataLoader(data, batch_size=32, shuffle=True, num_workers=2, persistent_workers=True)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer, loader = run.prepare(model, optimizer, loader)
    for x, y in run.batches(loader, epochs=2):
        with run.autocast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()  # planted: DD122
        run.step(optimizer)
        run.log(loss=loss)
    run.finish()


if __name__ == "__main__":
    main()
