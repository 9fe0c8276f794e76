"""An inline validation loop over val_loader after each epoch, run with autograd recording."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_float32_matmul_precision("high")


def main() -> None:
    torch.manual_seed(0)
    features = torch.randn(5000, 64)
    targets = features[:, :3].sum(1, keepdim=True) + 0.1 * torch.randn(5000, 1)
    train_loader = DataLoader(TensorDataset(features[:1000], targets[:1000]), batch_size=50, shuffle=True,
                              num_workers=2, pin_memory=True, persistent_workers=True)
    val_loader = DataLoader(TensorDataset(features[1000:], targets[1000:]), batch_size=500, num_workers=2,
                            pin_memory=True, persistent_workers=True)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)).to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = nn.MSELoss()
    for epoch in range(2):
        model.train()
        for x, y in train_loader:
            x, y = x.to(DEVICE, non_blocking=True), y.to(DEVICE, non_blocking=True)
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=DEVICE.type == "cuda"):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        val_loss = torch.zeros((), device=DEVICE)
        for x, y in val_loader:  # planted: DD130
            x, y = x.to(DEVICE, non_blocking=True), y.to(DEVICE, non_blocking=True)
            val_loss += criterion(model(x), y) * len(x)
        print(f"epoch {epoch}: val mse {val_loss.item() / len(val_loader.dataset):.4f}")


if __name__ == "__main__":
    main()
