"""Gradients zeroed in place (set_to_none=False): a memset of every gradient each step, and an extra read in step."""

import torch
from torch import nn

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(256, 256), nn.ReLU()) for _ in range(6)], nn.Linear(256, 10))
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    data = torch.randn(2048, 256, device=device)
    labels = torch.randint(0, 10, (2048,), device=device)
    for step in range(30):
        idx = torch.randint(0, 2048, (64,), device=device)
        optimizer.zero_grad(set_to_none=False)  # planted: DD120
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = criterion(model(data[idx]), labels[idx])
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
