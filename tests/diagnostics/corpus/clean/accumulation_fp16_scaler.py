"""Gradient accumulation (single process) with fp16 autocast and torch.amp.GradScaler where there is a GPU."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
use_amp = device.type == "cuda"
accum_steps = 4


def main() -> None:
    torch.set_float32_matmul_precision("high")
    data = TensorDataset(torch.randn(2560, 32), torch.randint(0, 8, (2560,)))
    loader = DataLoader(data, batch_size=32, shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True,
                        drop_last=True)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 8)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    window = torch.zeros((), device=device)
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            loss = nn.functional.cross_entropy(model(x), y) / accum_steps
        scaler.scale(loss).backward()
        window += loss.detach()
        if (i + 1) % accum_steps == 0:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if (i + 1) % (8 * accum_steps) == 0:
                print(f"update {(i + 1) // accum_steps}: loss {window.item():.4f}")
            window.zero_()


if __name__ == "__main__":
    main()
