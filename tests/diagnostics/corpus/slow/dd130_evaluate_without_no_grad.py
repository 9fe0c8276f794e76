"""Validation that builds the autograd graph: evaluate() calls the model without no_grad/inference_mode."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def evaluate(model: nn.Module, loader: DataLoader) -> float:  # planted: DD130
    model.eval()
    correct = torch.zeros((), device=device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (model(x).argmax(1) == y).sum()
    model.train()
    return correct.item() / len(loader.dataset)


def main() -> None:
    x = torch.randn(6144, 128)
    y = (x[:, :8].sum(1) > 0).long()
    train = DataLoader(TensorDataset(x[:1024], y[:1024]), batch_size=64, shuffle=True, num_workers=2,
                       pin_memory=True, persistent_workers=True)
    val = DataLoader(TensorDataset(x[1024:], y[1024:]), batch_size=512, num_workers=2, pin_memory=True,
                     persistent_workers=True)
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2))
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(3):
        for xb, yb in train:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: val accuracy {evaluate(model, val):.3f}")


if __name__ == "__main__":
    main()
