"""CPU-only training from an IterableDataset stream, sharded across DataLoader workers with get_worker_info."""

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info


class SensorStream(IterableDataset):
    """An endless-looking stream cut to ``n`` samples; each worker yields its own share of them."""

    def __init__(self, n: int = 2048, width: int = 16) -> None:
        self.n, self.width = n, width

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        g = torch.Generator().manual_seed(1000 + worker)
        for _ in range(worker, self.n, workers):
            x = torch.randn(self.width, generator=g)
            yield x, torch.tanh(x[: self.width // 2].sum(0, keepdim=True) / math.sqrt(self.width))


def main() -> None:
    torch.manual_seed(0)
    loader = DataLoader(SensorStream(), batch_size=64, num_workers=2, persistent_workers=True)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.MSELoss()
    for step, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 8 == 0:
            print(f"step {step:2d} mse {loss.item():.4f}")


if __name__ == "__main__":
    main()
