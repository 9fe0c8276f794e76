"""Per-sample losses kept in a Python list with .tolist() on every step (for a loss histogram later)."""

import torch
from torch import nn

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def main() -> None:
    torch.manual_seed(2)
    inputs = torch.randn(3000, 16, device=device)
    targets = inputs @ torch.randn(16, 4, device=device)
    model = nn.Sequential(nn.Linear(16, 64), nn.SiLU(), nn.Linear(64, 4)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    per_sample_history: list[float] = []
    for it in range(30):
        idx = torch.randint(len(inputs), (512,), device=device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            per_sample = (model(inputs[idx]) - targets[idx]).pow(2).mean(dim=1)
            loss = per_sample.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        per_sample_history.extend(per_sample.detach().float().tolist())  # planted: DD111
    hardest = sorted(per_sample_history)[-5:]
    print("hardest samples' losses:", [round(v, 3) for v in hardest])


if __name__ == "__main__":
    main()
