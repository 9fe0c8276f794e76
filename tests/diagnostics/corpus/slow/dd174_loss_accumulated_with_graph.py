"""The epoch loss summed as tensors that still carry their autograd graphs (total += loss)."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_float32_matmul_precision("high")


def train_epoch(model, loader, criterion, optimizer) -> torch.Tensor:
    total = torch.zeros((), device=device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss  # planted: DD174
    return total / len(loader)


def main() -> None:
    data = TensorDataset(torch.randn(2048, 64), torch.randn(2048, 1))
    loader = DataLoader(data, batch_size=32, shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 1)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean_loss = train_epoch(model, loader, nn.MSELoss(), optimizer)
    print(f"mean loss {mean_loss.item():.4f}")


if __name__ == "__main__":
    main()
