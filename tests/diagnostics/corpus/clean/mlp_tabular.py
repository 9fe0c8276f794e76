"""Tabular regression with an MLP: DataLoader workers, pinned memory, bf16 autocast, periodic logging."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

device = "cuda" if torch.cuda.is_available() else "cpu"
use_amp = device == "cuda"
torch.set_float32_matmul_precision("high")


def make_data(n: int = 2560, features: int = 32, val: int = 512) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    w = torch.randn(features, 1, generator=g)
    y = x @ w + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x[val:], y[val:]), TensorDataset(x[:val], y[:val])


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    total = torch.zeros((), device=device)
    count = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        total += F.mse_loss(model(x), y, reduction="sum")
        count += len(x)
    model.train()
    return total.item() / count


def main() -> None:
    train_ds, val_ds = make_data()
    train_loader = DataLoader(train_ds, batch_size=64, shuffle=True, num_workers=2, pin_memory=True,
                              persistent_workers=True)
    val_loader = DataLoader(val_ds, batch_size=256, num_workers=2, pin_memory=True, persistent_workers=True)

    model = nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(),
        nn.Linear(128, 128), nn.ReLU(),
        nn.Linear(128, 1),
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)

    step = 0
    for epoch in range(2):
        for x, y in train_loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_amp):
                loss = F.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % 20 == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f}")
            step += 1
    print(f"validation mse {evaluate(model, val_loader):.4f}")


if __name__ == "__main__":
    main()
