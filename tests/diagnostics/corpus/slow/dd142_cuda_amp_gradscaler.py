"""fp16 loss scaling written with the deprecated torch.cuda.amp.GradScaler."""

import torch
from torch import nn
from torch.cuda.amp import GradScaler

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
AMP = DEVICE.type == "cuda"
torch.set_float32_matmul_precision("high")


def main() -> None:
    torch.manual_seed(0)
    x_all = torch.randn(2048, 32, device=DEVICE)
    y_all = (x_all.norm(dim=1, keepdim=True) > 5.6).float()
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(DEVICE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = GradScaler(enabled=AMP)  # planted: DD142
    for step in range(30):
        idx = torch.randint(len(x_all), (64,), device=DEVICE)
        with torch.autocast(DEVICE.type, dtype=torch.float16, enabled=AMP):
            loss = nn.functional.binary_cross_entropy_with_logits(model(x_all[idx]), y_all[idx])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if step % 10 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
