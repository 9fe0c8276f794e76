"""Mixed precision written with the deprecated torch.cuda.amp.autocast spelling."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

device = "cuda" if torch.cuda.is_available() else "cpu"
use_amp = device == "cuda"
torch.set_float32_matmul_precision("high")


def main() -> None:
    loader = DataLoader(TensorDataset(torch.randn(1024, 40), torch.randint(0, 6, (1024,))), batch_size=32,
                        shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)
    model = nn.Sequential(nn.Linear(40, 80), nn.ReLU(), nn.Linear(80, 6)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    for step, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.cuda.amp.autocast(enabled=use_amp):  # planted: DD141
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
